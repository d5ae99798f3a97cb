using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// Runs the real server as a child process, kills it with SIGKILL in the middle of a run, and checks what
/// a crash leaves: a clean database, at most one flush interval of metrics lost, the run interrupted and
/// resumable, and the resumed run training exactly as an uninterrupted one does.
/// </summary>
[Collection(ChildServerCollection.Name)]
[Trait("Speed", "Process")]
public sealed class HardKillTests : IDisposable
{
    const int FlushIntervalMs = 250;

    static readonly Dictionary<string, string> Settings = new()
    {
        ["EmaLab__Training__BundleEvery"] = "50",
        ["EmaLab__Metrics__FlushIntervalMs"] = FlushIntervalMs.ToString(),
        // Only the interval triggers commits, so the test measures exactly that bound.
        ["EmaLab__Metrics__FlushRows"] = "100000",
    };
    readonly string _data = Directory.CreateTempSubdirectory("emalab-kill-").FullName;

    [Fact]
    public async Task Kill_minus_9_loses_at_most_one_flush_interval_and_the_run_resumes_exactly()
    {
        // Far longer than the test needs (it stops every run itself): no race with a run that ends first.
        var spec = Api.DigitsRun(steps: 1_000_000, decays: [0.9, 0.99], evalInterval: 100);
        spec["dataset"] = "mnist-10k";
        spec["hidden"] = new System.Text.Json.Nodes.JsonArray(128);

        long runId;
        long killedAtMs;
        var reports = new List<(long Step, long AtMs)>();
        using (var server = await ChildServer.StartAsync(_data, Settings))
        {
            runId = (await Api.CreateAsync(server.Client, spec)).Id();
            // Record the trainer's progress reports (step, when reported) until well into the run.
            await Api.WaitForAsync(server.Client, runId, r =>
            {
                if (r.TryGetProperty("progress", out var p) && p.ValueKind == JsonValueKind.Object)
                    reports.Add((p.GetProperty("step").GetInt64(), p.GetProperty("reportedAt").GetDateTimeOffset().ToUnixTimeMilliseconds()));
                return reports.Count > 0 && reports[^1].Step >= 500 && reports[^1].AtMs - reports[0].AtMs > 1500;
            });
            // Taken before the signal: nothing the server does after this instant can be counted as committed in time.
            killedAtMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            server.Kill();
        }

        using (var db = new SqliteConnection($"Data Source={Path.Combine(_data, "emalab.db")}"))
        {
            db.Open();
            Assert.Equal("ok", Scalar<string>(db, "PRAGMA integrity_check"));
            // Batches commit whole: the training-loss series has no holes.
            var (count, max) = (Scalar<long>(db, $"SELECT COUNT(*) FROM Metrics WHERE RunId = {runId} AND Key = 'train/loss'"),
                                Scalar<long>(db, $"SELECT COALESCE(MAX(Step), 0) FROM Metrics WHERE RunId = {runId} AND Key = 'train/loss'"));
            Assert.Equal(max, count);
            // Every step the trainer had reached one flush interval before the kill (plus the commit itself and
            // scheduling slack on a busy 2-core machine) is committed: at most one interval of metrics is lost.
            var settled = reports.Where(r => r.AtMs <= killedAtMs - (FlushIntervalMs + 500)).ToList();
            Assert.NotEmpty(settled);
            Assert.True(max >= settled[^1].Step, $"committed up to step {max}, but the trainer was at step {settled[^1].Step} {killedAtMs - settled[^1].AtMs} ms before the kill");
            Assert.Equal("running", Scalar<string>(db, $"SELECT Status FROM Runs WHERE Id = {runId}"));
        }

        using (var server = await ChildServer.StartAsync(_data, Settings))
        {
            var interrupted = await Api.GetAsync(server.Client, $"/api/runs/{runId}");
            Assert.Equal("interrupted", interrupted.Status());
            Assert.True(interrupted.GetProperty("resumable").GetBoolean());
            var bundleStep = interrupted.GetProperty("bundleStep").GetInt64();
            Assert.Equal(0, bundleStep % 50);
            Assert.Contains($"resume continues from step {bundleStep:N0}", interrupted.GetProperty("error").GetString());

            var resume = await server.Client.PostAsync($"/api/runs/{runId}/resume", null);
            Assert.Equal(HttpStatusCode.OK, resume.StatusCode);
            // Train a few hundred steps past the bundle, then stop; an uninterrupted run of the same spec goes further.
            var resumedUpTo = await RunThenCancelAsync(server.Client, runId, bundleStep + 300);
            var reference = (await Api.CreateAsync(server.Client, spec)).Id();
            await RunThenCancelAsync(server.Client, reference, resumedUpTo + 1);

            foreach (var key in new[] { "eval/accuracy", "eval/loss", "train/loss" })
            {
                var resumed = await Api.GetAsync(server.Client, $"/api/runs/{runId}/metrics?key={key}&maxPoints=0");
                var uninterrupted = await Api.GetAsync(server.Client, $"/api/runs/{reference}/metrics?key={key}&maxPoints=0");
                // Up to the step before the cancel: a cancel that lands in an evaluation ends the run before that step's evaluation.
                var (expected, actual) = (Series(uninterrupted, resumedUpTo - 1), Series(resumed, resumedUpTo - 1));
                Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
                foreach (var track in expected.Keys)
                {
                    Assert.Equal(expected[track].Count, actual[track].Count);
                    var firstDifference = expected[track].Zip(actual[track]).FirstOrDefault(p => p.First != p.Second);
                    Assert.True(firstDifference == default, $"{key} {track}: uninterrupted {firstDifference.First}, resumed {firstDifference.Second}");
                }
            }
            Assert.True(Series(await Api.GetAsync(server.Client, $"/api/runs/{runId}/metrics?key=train/loss&maxPoints=0"), resumedUpTo)["raw"].Count == resumedUpTo);
        }
    }

    /// <summary>Waits until the run has passed <paramref name="step"/>, cancels it, and returns the step it stopped at.</summary>
    static async Task<long> RunThenCancelAsync(HttpClient client, long runId, long step)
    {
        await Api.WaitForAsync(client, runId, r => r.GetProperty("step").GetInt64() >= step || r.Status() is not ("queued" or "running"));
        await client.PostAsync($"/api/runs/{runId}/cancel", null);
        var stopped = await Api.WaitForFinishAsync(client, runId);
        Assert.Equal("cancelled", stopped.Status());
        return stopped.GetProperty("step").GetInt64();
    }

    static Dictionary<string, List<(long, double)>> Series(JsonElement list, long upToStep) =>
        list.EnumerateArray().ToDictionary(s => s.GetProperty("track").GetString()!, s =>
            s.GetProperty("points").EnumerateArray().Select(p => (p.GetProperty("step").GetInt64(), p.GetProperty("value").GetDouble()))
                .Where(p => p.Item1 <= upToStep).ToList());

    static T Scalar<T>(SqliteConnection db, string sql)
    {
        using var command = db.CreateCommand();
        command.CommandText = sql;
        return (T)Convert.ChangeType(command.ExecuteScalar()!, typeof(T));
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_data, recursive: true);
    }
}
