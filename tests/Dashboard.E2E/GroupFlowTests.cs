using System.Buffers.Binary;
using System.IO.Compression;
using System.Text.RegularExpressions;
using EmaLab.TrainingEngine.Data;
using Microsoft.Playwright;

namespace EmaLab.Dashboard.E2E;

/// <summary>
/// Is the EMA gain real? In a real browser: launch a 3-seed group from the form, watch its page fill and read the verdict,
/// export a chart as PNG, compare the runs, then bring a dataset of one's own (IDX files) and train on it.
/// </summary>
[Trait("Speed", "Browser")]
public sealed class GroupFlowTests : IClassFixture<BrowserFixture>
{
    readonly BrowserFixture fixture;

    public GroupFlowTests(BrowserFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
    {
        this.fixture = fixture;
        fixture.Attach(output);
    }

    static readonly LocatorAssertionsToHaveTextOptions Patient = new() { Timeout = 120_000 };

    [Fact]
    public async Task A_three_seed_group_from_the_form_gets_a_verdict_a_png_export_and_an_uploaded_dataset_trains()
    {
        await using var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fixture.BaseUrl, AcceptDownloads = true, ViewportSize = new() { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        fixture.Watch(page);
        var errors = new List<string>();
        page.Console += (_, m) => { if (m.Type == "error") errors.Add(m.Text); };
        try
        {
            await Flow(page, context);
        }
        catch (Exception e) when (e is PlaywrightException or TimeoutException)
        {
            await page.ScreenshotAsync(new() { Path = Shot("group-failure.png"), FullPage = true });
            throw new InvalidOperationException($"{e.Message}\nbrowser errors:\n{string.Join("\n", errors)}\npage: {page.Url}", e);
        }
        Assert.Empty(errors);
    }

    async Task Flow(IPage page, IBrowserContext context)
    {
        await page.GotoAsync("groups");
        await page.GetByRole(AriaRole.Link, new() { Name = "New group" }).First.ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "New group" })).ToBeVisibleAsync();
        await page.FillAsync("#name", "e2e seeds");
        await page.SelectOptionAsync("#dataset", "digits-8x8");
        await page.CheckAsync("[data-testid=models] input[value=mlp]");
        await page.UncheckAsync("[data-testid=models] input[value=resnet]");
        await page.FillAsync("#steps", "200");
        await page.FillAsync("#evalInterval", "25");
        await page.FillAsync("#checkpointEvery", "");
        await page.UncheckAsync("#postHoc");
        await page.FillAsync("#seed", "1-3");
        await page.DispatchEventAsync("#seed", "change");
        await Assertions.Expect(page.GetByTestId("group-preview")).ToContainTextAsync("3 runs, 600 steps in all (3 seed)");
        await page.ScreenshotAsync(new() { Path = Shot("11-new-group.png"), FullPage = true });
        await page.ClickAsync("#start");
        await Assertions.Expect(page).ToHaveURLAsync(new Regex("/groups/e2e%20seeds"));

        // The page fills as the seeds finish: a verdict per decay over the 3 seeds.
        var verdicts = page.Locator("[data-testid=verdicts] li");
        await Assertions.Expect(verdicts).ToHaveCountAsync(2, new() { Timeout = 120_000 });
        await Assertions.Expect(page.GetByTestId("group-summary")).ToContainTextAsync("3 completed", new() { Timeout = 120_000 });
        foreach (var verdict in await verdicts.AllTextContentsAsync())
            Assert.Matches(new Regex(@"^(ema-0\.99\d* beats raw by|raw beats ema-0\.99\d* by|No evidence of a difference between ema-0\.99\d* and raw:) .* \(3 seeds, p [=<] "), verdict.Trim());
        await page.WaitForFunctionAsync("() => document.getElementById('chart-config-0')?.data?.length === 9"); // 3 tracks × (band low, band high, mean)
        await page.ScreenshotAsync(new() { Path = Shot("12-group.png"), FullPage = true });

        var download = await page.RunAndWaitForDownloadAsync(() => page.Locator("[data-chart=chart-config-0] button.export[data-format=png]").ClickAsync());
        var png = Path.Combine(fixture.ScreenshotDirectory, "group-chart.png");
        await download.SaveAsAsync(png);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png)[..4]);

        var groupUrl = page.Url;
        // Dark mode, as a system set to dark shows it.
        var dark = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fixture.BaseUrl, ColorScheme = ColorScheme.Dark, ViewportSize = new() { Width = 1280, Height = 900 } });
        var darkPage = await dark.NewPageAsync();
        fixture.Watch(darkPage);
        await darkPage.GotoAsync(page.Url);
        await darkPage.WaitForFunctionAsync("() => document.getElementById('chart-config-0')?.data?.length === 9");
        Assert.Equal("rgb(15, 19, 27)", await darkPage.EvaluateAsync<string>("() => getComputedStyle(document.documentElement).backgroundColor"));
        await darkPage.ScreenshotAsync(new() { Path = Shot("13-group-dark.png"), FullPage = true });
        await dark.CloseAsync();

        await RegistryFlow(page);
        await page.GotoAsync(groupUrl);

        await page.GetByRole(AriaRole.Link, new() { Name = "Compare runs" }).ClickAsync();
        await Assertions.Expect(page.Locator("[data-testid=compare-table] tbody tr")).ToHaveCountAsync(3);
        await Assertions.Expect(page.Locator("[data-testid=compare-table] th[data-column='param:seed']")).ToBeVisibleAsync();
        // Drawn, not only given: the parcoords layer exists only where Plotly's bundle knows the trace.
        await page.WaitForFunctionAsync("() => document.querySelector('#compare-parcoords .parcoords') !== null", null, new() { Timeout = 30_000 });
        await page.WaitForFunctionAsync("() => document.getElementById('chart-compare')?.data?.length === 9");
        await page.ScreenshotAsync(new() { Path = Shot("14-compare-parcoords.png"), FullPage = true });

        // A dataset of one's own: IDX files (here the digits written as IDX, gzip), uploaded and trained on.
        var folder = Directory.CreateTempSubdirectory("emalab-idx-").FullName;
        var (images, labels) = WriteIdx(folder, DatasetCatalog.Load(DatasetCatalog.Digits8x8).Train);
        await page.GetByRole(AriaRole.Link, new() { Name = "Datasets" }).ClickAsync();
        await page.FillAsync("#dataset-name", "my-digits");
        await page.SetInputFilesAsync("#trainImages", images);
        await page.SetInputFilesAsync("#trainLabels", labels);
        await page.ClickAsync("#upload");
        await Assertions.Expect(page.GetByTestId("uploaded")).ToContainTextAsync("Uploaded my-digits", new() { Timeout = 60_000 });
        await Assertions.Expect(page.Locator("tr[data-dataset='my-digits']")).ToContainTextAsync("8×8");
        await page.ScreenshotAsync(new() { Path = Shot("15-datasets.png"), FullPage = true });
        await page.GetByTestId("uploaded").GetByRole(AriaRole.Link, new() { Name = "Start a run on it" }).ClickAsync();
        await Assertions.Expect(page.Locator("#dataset")).ToHaveValueAsync("my-digits");
        await page.SelectOptionAsync("#model", "mlp");
        await page.FillAsync("#steps", "60");
        await page.FillAsync("#learningRateWarmup", "0"); // the default's 100-step warm-up is longer than this run
        await page.FillAsync("#evalInterval", "20");
        await page.FillAsync("#checkpointEvery", "");
        await page.UncheckAsync("#postHoc");
        await page.ClickAsync("#start");
        await Assertions.Expect(page).ToHaveURLAsync(new Regex("/runs/\\d+$"));
        await Assertions.Expect(page.Locator(".badge").First).ToHaveTextAsync("completed", Patient);
        Directory.Delete(folder, recursive: true);
    }

    /// <summary>
    /// The registry: the group's winner registered under <c>champion</c>, another track registered from a run page, the alias
    /// moved to it on the Models page and its weights downloaded.
    /// </summary>
    async Task RegistryFlow(IPage page)
    {
        var best = (await page.Locator("[data-testid=best-track] strong").TextContentAsync())!.Trim();
        await page.ClickAsync("[data-testid=register-winner]");
        await page.FillAsync("#register-name", "e2e-digits");
        await page.FillAsync("#register-alias", "champion");
        await page.ClickAsync("#register-submit");
        await Assertions.Expect(page.GetByTestId("registered")).ToContainTextAsync("e2e-digits v1 (champion)");

        var group = System.Text.Json.JsonDocument.Parse(await (await page.APIRequest.GetAsync("api/groups/e2e%20seeds?experiment=0")).TextAsync()).RootElement;
        var winner = group.GetProperty("configurations")[0].GetProperty("winnerRun").GetInt64();
        var other = group.GetProperty("runs").EnumerateArray().Select(r => r.GetProperty("id").GetInt64()).First(id => id != winner);
        await page.GotoAsync($"runs/{other}");
        await page.ClickAsync("button[data-register-track='raw']");
        await page.FillAsync("#register-name", "e2e-digits");
        await page.ClickAsync("#register-submit");
        await Assertions.Expect(page.GetByTestId("registered")).ToContainTextAsync("e2e-digits v2");
        await Assertions.Expect(page.GetByTestId("run-versions")).ToContainTextAsync("e2e-digits v2 · raw");

        await page.GetByRole(AriaRole.Link, new() { Name = "Models" }).First.ClickAsync();
        await Assertions.Expect(page.Locator("tr[data-model='e2e-digits'] [data-alias='champion']")).ToHaveTextAsync("champion → v1");
        await page.ScreenshotAsync(new() { Path = Shot("16-models.png"), FullPage = true });
        await page.ClickAsync("tr[data-model='e2e-digits'] a");
        await Assertions.Expect(page.Locator("[data-testid=versions] tbody tr")).ToHaveCountAsync(2);
        await Assertions.Expect(page.Locator("tr[data-version='1']")).ToContainTextAsync(best);
        await Assertions.Expect(page.Locator("tr[data-version='1'] [data-testid=evaluation]")).ToContainTextAsync("eval_accuracy");
        await page.FillAsync("#alias", "champion");
        await page.SelectOptionAsync("#alias-version", "2");
        await page.ClickAsync("#set-alias");
        await Assertions.Expect(page.Locator("[data-testid=aliases] [data-alias='champion']")).ToContainTextAsync("champion → v2");
        await page.ScreenshotAsync(new() { Path = Shot("17-registered-model.png"), FullPage = true });

        var download = await page.RunAndWaitForDownloadAsync(() => page.Locator("tr[data-version='2'] [data-testid=download-version]").ClickAsync());
        var file = Path.Combine(fixture.ScreenshotDirectory, "registered.safetensors");
        await download.SaveAsAsync(file);
        // The run's raw checkpoint, byte for byte.
        var checkpoints = System.Text.Json.JsonDocument.Parse(await (await page.APIRequest.GetAsync($"api/runs/{other}/checkpoints")).TextAsync()).RootElement;
        var raw = checkpoints.EnumerateArray().Single(c => c.GetProperty("track").GetString() == "raw");
        Assert.Equal(raw.GetProperty("sha256").GetString(), Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file))));
    }

    /// <summary>The images and labels as IDX files (gzip), the format MNIST and Fashion-MNIST are published in.</summary>
    static (string Images, string Labels) WriteIdx(string folder, LabeledImages data)
    {
        static void Write(string path, int[] dims, byte[] bytes)
        {
            using var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest);
            Span<byte> word = stackalloc byte[4];
            BinaryPrimitives.WriteInt32BigEndian(word, 0x0800 | dims.Length);
            gz.Write(word);
            foreach (var d in dims) { BinaryPrimitives.WriteInt32BigEndian(word, d); gz.Write(word); }
            gz.Write(bytes);
        }
        var images = Path.Combine(folder, "my-images-idx3-ubyte.gz");
        var labels = Path.Combine(folder, "my-labels-idx1-ubyte.gz");
        Write(images, [data.Count, data.Height, data.Width], data.Pixels);
        Write(labels, [data.Count], data.Labels);
        return (images, labels);
    }

    string Shot(string name) => Path.Combine(fixture.ScreenshotDirectory, name);
}
