using System.Net;
using Microsoft.Data.Sqlite;

namespace EmaLab.Dashboard.Tests;

/// <summary>Requests that race each other or the worker, and runs whose start took the process down.</summary>
public sealed class RunLifecycleRaceTests
{
    [Fact]
    public async Task Two_concurrent_resumes_queue_the_run_once()
    {
        using var factory = new EmaLabFactory { Settings = { ["EmaLab:Training:MaxConcurrentRuns"] = "2" } };
        var client = factory.CreateClient();
        var run = await Api.CreateAsync(client, Api.DigitsRun(steps: 1_000_000, evalInterval: 100_000));
        await Api.WaitForAsync(client, run.Id(), r => r.GetProperty("step").GetInt64() > 60);
        await client.PostAsync($"/api/runs/{run.Id()}/cancel", null);
        await Api.WaitForAsync(client, run.Id(), r => r.Status() == "cancelled" && r.GetProperty("bundleStep").ValueKind == System.Text.Json.JsonValueKind.Number);

        var answers = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => client.PostAsync($"/api/runs/{run.Id()}/resume", null)));
        Assert.Equal(1, answers.Count(a => a.StatusCode == HttpStatusCode.OK));
        Assert.All(answers.Where(a => a.StatusCode != HttpStatusCode.OK), a => Assert.Equal(HttpStatusCode.Conflict, a.StatusCode));

        await Api.WaitForAsync(client, run.Id(), r => r.Status() == "running");
        await client.PostAsync($"/api/runs/{run.Id()}/cancel", null);
        Assert.Equal("cancelled", (await Api.WaitForFinishAsync(client, run.Id())).Status());
        var log = await Api.GetAsync(client, $"/api/runs/{run.Id()}/log");
        Assert.Single(log.EnumerateArray(), l => l.GetProperty("message").GetString()!.StartsWith("Resuming at step"));
    }

    [Fact]
    public async Task A_cancel_racing_the_start_of_a_queued_run_always_ends_it_cancelled()
    {
        using var factory = new EmaLabFactory();
        var client = factory.CreateClient();
        for (var i = 0; i < 6; i++)
        {
            var run = await Api.CreateAsync(client, Api.DigitsRun(steps: 1_000_000, evalInterval: 100_000));
            if (i % 2 == 1) await Task.Delay(i * 5);
            var cancel = await client.PostAsync($"/api/runs/{run.Id()}/cancel", null);
            Assert.Contains(cancel.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.Accepted });
            Assert.Equal("cancelled", (await Api.WaitForFinishAsync(client, run.Id())).Status());
        }
    }

    [Fact]
    public async Task A_run_whose_start_took_the_process_down_is_tried_once_more_then_failed()
    {
        var data = Directory.CreateTempSubdirectory("emalab-attempts-").FullName;
        try
        {
            long[] ids;
            using (var first = new EmaLabFactory { Settings = { ["EmaLab:DataDirectory"] = data } })
            {
                var client = first.CreateClient();
                ids = new long[3];
                for (var i = 0; i < 3; i++)
                {
                    ids[i] = (await Api.CreateAsync(client, Api.DigitsRun(steps: 5))).Id();
                    await Api.WaitForFinishAsync(client, ids[i]);
                }
            }
            SqliteConnection.ClearAllPools();
            // As a process that died: in training (0 start attempts pending), while building once, and twice.
            await using (var db = new SqliteConnection($"Data Source={Path.Combine(data, "emalab.db")}"))
            {
                await db.OpenAsync();
                for (var i = 0; i < 3; i++)
                {
                    using var command = db.CreateCommand();
                    command.CommandText = $"UPDATE Runs SET Status = 'running', StartAttempts = {i} WHERE Id = {ids[i]}";
                    await command.ExecuteNonQueryAsync();
                }
            }
            SqliteConnection.ClearAllPools();

            using var second = new EmaLabFactory { Settings = { ["EmaLab:DataDirectory"] = data } };
            var again = second.CreateClient();
            Assert.Equal("interrupted", (await Api.GetAsync(again, $"/api/runs/{ids[0]}")).Status());
            Assert.Equal("completed", (await Api.WaitForFinishAsync(again, ids[1])).Status());
            var failed = await Api.GetAsync(again, $"/api/runs/{ids[2]}");
            Assert.Equal("failed", failed.Status());
            Assert.Contains("stopped 2 times while starting this run", failed.GetProperty("error").GetString());
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Directory.Delete(data, recursive: true);
        }
    }
}
