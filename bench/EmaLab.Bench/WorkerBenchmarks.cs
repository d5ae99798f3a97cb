using System.Diagnostics;
using System.Text;
using System.Text.Json;

/// <summary>
/// Several processes on one PostgreSQL (a web process and 1 or 2 worker processes, as in compose.yaml): how many runs an
/// hour the workers finish, and how long a run waits for another worker after its worker is killed with SIGKILL.
/// </summary>
static class WorkerBenchmarks
{
    const int Runs = 8;
    const int InvisibilitySeconds = 30;
    const string Spec = """{"name":"bench","dataset":"mnist-10k","model":"mlp","hidden":[128],"optimizer":"adam","learningRate":0.001,"batchSize":64,"steps":1500,"evalInterval":500,"threads":1,"ema":{"decays":[0.99,0.999]}}""";

    public static async Task RunAsync()
    {
        Console.WriteLine($"== workers: {Runs} runs (mnist-10k MLP 784-128-10, 1,500 steps, 1 thread each) through a web process and N worker processes on PostgreSQL ==");
        using var cluster = EmaLab.Dashboard.Tests.PostgresCluster.StartDurable();
        foreach (var workers in new[] { 1, 2 })
        {
            using var deployment = new Deployment(cluster, workers);
            var client = await deployment.StartAsync();
            var clock = Stopwatch.StartNew();
            var ids = new List<long>();
            for (var i = 0; i < Runs; i++) ids.Add(await CreateAsync(client));
            foreach (var id in ids) await WaitAsync(client, id, run => run.GetProperty("status").GetString() == "completed");
            Console.WriteLine($"{workers} worker(s): {Runs} runs in {clock.Elapsed.TotalSeconds,6:F1} s = {Runs / clock.Elapsed.TotalHours,6:F0} runs/hour");
        }

        using (var deployment = new Deployment(cluster, workers: 2))
        {
            var client = await deployment.StartAsync();
            var id = await CreateAsync(client);
            await WaitAsync(client, id, run => run.GetProperty("bundleStep").ValueKind == JsonValueKind.Number);
            var victim = (await LogAsync(client, id)).First(l => l.StartsWith("Worker ")).Split(' ')[1];
            deployment.Kill(victim);
            var killed = Stopwatch.StartNew();
            await WaitAsync(client, id, _ => LogAsync(client, id).Result.Any(l => l.Contains("took the run over")));
            Console.WriteLine($"kill -9 of the worker training a run: another worker continues it after {killed.Elapsed.TotalSeconds:F1} s (invisibility timeout {InvisibilitySeconds} s)");
        }
        Console.WriteLine();
    }

    static async Task<long> CreateAsync(HttpClient client)
    {
        var created = await client.PostAsync("/api/runs", new StringContent(Spec, Encoding.UTF8, "application/json"));
        if (!created.IsSuccessStatusCode) throw new InvalidOperationException($"create: {(int)created.StatusCode} {await created.Content.ReadAsStringAsync()}");
        return JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetInt64();
    }

    static async Task WaitAsync(HttpClient client, long id, Func<JsonElement, bool> done)
    {
        while (true)
        {
            var run = JsonDocument.Parse(await client.GetStringAsync($"/api/runs/{id}")).RootElement;
            if (done(run)) return;
            if (run.GetProperty("status").GetString() is "failed" or "cancelled" or "interrupted") throw new InvalidOperationException($"run {id} {run.GetProperty("status")}: {run.GetProperty("error")}");
            await Task.Delay(100);
        }
    }

    static async Task<List<string>> LogAsync(HttpClient client, long id) =>
        JsonDocument.Parse(await client.GetStringAsync($"/api/runs/{id}/log")).RootElement.EnumerateArray().Select(l => l.GetProperty("message").GetString()!).ToList();

    /// <summary>A database, a shared artifact folder, one web process and the workers; all removed at the end.</summary>
    sealed class Deployment(EmaLab.Dashboard.Tests.PostgresCluster cluster, int workers) : IDisposable
    {
        readonly string _database = cluster.CreateDatabase();
        readonly string _folder = Directory.CreateTempSubdirectory("emalab-bench-workers-").FullName;
        readonly Dictionary<string, Process> _processes = [];

        public async Task<HttpClient> StartAsync()
        {
            var port = LoadBenchmarks.FreePort();
            _processes["web"] = Start("web", "web", port);
            for (var i = 0; i < workers; i++) _processes[$"worker-{i}"] = Start("worker", $"worker-{i}", LoadBenchmarks.FreePort());
            var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            await LoadBenchmarks.WaitHealthyAsync(client);
            return client;
        }

        Process Start(string role, string name, int port) => LoadBenchmarks.StartServer(Path.Combine(_folder, name), port, new Dictionary<string, string>
        {
            ["EmaLab__Database"] = "postgres",
            ["ConnectionStrings__EmaLab"] = _database,
            ["EmaLab__Role"] = role,
            ["EmaLab__Training__WorkerName"] = name,
            ["EmaLab__ArtifactDirectory"] = Path.Combine(_folder, "shared"),
            ["EmaLab__Training__JobInvisibilitySeconds"] = InvisibilitySeconds.ToString(),
        });

        public void Kill(string name)
        {
            _processes[name].Kill();
            _processes[name].WaitForExit();
        }

        public void Dispose()
        {
            foreach (var process in _processes.Values.Where(p => !p.HasExited))
            {
                process.Kill();
                process.WaitForExit();
            }
            cluster.DropDatabase(_database);
            Directory.Delete(_folder, recursive: true);
        }
    }
}
