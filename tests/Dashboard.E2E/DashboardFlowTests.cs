using System.Text.RegularExpressions;
using EmaLab.TrainingEngine.Checkpoints;
using Microsoft.Playwright;

namespace EmaLab.Dashboard.E2E;

/// <summary>A person's first session, in a real browser: start a run from the form, watch it, open it, download an EMA.</summary>
[Trait("Speed", "Browser")]
public sealed class DashboardFlowTests : IClassFixture<BrowserFixture>
{
    readonly BrowserFixture fixture;

    public DashboardFlowTests(BrowserFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
    {
        this.fixture = fixture;
        fixture.Attach(output);
    }

    static readonly LocatorAssertionsToHaveTextOptions Patient = new() { Timeout = 60_000 };

    [Fact]
    public async Task Start_a_run_with_two_decays_watch_it_finish_and_download_an_ema_checkpoint()
    {
        await using var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fixture.BaseUrl, AcceptDownloads = true, ViewportSize = new() { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        fixture.Watch(page);
        var errors = new List<string>();
        page.Console += (_, m) => { if (m.Type == "error") errors.Add(m.Text); };
        page.Response += (_, r) => { if (r.Status >= 400) errors.Add($"{r.Status} {r.Url}"); };
        try
        {
            await Flow(page, errors);
        }
        catch (Exception e) when (e is PlaywrightException or TimeoutException)
        {
            // Leave evidence: what the page showed and what the browser complained about.
            await page.ScreenshotAsync(new() { Path = Shot("failure.png"), FullPage = true });
            throw new InvalidOperationException($"{e.Message}\nbrowser errors:\n{string.Join("\n", errors)}\npage: {page.Url}", e);
        }
    }

    async Task Flow(IPage page, List<string> errors)
    {
        await page.GotoAsync("");
        await Assertions.Expect(page.GetByTestId("empty")).ToContainTextAsync("No runs yet");
        await page.ScreenshotAsync(new() { Path = Shot("1-empty-runs.png") });

        await page.GetByRole(AriaRole.Link, new() { Name = "New run" }).First.ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "New run" })).ToBeVisibleAsync();
        await page.SelectOptionAsync("#dataset", "digits-8x8");
        await page.SelectOptionAsync("#model", "mlp");
        await page.FillAsync("#name", "e2e digits");
        await page.FillAsync("#steps", "400");
        await page.FillAsync("#evalInterval", "50");
        await page.FillAsync("#checkpointEvery", "200");
        var rows = page.Locator(".track-row");
        await Assertions.Expect(rows).ToHaveCountAsync(2);

        // An invalid decay: the message appears by the setting and nothing starts.
        await page.FillAsync("#track-1-decay", "1.5");
        await page.DispatchEventAsync("#track-1-decay", "change");
        await page.ClickAsync("#start");
        var decayError = page.Locator("[data-field='ema.tracks[1].decay']");
        await Assertions.Expect(decayError).ToContainTextAsync("Decay 1.5 is outside (0, 1).");
        await Assertions.Expect(page).ToHaveURLAsync(new Regex("/runs/new$"));
        await page.ScreenshotAsync(new() { Path = Shot("2-new-run-invalid-decay.png"), FullPage = true });

        await page.FillAsync("#track-0-decay", "0.9");
        await page.DispatchEventAsync("#track-0-decay", "change");
        await page.FillAsync("#track-1-decay", "0.99");
        await page.DispatchEventAsync("#track-1-decay", "change");
        await Assertions.Expect(decayError).ToHaveCountAsync(0); // re-checked on change, before Start
        await Assertions.Expect(page.Locator("[data-testid='lens'] tr[data-track='ema-0.99'] .half-life")).ToHaveTextAsync("69.0");

        // One click adds a library's EMA as a row, shown in the lens by its generated name; × takes it away again.
        await page.ClickAsync("button[data-preset='diffusers use_ema_warmup']");
        await Assertions.Expect(rows).ToHaveCountAsync(3);
        await Assertions.Expect(page.Locator("#track-2-preset")).ToHaveValueAsync("diffusers");
        await Assertions.Expect(page.Locator("[data-testid='lens'] tr[data-track='ema-0.9999-diffusers-warmup']")).ToBeVisibleAsync();
        await page.ScreenshotAsync(new() { Path = Shot("3-new-run-tracks.png"), FullPage = true });
        await rows.Nth(2).Locator("button.remove").ClickAsync();
        await Assertions.Expect(rows).ToHaveCountAsync(2);
        await page.ScreenshotAsync(new() { Path = Shot("3-new-run-lens.png"), FullPage = true });
        await page.ClickAsync("#start");
        await Assertions.Expect(page).ToHaveURLAsync(new Regex("/runs/\\d+$"));
        var runUrl = page.Url;

        // Back on the list, the progress bar fills up and the run completes.
        await page.GetByRole(AriaRole.Link, new() { Name = "Runs" }).ClickAsync();
        var row = page.Locator("tr[data-run-id]").First;
        await Assertions.Expect(row.Locator(".badge")).ToHaveTextAsync("completed", Patient);
        await Assertions.Expect(row.Locator(".progress")).ToHaveAttributeAsync("data-step", "400");
        await Assertions.Expect(row.Locator(".progress")).ToHaveAttributeAsync("data-total", "400");
        await page.ScreenshotAsync(new() { Path = Shot("4-runs.png"), FullPage = true });

        await row.GetByRole(AriaRole.Link, new() { Name = "Open" }).ClickAsync();
        await Assertions.Expect(page).ToHaveURLAsync(runUrl);
        var accuracyChart = page.Locator("#chart-accuracy");
        await page.WaitForFunctionAsync("() => document.getElementById('chart-accuracy')?.data?.length === 3");
        var traces = await accuracyChart.EvaluateAsync<string[]>("el => el.data.map(t => t.name)");
        Assert.Equal(["raw", "ema-0.9", "ema-0.99"], traces);
        var points = await accuracyChart.EvaluateAsync<int>("el => el.data[0].x.length");
        Assert.Equal(9, points); // steps 0, 50, ..., 400
        await page.ScreenshotAsync(new() { Path = Shot("5-run-detail.png"), FullPage = true });

        var download = await page.RunAndWaitForDownloadAsync(() =>
            page.Locator("a[data-track='ema-0.99'][data-step='400']").ClickAsync());
        Assert.Matches(new Regex(@"^e2e-digits-run\d+-ema-0\.99-step400\.safetensors$"), download.SuggestedFilename);
        var file = Path.Combine(fixture.ScreenshotDirectory, download.SuggestedFilename);
        await download.SaveAsAsync(file);
        using (var checkpoint = CheckpointExport.Import(file))
        {
            Assert.Equal("ema-0.99", checkpoint.Metadata["track"]);
            Assert.Equal("400", checkpoint.Metadata["step"]);
            Assert.Equal("mlp", checkpoint.Architecture.Kind);
        }

        await page.GetByRole(AriaRole.Link, new() { Name = "Compare" }).ClickAsync();
        await page.WaitForFunctionAsync("() => document.getElementById('chart-compare')?.data?.length === 3");
        await page.ScreenshotAsync(new() { Path = Shot("6-compare.png"), FullPage = true });

        Assert.Empty(errors);
    }

    string Shot(string name) => Path.Combine(fixture.ScreenshotDirectory, name);
}

/// <summary>A long run followed live, in a narrow window (its own app and database: the first flow starts from an empty list).</summary>
[Trait("Speed", "Browser")]
public sealed class LiveRunTests : IClassFixture<BrowserFixture>
{
    readonly BrowserFixture fixture;

    public LiveRunTests(BrowserFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
    {
        this.fixture = fixture;
        fixture.Attach(output);
    }

    static readonly LocatorAssertionsToHaveTextOptions Patient = new() { Timeout = 60_000 };

    [Fact]
    public async Task Charts_extend_live_survive_a_reload_and_the_run_cancels_from_the_page()
    {
        using var api = new HttpClient { BaseAddress = new Uri(fixture.BaseUrl) };
        var response = await api.PostAsync("api/runs", new StringContent(
            """{"name":"long","dataset":"digits-8x8","model":"mlp","hidden":[32],"steps":200000,"evalInterval":200,"ema":{"decays":[0.9,0.95,0.97,0.98,0.99,0.995,0.998,0.999]}}""",
            System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        var id = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetInt64();

        await using var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fixture.BaseUrl, ViewportSize = new() { Width = 420, Height = 900 } });
        var page = await context.NewPageAsync();
        fixture.Watch(page);
        await page.GotoAsync($"runs/{id}");
        await Assertions.Expect(page.Locator(".badge")).ToHaveTextAsync("running", Patient);
        const string points = "() => document.getElementById('chart-accuracy')?.data?.[0]?.x?.length ?? 0";
        await page.WaitForFunctionAsync($"() => ({points})() >= 3");
        await page.EvaluateAsync("() => window.sameDocument = true");
        var before = await page.EvaluateAsync<int>(points);
        await page.WaitForFunctionAsync($"() => ({points})() > {before}", null, new() { Timeout = 30_000 });
        Assert.True(await page.EvaluateAsync<bool>("() => window.sameDocument === true"), "the chart grew by a reload, not live");
        // Nine traces on a narrow screen: the chart grows by its legend's full height (no scrolled legend over a strip of plot).
        await page.WaitForFunctionAsync("""
            () => { const l = document.getElementById('chart-accuracy')._fullLayout;
                    return l._size.h >= 200 && l.legend._height <= l.legend._effHeight + 1; }
            """);
        await page.ScreenshotAsync(new() { Path = Shot("7-run-detail-narrow-live.png"), FullPage = true });

        var seen = await page.EvaluateAsync<int>(points);
        await page.ReloadAsync();
        await page.WaitForFunctionAsync($"() => ({points})() >= {seen}");

        await page.GetByRole(AriaRole.Button, new() { Name = "Cancel" }).ClickAsync();
        await Assertions.Expect(page.Locator(".badge")).ToHaveTextAsync("cancelled", Patient);
        await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = "Resume" })).ToBeVisibleAsync();
        await page.GotoAsync("");
        await page.ScreenshotAsync(new() { Path = Shot("8-runs-narrow.png"), FullPage = true });
    }

    [Fact]
    public async Task Post_hoc_slider_reconstructs_on_release_and_the_sweep_fills_the_plot()
    {
        using var api = new HttpClient { BaseAddress = new Uri(fixture.BaseUrl) };
        var response = await api.PostAsync("api/runs", new StringContent(
            """{"name":"post-hoc","dataset":"digits-8x8","model":"mlp","hidden":[64],"steps":400,"evalInterval":50,"ema":{"tracks":[{"decay":0.9},{"decay":0.95},{"decay":0.95,"dtype":"bfloat16"},{"preset":"swa","startStep":201}]},"postHoc":{"sigmaRels":[0.05,0.1],"snapshotEvery":20}}""",
            System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        var id = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetInt64();

        await using var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fixture.BaseUrl, ViewportSize = new() { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        fixture.Watch(page);
        await page.GotoAsync($"runs/{id}");
        // The run's end (slow on a machine busy with other test projects) comes first; then the open page must show it live.
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (!(await api.GetStringAsync($"api/runs/{id}")).Contains("\"status\":\"completed\"") && DateTime.UtcNow < deadline) await Task.Delay(200);
        await Assertions.Expect(page.Locator(".badge").First).ToHaveTextAsync("completed", Patient);
        var slider = page.Locator("#sigma");
        await Assertions.Expect(slider).ToBeVisibleAsync(new() { Timeout = 30_000 });

        // Release the slider at 0.075: the reconstruction is evaluated and reported.
        await slider.EvaluateAsync("el => { el.value = '0.075'; el.dispatchEvent(new Event('input', { bubbles: true })); el.dispatchEvent(new Event('change', { bubbles: true })); }");
        await Assertions.Expect(page.GetByTestId("posthoc-result")).ToContainTextAsync("posthoc-0.075: accuracy", new() { Timeout = 60_000 });
        await Assertions.Expect(page.GetByTestId("sigma")).ToHaveTextAsync("0.075");

        await page.ClickAsync("#sweep");
        await Assertions.Expect(page.GetByTestId("sweep-status")).ToHaveTextAsync("sweep done: 12 values", Patient);
        // 13 reconstructions (12 + the slider's) on the line, every track marked (SWA too), the best highlighted.
        await page.WaitForFunctionAsync("() => document.getElementById('chart-sweep-accuracy')?.data?.[0]?.x?.length === 13", null, new() { Timeout = 30_000 });
        var names = await page.Locator("#chart-sweep-accuracy").EvaluateAsync<string[]>("el => el.data.map(t => t.name)");
        Assert.Equal("post-hoc", names[0]);
        Assert.Contains("ema-0.9 (tracked)", names);
        Assert.Contains("ema-0.95 (tracked)", names);
        Assert.Contains("ema-0.95-bf16 (tracked)", names);
        Assert.Contains("swa-from-201 (tracked)", names);
        Assert.StartsWith("best: σ_rel", names[^1]);
        // The bfloat16 track's drift from its float32 twin, plotted over the run.
        await page.WaitForFunctionAsync("() => document.getElementById('chart-precision')?.data?.[0]?.name === 'ema-0.95-bf16'", null, new() { Timeout = 30_000 });
        await Assertions.Expect(page.Locator("[data-testid=precision] tr[data-track='ema-0.95-bf16'] .gap")).Not.ToHaveTextAsync("–");
        await page.Locator("[data-testid=posthoc]").ScrollIntoViewIfNeededAsync();
        await page.ScreenshotAsync(new() { Path = Shot("9-post-hoc.png"), FullPage = true });
    }

    string Shot(string name) => Path.Combine(fixture.ScreenshotDirectory, name);
}

/// <summary>A training script elsewhere logs through the MLflow REST API while a person watches its run page (its own app).</summary>
[Trait("Speed", "Browser")]
public sealed class ClientRunTests : IClassFixture<BrowserFixture>
{
    readonly BrowserFixture fixture;

    public ClientRunTests(BrowserFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
    {
        this.fixture = fixture;
        fixture.Attach(output);
    }

    [Fact]
    public async Task A_client_logging_through_the_tracking_api_extends_the_open_run_page_live()
    {
        using var api = new HttpClient { BaseAddress = new Uri(fixture.BaseUrl + "api/2.0/mlflow/") };
        Task<System.Text.Json.JsonElement> Post(string path, string json) => PostAsync(api, path, json);
        var created = await Post("runs/create", """{"experiment_id": "0", "run_name": "script", "tags": [{"key": "mlflow.source.name", "value": "/home/me/train.py"}, {"key": "team", "value": "vision"}, {"key": "emalab.track_suffixes", "value": "{\"_ema\": \"ema-0.999\"}"}]}""");
        var runId = created.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        async Task Log(int step) => await Post("runs/log-batch",
            $$"""{"run_id": "{{runId}}", "metrics": [{"key": "val_acc", "value": {{0.5 + step / 100.0}}, "timestamp": "{{1700000000000 + step}}", "step": "{{step}}"}, {"key": "val_acc_ema", "value": {{0.55 + step / 100.0}}, "timestamp": "{{1700000000000 + step}}", "step": "{{step}}"}, {"key": "loss", "value": {{1.0 / step}}, "timestamp": "{{1700000000000 + step}}", "step": "{{step}}"}]}""");
        await Log(1);

        await using var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fixture.BaseUrl, ViewportSize = new() { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        fixture.Watch(page);
        await page.GotoAsync("");
        var row = page.Locator("tr[data-run-id]").First;
        await Assertions.Expect(row.Locator(".source")).ToContainTextAsync("client: train.py");
        await Assertions.Expect(row.Locator(".tag[title='tag team']")).ToHaveTextAsync("team: vision");
        await row.GetByRole(AriaRole.Link, new() { Name = "Open" }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("origin")).ToContainTextAsync("logged by a client (/home/me/train.py)");
        await page.WaitForFunctionAsync("() => document.getElementById('chart-accuracy')?.data?.length === 2");
        Assert.Equal(["raw", "ema-0.999"], await page.Locator("#chart-accuracy").EvaluateAsync<string[]>("el => el.data.map(t => t.name)"));

        // The script goes on logging: the open page's charts extend without a reload.
        for (var step = 2; step <= 6; step++) await Log(step);
        await page.WaitForFunctionAsync("() => document.getElementById('chart-accuracy').data[1].x.length === 6", null, new() { Timeout = 30_000 });
        await page.WaitForFunctionAsync("() => document.getElementById('chart-gap')?.data?.[0]?.x?.length === 6", null, new() { Timeout = 30_000 });
        Assert.Equal(0.05, await page.Locator("#chart-gap").EvaluateAsync<double>("el => el.data[0].y[5]"), 9);
        await Post("runs/update", $$"""{"run_id": "{{runId}}", "status": "FINISHED"}""");
        await Assertions.Expect(page.Locator(".badge").First).ToHaveTextAsync("completed", new() { Timeout = 30_000 });
        await page.ScreenshotAsync(new() { Path = Path.Combine(fixture.ScreenshotDirectory, "10-client-run.png"), FullPage = true });
    }

    [Fact]
    public async Task A_long_script_run_is_drawn_thinned_a_zoom_draws_its_exact_points_its_images_open_full_size_and_system_metrics_have_their_own_section()
    {
        using var api = new HttpClient { BaseAddress = new Uri(fixture.BaseUrl + "api/2.0/mlflow/") };
        Task<System.Text.Json.JsonElement> Post(string path, string json) => PostAsync(api, path, json);
        var runId = (await Post("runs/create", """{"experiment_id": "0", "run_name": "every step"}""")).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var lines = new List<string>();
        for (var step = 0; step < 6000; step++)
        {
            foreach (var track in new[] { "raw", "ema-0.99" })
                lines.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $$"""{"key": "{{track}}/val_acc", "value": {{0.5 + step / 20000.0 + (track == "raw" ? 0 : 0.01) + step % 7 * 0.001}}, "timestamp": {{1700000000000 + step}}, "step": {{step}}}"""));
            if (step % 600 == 0)
                lines.Add($$"""{"key": "system/cpu_utilization_percentage", "value": {{step % 100}}, "timestamp": {{1700000000000 + step}}, "step": {{step / 600}}}""");
        }
        foreach (var chunk in lines.Chunk(1000)) await Post("runs/log-batch", $$"""{"run_id": "{{runId}}", "metrics": [{{string.Join(",", chunk)}}]}""");
        // Two sample grids as mlflow.log_image uploads them (the path quoted: '+' as %2B).
        using var artifacts = new HttpClient { BaseAddress = new Uri(fixture.BaseUrl) };
        foreach (var key in new[] { "samples", "ema-0.99~samples" })
        {
            var pixels = Enumerable.Range(0, 16 * 16 * 3).Select(i => (byte)(i * (key.Length + 3))).ToArray();
            var name = $"images/{key}%2Bstep%2B5999%2Btimestamp%2B1700000005999%2B{Guid.NewGuid()}.png";
            (await artifacts.PutAsync($"api/2.0/mlflow-artifacts/artifacts/0/{runId}/artifacts/{name}",
                new ByteArrayContent(EmaLab.TrainingEngine.Formats.Png.Encode(16, 16, pixels)))).EnsureSuccessStatusCode();
        }
        using var dashboard = new HttpClient { BaseAddress = new Uri(fixture.BaseUrl) };
        var id = System.Text.Json.JsonDocument.Parse(await dashboard.GetStringAsync($"api/runs?trackingId={runId}"))
            .RootElement.GetProperty("items")[0].GetProperty("id").GetInt64();

        await using var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fixture.BaseUrl, ViewportSize = new() { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        fixture.Watch(page);
        await page.GotoAsync($"runs/{id}");
        await page.WaitForFunctionAsync("() => document.getElementById('chart-accuracy')?.data?.length === 2", null, new() { Timeout = 60_000 });
        var shown = await page.Locator("#chart-accuracy").EvaluateAsync<int>("el => el.data[0].x.length");
        Assert.InRange(shown, 1000, 2000); // of 6,000

        // A drag on the plot (Plotly's relayout with the new x range): the exact points of steps 3,000–3,100 replace the thinned ones.
        await page.EvaluateAsync("() => Plotly.relayout('chart-accuracy', { 'xaxis.range': [3000, 3100] })");
        await page.WaitForFunctionAsync("() => document.getElementById('chart-accuracy').data[0].x.length === 103", null, new() { Timeout = 30_000 });
        Assert.Equal(2999, await page.Locator("#chart-accuracy").EvaluateAsync<int>("el => el.data[0].x[0]"));
        // A double-click zooms out: the overview again.
        await page.EvaluateAsync("() => Plotly.relayout('chart-accuracy', { 'xaxis.autorange': true })");
        await page.WaitForFunctionAsync($"() => document.getElementById('chart-accuracy').data[0].x.length === {shown}", null, new() { Timeout = 30_000 });

        // The gallery: both tracks' images decoded by the browser; the full size opens on click and closes with Escape.
        await page.WaitForFunctionAsync("() => { const i = [...document.querySelectorAll('.gallery-item img')]; return i.length === 2 && i.every(x => x.complete && x.naturalWidth === 16); }",
            null, new() { Timeout = 30_000 });
        await page.Locator(".gallery-item[data-column=raw] button.thumb").ClickAsync();
        await Assertions.Expect(page.Locator(".lightbox img")).ToBeVisibleAsync();
        await page.Keyboard.PressAsync("Escape");
        await Assertions.Expect(page.Locator(".lightbox")).ToHaveCountAsync(0);

        // The system metric is in its own section, not among the tracks' charts.
        await Assertions.Expect(page.GetByTestId("system-metrics").Locator(".system-group")).ToHaveTextAsync("CPU");
        Assert.Equal(["raw", "ema-0.99"], await page.Locator("#chart-accuracy").EvaluateAsync<string[]>("el => el.data.map(t => t.name)"));
        await page.ScreenshotAsync(new() { Path = Path.Combine(fixture.ScreenshotDirectory, "11-long-run-zoomed-out.png"), FullPage = true });
    }

    /// <summary>A tracking API call (<c>api</c> is based at <c>api/2.0/mlflow/</c>) that must succeed, as a script's client makes it.</summary>
    static async Task<System.Text.Json.JsonElement> PostAsync(HttpClient api, string path, string json)
    {
        var response = await api.PostAsync(path, new StringContent(json, System.Text.Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return System.Text.Json.JsonDocument.Parse(text).RootElement;
    }
}
