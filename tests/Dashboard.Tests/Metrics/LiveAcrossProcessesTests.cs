using System.Text.Json;

namespace EmaLab.Dashboard.Tests;

/// <summary>Two apps on one PostgreSQL database, as a deployment's processes: what one trains, the other shows live.</summary>
[Trait("Speed", "Postgres")]
public sealed class LiveAcrossProcessesTests
{
    [Fact]
    public async Task A_run_trained_by_one_process_streams_live_from_another_and_its_series_stay_current_there()
    {
        using var trainer = new PostgresEmaLabFactory();
        using var viewer = trainer.SharingDatabase();
        var trainerClient = trainer.CreateClient();
        var viewerClient = viewer.CreateClient(); // both started before the run exists

        var created = await Api.CreateAsync(trainerClient, Api.DigitsRun(steps: 100_000, evalInterval: 1000));
        var id = created.Id();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var response = await viewerClient.GetAsync($"/api/runs/{id}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var types = new HashSet<string>();
        var trainSteps = new List<long>();
        string? eventType = null, status = null;
        var cancelled = false;
        long pointsSeenMidRun = 0;
        while (status != "cancelled")
        {
            var line = await reader.ReadLineAsync(cts.Token);
            Assert.NotNull(line);
            if (line.StartsWith("event: ")) types.Add(eventType = line["event: ".Length..]);
            if (!line.StartsWith("data: ")) continue;
            var data = JsonDocument.Parse(line["data: ".Length..]).RootElement;
            Assert.Equal(id, data.GetProperty("runId").GetInt64());
            if (eventType == "status") status = data.GetProperty("status").GetString();
            if (eventType == "metrics")
                trainSteps.AddRange(data.GetProperty("points").EnumerateArray().Where(p => p.GetProperty("key").GetString() == "train/loss").Select(p => p.GetProperty("step").GetInt64()));
            if (!cancelled && trainSteps.Count == 0) continue;
            if (pointsSeenMidRun == 0)
                // The viewer reads the series once mid-run (and caches it); later reads must not answer from that cache.
                pointsSeenMidRun = await TrainLossPointsAsync(viewerClient, id);
            // Cancelled once a progress event has crossed too: on a loaded machine 300 steps can pass before the trainer's first one.
            if (!cancelled && trainSteps.Count > 300 && types.Contains("progress"))
            {
                cancelled = true;
                Assert.True((await trainerClient.PostAsync($"/api/runs/{id}/cancel", null)).IsSuccessStatusCode);
            }
        }
        Assert.Contains("progress", types);
        Assert.Equal(Enumerable.Range((int)trainSteps[0], trainSteps.Count).Select(i => (long)i), trainSteps);
        var final = await TrainLossPointsAsync(viewerClient, id);
        Assert.True(final > pointsSeenMidRun, $"the viewer's series grew after the first read ({pointsSeenMidRun} → {final})");
        Assert.Equal(await TrainLossPointsAsync(trainerClient, id), final);
        Assert.Equal("cancelled", (await Api.GetAsync(viewerClient, $"/api/runs/{id}")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task A_client_run_logged_through_one_process_streams_from_another_including_nan()
    {
        using var tracking = new PostgresEmaLabFactory();
        using var viewer = tracking.SharingDatabase();
        var client = tracking.CreateClient();
        var viewerClient = viewer.CreateClient();
        var created = JsonDocument.Parse(await (await client.PostAsync("/api/2.0/mlflow/runs/create", Api.JsonBody("{}"))).Content.ReadAsStringAsync()).RootElement;
        var runId = created.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var id = (await Api.GetAsync(viewerClient, "/api/runs")).GetProperty("items").EnumerateArray().Single(r => r.GetProperty("trackingId").GetString() == runId).Id();

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var response = await viewerClient.GetAsync($"/api/runs/{id}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        Assert.StartsWith("event: status", await reader.ReadLineAsync(cts.Token)); // the stream has begun: what follows is live
        var batch = $$"""{"run_id": "{{runId}}", "metrics": [{"key": "loss", "value": "NaN", "timestamp": "1", "step": "1"}, {"key": "loss", "value": 0.5, "timestamp": "2", "step": "2"}]}""";
        Assert.True((await client.PostAsync("/api/2.0/mlflow/runs/log-batch", Api.JsonBody(batch))).IsSuccessStatusCode);
        while (true)
        {
            var line = await reader.ReadLineAsync(cts.Token);
            Assert.NotNull(line);
            if (!line.StartsWith("data: ")) continue;
            var data = JsonDocument.Parse(line["data: ".Length..]).RootElement;
            if (data.GetProperty("type").GetString() != "metrics") continue;
            var points = data.GetProperty("points").EnumerateArray().ToList();
            Assert.Equal(["NaN", "0.5"], points.Select(p => p.GetProperty("value").ToString()));
            break;
        }
    }

    [Fact]
    public async Task A_process_started_after_a_run_logged_streams_only_what_the_run_logs_next()
    {
        using var tracking = new PostgresEmaLabFactory();
        var client = tracking.CreateClient();
        var created = JsonDocument.Parse(await (await client.PostAsync("/api/2.0/mlflow/runs/create", Api.JsonBody("{}"))).Content.ReadAsStringAsync()).RootElement;
        var runId = created.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        Task LogAsync(long step) => client.PostAsync("/api/2.0/mlflow/runs/log-batch", Api.JsonBody(
            $$"""{"run_id": "{{runId}}", "metrics": [{"key": "loss", "value": {{step}}, "timestamp": "{{step}}", "step": "{{step}}"}]}"""));
        await LogAsync(1);
        await LogAsync(2);

        using var viewer = tracking.SharingDatabase(); // a web process restarted while the run logs
        var viewerClient = viewer.CreateClient();
        var id = (await Api.GetAsync(viewerClient, "/api/runs")).GetProperty("items").EnumerateArray().Single(r => r.GetProperty("trackingId").GetString() == runId).Id();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var response = await viewerClient.GetAsync($"/api/runs/{id}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        Assert.StartsWith("event: status", await reader.ReadLineAsync(cts.Token));

        // Logged until the viewer relays one (it may not listen yet): each relayed point is new, none of the history.
        var streamed = new List<long>();
        var next = 3L;
        var lines = Task.Run(async () =>
        {
            while (await reader.ReadLineAsync(cts.Token) is { } line)
            {
                if (!line.StartsWith("data: ")) continue;
                var data = JsonDocument.Parse(line["data: ".Length..]).RootElement;
                if (data.GetProperty("type").GetString() != "metrics") continue;
                lock (streamed) streamed.AddRange(data.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("step").GetInt64()));
            }
        }, cts.Token);
        while (true)
        {
            lock (streamed) if (streamed.Count > 0) break;
            await LogAsync(next++);
            await Task.Delay(200, cts.Token);
        }
        await LogAsync(100);
        while (true)
        {
            lock (streamed) if (streamed.Contains(100)) break;
            await Task.Delay(50, cts.Token);
        }
        lock (streamed)
        {
            Assert.True(streamed[0] >= 3, $"the history was streamed again: {string.Join(", ", streamed)}");
            Assert.Equal(Enumerable.Range((int)streamed[0], (int)(next - streamed[0])).Select(i => (long)i).Append(100), streamed);
        }
    }

    static async Task<long> TrainLossPointsAsync(HttpClient client, long id)
    {
        var series = await Api.GetAsync(client, $"/api/runs/{id}/metrics?key=train/loss&track=raw&maxPoints=0");
        return series.EnumerateArray().Single().GetProperty("totalPoints").GetInt64();
    }
}
