using EmaLab.Companion.Tests;
using Microsoft.Playwright;

namespace EmaLab.Dashboard.E2E;

/// <summary>
/// A script trains elsewhere with the Python companion (clients/python/tests/live_server.py, a loop without Lightning)
/// while a person watches its run page: its tracks extend live; after training the server reconstructs three σ_rels
/// from its snapshots and the script logs their evaluations back into the page's σ_rel plot; the slider then asks for a
/// reconstruction that only the script can evaluate, and the page says which and how.
/// </summary>
[Trait("Speed", "Browser")]
public sealed class CompanionScriptTests : IClassFixture<BrowserFixture>
{
    readonly BrowserFixture fixture;

    public CompanionScriptTests(BrowserFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
    {
        this.fixture = fixture;
        fixture.Attach(output);
    }

    [Fact]
    public async Task A_scripts_tracks_show_live_and_its_post_hoc_sweep_fills_the_plot()
    {
        var script = Python.RunAsync("live_server.py", fixture.BaseUrl, "0.02"); // about 6 s of training at 20 ms a step
        using var api = new HttpClient { BaseAddress = new Uri(fixture.BaseUrl) };
        long? id = null;
        for (var deadline = DateTime.UtcNow.AddSeconds(60); id is null && DateTime.UtcNow < deadline && !script.IsCompleted; await Task.Delay(100))
        {
            var listed = System.Text.Json.JsonDocument.Parse(await api.GetStringAsync("api/runs?search=companion-live")).RootElement.GetProperty("items");
            if (listed.GetArrayLength() > 0) id = listed[0].GetProperty("id").GetInt64();
        }
        Assert.True(id is not null, script.IsCompleted ? (await script).Output : "the script's run did not appear");

        await using var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fixture.BaseUrl, ViewportSize = new() { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        fixture.Watch(page);
        await page.GotoAsync($"runs/{id}");
        // Raw and both tracks, evaluated every 100 steps: the open page extends as the script logs.
        await page.WaitForFunctionAsync("() => document.getElementById('chart-accuracy')?.data?.length === 3", null, new() { Timeout = 60_000 });
        Assert.Equal(["raw", "ema-0.99", "ema-0.995-timm"], await page.Locator("#chart-accuracy").EvaluateAsync<string[]>("el => el.data.map(t => t.name)"));
        var (code, output) = await script;
        Assert.True(code == 0, output);
        try
        {
            await page.WaitForFunctionAsync("() => document.getElementById('chart-accuracy').data.every(t => t.x.length === 3)", null, new() { Timeout = 30_000 });
        }
        catch (TimeoutException)
        {
            await page.ScreenshotAsync(new() { Path = Path.Combine(fixture.ScreenshotDirectory, "11-script-failed.png"), FullPage = true });
            var traces = await page.Locator("#chart-accuracy").EvaluateAsync<string>("el => JSON.stringify(el.data.map(t => [t.name, t.x]))");
            Assert.Fail($"the accuracy chart did not reach 3 points per track: {traces}");
        }

        // The sweep the script evaluated: three reconstructions on the σ_rel plot, none waiting.
        await Assertions.Expect(page.Locator(".badge").First).ToHaveTextAsync("completed", new() { Timeout = 30_000 });
        await page.WaitForFunctionAsync("() => document.getElementById('chart-sweep-accuracy')?.data?.[0]?.x?.length === 3", null, new() { Timeout = 30_000 });
        await Assertions.Expect(page.GetByTestId("posthoc-waiting")).ToHaveCountAsync(0);

        // The slider reconstructs on the server; only the script can evaluate: the page names the σ_rel and the command.
        var slider = page.Locator("#sigma");
        await slider.EvaluateAsync("el => { el.value = '0.1'; el.dispatchEvent(new Event('input', { bubbles: true })); el.dispatchEvent(new Event('change', { bubbles: true })); }");
        await Assertions.Expect(page.GetByTestId("posthoc-result")).ToContainTextAsync("posthoc-0.1: reconstructed", new() { Timeout = 60_000 });
        await Assertions.Expect(page.GetByTestId("posthoc-command")).ToContainTextAsync("python -m emalab sweep --run ");
        await Assertions.Expect(page.GetByTestId("posthoc-command")).ToContainTextAsync(
            "--sigma-rels 0.1 --model tests.live_model:build_model --evaluate tests.live_model:evaluate"); // as the script named them
        await page.Locator("[data-testid=posthoc]").ScrollIntoViewIfNeededAsync();
        await page.ScreenshotAsync(new() { Path = Path.Combine(fixture.ScreenshotDirectory, "11-script-post-hoc.png"), FullPage = true });

        // On a phone in dark mode: the command wraps rather than hiding its end, and the σ_rel plot keeps its area.
        await using var phone = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions
            { BaseURL = fixture.BaseUrl, ColorScheme = ColorScheme.Dark, ViewportSize = new() { Width = 390, Height = 844 } });
        var narrow = await phone.NewPageAsync();
        fixture.Watch(narrow);
        await narrow.GotoAsync($"runs/{id}");
        await Assertions.Expect(narrow.GetByTestId("posthoc-command")).ToContainTextAsync("--evaluate tests.live_model:evaluate", new() { Timeout = 30_000 });
        Assert.True(await narrow.GetByTestId("posthoc-command").EvaluateAsync<bool>("el => el.scrollWidth <= el.clientWidth"), "the command scrolls sideways");
        await narrow.WaitForFunctionAsync("() => document.getElementById('chart-sweep-accuracy')?._fullLayout?._size?.h >= 200");
        await narrow.Locator("[data-testid=posthoc]").ScreenshotAsync(new() { Path = Path.Combine(fixture.ScreenshotDirectory, "11-script-post-hoc-phone-dark.png") });
    }
}
