using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

/// <summary>
/// Reads that need a run's latest values, through the tracking API of the real server (a child process, SQLite, then
/// PostgreSQL): <c>search_runs</c> as a script's sweep analysis sends it (a metric filter, a param filter, order by a
/// metric; MLflow's default page of 1,000) over experiments of 500 and of 10,000 small runs and over 8 runs holding
/// 1.2 M points, and <c>get_run</c> of a small run against a run of 1 M points. Each figure is the median of repeated
/// calls; "1M / small" is the ratio that says whether get_run grows with a run's points.
/// </summary>
static class ReadBenchmarks
{
    public static Task RunAsync() => LoadBenchmarks.OnBothStoresAsync(async (storeName, settings) =>
    {
        Console.WriteLine($"== Tracking API reads on {storeName} (server as a child process) ==");
        await LoadBenchmarks.WithServerAsync(settings, async (client, _) =>
        {
            var clock = Stopwatch.StartNew();
            var small = await ExperimentAsync(client, "small-500", 500);
            var large = await ExperimentAsync(client, "small-10000", 10_000);
            var heavy = await ExperimentAsync(client, "heavy-8", 0);
            var heavyRuns = new List<string>();
            for (var i = 0; i < 8; i++) heavyRuns.Add(await LoggedRunAsync(client, heavy, i, points: 150_000));
            var million = await LoggedRunAsync(client, await ExperimentAsync(client, "one-million", 0), 0, points: 1_000_000);
            Console.WriteLine($"populated in {clock.Elapsed.TotalSeconds:F0} s: 10,500 small runs (3 metrics x 10 steps, 2 params, 2 tags each), 8 runs of 150,000 points, 1 run of 1,000,000 points");

            const string filter = "metrics.acc > 0.5 and params.opt = 'adam'";
            string Search(string experiment) =>
                $$"""{"experiment_ids": ["{{experiment}}"], "filter": "{{filter}}", "max_results": 1000, "order_by": ["metrics.acc DESC"]}""";
            Console.WriteLine("call                                                     matches     median");
            foreach (var (label, experiment) in new[] { ("search_runs, 500 small runs", small), ("search_runs, 10,000 small runs", large), ("search_runs, 8 runs of 150,000 points", heavy) })
            {
                var found = await TrackingBenchmarks.Post(client, "runs/search", Search(experiment));
                var matches = found.TryGetProperty("runs", out var runs) ? runs.GetArrayLength() : 0;
                var seconds = await MedianAsync(() => TrackingBenchmarks.Post(client, "runs/search", Search(experiment)));
                Console.WriteLine($"{label,-55}  {matches,7}   {Timing.Us(seconds)}");
            }
            var smallRun = (await TrackingBenchmarks.Post(client, "runs/search", $$"""{"experiment_ids": ["{{small}}"], "max_results": 1}"""))
                .GetProperty("runs")[0].GetProperty("info").GetProperty("run_id").GetString();
            var getSmall = await MedianAsync(() => TrackingBenchmarks.Get(client, $"runs/get?run_id={smallRun}"));
            var getMillion = await MedianAsync(() => TrackingBenchmarks.Get(client, $"runs/get?run_id={million}"));
            Console.WriteLine($"{"get_run, a small run (30 points)",-55}  {"",7}   {Timing.Us(getSmall)}");
            Console.WriteLine($"{"get_run, a run of 1,000,000 points",-55}  {"",7}   {Timing.Us(getMillion)}   1M / small = {getMillion / getSmall:F2}");
        });
        Console.WriteLine();
    });

    /// <summary>An experiment of small runs as a sweep makes them: 4 clients at once, a run each: create, then one log-batch.</summary>
    internal static async Task<string> ExperimentAsync(HttpClient client, string name, int runs)
    {
        var id = (await TrackingBenchmarks.Post(client, "experiments/create", $$"""{"name": "{{name}}"}""")).GetProperty("experiment_id").GetString()!;
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            for (var i = Interlocked.Increment(ref next); i < runs; i = Interlocked.Increment(ref next))
            {
                var run = (await TrackingBenchmarks.Post(client, "runs/create", $$"""{"experiment_id": "{{id}}", "tags": [{"key": "sweep", "value": "{{name}}"}]}"""))
                    .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
                var metrics = new StringBuilder();
                for (var step = 0; step < 10; step++)
                    foreach (var key in new[] { "loss", "acc", "acc_ema" })
                    {
                        if (metrics.Length > 0) metrics.Append(',');
                        var value = key == "loss" ? 1.0 / (step + 1) : 0.4 + 0.05 * step + i % 97 * 1e-4;
                        metrics.Append(CultureInfo.InvariantCulture, $$"""{"key": "{{key}}", "value": {{value}}, "timestamp": "{{1700000000000 + step}}", "step": "{{step}}"}""");
                    }
                await TrackingBenchmarks.Post(client, "runs/log-batch",
                    $$"""{"run_id": "{{run}}", "metrics": [{{metrics}}], "params": [{"key": "opt", "value": "{{(i % 2 == 0 ? "adam" : "sgd")}}"}, {"key": "lr", "value": "{{i % 10 * 1e-4}}"}]}""");
            }
        })));
        return id;
    }

    /// <summary>A run of many points (batches of 1,000: acc, loss and acc_ema by step), with the params the search filters on.</summary>
    static async Task<string> LoggedRunAsync(HttpClient client, string experiment, int index, int points)
    {
        var run = (await TrackingBenchmarks.Post(client, "runs/create", $$"""{"experiment_id": "{{experiment}}"}""")).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        await TrackingBenchmarks.Post(client, "runs/log-parameter", $$"""{"run_id": "{{run}}", "key": "opt", "value": "adam"}""");
        string[] keys = ["acc", "loss", "acc_ema", "lr"];
        var batches = Enumerable.Range(0, points / 1000).Select(batch =>
        {
            var metrics = new StringBuilder();
            for (var i = 0; i < 1000; i++)
            {
                var step = (batch * 1000 + i) / keys.Length;
                if (i > 0) metrics.Append(',');
                metrics.Append(CultureInfo.InvariantCulture, $$"""{"key": "{{keys[i % keys.Length]}}", "value": {{0.5 + index * 0.01 + step * 1e-7}}, "timestamp": "{{1700000000000 + step}}", "step": "{{step}}"}""");
            }
            return $$"""{"run_id": "{{run}}", "metrics": [{{metrics}}]}""";
        }).ToList();
        var next = -1;
        // Two clients into one run: batches need not arrive in step order.
        await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            for (var b = Interlocked.Increment(ref next); b < batches.Count; b = Interlocked.Increment(ref next))
                await TrackingBenchmarks.Post(client, "runs/log-batch", batches[b]);
        })));
        return run;
    }

    /// <summary>Median seconds of a call repeated for about two seconds (at least 3 times, at most 50).</summary>
    static async Task<double> MedianAsync(Func<Task<JsonElement>> call)
    {
        await call();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < 3 || times.Count < 50 && total.Elapsed.TotalSeconds < 2)
        {
            var clock = Stopwatch.StartNew();
            await call();
            times.Add(clock.Elapsed.TotalSeconds);
        }
        return times.Order().ElementAt(times.Count / 2);
    }
}
