using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Playwright;

/// <summary>
/// The pages as a person sees them, in Debian's Chromium driven by Playwright as the E2E tests drive it, against the
/// published server as a child process (SQLite): an experiment of 10,000 script runs (the runs page: first paint, a
/// search, a sort by a metric's summary), a script run that logged <c>val_acc</c> on 8 tracks and its train loss at every one of
/// 200,000 steps (the run page: first chart, and how many points the browser was handed), compare of 20 runs × 8
/// tracks, a gallery of 500 images (250 steps x 2 tracks). Each page is opened once to warm the server, then timed 5 times (median); an interaction is timed from the
/// click to the chart's next <c>plotly_afterplot</c> or the table's change. Goals (the issue's): runs page ≤ 1 s, run
/// page ≤ 1.5 s, compare ≤ 2 s, an interaction ≤ 300 ms.
/// </summary>
static class PageBenchmarks
{
    static readonly string[] Tracks = ["raw", "ema-0.9", "ema-0.95", "ema-0.99", "ema-0.995", "ema-0.999", "ema-0.9995", "ema-0.9999"];

    public static async Task RunAsync()
    {
        Console.WriteLine("== Pages in Chromium (published server as a child process, SQLite) ==");
        var published = PublishedServer();
        Environment.SetEnvironmentVariable("EMALAB_BENCH_SERVER", published);
        await LoadBenchmarks.WithServerAsync(null, async (client, _) =>
        {
            var clock = Stopwatch.StartNew();
            var many = await ReadBenchmarks.ExperimentAsync(client, "ten-thousand", 10_000);
            var heavyExperiment = await ReadBenchmarks.ExperimentAsync(client, "heavy", 0);
            var heavy = await ScriptRunAsync(client, heavyExperiment, "heavy", steps: 200_000, seed: 1);
            var compareExperiment = await ReadBenchmarks.ExperimentAsync(client, "compare-20", 0);
            var compared = new List<string>();
            for (var i = 0; i < 20; i++) compared.Add(await ScriptRunAsync(client, compareExperiment, $"sweep-{i}", steps: 10_000, seed: 10 + i));
            var gallery = await GalleryRunAsync(client, heavyExperiment);
            Console.WriteLine($"populated in {clock.Elapsed.TotalSeconds:F0} s: 10,000 small runs; 1 run of 8 tracks x 200,000 steps (+ train loss); 20 runs of 8 tracks x 10,000 steps; 1 run of 500 images");

            var heavyId = await LocalIdAsync(client, heavy);
            var galleryId = await LocalIdAsync(client, gallery);
            var comparedIds = new List<long>();
            foreach (var run in compared) comparedIds.Add(await LocalIdAsync(client, run));

            if (File.Exists("/usr/bin/node")) Environment.SetEnvironmentVariable("PLAYWRIGHT_NODEJS_PATH", "/usr/bin/node");
            using var playwright = await Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = "/usr/bin/chromium", Headless = true,
                Args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
            });
            var context = await browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
            var page = await context.NewPageAsync();
            var origin = client.BaseAddress!.ToString().TrimEnd('/');
            Console.WriteLine("page / interaction                                         median    (runs)    goal     points in the browser");

            // How each page is opened: the address, then what must be on screen.
            async Task OpenRuns(string query, string shown)
            {
                await page.GotoAsync($"{origin}/?experiment={many}{query}");
                await page.Locator(shown).First.WaitForAsync();
            }
            async Task OpenChart(string address, string chart)
            {
                await page.GotoAsync(address);
                await page.Locator($"#{chart} .scatterlayer .trace").First.WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 120_000 });
            }
            async Task OpenGallery()
            {
                await page.GotoAsync($"{origin}/runs/{galleryId}");
                await ImagesShownAsync(page);
            }
            Task OpenRunPage() => OpenChart($"{origin}/runs/{heavyId}", "chart-accuracy");

            await MeasureAsync("runs page, 10,000 runs: first paint", 1.0, page, () => OpenRuns("", "table.runs tbody tr"));
            await MeasureAsync("runs page: search by name", 0.3, page, () => OpenRuns("", "table.runs tbody tr"), async () =>
            {
                var before = await page.Locator("[data-testid=run-count]").InnerTextAsync();
                await page.FillAsync("#search", "no-such-run");
                await page.Locator("#search").PressAsync("Enter");
                await page.WaitForFunctionAsync("b => document.querySelector('[data-testid=run-count]')?.innerText !== b", before);
            });

            await MeasureAsync("runs page sorted by best acc (in SQL): first paint", 1.0, page,
                () => OpenRuns("&cols=acc~raw~best&sort=acc~raw~best", "td[data-column='acc~raw~best']"));
            await MeasureAsync("runs page: sort by a metric column's summary", 0.3, page, () => OpenRuns("&cols=acc~raw~best", "td[data-column='acc~raw~best']"), async () =>
            {
                await page.ClickAsync("th[data-column='acc~raw~best'] button.sort");
                await page.Locator("th[data-column='acc~raw~best'][aria-sort=descending]").WaitForAsync();
            });

            await MeasureAsync("run page, 8 tracks x 200,000 steps: first chart", 1.5, page, OpenRunPage, points: true);
            await MeasureAsync("run page: full range on the accuracy chart", 0.3, page, OpenRunPage,
                () => NextPlotAsync(page, "chart-accuracy", () => page.Locator("[data-chart=chart-accuracy] .full-range").ClickAsync()));
            await MeasureAsync("run page: zoom into 500 steps (their exact points)", 0.3, page, OpenRunPage, async () =>
            {
                // As a drag on the plot ends: Plotly's relayout event with the new x range.
                await page.EvaluateAsync("() => Plotly.relayout('chart-accuracy', { 'xaxis.range': [100000, 100500] })");
                await page.WaitForFunctionAsync("() => document.getElementById('chart-accuracy').data[0].x.length <= 503");
            });

            await MeasureAsync("run page, a gallery of 500 images: first images", 1.5, page, OpenGallery);
            await MeasureAsync("gallery: move the step slider", 0.3, page, OpenGallery, async () =>
            {
                await page.Locator(".gallery-key input[type=range]").FillAsync("100");
                await page.Locator("[data-testid=gallery-step]", new() { HasTextString = "100" }).WaitForAsync();
                await ImagesShownAsync(page);
            });

            await MeasureAsync("compare, 20 runs x 8 tracks: first chart", 2.0, page,
                () => OpenChart($"{origin}/compare?runs={string.Join(",", comparedIds)}", "chart-compare"), points: true);
        });
        Console.WriteLine();
    }

    /// <summary>The gallery's images of the shown step are decoded and on screen.</summary>
    static async Task ImagesShownAsync(IPage page) =>
        await page.WaitForFunctionAsync("() => { const images = [...document.querySelectorAll('.gallery-item img')]; return images.length === 2 && images.every(i => i.complete && i.naturalWidth > 0); }",
            null, new() { Timeout = 60_000 });

    /// <summary>A script run that logged a 128 x 128 sample grid for raw and one EMA at each of 250 steps (500 images), as log_image uploads them.</summary>
    static async Task<string> GalleryRunAsync(HttpClient client, string experiment)
    {
        var run = (await TrackingBenchmarks.Post(client, "runs/create", $$"""{"experiment_id": "{{experiment}}", "run_name": "gallery"}""")).GetProperty("run").GetProperty("info");
        var uuid = run.GetProperty("run_id").GetString()!;
        var random = new Random(7);
        for (var step = 0; step < 250; step++)
            foreach (var key in new[] { "samples", "ema-0.999~samples" })
            {
                var rgb = new byte[128 * 128 * 3];
                random.NextBytes(rgb);
                var name = $"images/{key}+step+{step}+timestamp+{1700000000000 + step}+{Guid.NewGuid()}.png";
                using var response = await client.PutAsync($"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{uuid}/artifacts/{name.Replace("+", "%2B")}",
                    new ByteArrayContent(EmaLab.TrainingEngine.Formats.Png.Encode(128, 128, rgb)));
                response.EnsureSuccessStatusCode();
            }
        await TrackingBenchmarks.Post(client, "runs/set-tag", $$"""{"run_id": "{{uuid}}", "key": "mlflow.loggedImages", "value": "true"}""");
        return uuid;
    }

    /// <summary>The warm-up visit, then 5 timed ones of <paramref name="open"/> (or of <paramref name="interact"/> after it).</summary>
    static async Task MeasureAsync(string label, double goal, IPage page, Func<Task> open, Func<Task>? interact = null, bool points = false)
    {
        await open();
        if (interact is not null) await interact();
        var times = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            if (interact is not null) await open();
            var clock = Stopwatch.StartNew();
            await (interact ?? open)();
            times.Add(clock.Elapsed.TotalSeconds);
        }
        var median = times.Order().ElementAt(times.Count / 2);
        var shown = points ? (await page.EvaluateAsync<long>(
            "() => [...document.querySelectorAll('.js-plotly-plot')].reduce((n, el) => n + (el.data || []).reduce((m, t) => m + (t.x ? t.x.length : 0), 0), 0)"))
            .ToString("N0", CultureInfo.InvariantCulture) : "";
        Console.WriteLine($"{label,-55}  {median,6:F2} s  ({string.Join(" ", times.Select(t => t.ToString("F2", CultureInfo.InvariantCulture)))})  ≤ {goal:F1} s {(median <= goal ? "met" : "MISSED")}  {shown}");
    }

    /// <summary>Runs <paramref name="act"/> and waits for the chart's next plot.</summary>
    static async Task NextPlotAsync(IPage page, string chart, Func<Task> act)
    {
        await page.EvaluateAsync("id => { window.__plotted = new Promise(done => document.getElementById(id).once('plotly_afterplot', done)); }", chart);
        await act();
        await page.EvaluateAsync("() => window.__plotted");
    }

    /// <summary>A script run as a training loop logs it: <c>val_acc</c> of every track and the raw train <c>loss</c> at every step, in batches of 1,000.</summary>
    static async Task<string> ScriptRunAsync(HttpClient client, string experiment, string name, int steps, int seed)
    {
        var run = (await TrackingBenchmarks.Post(client, "runs/create", $$"""{"experiment_id": "{{experiment}}", "run_name": "{{name}}"}"""))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        var random = new Random(seed);
        var lines = new List<string>();
        for (var step = 0; step < steps; step++)
        {
            var progress = 1 - Math.Exp(-step / (steps / 5.0));
            foreach (var (track, t) in Tracks.Select((t, i) => (t, i)))
                lines.Add(string.Create(CultureInfo.InvariantCulture,
                    $$"""{"key": "{{track}}/val_acc", "value": {{0.5 + 0.4 * progress + 0.002 * t + random.NextDouble() * 0.02:F5}}, "timestamp": "{{1700000000000 + step * 10L}}", "step": "{{step}}"}"""));
            lines.Add(string.Create(CultureInfo.InvariantCulture,
                $$"""{"key": "loss", "value": {{2 * (1 - progress) + 0.1 + random.NextDouble() * 0.3:F5}}, "timestamp": "{{1700000000000 + step * 10L}}", "step": "{{step}}"}"""));
        }
        var batches = lines.Chunk(1000).Select(chunk => $$"""{"run_id": "{{run}}", "metrics": [{{string.Join(",", chunk)}}]}""").ToList();
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            for (var b = Interlocked.Increment(ref next); b < batches.Count; b = Interlocked.Increment(ref next))
                await TrackingBenchmarks.Post(client, "runs/log-batch", batches[b]);
        })));
        await TrackingBenchmarks.Post(client, "runs/update", $$"""{"run_id": "{{run}}", "status": "FINISHED", "end_time": "{{1700000000000 + steps * 10L}}"}""");
        return run;
    }

    /// <summary>The run's number in the dashboard's addresses, found by its tracking id.</summary>
    static async Task<long> LocalIdAsync(HttpClient client, string uuid)
    {
        using var document = System.Text.Json.JsonDocument.Parse(await client.GetStringAsync($"/api/runs?trackingId={uuid}"));
        return document.RootElement.GetProperty("items")[0].GetProperty("id").GetInt64();
    }

    /// <summary>The dashboard published once (Release) where the bench runs it: a build folder serves no static assets in Production.</summary>
    static string PublishedServer()
    {
        if (Environment.GetEnvironmentVariable("EMALAB_BENCH_SERVER") is { Length: > 0 } given) return given;
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Dashboard.sln"))) root = root.Parent;
        if (root is null) throw new InvalidOperationException("Set EMALAB_BENCH_SERVER to a published dashboard (dotnet publish src/Dashboard -c Release -o DIR).");
        var output = Path.Combine(Path.GetTempPath(), "emalab-bench-pages-server");
        var publish = Process.Start(new ProcessStartInfo("dotnet", ["publish", Path.Combine(root.FullName, "src/Dashboard"), "-c", "Release", "-o", output, "-v", "quiet", "-nologo"]))!;
        publish.WaitForExit();
        if (publish.ExitCode != 0) throw new InvalidOperationException("dotnet publish of the dashboard failed");
        return output;
    }
}
