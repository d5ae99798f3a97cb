using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// The pages rendered with bUnit against the real services of an app instance (real SQLite, real runs),
/// with Plotly's JS interop answered loosely (no browser here; the E2E project has one).
/// </summary>
public sealed class ComponentTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();
    BunitJSModuleInterop? _plotly;

    void UseAppServices(EmaLabFactory? of = null)
    {
        var app = (of ?? factory).Services;
        Services.AddSingleton(app.GetRequiredService<RunService>());
        Services.AddSingleton(app.GetRequiredService<RunQueue>());
        Services.AddSingleton(app.GetRequiredService<RunEventHub>());
        Services.AddSingleton(app.GetRequiredService<MetricQueries>());
        Services.AddSingleton(app.GetRequiredService<IDbContextFactory<EmaLabDbContext>>());
        // Services first, then JS interop (bUnit's order).
        JSInterop.Mode = JSRuntimeMode.Loose;
        _plotly = JSInterop.SetupModule("./_content/Plotly.Blazor/plotly-interop-7.2.0.js");
    }

    [Fact]
    public void Runs_list_shows_an_empty_state_on_a_server_without_runs()
    {
        // A server of its own: the class's shared one may already hold other tests' runs.
        using var fresh = new EmaLabFactory();
        UseAppServices(fresh);
        var cut = Render<RunsList>();
        cut.WaitForAssertion(() => Assert.Contains("No runs yet", cut.Find("[data-testid=empty]").TextContent));
    }

    [Fact]
    public async Task Runs_list_shows_a_finished_run_with_its_best_accuracies()
    {
        UseAppServices();
        var run = await Api.CreateAsync(_client, Api.DigitsRun(steps: 100));
        await Api.WaitForFinishAsync(_client, run.Id());
        var best = (await Api.GetAsync(_client, $"/api/runs/{run.Id()}/metrics?key=eval/accuracy&track=raw"))[0]
            .GetProperty("points").EnumerateArray().Max(p => p.GetProperty("value").GetDouble());
        var cut = Render<RunsList>();
        cut.WaitForAssertion(() =>
        {
            var row = cut.Find($"tr[data-run-id='{run.Id()}']");
            Assert.Contains("test", row.TextContent);
            Assert.Equal("completed", row.QuerySelector(".badge")!.TextContent);
            Assert.Equal("100", row.QuerySelector(".progress")!.GetAttribute("data-step"));
            Assert.Contains(best.ToString("P1", System.Globalization.CultureInfo.InvariantCulture), row.TextContent);
        });
        var danger = cut.Find($"tr[data-run-id='{run.Id()}'] button.danger"); // delete, with a confirmation step
        danger.Click();
        Assert.Contains($"Delete #{run.Id()}?", cut.Find($"tr[data-run-id='{run.Id()}']").TextContent);
    }

    [Fact]
    public async Task New_run_form_shows_the_api_message_by_the_field_and_starts_nothing()
    {
        UseAppServices();
        var before = (await Api.GetAsync(_client, "/api/runs")).GetProperty("total").GetInt32();
        var cut = Render<NewRun>();

        cut.FindAll("input.decay")[1].Change("1.5");
        cut.Find("form").Submit();
        Assert.Equal("Decay 1.5 is outside (0, 1).", cut.Find("[data-field='ema.decays']").TextContent);

        // Every broken rule is shown at once, each by its field.
        cut.Find("#batchSize").Change("0");
        cut.Find("form").Submit();
        Assert.Equal("Decay 1.5 is outside (0, 1).", cut.Find("[data-field='ema.decays']").TextContent);
        Assert.StartsWith("The batch size must be from 1 to 8000", cut.Find("#batchSize").ParentElement!.QuerySelector(".field-error")!.TextContent);
        cut.Find("#batchSize").Change("64");
        // After a refused start every change re-checks: the fixed field's message leaves at once.
        Assert.Empty(cut.Find("#batchSize").ParentElement!.QuerySelectorAll(".field-error"));

        cut.FindAll("input.decay")[1].Change("0.999");
        cut.Find("#learningRate").Change("0");
        cut.Find("form").Submit();
        Assert.Empty(cut.FindAll("[data-field='ema.decays']"));
        var lrField = cut.Find("#learningRate").ParentElement!;
        Assert.Contains("invalid", lrField.ClassName);
        Assert.Equal("The learning rate must be a finite number in (0, 10].", lrField.QuerySelector(".field-error")!.TextContent);

        cut.Find("#learningRate").Change("fast");
        cut.Find("form").Submit();
        Assert.Equal("'fast' is not a number.", cut.Find("#learningRate").ParentElement!.QuerySelector(".field-error")!.TextContent);

        Assert.Equal(before, (await Api.GetAsync(_client, "/api/runs")).GetProperty("total").GetInt32());
    }

    [Fact]
    public void Decay_lens_shows_half_life_window_and_what_is_left_of_the_start()
    {
        UseAppServices();
        var cut = Render<DecayLens>(p => p
            .Add(l => l.Decays, [0.99, 0.9999])
            .Add(l => l.PlannedSteps, 2000));

        var slow = cut.Find("tr[data-decay='0.9999']");
        Assert.Equal("6,931.1", slow.QuerySelector(".half-life")!.TextContent);   // ln 0.5 / ln 0.9999
        Assert.Equal("10,000", slow.QuerySelector(".window")!.TextContent);
        Assert.Equal("81.9 %", slow.QuerySelector(".share")!.TextContent);        // 0.9999^2000
        Assert.Equal("never forgets its initial weights in this run", slow.QuerySelector(".note")!.TextContent);
        var fast = cut.Find("tr[data-decay='0.99']");
        Assert.Equal("69.0", fast.QuerySelector(".half-life")!.TextContent);
        Assert.Equal("0.0 %", fast.QuerySelector(".share")!.TextContent);

        // Warm-up forgets the start quickly; updating every 10 steps stretches the half-life tenfold.
        cut.Render(p => p.Add(l => l.Warmup, true).Add(l => l.Every, 10));
        slow = cut.Find("tr[data-decay='0.9999']");
        var share = 1.0;
        for (var n = 10; n <= 2000; n += 10) share *= Math.Min(0.9999, (1.0 + n) / (10.0 + n));
        Assert.Equal(share.ToString("P1", System.Globalization.CultureInfo.InvariantCulture), slow.QuerySelector(".share")!.TextContent);
        Assert.True(share < 0.01);
        Assert.Equal((10 * Math.Log(0.5) / Math.Log(0.9999)).ToString("N1", System.Globalization.CultureInfo.InvariantCulture), slow.QuerySelector(".half-life")!.TextContent);
        Assert.Equal("69,311.3", slow.QuerySelector(".half-life")!.TextContent);
        // One solid and one dashed (warm-up) curve per decay.
        Assert.Equal(["ema-0.99", "ema-0.99 warm-up", "ema-0.9999", "ema-0.9999 warm-up"], cut.FindComponent<MetricChart>().Instance.TraceNames);
    }

    [Fact]
    public async Task Run_detail_draws_one_trace_per_track_and_lists_the_checkpoints()
    {
        UseAppServices();
        var body = Api.DigitsRun(steps: 100);
        body["checkpointEvery"] = 50;
        var run = await Api.CreateAsync(_client, body);
        await Api.WaitForFinishAsync(_client, run.Id());

        var cut = Render<RunDetail>(p => p.Add(d => d.Id, run.Id()));
        var charts = cut.FindComponents<MetricChart>().ToDictionary(c => c.Instance.Id, c => c.Instance);
        Assert.Equal(["raw", "ema-0.9", "ema-0.99"], charts["chart-accuracy"].TraceNames);
        Assert.Equal(["raw", "ema-0.9", "ema-0.99"], charts["chart-loss"].TraceNames);
        Assert.Equal(["raw", "raw (smoothed)"], charts["chart-train"].TraceNames);
        Assert.Equal(["ema-0.9", "ema-0.99"], charts["chart-gap"].TraceNames);
        Assert.Equal(3, cut.FindAll("[data-testid=summary] tbody tr").Count);
        Assert.Equal(9, cut.FindAll("[data-testid=checkpoints] a[download]").Count); // 3 tracks × steps 0, 50, 100
        Assert.Contains("\"decays\"", cut.Find("[data-testid=spec]").TextContent);
        Assert.Contains("Completed 100 steps.", cut.Find("[data-testid=log]").TextContent);
        // Every chart was drawn through Plotly's interop module.
        Assert.Equal(4, _plotly!.Invocations.Count(i => i.Identifier == "newPlot"));
    }

    [Fact]
    public void Run_detail_of_an_unknown_run_says_so()
    {
        UseAppServices();
        var cut = Render<RunDetail>(p => p.Add(d => d.Id, 987654));
        Assert.Contains("This run does not exist", cut.Markup);
    }
}
