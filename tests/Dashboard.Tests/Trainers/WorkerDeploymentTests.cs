using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// A deployment as the README describes it, in real processes: one web process and worker processes on one PostgreSQL
/// database, each with a data directory of its own and one shared artifact directory.
/// </summary>
[Collection(ChildServerCollection.Name)]
[Trait("Speed", "Process")]
public sealed class WorkerDeploymentTests : IDisposable
{
    /// <summary>Seconds a job may go without its worker's heartbeat before another worker takes it over.</summary>
    const int InvisibilitySeconds = 10;
    const int BundleEvery = 250;

    readonly string _connectionString = PostgresCluster.Instance.CreateDatabase();
    readonly string _folder = Directory.CreateTempSubdirectory("emalab-deployment-").FullName;
    readonly List<ChildServer> _servers = [];

    string Artifacts => Path.Combine(_folder, "shared");

    Task<ChildServer> StartAsync(string role, string name = "web") => StartAsync(role, name, _servers);

    async Task<ChildServer> StartAsync(string role, string name, List<ChildServer> servers)
    {
        var server = await ChildServer.StartAsync(Path.Combine(_folder, name), new Dictionary<string, string>
        {
            ["EmaLab__Database"] = "postgres",
            ["ConnectionStrings__EmaLab"] = _connectionString,
            ["EmaLab__Role"] = role,
            ["EmaLab__Training__WorkerName"] = name,
            ["EmaLab__ArtifactDirectory"] = Artifacts,
            ["EmaLab__Training__JobInvisibilitySeconds"] = InvisibilitySeconds.ToString(),
            ["EmaLab__Training__BundleEvery"] = BundleEvery.ToString(),
        });
        lock (servers) servers.Add(server);
        return server;
    }

    /// <summary>Long enough on MNIST to be stopped mid-run, short enough to finish in seconds.</summary>
    static JsonObject MnistRun(int steps, string name)
    {
        var spec = Api.DigitsRun(steps: steps, decays: [0.9, 0.99], evalInterval: 250);
        spec["dataset"] = "mnist-10k";
        spec["hidden"] = new JsonArray(128);
        spec["name"] = name;
        return spec;
    }

    [Fact]
    public async Task Two_workers_train_four_queued_runs_each_once_and_the_web_role_streams_them_live()
    {
        var web = await StartAsync("web");
        // Runs are queued before any worker exists: the queue is the database's.
        var ids = new List<long>();
        for (var i = 0; i < 4; i++) ids.Add((await Api.CreateAsync(web.Client, MnistRun(1500, $"run {i}"))).Id());
        var streams = ids.Select(id => CountLiveMetricEventsAsync(web.Client, id)).ToList();
        await Task.Delay(500);
        foreach (var id in ids) Assert.Equal("queued", (await Api.GetAsync(web.Client, $"/api/runs/{id}")).Status());
        await Task.WhenAll(StartAsync("worker", "worker-a"), StartAsync("worker", "worker-b"));

        var trainers = new List<string>();
        foreach (var id in ids)
        {
            Assert.Equal("completed", (await Api.WaitForFinishAsync(web.Client, id)).Status());
            trainers.Add(await TrainerAsync(web.Client, id));
            AssertEveryStepOnce(await SeriesAsync(web.Client, id, "train/loss"), 1500);
            // Its files are in the shared folder, where the web role serves them from.
            var checkpoint = (await Api.GetAsync(web.Client, $"/api/runs/{id}/checkpoints")).EnumerateArray().First();
            Assert.Equal(HttpStatusCode.OK, (await web.Client.GetAsync($"/api/checkpoints/{checkpoint.Id()}/download")).StatusCode);
        }
        Assert.Equal(["worker-a", "worker-b"], trainers.Distinct().Order());
        foreach (var (id, stream) in ids.Zip(streams))
            Assert.True(await stream > 0, $"the web role streamed no metrics of run {id} while it trained");

        // A worker serves no pages or API; the web role serves no training.
        var worker = _servers[1];
        Assert.Equal(HttpStatusCode.OK, (await worker.Client.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await worker.Client.GetAsync("/api/runs")).StatusCode);
    }

    [Fact]
    public async Task A_worker_killed_mid_run_is_replaced_within_the_invisibility_timeout_and_the_run_equals_an_uninterrupted_one()
    {
        // All three at once on the new database: the web role migrates it while the workers wait for it.
        var started = await Task.WhenAll(StartAsync("web"), StartAsync("worker", "worker-a"), StartAsync("worker", "worker-b"));
        var (web, workers) = (started[0], started[1..]);
        var steps = 2500;
        var id = (await Api.CreateAsync(web.Client, MnistRun(steps, "interrupted"))).Id();
        var running = await Api.WaitForAsync(web.Client, id, r => r.GetProperty("bundleStep").ValueKind == JsonValueKind.Number && r.GetProperty("bundleStep").GetInt64() >= 2 * BundleEvery);
        Assert.True(running.GetProperty("step").GetInt64() < steps - BundleEvery, "the run ended too soon to be interrupted");
        var (victim, survivor) = await TrainerAsync(web.Client, id) == "worker-a" ? (workers[0], "worker-b") : (workers[1], "worker-a");
        victim.Kill();
        var killed = Stopwatch.StartNew();

        string takeover;
        while (true)
        {
            takeover = (await LogAsync(web.Client, id)).SingleOrDefault(l => l.Contains("took the run over")) ?? "";
            if (takeover != "") break;
            Assert.True(killed.Elapsed < TimeSpan.FromSeconds(InvisibilitySeconds * 4), "no worker took the run over");
            await Task.Delay(100);
        }
        var failover = killed.Elapsed;
        Assert.StartsWith($"Worker {survivor} took the run over", takeover);
        Assert.Contains("continues from the bundle of step", takeover);
        // Not before the dead worker's claim lapsed (the invisibility timeout), and not much after it.
        Assert.InRange(failover.TotalSeconds, InvisibilitySeconds - 3, InvisibilitySeconds * 3);
        Assert.Equal("completed", (await Api.WaitForFinishAsync(web.Client, id)).Status());

        var reference = (await Api.CreateAsync(web.Client, MnistRun(steps, "uninterrupted"))).Id();
        Assert.Equal("completed", (await Api.WaitForFinishAsync(web.Client, reference)).Status());
        await TrainerAsync(web.Client, reference);

        foreach (var key in new[] { "train/loss", "eval/accuracy", "eval/loss" })
        {
            var (resumed, uninterrupted) = (await SeriesAsync(web.Client, id, key), await SeriesAsync(web.Client, reference, key));
            Assert.Equal(uninterrupted.Keys.Order(), resumed.Keys.Order());
            foreach (var track in uninterrupted.Keys) Assert.Equal(uninterrupted[track], resumed[track]);
        }
        AssertEveryStepOnce(await SeriesAsync(web.Client, id, "train/loss"), steps);
        // The final weights, raw and every EMA shadow, are the same numbers.
        var (resumedFiles, referenceFiles) = (await FinalCheckpointsAsync(web.Client, id), await FinalCheckpointsAsync(web.Client, reference));
        Assert.Equal(["ema-0.9", "ema-0.99", "raw"], resumedFiles.Keys.Order());
        foreach (var (track, file) in referenceFiles)
        {
            using var expected = SafeTensors.Read(new MemoryStream(file));
            using var actual = SafeTensors.Read(new MemoryStream(resumedFiles[track]));
            foreach (var (name, tensor) in expected.Tensors) Assert.True(tensor.eq(actual.Tensors[name]).all().item<bool>(), $"{track} {name} differs");
        }
        Console.WriteLine($"failover after kill -9: {failover.TotalSeconds:F1} s (invisibility timeout {InvisibilitySeconds} s)");
    }

    [Fact]
    public async Task A_run_training_on_a_worker_is_cancelled_and_deleted_from_the_web_role()
    {
        var web = await StartAsync("web");
        await StartAsync("worker", "worker-a");
        var id = (await Api.CreateAsync(web.Client, MnistRun(1_000_000, "long"))).Id();
        await Api.WaitForAsync(web.Client, id, r => r.GetProperty("step").GetInt64() > 100);

        var asked = Stopwatch.StartNew();
        var cancel = await web.Client.PostAsync($"/api/runs/{id}/cancel", null);
        Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
        var cancelled = JsonDocument.Parse(await cancel.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("cancelled", cancelled.Status());
        Assert.True(asked.Elapsed < TimeSpan.FromSeconds(10), $"the worker stopped {asked.Elapsed.TotalSeconds:F1} s after the cancel");
        Assert.True(cancelled.GetProperty("resumable").GetBoolean());
        Assert.True(Directory.Exists(Path.Combine(Artifacts, "runs", id.ToString())));

        // Resumed on the worker, then deleted while it trains there: its rows and its files go.
        Assert.Equal(HttpStatusCode.OK, (await web.Client.PostAsync($"/api/runs/{id}/resume", null)).StatusCode);
        await Api.WaitForAsync(web.Client, id, r => r.Status() == "running" && r.GetProperty("step").GetInt64() > cancelled.GetProperty("step").GetInt64());
        Assert.Equal(HttpStatusCode.NoContent, (await web.Client.DeleteAsync($"/api/runs/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await web.Client.GetAsync($"/api/runs/{id}")).StatusCode);
        Assert.False(Directory.Exists(Path.Combine(Artifacts, "runs", id.ToString())));

        // The worker is free for the next run.
        var next = (await Api.CreateAsync(web.Client, MnistRun(300, "next"))).Id();
        Assert.Equal("completed", (await Api.WaitForFinishAsync(web.Client, next)).Status());
    }

    [Fact]
    public async Task A_run_whose_worker_died_is_cancelled_once_the_workers_heartbeat_has_lapsed()
    {
        var web = await StartAsync("web");
        var worker = await StartAsync("worker", "worker-a");
        var id = (await Api.CreateAsync(web.Client, MnistRun(1_000_000, "orphan"))).Id();
        await Api.WaitForAsync(web.Client, id, r => r.GetProperty("step").GetInt64() > 100);
        worker.Kill();

        // Nothing answers the cancel: the run is still stopping when the request ends…
        Assert.Equal(HttpStatusCode.Accepted, (await web.Client.PostAsync($"/api/runs/{id}/cancel", null)).StatusCode);
        Assert.Equal("running", (await Api.GetAsync(web.Client, $"/api/runs/{id}")).Status());
        // …and ends cancelled once no heartbeat can be pending any more (its job is deleted: no worker will take it).
        var cancelled = await Api.WaitForAsync(web.Client, id, r => r.Status() != "running", seconds: InvisibilitySeconds * 4);
        Assert.Equal("cancelled", cancelled.Status());
        Assert.Contains("its worker did not answer", cancelled.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Restarting_the_web_role_or_stopping_a_worker_while_runs_train_loses_nothing()
    {
        var web = await StartAsync("web");
        var workers = new[] { await StartAsync("worker", "worker-a"), await StartAsync("worker", "worker-b") };
        // Long enough to outlast a web restart and a hand-over on a loaded machine (4,000 steps once finished first).
        var steps = 10_000;
        var id = (await Api.CreateAsync(web.Client, MnistRun(steps, "through restarts"))).Id();
        await Api.WaitForAsync(web.Client, id, r => r.GetProperty("step").GetInt64() > 300);
        web.Kill();
        var restarted = await StartAsync("web", "web-2");
        Assert.Equal("running", (await Api.GetAsync(restarted.Client, $"/api/runs/{id}")).Status());

        // A worker told to stop hands its run back at once: the other continues it without waiting for a timeout.
        await Api.WaitForAsync(restarted.Client, id, r => r.GetProperty("bundleStep").ValueKind == JsonValueKind.Number);
        var first = await TrainerAsync(restarted.Client, id);
        var (stopped, other) = first == "worker-a" ? (workers[0], "worker-b") : (workers[1], "worker-a");
        var stopping = Stopwatch.StartNew();
        stopped.Terminate();
        var log = await WaitForLogAsync(restarted.Client, id, l => l.StartsWith($"Worker {other} started the run from the bundle of step"));
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(InvisibilitySeconds), $"handed over after {stopping.Elapsed.TotalSeconds:F1} s");
        Assert.Contains(log, l => l.StartsWith($"Queued again for another worker: worker {first} stopped at step"));
        Assert.Equal("completed", (await Api.WaitForFinishAsync(restarted.Client, id)).Status());
        AssertEveryStepOnce(await SeriesAsync(restarted.Client, id, "train/loss"), steps);
        var evaluated = (await SeriesAsync(restarted.Client, id, "eval/accuracy"))["ema-0.99"].Select(p => p.Step).ToList();
        Assert.Equal(evaluated.Distinct().Order(), evaluated);
    }

    static async Task<List<string>> LogAsync(HttpClient client, long id) =>
        (await Api.GetAsync(client, $"/api/runs/{id}/log")).EnumerateArray().Select(l => l.GetProperty("message").GetString()!).ToList();

    /// <summary>The worker that started the run, which it did once.</summary>
    static async Task<string> TrainerAsync(HttpClient client, long id)
    {
        var starts = (await LogAsync(client, id)).Where(l => l.StartsWith("Worker ")).ToList();
        Assert.True(starts.Count == 1, $"run {id} was started {starts.Count} times: {string.Join(" | ", starts)}");
        return starts[0].Split(' ')[1];
    }

    static async Task<List<string>> WaitForLogAsync(HttpClient client, long id, Func<string, bool> line)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var log = await LogAsync(client, id);
            if (log.Any(line)) return log;
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), $"run {id}'s log never had the line: {string.Join(" | ", log)}");
            await Task.Delay(100);
        }
    }

    /// <summary>Every track's points of <paramref name="key"/>, step by step.</summary>
    static async Task<Dictionary<string, List<(long Step, double Value)>>> SeriesAsync(HttpClient client, long id, string key) =>
        (await Api.GetAsync(client, $"/api/runs/{id}/metrics?key={key}&maxPoints=0")).EnumerateArray().ToDictionary(
            s => s.GetProperty("track").GetString()!,
            s => s.GetProperty("points").EnumerateArray().Select(p => (p.GetProperty("step").GetInt64(), p.GetProperty("value").GetDouble())).ToList());

    /// <summary>No gap and no duplicate: steps 1 … <paramref name="steps"/>, once each.</summary>
    static void AssertEveryStepOnce(Dictionary<string, List<(long Step, double Value)>> series, int steps) =>
        Assert.Equal(Enumerable.Range(1, steps).Select(s => (long)s), series["raw"].Select(p => p.Step));

    static async Task<Dictionary<string, byte[]>> FinalCheckpointsAsync(HttpClient client, long id)
    {
        var files = new Dictionary<string, byte[]>();
        foreach (var checkpoint in (await Api.GetAsync(client, $"/api/runs/{id}/checkpoints")).EnumerateArray())
            files[checkpoint.GetProperty("track").GetString()!] = await client.GetByteArrayAsync($"/api/checkpoints/{checkpoint.Id()}/download");
        return files;
    }

    /// <summary>Counts the metric events the server streams for the run until it finishes.</summary>
    static async Task<int> CountLiveMetricEventsAsync(HttpClient client, long id)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        using var response = await client.GetAsync($"/api/runs/{id}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var (events, eventType) = (0, "");
        while (await reader.ReadLineAsync(cts.Token) is { } line)
        {
            if (line.StartsWith("event: ")) eventType = line["event: ".Length..];
            if (eventType == "metrics" && line.StartsWith("data: ")) events++;
            if (eventType == "status" && line.StartsWith("data: ") && line.Contains("\"completed\"")) break;
        }
        return events;
    }

    public void Dispose()
    {
        foreach (var server in _servers) server.Dispose();
        PostgresCluster.Instance.DropDatabase(_connectionString);
        Directory.Delete(_folder, recursive: true);
    }
}
