using EmaLab.Dashboard.Metrics;
using System.Text.Json;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Training;
using Microsoft.Data.Sqlite;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.Dashboard.Tests;

/// <summary>The metric writer keeps every row it was given: non-finite values, a busy database, a full one.</summary>
public sealed class MetricStoreFailureTests
{
    static async Task<long[]> TrainLossStepsAsync(HttpClient client, long id)
    {
        var series = await Api.GetAsync(client, $"/api/runs/{id}/metrics?key=train/loss&track=raw&maxPoints=0");
        return series[0].GetProperty("points").EnumerateArray().Select(p => p.GetProperty("step").GetInt64()).ToArray();
    }

    /// <summary>Lets a (long) run pass <paramref name="step"/>, cancels it and returns where it stopped.</summary>
    static async Task<long> StopAfterAsync(HttpClient client, long id, long step)
    {
        await Api.WaitForAsync(client, id, r => r.GetProperty("step").GetInt64() >= step);
        await client.PostAsync($"/api/runs/{id}/cancel", null);
        var stopped = await Api.WaitForFinishAsync(client, id);
        Assert.Equal("cancelled", stopped.Status());
        return stopped.GetProperty("step").GetInt64();
    }

    [Fact]
    public async Task Non_finite_values_are_stored_and_served_and_do_not_cost_other_runs_their_rows()
    {
        using var factory = new EmaLabFactory();
        var client = factory.CreateClient();
        var first = await Api.CreateAsync(client, Api.DigitsRun(steps: 20));
        await Api.WaitForFinishAsync(client, first.Id());
        // Far longer than needed; the test stops it.
        var other = await Api.CreateAsync(client, Api.DigitsRun(steps: 1_000_000, evalInterval: 500));
        await Api.WaitForAsync(client, other.Id(), r => r.Status() == "running");

        // A diverged value arrives while the other run trains: the same batches carry both runs' rows.
        var pipeline = factory.Services.GetRequiredService<MetricPipeline>();
        double[] values = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, 0.5];
        for (var i = 0; i < values.Length; i++) pipeline.WriteMetric(first.Id(), new MetricPoint("", "raw", "eval/diverged", i + 1, values[i]));

        var stoppedAt = await StopAfterAsync(client, other.Id(), 1000);
        Assert.Equal(Enumerable.Range(1, (int)stoppedAt).Select(i => (long)i), await TrainLossStepsAsync(client, other.Id()));

        var text = await client.GetStringAsync($"/api/runs/{first.Id()}/metrics?key=eval/diverged&track=raw");
        var points = JsonDocument.Parse(text).RootElement[0].GetProperty("points").EnumerateArray().Select(p => p.GetProperty("value")).ToList();
        Assert.Equal(["NaN", "Infinity", "-Infinity"], points.Take(3).Select(p => p.GetString()));
        Assert.Equal(0.5, points[3].GetDouble());
        var csv = await client.GetStringAsync($"/api/runs/{first.Id()}/metrics.csv");
        Assert.Contains("raw,eval/diverged,1,NaN,", csv);
        Assert.Contains("raw,eval/diverged,2,Infinity,", csv);
    }

    [Fact]
    public async Task A_lock_held_past_the_store_timeout_delays_rows_but_loses_none()
    {
        using var factory = new EmaLabFactory();
        factory.Settings["EmaLab:Metrics:StoreTimeoutSeconds"] = "1";
        var client = factory.CreateClient();
        var run = await Api.CreateAsync(client, Api.DigitsRun(steps: 1_000_000, evalInterval: 250));
        // Training, not just claimed: the start itself (building the session, then recording it) is not what is tested, and
        // on a slow machine a lock over it would fail the run at step 0 (its start record waits one store timeout, as a
        // page's write would).
        await Api.WaitForAsync(client, run.Id(), r => r.Status() == "running" && r.GetProperty("step").GetInt64() > 0);

        // Another process holds the write lock for three store timeouts.
        await using (var blocker = new SqliteConnection($"Data Source={Path.Combine(factory.DataDirectory, "emalab.db")}"))
        {
            await blocker.OpenAsync();
            using var transaction = blocker.BeginTransaction(deferred: false);
            await Task.Delay(TimeSpan.FromSeconds(3));
        }

        var stepAfterLock = (await Api.GetAsync(client, $"/api/runs/{run.Id()}")).GetProperty("step").GetInt64();
        var stoppedAt = await StopAfterAsync(client, run.Id(), stepAfterLock + 500);
        Assert.Equal(Enumerable.Range(1, (int)stoppedAt).Select(i => (long)i), await TrainLossStepsAsync(client, run.Id()));
    }

    [Fact]
    public async Task A_full_database_fails_the_run_with_a_reason_keeps_what_was_stored_and_the_server_serves()
    {
        using var factory = new EmaLabFactory();
        factory.Settings["EmaLab:Metrics:MaxDatabaseMegabytes"] = "2";
        factory.Settings["EmaLab:Metrics:StoreRetrySeconds"] = "1";
        var client = factory.CreateClient();
        var small = await Api.CreateAsync(client, Api.DigitsRun(steps: 50));
        Assert.Equal("completed", (await Api.WaitForFinishAsync(client, small.Id())).Status());

        // Fill the file to just under the writer's limit from another connection (which has no limit).
        await using (var filler = new SqliteConnection($"Data Source={Path.Combine(factory.DataDirectory, "emalab.db")}"))
        {
            await filler.OpenAsync();
            using var command = filler.CreateCommand();
            command.CommandText = "CREATE TABLE Filler (Data BLOB); INSERT INTO Filler VALUES (zeroblob(1900000)); PRAGMA wal_checkpoint(TRUNCATE);";
            await command.ExecuteNonQueryAsync();
        }
        var big = await Api.CreateAsync(client, Api.DigitsRun(steps: 200_000, evalInterval: 10_000));

        var failed = await Api.WaitForFinishAsync(client, big.Id());
        Assert.Equal("failed", failed.Status());
        Assert.Contains("full", failed.GetProperty("error").GetString());
        Assert.True(failed.GetProperty("step").GetInt64() > 0);
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), await TrainLossStepsAsync(client, small.Id()));
        Assert.Equal("Healthy", await client.GetStringAsync("/health"));
        Assert.Equal(2, (await Api.GetAsync(client, "/api/runs")).GetProperty("items").GetArrayLength());
    }

    [Fact]
    public async Task A_run_whose_files_would_not_fit_on_the_disk_fails_before_it_starts()
    {
        using var factory = new EmaLabFactory();
        // Leave this run only 5 MB: its final checkpoints and bundles need about 200 MB.
        var free = TrainingEngine.Formats.DiskSpace.FreeBytes(factory.DataDirectory);
        factory.Settings["EmaLab:Limits:DiskReserveMegabytes"] = Math.Max(0, (free >> 20) - 5).ToString();
        var client = factory.CreateClient();
        var body = Api.DigitsRun(steps: 10);
        body["hidden"] = new System.Text.Json.Nodes.JsonArray(2048, 2048);
        var run = await Api.CreateAsync(client, body);
        var failed = await Api.WaitForFinishAsync(client, run.Id());
        Assert.Equal("failed", failed.Status());
        Assert.Equal(0, failed.GetProperty("step").GetInt64());
        Assert.StartsWith("Not enough free disk space for this run", failed.GetProperty("error").GetString());
        Assert.Equal("Healthy", await client.GetStringAsync("/health"));
    }

    /// <summary>A cleaner on a mount that hangs until the test lets it go.</summary>
    sealed class StalledCleaner(Data.DataPaths paths, Microsoft.Extensions.Logging.ILogger<BundleCleaner> logger) : BundleCleaner(paths, logger)
    {
        public static readonly ManualResetEventSlim Gate = new(false);
        protected override void Delete(long runId, long keepStep)
        {
            Gate.Wait();
            base.Delete(runId, keepStep);
        }
    }

    [Fact]
    public async Task A_slow_artifact_mount_does_not_stall_the_metric_writer_and_superseded_bundles_go_once_it_answers()
    {
        using var factory = new EmaLabFactory();
        StalledCleaner.Gate.Reset();
        var client = factory.WithWebHostBuilder(builder => builder.ConfigureTestServices(services =>
            services.AddSingleton<BundleCleaner, StalledCleaner>())).CreateClient();
        var run = await Api.CreateAsync(client, Api.DigitsRun(steps: 1_000_000, evalInterval: 500));
        // Bundles every 50 steps: deleting the older ones hangs, the run's rows keep being committed.
        var stoppedAt = await StopAfterAsync(client, run.Id(), 300);
        Assert.Equal(Enumerable.Range(1, (int)stoppedAt).Select(i => (long)i), await TrainLossStepsAsync(client, run.Id()));
        var folder = Path.Combine(factory.DataDirectory, "runs", run.Id().ToString());
        Assert.True(Directory.GetFiles(folder, "resume-*.zip").Length > 2);

        StalledCleaner.Gate.Set();
        var kept = $"resume-{(await Api.GetAsync(client, $"/api/runs/{run.Id()}")).GetProperty("bundleStep").GetInt64()}.zip";
        for (var i = 0; i < 100 && Directory.GetFiles(folder, "resume-*.zip").Length > 1; i++) await Task.Delay(100);
        Assert.Equal([kept], Directory.GetFiles(folder, "resume-*.zip").Select(Path.GetFileName));
    }
}
