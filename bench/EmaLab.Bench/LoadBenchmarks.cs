using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

/// <summary>
/// Training speed of a run while the server is busy: the real server as a child process trains a long
/// mnist-10k MLP (Adam, 3 decays, 1 thread) while (a) 16 clients poll the run, its metrics and the runs
/// list as fast as they can, and (b) 200 clients hold its event stream open. Prints steps/s for each
/// phase and the ratio to the quiet phases around it.
/// </summary>
static class LoadBenchmarks
{
    const double PhaseSeconds = 8;

    public static async Task RunAsync()
    {
        Console.WriteLine("== Training under request load (server as a child process, mnist-10k MLP, Adam, 3 decays, 1 thread) ==");
        var data = Directory.CreateTempSubdirectory("emalab-load-").FullName;
        var port = FreePort();
        var baseAddress = new Uri($"http://127.0.0.1:{port}");
        using var server = StartServer(data, port);
        try
        {
            using var client = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };
            await WaitHealthyAsync(client);
            var body = """{"name":"load","dataset":"mnist-10k","model":"mlp","hidden":[256,256],"optimizer":"adam","learningRate":0.001,"batchSize":128,"steps":1000000,"evalInterval":1000000,"threads":1,"ema":{"decays":[0.99,0.999,0.9999]}}""";
            var created = await client.PostAsync("/api/runs", new StringContent(body, Encoding.UTF8, "application/json"));
            if (!created.IsSuccessStatusCode) throw new InvalidOperationException($"create: {(int)created.StatusCode} {await created.Content.ReadAsStringAsync()}");
            var id = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetInt64();
            while (await StepAsync(client, id) < 200) await Task.Delay(200);

            var quiet1 = await MeasureAsync(client, id, null);
            var (polled, requests) = await MeasureWithPollersAsync(client, baseAddress, id);
            var quiet2 = await MeasureAsync(client, id, null);
            var streamed = await MeasureWithStreamsAsync(client, baseAddress, id);
            var quiet3 = await MeasureAsync(client, id, null);

            Console.WriteLine($"quiet                     {quiet1,8:F1} steps/s");
            Console.WriteLine($"16 pollers ({requests,5:F0} req/s)  {polled,8:F1} steps/s   {polled / ((quiet1 + quiet2) / 2),5:P0} of quiet");
            Console.WriteLine($"quiet                     {quiet2,8:F1} steps/s");
            Console.WriteLine($"200 event streams         {streamed,8:F1} steps/s   {streamed / ((quiet2 + quiet3) / 2),5:P0} of quiet");
            Console.WriteLine($"quiet                     {quiet3,8:F1} steps/s");
            await client.PostAsync($"/api/runs/{id}/cancel", null);
        }
        finally
        {
            server.Kill(entireProcessTree: true);
            server.WaitForExit();
            Directory.Delete(data, recursive: true);
        }
        Console.WriteLine();
    }

    static async Task<double> MeasureAsync(HttpClient client, long id, Func<CancellationToken, Task>? load)
    {
        using var stop = new CancellationTokenSource();
        var running = load?.Invoke(stop.Token) ?? Task.CompletedTask;
        await Task.Delay(1000); // let the load reach its pace
        var (first, clock) = (await StepAsync(client, id), Stopwatch.StartNew());
        await Task.Delay(TimeSpan.FromSeconds(PhaseSeconds));
        var rate = (await StepAsync(client, id) - first) / clock.Elapsed.TotalSeconds;
        stop.Cancel();
        try { await running; } catch (OperationCanceledException) { }
        return rate;
    }

    static async Task<(double StepsPerSecond, double RequestsPerSecond)> MeasureWithPollersAsync(HttpClient client, Uri baseAddress, long id)
    {
        long requests = 0;
        var clock = Stopwatch.StartNew();
        var rate = await MeasureAsync(client, id, stop => Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(async () =>
        {
            using var poller = new HttpClient { BaseAddress = baseAddress };
            string[] urls = [$"/api/runs/{id}", $"/api/runs/{id}/metrics?key=train/loss&track=raw", "/api/runs"];
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                try { (await poller.GetAsync(urls[i % urls.Length], stop)).Dispose(); }
                catch (OperationCanceledException) { break; }
                Interlocked.Increment(ref requests);
            }
        }))));
        return (rate, requests / clock.Elapsed.TotalSeconds);
    }

    static Task<double> MeasureWithStreamsAsync(HttpClient client, Uri baseAddress, long id) =>
        MeasureAsync(client, id, stop => Task.WhenAll(Enumerable.Range(0, 200).Select(_ => Task.Run(async () =>
        {
            using var listener = new HttpClient { BaseAddress = baseAddress, Timeout = Timeout.InfiniteTimeSpan };
            try
            {
                using var response = await listener.GetAsync($"/api/runs/{id}/events", HttpCompletionOption.ResponseHeadersRead, stop);
                response.EnsureSuccessStatusCode();
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(stop));
                while (await reader.ReadLineAsync(stop) is not null) { }
            }
            catch (OperationCanceledException) { }
        }))));

    static async Task<long> StepAsync(HttpClient client, long id) =>
        JsonDocument.Parse(await client.GetStringAsync($"/api/runs/{id}")).RootElement.GetProperty("step").GetInt64();

    /// <summary>
    /// The server as a child process: this build's, or the build in <c>EMALAB_BENCH_SERVER</c> (a directory holding
    /// another commit's EmaLab.Dashboard.dll), so that one bench measures an older server against a newer one.
    /// </summary>
    internal static Process StartServer(string data, int port, IReadOnlyDictionary<string, string>? settings = null)
    {
        var directory = Environment.GetEnvironmentVariable("EMALAB_BENCH_SERVER") is { Length: > 0 } other ? other : AppContext.BaseDirectory;
        var dll = Path.Combine(directory, "EmaLab.Dashboard.dll");
        var start = new ProcessStartInfo("dotnet", [dll])
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment =
            {
                ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}",
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["EmaLab__DataDirectory"] = data,
                ["EmaLab__Limits__MaxEventStreamsPerRun"] = "250",
                ["EmaLab__Limits__MaxEventStreams"] = "300",
                ["Logging__LogLevel__Default"] = "Warning",
                // As the dashboard's launch profile and the Dockerfile start it (one malloc arena: see NativeSettings).
                ["MALLOC_ARENA_MAX"] = "1",
            },
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) start.Environment[key] = value;
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine("server: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>A measurement on the server with SQLite, then with a local PostgreSQL server with fsync (a throwaway cluster).</summary>
    internal static async Task OnBothStoresAsync(Func<string, IReadOnlyDictionary<string, string>?, Task> measure)
    {
        await measure("SQLite", null);
        using var cluster = EmaLab.Dashboard.Tests.PostgresCluster.StartDurable();
        var database = cluster.CreateDatabase();
        try
        {
            await measure("PostgreSQL (a local server with fsync)", new Dictionary<string, string> { ["EmaLab__Database"] = "postgres", ["ConnectionStrings__EmaLab"] = database });
        }
        finally
        {
            cluster.DropDatabase(database);
        }
    }

    /// <summary>A server as a child process on a fresh data folder, healthy before <paramref name="measure"/> runs; killed and its folder removed after.</summary>
    internal static async Task WithServerAsync(IReadOnlyDictionary<string, string>? settings, Func<HttpClient, Process, Task> measure)
    {
        var data = Directory.CreateTempSubdirectory("emalab-bench-").FullName;
        var port = FreePort();
        using var server = StartServer(data, port, settings);
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(10) };
            await WaitHealthyAsync(client);
            await measure(client, server);
        }
        finally
        {
            server.Kill(entireProcessTree: true);
            server.WaitForExit();
            Directory.Delete(data, recursive: true);
        }
    }

    internal static async Task WaitHealthyAsync(HttpClient client)
    {
        for (var i = 0; i < 300; i++)
        {
            try { if (await client.GetStringAsync("/health") == "Healthy") return; }
            catch (HttpRequestException) { }
            await Task.Delay(100);
        }
        throw new TimeoutException("the server did not become healthy");
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
