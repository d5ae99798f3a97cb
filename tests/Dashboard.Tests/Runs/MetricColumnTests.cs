using System.Globalization;
using System.Net;
using System.Text.Json;
using EmaLab.Dashboard.Runs;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// The runs list sorted by a metric column's summary — last, best, min, max or the value at a step — in the database,
/// over every run the filter finds (then paged), runs without a value last either way.
/// </summary>
public sealed class MetricColumnTests(EmaLabFactory factory) : MetricColumnSuite(factory), IClassFixture<EmaLabFactory>;

[Trait("Speed", "Postgres")]
public sealed class MetricColumnOnPostgresTests(PostgresEmaLabFactory factory) : MetricColumnSuite(factory), IClassFixture<PostgresEmaLabFactory>;

public abstract class MetricColumnSuite(EmaLabFactory factory)
{
    readonly HttpClient _client = factory.CreateClient();

    /// <summary>An experiment of four script runs whose last, best and lowest val_acc order them differently (one logs none).</summary>
    public async Task<(string Experiment, Dictionary<string, string> Runs)> SweepAsync()
    {
        var experiment = (await Api.MlflowAsync(_client, "experiments/create", $$"""{"name": "columns-{{Guid.NewGuid():N}}"}""")).GetProperty("experiment_id").GetString()!;
        var runs = new Dictionary<string, string>();
        foreach (var (name, values) in new[] { ("a", new[] { 0.5, 0.9, 0.6 }), ("b", [0.7, 0.75, 0.8]), ("c", [0.2, 0.95, 0.1]), ("d", []) })
        {
            var uuid = (await Api.MlflowAsync(_client, "runs/create", $$"""{"experiment_id": "{{experiment}}", "run_name": "{{name}}"}""")).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
            runs[name] = uuid;
            var metrics = values.Select((v, step) => string.Create(CultureInfo.InvariantCulture, $$"""{"key": "val_acc", "value": {{v}}, "timestamp": {{1000 + step}}, "step": {{step}}}"""))
                .Append("""{"key": "loss", "value": 1.0, "timestamp": 1, "step": 0}""");
            await Api.MlflowAsync(_client, "runs/log-batch", $$"""{"run_id": "{{uuid}}", "metrics": [{{string.Join(",", metrics)}}]}""");
        }
        return (experiment, runs);
    }

    async Task<List<string>> OrderAsync(string experiment, Dictionary<string, string> runs, string sort, string? order = null)
    {
        var page = await Api.GetAsync(_client, $"/api/runs?experiment={experiment}&sort={Uri.EscapeDataString(sort)}{(order is null ? "" : $"&order={order}")}");
        return page.GetProperty("items").EnumerateArray().Select(r => runs.Single(p => p.Value == r.GetProperty("trackingId").GetString()).Key).ToList();
    }

    [Fact]
    public async Task The_list_sorts_by_the_summary_chosen_in_the_database_with_runs_lacking_a_value_last()
    {
        var (experiment, runs) = await SweepAsync();
        Assert.Equal(["c", "a", "b", "d"], await OrderAsync(experiment, runs, "val_acc~raw~best"));          // 0.95, 0.9, 0.8
        Assert.Equal(["b", "a", "c", "d"], await OrderAsync(experiment, runs, "val_acc~raw~last"));          // 0.8, 0.6, 0.1
        Assert.Equal(["c", "a", "b", "d"], await OrderAsync(experiment, runs, "val_acc~raw~min", "asc"));    // 0.1, 0.5, 0.7
        Assert.Equal(["b", "a", "c", "d"], await OrderAsync(experiment, runs, "val_acc~raw~min"));           // 0.7, 0.5, 0.1
        Assert.Equal(["c", "a", "b", "d"], await OrderAsync(experiment, runs, "val_acc~raw~at:1"));          // 0.95, 0.9, 0.75
        Assert.Equal(["b", "a", "c", "d"], await OrderAsync(experiment, runs, "val_acc~raw~at:2"));
        Assert.Equal(["c", "a", "b", "d"], await OrderAsync(experiment, runs, "val_acc~raw~max"));

        var bad = await _client.GetAsync($"/api/runs?experiment={experiment}&sort=val_acc~raw~median");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("sort", (await bad.Content.ReadAsStringAsync()));
    }

    [Fact]
    public async Task A_columns_values_are_read_for_a_page_of_runs_as_the_sort_reads_them()
    {
        var (experiment, runs) = await SweepAsync();
        var queries = factory.Services.GetService(typeof(RunQueries)) as RunQueries;
        var page = await Api.GetAsync(_client, $"/api/runs?experiment={experiment}");
        var ids = page.GetProperty("items").EnumerateArray().ToDictionary(r => runs.Single(p => p.Value == r.GetProperty("trackingId").GetString()).Key, r => r.Id());
        var best = await queries!.ColumnValuesAsync(ids.Values.ToList(), MetricColumn.Parse("val_acc~raw~best")!);
        Assert.Equal([0.9, 0.8, 0.95], new[] { "a", "b", "c" }.Select(n => best[ids[n]]));
        Assert.False(best.ContainsKey(ids["d"]));
        var atStep = await queries.ColumnValuesAsync(ids.Values.ToList(), MetricColumn.Parse("val_acc~raw~at:2")!);
        Assert.Equal([0.6, 0.8, 0.1], new[] { "a", "b", "c" }.Select(n => atStep[ids[n]]));
        // A loss is lower-is-better: its best is its lowest.
        Assert.Equal(MetricSummary.Min, MetricColumn.Parse("loss~raw~best")!.Computed);
        Assert.Equal(MetricSummary.Max, MetricColumn.Parse("val_acc~raw~best")!.Computed);
    }
}
