using EmaLab.Dashboard.Tracking;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>The tracking service's cache of each client run's key mapping stays as large as the runs logging now.</summary>
public class ClientKeyCacheTests
{
    static IReadOnlyDictionary<string, (string Track, string Key)> Keys(string key) =>
        new Dictionary<string, (string, string)> { [key] = ("raw", key) };

    [Fact]
    public void The_run_used_least_recently_goes_first_past_the_capacity()
    {
        var cache = new ClientKeyCache(capacity: 2);
        cache.Set(1, Keys("a"));
        cache.Set(2, Keys("b"));
        Assert.NotNull(cache.Get(1)); // run 1 logs again: run 2 is now the least recently used
        cache.Set(3, Keys("c"));
        Assert.Equal(2, cache.Count);
        Assert.Null(cache.Get(2));
        Assert.Equal("a", cache.Get(1)!.Keys.Single());
        Assert.Equal("c", cache.Get(3)!.Keys.Single());
    }

    [Fact]
    public void A_forgotten_run_is_read_again_and_setting_a_run_again_replaces_its_keys()
    {
        var cache = new ClientKeyCache(capacity: 8);
        cache.Set(1, Keys("a"));
        cache.Set(1, Keys("b"));
        Assert.Equal(1, cache.Count);
        Assert.Equal("b", cache.Get(1)!.Keys.Single());
        cache.Forget(1);
        cache.Forget(1);
        Assert.Null(cache.Get(1));
        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public async Task A_run_that_ends_or_is_deleted_is_let_go_and_logs_as_before_if_it_logs_again()
    {
        using var factory = new EmaLabFactory();
        var client = factory.CreateClient();
        var cache = factory.Services.GetRequiredService<TrackingService>().KnownKeys;
        async Task<(string Uuid, long Id)> LogAsync(string? uuid = null)
        {
            uuid ??= (await Api.OkAsync(await client.PostAsync("/api/2.0/mlflow/runs/create", Api.JsonBody("""{"experiment_id": "0"}"""))))
                .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
            await Api.OkAsync(await client.PostAsync("/api/2.0/mlflow/runs/log-batch", Api.JsonBody(
                $$"""{"run_id": "{{uuid}}", "metrics": [{"key": "ema-0.99/val_acc", "value": 0.5, "timestamp": 1, "step": 1}]}""")));
            var id = (await Api.GetAsync(client, $"/api/runs?trackingId={uuid}")).GetProperty("items")[0].GetProperty("id").GetInt64();
            return (uuid, id);
        }

        // A batch with new keys stores them; the next batch reads them once and keeps them.
        var (ended, endedId) = await LogAsync();
        await LogAsync(ended);
        Assert.NotNull(cache.Get(endedId));
        await Api.OkAsync(await client.PostAsync("/api/2.0/mlflow/runs/update", Api.JsonBody($$"""{"run_id": "{{ended}}", "status": "FINISHED"}""")));
        Assert.Null(cache.Get(endedId));
        await LogAsync(ended); // MLflow lets a finished run log: its keys are read again, to the same track
        var series = await Api.GetAsync(client, $"/api/runs/{endedId}/metrics");
        Assert.Equal(["ema-0.99"], series.EnumerateArray().Select(s => s.GetProperty("track").GetString()).Distinct());

        var (deleted, deletedId) = await LogAsync();
        await LogAsync(deleted);
        Assert.NotNull(cache.Get(deletedId));
        await Api.OkAsync(await client.PostAsync("/api/2.0/mlflow/runs/delete", Api.JsonBody($$"""{"run_id": "{{deleted}}"}""")));
        Assert.Null(cache.Get(deletedId));
    }
}
