using System.Net;
using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Tracking;
using EmaLab.TrainingEngine.Formats;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>Images logged by step (MLflow's log_image, the engine's confusion matrices): stored and served under MLflow's names, shown by step.</summary>
public sealed class ImageGalleryTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    static byte[] Pixel(byte shade) => Png.Encode(1, 1, [shade, shade, shade]);

    [Fact]
    public void Names_are_read_in_the_current_and_the_older_form_with_their_previews_and_tracks()
    {
        MlflowFileInfo File(string path) => new(path, false, 10);
        var images = LoggedImages.Of(
        [
            File("images/samples+step+0+timestamp+100+aaa.png"), File("images/samples+step+0+timestamp+100+aaa+compressed.webp"),
            File("images/ema-0.99~samples+step+0+timestamp+101+bbb.png"),
            File("images/samples+step+5+timestamp+200+ccc.png"), File("images/samples+step+5+timestamp+300+ddd.png"), // logged twice: the later
            File("images/grid#a%step%7%timestamp%400%eee.png"), File("images/grid#a%step%7%timestamp%400%eee%compressed.webp"),
            File("images/notes.txt"), File("model/weights.safetensors"), File("images/sub/x+step+1+timestamp+1+f.png"),
        ], new Dictionary<string, string>());
        Assert.Equal(
        [
            ("grid/a", "raw", 7L, "images/grid#a%step%7%timestamp%400%eee.png", "images/grid#a%step%7%timestamp%400%eee%compressed.webp"),
            ("samples", "raw", 0L, "images/samples+step+0+timestamp+100+aaa.png", "images/samples+step+0+timestamp+100+aaa+compressed.webp"),
            ("samples", "ema-0.99", 0L, "images/ema-0.99~samples+step+0+timestamp+101+bbb.png", null),
            ("samples", "raw", 5L, "images/samples+step+5+timestamp+300+ddd.png", null),
        ], images.Select(i => (i.Key, i.Track, i.Step, i.Path, i.PreviewPath)));
        // A script's track suffixes place an image as they place a metric.
        var suffixed = LoggedImages.Of([File("images/samples_ema+step+3+timestamp+1+g.png")], new Dictionary<string, string> { ["_ema"] = "ema-0.999" });
        Assert.Equal(("samples", "ema-0.999"), (suffixed[0].Key, suffixed[0].Track));
        Assert.Equal("images/a~b+step+3+timestamp+9+00000000-0000-0000-0000-000000000000.png", ImageFileNames.For("a/b", 3, 9, Guid.Empty));
    }

    [Fact]
    public async Task A_scripts_images_upload_list_and_download_under_their_names_and_the_gallery_shows_them_by_step_and_track()
    {
        PageServices.Use(this, factory.Services);
        var run = (await Api.MlflowAsync(_client, "runs/create", """{"experiment_id": "0", "run_name": "images"}""")).GetProperty("run").GetProperty("info");
        var (uuid, experiment) = (run.GetProperty("run_id").GetString(), run.GetProperty("experiment_id").GetString());
        var root = $"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{uuid}/artifacts/";
        // As MLflow's client uploads them: the path quoted (urllib.parse.quote: '+' becomes %2B, '~' stays), PNG and preview.
        var uploads = new (string Key, long Step, byte Shade)[] { ("samples", 0, 10), ("samples", 5, 20), ("samples", 10, 30), ("ema-0.99~samples", 0, 40), ("ema-0.99~samples", 10, 50) };
        foreach (var (key, step, shade) in uploads)
        {
            var stem = $"images/{key}+step+{step}+timestamp+{1000 + step}+{Guid.NewGuid()}";
            foreach (var (file, bytes) in new[] { ($"{stem}.png", Pixel(shade)), ($"{stem}+compressed.webp", Pixel(shade)) })
            {
                var put = await _client.PutAsync(root + Uri.EscapeDataString(file).Replace("%2F", "/").Replace("%7E", "~"), new ByteArrayContent(bytes));
                Assert.True(put.IsSuccessStatusCode, $"{file}: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
            }
        }
        var listed = (await Api.GetAsync(_client, $"/api/2.0/mlflow/artifacts/list?run_id={uuid}&path=images")).GetProperty("files").EnumerateArray()
            .Select(f => f.GetProperty("path").GetString()!).ToList();
        Assert.Equal(10, listed.Count);
        Assert.Contains(listed, p => p.StartsWith("images/ema-0.99~samples+step+10+timestamp+1010+", StringComparison.Ordinal) && p.EndsWith("+compressed.webp", StringComparison.Ordinal));

        var id = (await Api.GetAsync(_client, $"/api/runs?trackingId={uuid}")).GetProperty("items")[0].Id();
        var cut = Render<RunDetail>(p => p.Add(d => d.Id, id));
        var card = cut.Find("[data-testid=gallery] .gallery-key[data-key=samples]");
        Assert.Equal("10", card.QuerySelector("[data-testid=gallery-step]")!.TextContent);
        Assert.Equal(["raw", "ema-0.99"], card.QuerySelectorAll(".gallery-item").Select(f => f.GetAttribute("data-column")));

        // The slider moves to step 5: raw's image of step 5; ema-0.99 logged none there and shows its step 0, saying so.
        cut.Find(".gallery-key[data-key=samples] input[type=range]").Input("1");
        Assert.Equal("5", cut.Find(".gallery-key[data-key=samples] [data-testid=gallery-step]").TextContent);
        var ema = cut.Find(".gallery-item[data-column='ema-0.99']");
        Assert.Contains("(step 0)", ema.TextContent);
        // Every link downloads what was uploaded: the preview in the card, the PNG behind "PNG".
        var raw = cut.Find(".gallery-item[data-column=raw]");
        var download = raw.QuerySelector("a[download]")!.GetAttribute("href")!;
        Assert.Contains("%2Bstep%2B5%2B", download);
        Assert.Equal(Pixel(20), await _client.GetByteArrayAsync("/" + download));
        Assert.Equal(Pixel(20), await _client.GetByteArrayAsync("/" + raw.QuerySelector("img")!.GetAttribute("src")!));

        // Full size on click; Escape closes it.
        raw.QuerySelector("button.thumb")!.Click();
        Assert.Contains("samples · raw · step 5", cut.Find(".lightbox").TextContent);
        cut.Find(".lightbox").KeyDown(new Microsoft.AspNetCore.Components.Web.KeyboardEventArgs { Key = "Escape" });
        Assert.Empty(cut.FindAll(".lightbox"));
        // The images are not listed again among the run's other artifacts.
        Assert.Contains("5 logged images are in the gallery above", cut.Markup);
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync($"/api/2.0/mlflow/artifacts/list?run_id={uuid}")).StatusCode);
    }

    [Fact]
    public async Task An_engine_run_shows_each_tracks_confusion_matrix_from_its_last_evaluation()
    {
        PageServices.Use(this, factory.Services);
        var id = (await Api.CreateAsync(_client, Api.DigitsRun(steps: 40, evalInterval: 20))).Id();
        await Api.WaitForFinishAsync(_client, id);
        var cut = Render<RunDetail>(p => p.Add(d => d.Id, id));
        var card = cut.Find("[data-testid=gallery] .gallery-key[data-key=confusion_matrix]");
        Assert.Equal(["raw", "ema-0.9", "ema-0.99"], card.QuerySelectorAll(".gallery-item").Select(f => f.GetAttribute("data-column")));
        Assert.Equal("40", card.QuerySelector("[data-testid=gallery-step]")!.TextContent);
        var png = await _client.GetByteArrayAsync("/" + card.QuerySelector("a[download]")!.GetAttribute("href")!);
        Assert.Equal([0x89, 0x50, 0x4E, 0x47], png[..4]);
    }

    [Fact]
    public async Task Compare_shows_one_key_at_one_step_for_every_selected_run_side_by_side()
    {
        PageServices.Use(this, factory.Services);
        var ids = new List<long>();
        for (var seed = 1; seed <= 2; seed++)
        {
            var body = Api.DigitsRun(steps: 40, evalInterval: 20);
            body["seed"] = seed;
            ids.Add((await Api.CreateAsync(_client, body)).Id());
        }
        foreach (var id in ids) await Api.WaitForFinishAsync(_client, id);
        Services.GetRequiredService<Microsoft.AspNetCore.Components.NavigationManager>().NavigateTo($"compare?runs={ids[0]},{ids[1]}");
        var cut = Render<Compare>();
        var card = cut.Find("[data-testid=gallery] .gallery-key[data-key=confusion_matrix]");
        Assert.Equal(ids.SelectMany(id => new[] { $"#{id} raw", $"#{id} ema-0.9", $"#{id} ema-0.99" }),
            card.QuerySelectorAll(".gallery-item").Select(f => f.GetAttribute("data-column")));
        // The chart's track choice applies to the images too.
        cut.Find("#track").Change("raw");
        Assert.Equal(ids.Select(id => $"#{id} raw"), cut.FindAll(".gallery-key[data-key=confusion_matrix] .gallery-item").Select(f => f.GetAttribute("data-column")));
        var src = cut.Find(".gallery-key[data-key=confusion_matrix] .gallery-item img").GetAttribute("src")!;
        Assert.Equal([0x89, 0x50, 0x4E, 0x47], (await _client.GetByteArrayAsync("/" + src))[..4]);
    }
}
