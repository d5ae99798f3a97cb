using System.Diagnostics;
using System.Text;
using System.Text.Json;

/// <summary>
/// Ingestion through the MLflow-compatible tracking API: clients (1, 4, 8 at once, a run each) post log-batch
/// calls of 1,000 metrics (MLflow's largest batch) to the real server as a child process; points/s over the
/// whole phase, then every run's points counted back through the API (none may be missing). A warm-up phase first
/// (4 clients) lets the JIT finish tiering the hot path: a server's first seconds run slower, unoptimised code,
/// which is a start-up cost and is printed as such, not a throughput.
/// </summary>
static class TrackingBenchmarks
{
    const int BatchesPerClient = 150;
    const int WarmUpBatchesPerClient = 120;
    const int MetricsPerBatch = 1000;
    static readonly string[] Keys = ["loss", "val_acc", "val_acc_ema", "ema-0.99/val_acc"];

    public static Task RunAsync() => LoadBenchmarks.OnBothStoresAsync(async (storeName, settings) =>
    {
        Console.WriteLine($"== Tracking API ingestion into {storeName}: log-batch of {MetricsPerBatch:N0} metrics, {BatchesPerClient} batches per client (server as a child process) ==");
        await LoadBenchmarks.WithServerAsync(settings, async (client, server) =>
        {
            await Phase(client, server, 4, warmUp: true);
            Console.WriteLine("clients   points     seconds   points/s    batches/s   server CPU µs/point   client CPU µs/point   read back (get-history)");
            foreach (var clients in new[] { 1, 4, 8 }) await Phase(client, server, clients, warmUp: false);
        });
        Console.WriteLine();
    });

    static async Task Phase(HttpClient client, Process server, int clients, bool warmUp)
    {
        var runs = new List<string>();
        for (var c = 0; c < clients; c++)
        {
            var created = await Post(client, "runs/create", """{"experiment_id": "0", "tags": [{"key": "emalab.track_suffixes", "value": "{\"_ema\": \"ema-0.999\"}"}]}""");
            runs.Add(created.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!);
        }
        // Bodies built before the clock starts: what is timed is the server.
        var bodies = runs.Select(run => Enumerable.Range(0, warmUp ? WarmUpBatchesPerClient : BatchesPerClient).Select(b => Body(run, b)).ToList()).ToList();
        server.Refresh();
        var cpuBefore = server.TotalProcessorTime;
        var clientCpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(bodies.Select(list => Task.Run(async () =>
        {
            using var own = new HttpClient { BaseAddress = client.BaseAddress, Timeout = client.Timeout };
            foreach (var body in list) await Post(own, "runs/log-batch", body);
        })));
        var seconds = clock.Elapsed.TotalSeconds;
        server.Refresh();
        var serverCpu = (server.TotalProcessorTime - cpuBefore).TotalSeconds;
        var clientCpu = (Process.GetCurrentProcess().TotalProcessorTime - clientCpuBefore).TotalSeconds;
        if (warmUp)
        {
            var warmPoints = (double)clients * WarmUpBatchesPerClient * MetricsPerBatch;
            Console.WriteLine($"warm-up: {clients} clients, {warmPoints:N0} points at {warmPoints / seconds:N0} points/s, {serverCpu / warmPoints * 1e6:F1} µs CPU/point (JIT tiering)");
            return;
        }
        // Every point read back through get-history (one client, each key's whole history in one call): none may be missing.
        long counted = 0;
        clock.Restart();
        foreach (var run in runs)
            foreach (var key in Keys)
                counted += (await Get(client, $"metrics/get-history?run_id={run}&metric_key={Uri.EscapeDataString(key)}")).GetProperty("metrics").GetArrayLength();
        var readSeconds = clock.Elapsed.TotalSeconds;
        var points = (long)clients * BatchesPerClient * MetricsPerBatch;
        Console.WriteLine($"{clients,7}   {points,9:N0}  {seconds,7:F2}   {points / seconds,9:N0}   {clients * BatchesPerClient / seconds,9:F1}   {serverCpu / points * 1e6,12:F1}   {clientCpu / points * 1e6,12:F1}       {counted:N0} at {counted / readSeconds:N0} points/s{(counted == points ? "" : "  MISSING POINTS")}");
    }

    /// <summary>A batch as MLflow's client writes it: protobuf JSON, int64 fields as strings.</summary>
    static string Body(string run, int batch)
    {
        var metrics = new StringBuilder();
        for (var i = 0; i < MetricsPerBatch; i++)
        {
            var step = batch * (MetricsPerBatch / Keys.Length) + i / Keys.Length;
            if (i > 0) metrics.Append(',');
            metrics.Append($$"""{"key": "{{Keys[i % Keys.Length]}}", "value": {{(0.5 + i * 1e-4).ToString(System.Globalization.CultureInfo.InvariantCulture)}}, "timestamp": "{{1700000000000 + step}}", "step": "{{step}}"}""");
        }
        return $$"""{"run_id": "{{run}}", "metrics": [{{metrics}}]}""";
    }

    internal static async Task<JsonElement> Post(HttpClient client, string path, string body)
    {
        using var response = await client.PostAsync("/api/2.0/mlflow/" + path, new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    internal static async Task<JsonElement> Get(HttpClient client, string path) =>
        JsonDocument.Parse(await client.GetStringAsync("/api/2.0/mlflow/" + path)).RootElement;
}
