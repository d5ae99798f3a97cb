using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Groups;
using EmaLab.Dashboard.Metrics;
using EmaLab.TrainingEngine;
using EmaLab.TrainingEngine.Data;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// Diffusion runs (model unet) through the service: created by the API, trained by the worker, shown with the right
/// score the right way round — the samples' Fréchet distance where a reference network covers the data (lower is
/// better), else the denoising loss — their sample grids in the gallery, post-hoc EMA scored by the same distance.
/// </summary>
public sealed class DiffusionRunTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    static JsonObject UNetRun(string dataset, int steps, int evalInterval) => new()
    {
        ["name"] = "unet", ["dataset"] = dataset, ["model"] = "unet", ["channels"] = new JsonArray(8, 16), ["attention"] = false,
        ["optimizer"] = "adam", ["learningRate"] = 0.003, ["batchSize"] = 16, ["steps"] = steps, ["seed"] = 1, ["evalInterval"] = evalInterval,
        ["evalSubset"] = 200,
        ["diffusion"] = new JsonObject { ["timesteps"] = 100, ["samplingSteps"] = 2, ["samples"] = 100, ["finalSamples"] = 100 },
        ["ema"] = new JsonObject { ["decays"] = new JsonArray(0.5, 0.9) },
    };

    [Fact]
    public async Task A_diffusion_run_on_the_digits_ranks_by_its_denoising_loss_and_shows_each_tracks_samples()
    {
        PageServices.Use(this, factory.Services);
        var id = (await Api.CreateAsync(_client, UNetRun(DatasetCatalog.Digits8x8, steps: 20, evalInterval: 10))).Id();
        var run = await Api.WaitForFinishAsync(_client, id);
        Assert.Equal("completed", run.Status());
        Assert.Empty((await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/accuracy")).EnumerateArray());
        Assert.Equal(3, (await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/loss")).GetArrayLength());

        var cut = Render<RunDetail>(p => p.Add(d => d.Id, id));
        // No reference network covers the 8x8 digits: no score chart; the tracks rank by the denoising loss, lowest first.
        Assert.Empty(cut.FindAll("#chart-accuracy"));
        Assert.Contains("Held-out denoising loss", cut.Markup);
        Assert.Contains("eval/loss", cut.Find("[data-testid=ranking] h2").TextContent);
        var grid = cut.Find("[data-testid=gallery] .gallery-key[data-key=samples]");
        Assert.Equal(["raw", "ema-0.5", "ema-0.9"], grid.QuerySelectorAll(".gallery-item").Select(f => f.GetAttribute("data-column")));
        Assert.Equal("20", grid.QuerySelector("[data-testid=gallery-step]")!.TextContent);
        var png = await _client.GetByteArrayAsync("/" + grid.QuerySelector("a[download]")!.GetAttribute("href")!);
        Assert.Equal([0x89, 0x50, 0x4E, 0x47], png[..4]);
    }

    [Fact]
    public async Task On_fashion_mnist_the_frechet_distance_is_the_score_lower_is_better_everywhere_and_post_hoc_uses_it()
    {
        if (DatasetCatalog.MissingReason(DatasetCatalog.FashionMnist) is { } missing) Assert.Fail(missing);
        PageServices.Use(this, factory.Services);
        var body = UNetRun(DatasetCatalog.FashionMnist, steps: 6, evalInterval: 3);
        body["postHoc"] = new JsonObject { ["sigmaRels"] = new JsonArray(0.05, 0.1), ["snapshotEvery"] = 1 };
        var id = (await Api.CreateAsync(_client, body)).Id();
        Assert.Equal("completed", (await Api.WaitForFinishAsync(_client, id)).Status());
        var fd = (await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/fd")).EnumerateArray()
            .ToDictionary(s => s.GetProperty("track").GetString()!, s => s.GetProperty("points").EnumerateArray().Select(p => p.GetProperty("value").GetDouble()).ToList());
        Assert.Equal(["ema-0.5", "ema-0.9", "raw"], fd.Keys.Order()); // the power-function profiles are snapshotted, not scored
        Assert.All(fd.Values, v => Assert.Equal(2, v.Count)); // at steps 3 and 6

        // The run page ranks by the distance, lowest first, and charts it with its note on what each point scored.
        var cut = Render<RunDetail>(p => p.Add(d => d.Id, id));
        Assert.Contains("eval/fd", cut.Find("[data-testid=ranking] h2").TextContent);
        var ranked = cut.FindAll("[data-testid=ranking] .ranking-name").Select(n => n.GetAttribute("data-track")!).ToList();
        var bestFirst = ranked.Select(t => fd[t].Min()).ToList();
        Assert.Equal(bestFirst.Order(), bestFirst);
        Assert.Contains("Each point scores 100 DDIM samples", cut.Markup);

        // Post-hoc EMA reconstructs a σ_rel and scores it by the same distance, stored under eval/fd.
        var response = await _client.PostAsJsonAsync($"/api/runs/{id}/posthoc", new { sigmaRel = 0.08 });
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text + EmaLabFactory.EvidenceFor(_client));
        var result = JsonDocument.Parse(text).RootElement;
        Assert.Equal("eval/fd", result.GetProperty("scoreKey").GetString());
        var score = result.GetProperty("score").GetDouble();
        Assert.InRange(score, 0.01, 1e6);
        var stored = await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/fd&track=posthoc-0.08");
        Assert.Equal(score, stored[0].GetProperty("points")[0].GetProperty("value").GetDouble());
        var overview = await Api.GetAsync(_client, $"/api/runs/{id}/posthoc");
        Assert.True(overview.GetProperty("lowerIsBetter").GetBoolean());
        Assert.Equal("eval/fd", overview.GetProperty("scoreKey").GetString());

        // The runs page shows the best (lowest) distance of the raw and EMA tracks.
        var list = Render<RunsList>();
        var row = list.Find($"tr[data-run-id='{id}']");
        Assert.Contains("FD " + fd["raw"].Min().ToString("G4", System.Globalization.CultureInfo.InvariantCulture), row.TextContent);
    }

    [Fact]
    public async Task The_new_run_form_offers_the_unet_with_its_diffusion_settings_names_their_mistakes_and_a_clone_keeps_them()
    {
        PageServices.Use(this, factory.Services);
        var cut = Render<NewRun>();
        Assert.Empty(cut.FindAll("[data-testid=diffusion-settings]"));
        // One click fills the README's measured diffusion run.
        cut.Find("#diffusion-default").Click();
        Assert.Equal(("unet", DatasetCatalog.FashionMnist, "16, 32", "1200", "400"), (cut.Find("#model").GetAttribute("value"), cut.Find("#dataset").GetAttribute("value"),
            cut.Find("#channels").GetAttribute("value"), cut.Find("#steps").GetAttribute("value"), cut.Find("[id='diffusion.qualityInterval']").GetAttribute("value")));
        cut.Find("#model").Change("resnet");
        Assert.Empty(cut.FindAll("[data-testid=diffusion-settings]"));
        cut.Find("#dataset").Change(DatasetCatalog.Digits8x8);
        cut.Find("#model").Change("unet");
        cut.Find("#channels").Change("");
        Assert.Equal("16, 32", cut.Find("#channels").GetAttribute("placeholder"));
        Assert.NotEmpty(cut.FindAll("[data-testid=diffusion-settings]"));
        cut.Find("[id='diffusion.qualityInterval']").Change("");
        // The lens says why a warm-up matters for a diffusion model (the default rows have none).
        Assert.Contains("No row here has one", cut.Find("[data-testid=diffusion-lens-note]").TextContent);
        cut.Find("#channels").Change("8, 16");
        cut.Find("#steps").Change("10");
        cut.Find("#learningRateWarmup").Change("0");
        cut.Find("#evalInterval").Change("5");
        cut.Find("#checkpointEvery").Change("");
        cut.Find("#evalSubset").Change("100");
        cut.Find("[id='diffusion.timesteps']").Change("100");
        cut.Find("[id='diffusion.samplingSteps']").Change("200");
        cut.Find("[id='diffusion.samples']").Change("100");
        cut.Find("[id='diffusion.finalSamples']").Change("100");
        cut.Find("form").Submit();
        Assert.StartsWith("DDIM takes from 1 to 100 steps", cut.Find("[id='diffusion.samplingSteps']").ParentElement!.QuerySelector(".field-error")!.TextContent);
        cut.Find("[id='diffusion.samplingSteps']").Change("2");
        cut.Find("#attention").Change(false);
        cut.Find("form").Submit();
        Assert.Empty(cut.FindAll(".field-error"));

        var id = (await Api.GetAsync(_client, "/api/runs")).GetProperty("items")[0].Id();
        var run = await Api.WaitForFinishAsync(_client, id);
        Assert.Equal("completed", run.Status());
        var spec = run.GetProperty("spec");
        Assert.Equal("unet", spec.GetProperty("model").GetString());
        Assert.False(spec.GetProperty("attention").GetBoolean());
        Assert.Equal(2, spec.GetProperty("diffusion").GetProperty("samplingSteps").GetInt32());

        Services.GetRequiredService<Microsoft.AspNetCore.Components.NavigationManager>().NavigateTo($"runs/new?from={id}");
        var clone = Render<NewRun>();
        Assert.Equal("unet", clone.Find("#model").GetAttribute("value"));
        Assert.Equal("2", clone.Find("[id='diffusion.samplingSteps']").GetAttribute("value"));
        Assert.Null(clone.Find("#attention").GetAttribute("checked"));
    }

    [Fact]
    public void Roles_say_which_way_a_score_is_better()
    {
        var engine = new Run { Name = "e", Uuid = "e", SpecJson = new EmaLab.TrainingEngine.Training.RunSpec { Model = "unet", Dataset = DatasetCatalog.FashionMnist }.ToJson() };
        var diffusion = MetricRoles.For(engine, null, []);
        Assert.Equal(new MetricRoles(MetricKeys.EvalFrechetDistance, MetricKeys.EvalLoss, MetricKeys.TrainLoss), diffusion);
        Assert.True(diffusion.LowerIsBetter);
        Assert.Equal(2.0, diffusion.Best([3.0, 2.0, double.NaN, 5.0]));
        Assert.Equal("sample quality (FD)", diffusion.ScoreTitle);
        // Where no reference network covers the data there is no score: the loss ranks.
        var digits = new Run { Name = "d", Uuid = "d", SpecJson = new EmaLab.TrainingEngine.Training.RunSpec { Model = "unet" }.ToJson() };
        Assert.Null(MetricRoles.For(digits, null, []).Score);
        Assert.False(MetricRoles.Engine.LowerIsBetter);
        Assert.Equal(5.0, MetricRoles.Engine.Best([3.0, 5.0]));

        // A script's diffusion run: its "fid" is found among its keys, or named by the tag's "score".
        var script = new Run { Name = "s", Uuid = "s", Origin = RunOrigin.Client };
        (string, string)[] series = [("raw", "fid"), ("ema-0.9999", "fid"), ("raw", "loss"), ("raw", "val_loss"), ("ema-0.9999", "val_loss")];
        var found = MetricRoles.For(script, null, series);
        Assert.Equal(new MetricRoles("fid", "val_loss", "loss"), found);
        Assert.True(found.LowerIsBetter);
        Assert.Equal("kid", MetricRoles.For(script, """{"score": "kid"}""", series).Score);
        Assert.Null(MetricRoles.Problem("""{"score": "fid"}"""));
        Assert.NotNull(MetricRoles.Problem("""{"score": "fid", "accuracy": "acc"}"""));
    }
}
