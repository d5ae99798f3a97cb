using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;
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

    void UseAppServices(EmaLabFactory? of = null) => _plotly = PageServices.Use(this, (of ?? factory).Services);

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

        cut.Find("#track-1-decay").Change("1.5");
        cut.Find("form").Submit();
        Assert.Equal("Decay 1.5 is outside (0, 1).", cut.Find("[data-field='ema.tracks[1].decay']").TextContent);

        // Every broken rule is shown at once, each by its field.
        cut.Find("#batchSize").Change("0");
        cut.Find("form").Submit();
        Assert.Equal("Decay 1.5 is outside (0, 1).", cut.Find("[data-field='ema.tracks[1].decay']").TextContent);
        Assert.StartsWith("The batch size must be from 1 to 60000 (the size of fashion-mnist's training split)", cut.Find("#batchSize").ParentElement!.QuerySelector(".field-error")!.TextContent);
        cut.Find("#batchSize").Change("64");
        // After a refused start every change re-checks: the fixed field's message leaves at once.
        Assert.Empty(cut.Find("#batchSize").ParentElement!.QuerySelectorAll(".field-error"));

        cut.Find("#track-1-decay").Change("0.999");
        cut.Find("#learningRate").Change("0");
        cut.Find("form").Submit();
        Assert.Empty(cut.FindAll("[data-field='ema.tracks[1].decay']"));
        var lrField = cut.Find("#learningRate").ParentElement!;
        Assert.Contains("invalid", lrField.ClassName);
        Assert.Equal("The learning rate must be a finite number in (0, 10].", lrField.QuerySelector(".field-error")!.TextContent);

        // Text that is not a number is named as such, and the API's other rules are still shown with it.
        cut.Find("#learningRate").Change("fast");
        cut.Find("#track-0-decay").Change("high");
        cut.Find("#batchSize").Change("0");
        cut.Find("form").Submit();
        Assert.Equal("'fast' is not a number.", cut.Find("#learningRate").ParentElement!.QuerySelector(".field-error")!.TextContent);
        Assert.Equal("'high' is not a number.", cut.Find("[data-field='ema.tracks[0].decay']").TextContent);
        Assert.StartsWith("The batch size must be from 1 to 60000 (the size of fashion-mnist's training split)", cut.Find("#batchSize").ParentElement!.QuerySelector(".field-error")!.TextContent);

        Assert.Equal(before, (await Api.GetAsync(_client, "/api/runs")).GetProperty("total").GetInt32());
    }

    [Fact]
    public async Task New_run_form_offers_the_newer_rules_with_their_sources_defaults_and_switch_ema()
    {
        UseAppServices();
        var cut = ShortDigitsForm();
        cut.Find("#batchSize").Change("64");
        cut.Find("#postHoc").Change(false);

        cut.Find("button[data-preset='TRL BEMA']").Click();
        Assert.Equal("400", cut.Find("#track-2-every").GetAttribute("placeholder"));
        Assert.Equal("0.2", cut.Find("#track-2-biasPower").GetAttribute("placeholder"));
        Assert.Equal("10", cut.Find("#track-2-lag").GetAttribute("placeholder"));
        Assert.Empty(cut.FindAll("#track-2-decay"));                  // BEMA has no decay
        Assert.Equal("trl-bema", cut.Find("#track-2-name").GetAttribute("placeholder"));
        cut.Find("#track-2-every").Change("10");
        cut.Find("button[data-preset='LAWA']").Click();
        Assert.Equal("5", cut.Find("#track-3-checkpoints").GetAttribute("placeholder"));
        Assert.Equal("one epoch", cut.Find("#track-3-every").GetAttribute("placeholder"));
        cut.Find("button[data-preset='EDM half-life']").Click();
        Assert.Equal("500", cut.Find("#track-4-halfLifeKimg").GetAttribute("placeholder"));
        cut.Find("#track-4-halfLifeKimg").Change("0.64");
        cut.Find("button[data-preset='torchvision EMA']").Click();
        Assert.Equal("the run's", cut.Find("#track-5-epochs").GetAttribute("placeholder"));
        // The preview knows the run's length, so torchvision's row (its epochs) resolves before the run starts.
        Assert.Equal("ema-0.99998-torchvision", cut.Find("#track-5-name").GetAttribute("placeholder"));
        Assert.NotNull(cut.Find("[data-testid=lens] tr[data-track='ema-0.99998-torchvision']"));
        // 22 batches of 64 an epoch: LAWA's copy per epoch, and the lens's rows for all four.
        Assert.Equal("lawa-k5-every22", cut.Find("#track-3-name").GetAttribute("placeholder"));
        Assert.NotNull(cut.Find("[data-testid=lens] tr[data-track='edm-0.64kimg']"));

        cut.Find("#track-3-checkpoints").Change("0");
        cut.Find("form").Submit();
        Assert.StartsWith("checkpoints (k) is from 1 to 32", cut.Find("[data-field='ema.tracks[3].checkpoints']").TextContent);
        cut.Find("#track-3-checkpoints").Change("3");
        cut.Find("#switchEma").Change(true);
        Assert.Equal("ema-0.99", cut.Find("#switchEmaTrack").GetAttribute("placeholder"));
        cut.Find("#switchEmaEvery").Change("20");
        cut.Find("#switchEmaTrack").Change("nope");
        cut.Find("form").Submit();
        Assert.StartsWith("'nope' is not one of this run's EMA tracks", cut.Find("[data-field='switchEma.track']").TextContent);
        cut.Find("#switchEmaTrack").Change("lawa-k3-every22");
        Assert.Empty(cut.FindAll(".field-error").Select(e => $"{e.GetAttribute("data-field")}: {e.TextContent}"));

        cut.Find("form").Submit();
        var id = (await Api.GetAsync(_client, "/api/runs")).GetProperty("items")[0].GetProperty("id").GetInt64();
        var run = await Api.WaitForFinishAsync(_client, id);
        Assert.Equal("completed", run.Status());
        Assert.Equal(["raw", "ema-0.99", "ema-0.995", "trl-bema-every10", "lawa-k3-every22", "edm-0.64kimg", "ema-0.99998-torchvision"],
            run.GetProperty("tracks").EnumerateArray().Select(t => t.GetProperty("name").GetString()));
        Assert.Equal("lawa-k3-every22", run.GetProperty("spec").GetProperty("switchEma").GetProperty("track").GetString());
        // A clone brings the switch back.
        var clone = RunForm.From(await RunServiceFindAsync(id));
        Assert.Equal((true, "lawa-k3-every22", 20), (clone.SwitchEma, clone.SwitchEmaTrack, clone.SwitchEmaEvery));
    }

    async Task<Run> RunServiceFindAsync(long id) => (await Services.GetRequiredService<RunQueries>().FindAsync(id))!;

    /// <summary>Trains the run <paramref name="body"/> describes to its end and renders its page.</summary>
    async Task<(long Id, IRenderedComponent<RunDetail> Page)> FinishedRunPageAsync(System.Text.Json.Nodes.JsonObject body)
    {
        var id = (await Api.CreateAsync(_client, body)).Id();
        await Api.WaitForFinishAsync(_client, id);
        return (id, Render<RunDetail>(p => p.Add(d => d.Id, id)));
    }

    /// <summary>The new-run form set to a 60-step digits MLP without warm-up or intermediate checkpoints: a run a test can wait for.</summary>
    IRenderedComponent<NewRun> ShortDigitsForm()
    {
        var cut = Render<NewRun>();
        cut.Find("#dataset").Change("digits-8x8");
        cut.Find("#model").Change("mlp");
        cut.Find("#steps").Change("60");
        cut.Find("#learningRateWarmup").Change("0");
        cut.Find("#evalInterval").Change("30");
        cut.Find("#checkpointEvery").Change("");
        return cut;
    }

    [Fact]
    public async Task New_run_form_edits_tracks_as_rows_with_one_click_presets_and_messages_by_setting()
    {
        UseAppServices();
        var cut = ShortDigitsForm();
        Assert.Equal(2, cut.FindAll(".track-row").Count);
        cut.Find("#track-1-decay").Change("0.999"); // the rows below are added after it

        // One click adds timm's ModelEmaV3 with use_warmup: its settings only, empty ones showing timm's defaults.
        cut.Find("button[data-preset='timm use_warmup']").Click();
        Assert.Equal("timm", cut.Find("#track-2-preset").GetAttribute("value"));
        Assert.Equal("power", cut.Find("#track-2-warmup").GetAttribute("value"));
        Assert.Equal("0.9999", cut.Find("#track-2-decay").GetAttribute("placeholder"));
        Assert.Equal("0", cut.Find("#track-2-updateAfterStep").GetAttribute("placeholder"));
        Assert.Empty(cut.FindAll("#track-2-every"));                    // timm has no every-N
        Assert.Equal("ema-0.9999-timm-warmup", cut.Find("#track-2-name").GetAttribute("placeholder"));
        Assert.NotNull(cut.Find("[data-testid=lens] tr[data-track='ema-0.9999-timm-warmup']"));

        // SWA and a bfloat16 EMA Lab row; an EMA Lab row's empty every shows the run's shared setting.
        cut.Find("button[data-preset='SWA']").Click();
        cut.Find("#add-track").Click();
        Assert.Equal("0.9999", cut.Find("#track-4-decay").GetAttribute("value")); // the next timescale after 0.999
        cut.Find("#track-4-dtype").Change("bfloat16");
        cut.Find("[data-track-index='4'] button.twin").Click();     // its float32 twin, for the run page's precision gap
        Assert.Equal("0.9999", cut.Find("#track-5-decay").GetAttribute("value"));
        Assert.Equal("", cut.Find("#track-5-dtype").GetAttribute("value"));
        Assert.Equal("1", cut.Find("#track-4-every").GetAttribute("placeholder"));
        cut.Find("#every").Change("5");
        Assert.Equal("5", cut.Find("#track-4-every").GetAttribute("placeholder"));
        cut.Find("#every").Change("1");

        // Every row's problems at once, each by its setting; a changed preset drops the settings it does not have.
        cut.Find("#track-3-every").Change("0");
        cut.Find("#track-2-minDecay").Change("0.99999");
        cut.Find("#track-0-decay").Change("");
        cut.Find("form").Submit();
        Assert.Equal("'every' must be at least 1.", cut.Find("[data-field='ema.tracks[3].every']").TextContent);
        Assert.Equal("minDecay must not exceed the decay.", cut.Find("[data-field='ema.tracks[2].minDecay']").TextContent);
        Assert.Equal("A decay is needed.", cut.Find("[data-field='ema.tracks[0].decay']").TextContent);
        cut.Find("#track-0-decay").Change("0.9");
        cut.Find("#track-3-preset").Change("keras");
        Assert.Empty(cut.FindAll("[data-field='ema.tracks[3].every']"));
        cut.Find("#track-2-minDecay").Change("");
        cut.Find("#track-3-name").Change("Bad Name");
        Assert.StartsWith("Track name 'Bad Name' may use lower-case letters", cut.Find("[data-field='ema.tracks[3].name']").TextContent);
        cut.Find("#track-3-name").Change("keras-default");
        Assert.Empty(cut.FindAll(".field-error").Select(e => $"{e.GetAttribute("data-field")}: {e.TextContent}"));

        var before = (await Api.GetAsync(_client, "/api/runs")).GetProperty("total").GetInt32();
        cut.Find("form").Submit();
        var runs = await Api.GetAsync(_client, "/api/runs");
        Assert.Equal(before + 1, runs.GetProperty("total").GetInt32());
        var id = runs.GetProperty("items")[0].GetProperty("id").GetInt64();
        await Api.WaitForFinishAsync(_client, id);
        var run = await Api.GetAsync(_client, $"/api/runs/{id}");
        Assert.Equal(["raw", "ema-0.9", "ema-0.999", "ema-0.9999-timm-warmup", "keras-default", "ema-0.9999-bf16", "ema-0.9999"],
            run.GetProperty("tracks").EnumerateArray().Select(t => t.GetProperty("name").GetString()));

        // A clone brings the rows back as they were typed.
        Services.GetRequiredService<Microsoft.AspNetCore.Components.NavigationManager>().NavigateTo($"runs/new?from={id}");
        var clone = Render<NewRun>();
        Assert.Equal(6, clone.FindAll(".track-row").Count);
        Assert.Equal("keras", clone.Find("#track-3-preset").GetAttribute("value"));
        Assert.Equal("keras-default", clone.Find("#track-3-name").GetAttribute("value"));
        Assert.Equal("bfloat16", clone.Find("#track-4-dtype").GetAttribute("value"));
        Assert.Equal("", clone.Find("#track-2-decay").GetAttribute("value"));
    }

    [Fact]
    public async Task New_run_form_sets_the_training_recipe_names_its_mistakes_by_field_and_a_clone_keeps_it()
    {
        UseAppServices();
        var cut = Render<NewRun>();
        cut.Find("#dataset").Change("digits-8x8");
        cut.Find("#model").Change("resnet");
        cut.Find("#steps").Change("30");
        cut.Find("#evalInterval").Change("30");
        cut.Find("#checkpointEvery").Change("");
        cut.Find("#labelSmoothing").Change("0,1");
        cut.Find("#gradientClipNorm").Change("-1");
        cut.Find("#learningRateWarmup").Change("30");
        cut.Find("#channels").Change("8, x");
        cut.Find("#blocks").Change("0");
        cut.Find("#evalSubset").Change("-5");
        cut.Find("#postHocSigmaRels").Change("0.05, wide");
        cut.Find("form").Submit();
        Assert.Equal("'wide' is not a number; σ_rel is in (0, 0.2887], e.g. 0.05.", cut.Find("#postHocSigmaRels").ParentElement!.QuerySelector(".field-error")!.TextContent);
        Assert.Equal("'x' is not a whole number; give widths such as 16, 32, 64.", cut.Find("#channels").ParentElement!.QuerySelector(".field-error")!.TextContent);
        Assert.Equal("The ResNet needs 1 to 32 blocks per stage.", cut.Find("#blocks").ParentElement!.QuerySelector(".field-error")!.TextContent);
        Assert.StartsWith("The evaluation subset must be a number of images", cut.Find("#evalSubset").ParentElement!.QuerySelector(".field-error")!.TextContent);
        Assert.Equal("'0,1' is not a number.", cut.Find("#labelSmoothing").ParentElement!.QuerySelector(".field-error")!.TextContent);
        Assert.StartsWith("The gradient clipping norm must be", cut.Find("#gradientClipNorm").ParentElement!.QuerySelector(".field-error")!.TextContent);
        Assert.StartsWith("The learning-rate warm-up must be from 0 to 29 steps", cut.Find("#learningRateWarmup").ParentElement!.QuerySelector(".field-error")!.TextContent);

        cut.Find("#labelSmoothing").Change("0.1");
        cut.Find("#gradientClipNorm").Change("2");
        cut.Find("#learningRateWarmup").Change("5");
        cut.Find("#weightDecay").Change("0.05");
        cut.Find("#decayNormsAndBiases").Change(false);
        cut.Find("#randomCropPadding").Change("2");
        cut.Find("#horizontalFlip").Change(true);
        cut.Find("#channels").Change("8, 16");
        cut.Find("#blocks").Change("1");
        cut.Find("#evalSubset").Change("100");
        cut.Find("#postHocSigmaRels").Change("0.05, 0.1");
        Assert.Empty(cut.FindAll(".field-error").Select(e => $"{e.GetAttribute("data-field")}: {e.TextContent}"));
        cut.Find("form").Submit();
        var id = (await Api.GetAsync(_client, "/api/runs")).GetProperty("items")[0].GetProperty("id").GetInt64();
        var spec = (await Api.GetAsync(_client, $"/api/runs/{id}")).GetProperty("spec");
        Assert.Equal("resnet", spec.GetProperty("model").GetString());
        Assert.Equal((0.1, 2.0, 5L, 0.05, false, 2, true), (spec.GetProperty("labelSmoothing").GetDouble(), spec.GetProperty("gradientClipNorm").GetDouble(),
            spec.GetProperty("learningRateWarmup").GetInt64(), spec.GetProperty("weightDecay").GetDouble(), spec.GetProperty("decayNormsAndBiases").GetBoolean(),
            spec.GetProperty("randomCropPadding").GetInt32(), spec.GetProperty("horizontalFlip").GetBoolean()));
        Assert.Equal("[8,16] 1 100", $"{spec.GetProperty("channels").GetRawText()} {spec.GetProperty("blocks")} {spec.GetProperty("evalSubset")}");
        Assert.False(spec.TryGetProperty("hidden", out _)); // only the chosen model's fields are sent
        Assert.Equal("[0.05,0.1]", spec.GetProperty("postHoc").GetProperty("sigmaRels").GetRawText());
        Assert.Equal("completed", (await Api.WaitForFinishAsync(_client, id)).GetProperty("status").GetString());

        Services.GetRequiredService<Microsoft.AspNetCore.Components.NavigationManager>().NavigateTo($"runs/new?from={id}");
        var clone = Render<NewRun>();
        Assert.Equal(("0.1", "2", "5", "2"), (clone.Find("#labelSmoothing").GetAttribute("value"), clone.Find("#gradientClipNorm").GetAttribute("value"),
            clone.Find("#learningRateWarmup").GetAttribute("value"), clone.Find("#randomCropPadding").GetAttribute("value")));
        Assert.False(clone.Find("#decayNormsAndBiases").HasAttribute("checked"));
        Assert.True(clone.Find("#horizontalFlip").HasAttribute("checked"));
        Assert.Equal(("8, 16", "1", "100"), (clone.Find("#channels").GetAttribute("value"), clone.Find("#blocks").GetAttribute("value"), clone.Find("#evalSubset").GetAttribute("value")));
    }

    [Fact]
    public void Decay_lens_shows_half_life_window_and_what_is_left_of_the_start()
    {
        UseAppServices();
        var cut = Render<DecayLens>(p => p
            .Add(l => l.Rules, new EmaSettings { Decays = [0.99, 0.9999] }.Rules(null))
            .Add(l => l.PlannedSteps, 2000));

        var slow = cut.Find("tr[data-track='ema-0.9999']");
        Assert.Equal("6,931.1", slow.QuerySelector(".half-life")!.TextContent);   // ln 0.5 / ln 0.9999
        Assert.Equal("10,000", slow.QuerySelector(".window")!.TextContent);
        Assert.Equal("81.9 %", slow.QuerySelector(".share")!.TextContent);        // 0.9999^2000
        Assert.Equal("never forgets its initial weights in this run", slow.QuerySelector(".note")!.TextContent);
        var fast = cut.Find("tr[data-track='ema-0.99']");
        Assert.Equal("69.0", fast.QuerySelector(".half-life")!.TextContent);
        Assert.Equal("0.0 %", fast.QuerySelector(".share")!.TextContent);

        // Warm-up forgets the start quickly; updating every 10 steps stretches the half-life tenfold.
        cut.Render(p => p.Add(l => l.Rules, new EmaSettings { Decays = [0.99, 0.9999], Warmup = true, Every = 10 }.Rules(null)));
        slow = cut.Find("tr[data-track='ema-0.9999']");
        var share = 1.0;
        for (var n = 10; n <= 2000; n += 10) share *= Math.Min(0.9999, (1.0 + n) / (10.0 + n));
        Assert.Equal(share.ToString("P1", System.Globalization.CultureInfo.InvariantCulture), slow.QuerySelector(".share")!.TextContent);
        Assert.True(share < 0.01);
        Assert.Equal((10 * Math.Log(0.5) / Math.Log(0.9999)).ToString("N1", System.Globalization.CultureInfo.InvariantCulture), slow.QuerySelector(".half-life")!.TextContent);
        Assert.Equal("69,311.3", slow.QuerySelector(".half-life")!.TextContent);
        // One curve per track: its warm-up climbs from TF's (1 + 10)/(10 + 10) at the first update to the decay.
        var chart = cut.FindComponent<MetricChart>().Instance;
        Assert.Equal(["ema-0.99", "ema-0.9999"], chart.TraceNames);
        var curve = chart.Series[1].Points;
        Assert.Equal(11.0 / 20.0, curve[0].Value, 12);
        Assert.Equal(Math.Min(0.9999, 2001.0 / 2010.0), curve[^1].Value, 12);
    }

    [Fact]
    public void Decay_lens_draws_the_learning_rate_training_will_use_with_its_warm_up_and_drops()
    {
        UseAppServices();
        var cosine = new RunSpec { LearningRate = 0.01, Schedule = RunSpec.Cosine, LearningRateWarmup = 100 };
        var cut = Render<DecayLens>(p => p.Add(l => l.Rules, new EmaSettings { Decays = [0.99] }.Rules(null)).Add(l => l.PlannedSteps, 1000)
            .Add(l => l.Training, [cosine]));
        var chart = cut.FindComponents<MetricChart>().Single(c => c.Instance.Id == "lens-lr-chart").Instance;
        var curve = Assert.Single(chart.Series).Points;
        Assert.All(curve, p => Assert.Equal(cosine.LearningRateAt(p.Step, 1000), p.Value));
        Assert.Equal([1L, 1000], [curve[0].Step, curve[^1].Step]);
        Assert.Equal(0.0001, curve[0].Value, 15);                             // 0.01 · 1/100
        Assert.Contains(curve, p => p.Step == 100 && p.Value == 0.01);         // the warm-up's peak is drawn, not cut off
        Assert.True(curve[^1].Value < 1e-6, $"the cosine ends at {curve[^1].Value}");
        Assert.Equal("Linear warm-up from 0 over 100 steps, then cosine decay to 0 at step 1,000.", cut.Find("[data-chart=lens-lr-chart] .chart-note").TextContent);

        // A group's learning rates each get a line; a step schedule is drawn as steps (the step before a drop and the one after).
        var form = new RunForm { IsGroup = true, LearningRate = "0.001, 0.003, x", Schedule = RunSpec.StepSchedule, Steps = 3000, LearningRateWarmup = 0 };
        var training = form.LearningRatePreview();
        Assert.Equal([0.001, 0.003], training.Select(t => t.LearningRate));
        cut.Render(p => p.Add(l => l.Training, training).Add(l => l.PlannedSteps, 3000));
        chart = cut.FindComponents<MetricChart>().Single(c => c.Instance.Id == "lens-lr-chart").Instance;
        Assert.Equal(["lr 0.001", "lr 0.003"], chart.TraceNames);
        var stepped = chart.Series[1].Points;
        Assert.Equal(0.003, stepped.Single(p => p.Step == 1000).Value, 15);
        Assert.Equal(0.0003, stepped.Single(p => p.Step == 1001).Value, 15);
        Assert.Equal("× 0.1 every 1,000 steps.", cut.Find("[data-chart=lens-lr-chart] .chart-note").TextContent);
    }

    [Fact]
    public void Decay_lens_says_when_a_warm_up_reaches_the_decay_and_warns_when_two_tracks_are_one()
    {
        UseAppServices();
        // The old default: 0.99 and 0.999 under TF's warm-up over 1,500 steps.
        var cut = Render<DecayLens>(p => p.Add(l => l.Rules, new EmaSettings { Decays = [0.99, 0.999], Warmup = true }.Rules(null)).Add(l => l.PlannedSteps, 1500));
        Assert.Equal("890", cut.Find("tr[data-track='ema-0.99'] .reached").TextContent);
        Assert.Equal("never in this run", cut.Find("tr[data-track='ema-0.999'] .reached").TextContent);
        Assert.StartsWith("its warm-up never reaches the decay in this run", cut.Find("tr[data-track='ema-0.999'] .note").TextContent);
        Assert.Equal("ema-0.99 and ema-0.999 are identical until step 890 of 1,500: the warm-up, not the decay, sets both.",
            cut.Find("[data-testid=lens-warnings] li").TextContent);
        Assert.Single(cut.FindAll("[data-testid=lens-warnings] li"));

        // Without the warm-up they differ from the first step; a float32 track and its bfloat16 twin are the same rule on purpose.
        var twins = new EmaSettings
        {
            Tracks =
            [
                new EmaTrackSettings { Decay = 0.99 }, new EmaTrackSettings { Decay = 0.999 },
                new EmaTrackSettings { Preset = EmaPresets.AveragedModel, Decay = 0.99 },
                new EmaTrackSettings { Preset = EmaPresets.AveragedModel, Decay = 0.99, Dtype = EmaDtype.BFloat16 },
            ],
        };
        cut.Render(p => p.Add(l => l.Rules, twins.Rules(null)));
        Assert.Empty(cut.FindAll("[data-testid=lens-warnings]"));
        Assert.Equal("1", cut.Find("tr[data-track='ema-0.999'] .reached").TextContent);
    }

    [Fact]
    public void The_lens_reads_the_newer_rules_in_steps_and_samples_beside_adamws_own_timescale()
    {
        UseAppServices();
        var training = new RunSpec { Dataset = "digits-8x8", Model = "mlp", Optimizer = RunSpec.AdamW, LearningRate = 1e-3, WeightDecay = 0.05, BatchSize = 64, Steps = 1_000 };
        var rules = new EmaSettings
        {
            Tracks =
            [
                new EmaTrackSettings { HalfLifeSamples = 6_400 }, new EmaTrackSettings { Preset = EmaPresets.Lawa, Checkpoints = 5, Every = 40 },
                new EmaTrackSettings { Preset = EmaPresets.TrlBema, Every = 50 }, new EmaTrackSettings { Preset = EmaPresets.Edm, HalfLifeKimg = 3.2, RampupRatio = 0 },
            ],
        }.Rules(new EmaRunShape(64, 22));
        var cut = Render<DecayLens>(p => p.Add(l => l.Rules, rules).Add(l => l.PlannedSteps, 1_000).Add(l => l.Training, [training]));
        // 6,400 samples at 64 a step: a half-life of 100 steps, and so 6,400 samples again in the samples column.
        Assert.Equal("100.0", cut.Find("tr[data-track='ema-hl6400'] .half-life").TextContent);
        Assert.Equal("6,400", cut.Find("tr[data-track='ema-hl6400'] .half-life-samples").TextContent);
        Assert.StartsWith("half-life 6,400 samples at batch 64", cut.Find("tr[data-track='ema-hl6400'] .note").TextContent);
        Assert.Equal("200", cut.Find("tr[data-track='lawa-k5-every40'] .window").TextContent);
        Assert.StartsWith("uniform mean of the 5 latest weights, 40 steps apart", cut.Find("tr[data-track='lawa-k5-every40'] .note").TextContent);
        // TRL's last update at step 1,000: β = (10 + 1,000)^−½.
        Assert.StartsWith($"β at the end {Math.Pow(1010, -0.5).ToString("G3", System.Globalization.CultureInfo.InvariantCulture)}", cut.Find("tr[data-track='trl-bema-every50'] .note").TextContent);
        Assert.Equal("50.0", cut.Find("tr[data-track='edm-3.2kimg-norampup'] .half-life").TextContent); // 3,200 samples at 64 a step
        Assert.Equal("AdamW's own averaging timescale 1/(η·λ) = 20,000 steps (1,280,000 samples) at its peak learning rate: "
            + "its weights already average the updates over about this many steps (Wang & Aitchison 2024).", cut.Find("[data-testid=optimizer-timescale]").TextContent);
        Assert.Null(DecayLens.OptimizerTimescale(training with { Optimizer = RunSpec.Adam }));
    }

    [Fact]
    public void The_new_run_forms_default_is_the_readmes_measured_resnet_on_fashion_mnist()
    {
        // The README reports this run's seed group; a change here must be measured again there.
        var spec = new RunForm().ToRequest().Spec;
        Assert.Equal(("fashion-mnist", "resnet", (int[]?)null, 1, RunSpec.Adam, 0.003, 100L, RunSpec.NoSchedule),
            (spec.Dataset, spec.Model, spec.Channels, spec.Blocks, spec.Optimizer, spec.LearningRate, spec.LearningRateWarmup, spec.Schedule));
        Assert.Equal((128, 1200L, 100, 2000, 1L), (spec.BatchSize, spec.Steps, spec.EvalInterval, spec.EvalSubset, spec.Seed));
        Assert.Equal(["ema-0.99", "ema-0.995"], spec.Ema.Rules(null).Select(r => r.Name));
        Assert.True(spec.Ema.ZeroDebias && !spec.Ema.Warmup);
        Assert.Equal((0, false, 0.0, 0.0), (spec.RandomCropPadding, spec.HorizontalFlip, spec.LabelSmoothing, spec.WeightDecay));
    }

    [Fact]
    public void The_new_run_forms_default_tracks_differ_from_the_first_step_and_forget_the_random_start()
    {
        var form = new RunForm();
        var rules = form.RowRules().Select(r => r!).ToList();
        Assert.Equal(["ema-0.99", "ema-0.995"], rules.Select(r => r.Name));
        Assert.Empty(DecayLens.Warnings(rules, form.Steps));
        Assert.Equal(0, EmaMath.IdenticalUntil(rules[0], rules[1], form.Steps));
        Assert.All(rules, r => Assert.Equal(1, EmaMath.NominalDecayFrom(r, form.Steps)));
        Assert.All(rules, r => Assert.True(EmaMath.InitialWeightShare(r, form.Steps) < 0.01, $"{r.Name} keeps {EmaMath.InitialWeightShare(r, form.Steps):P1} of the start"));
    }

    [Fact]
    public void Decay_lens_reads_every_rule_the_presets_bring()
    {
        UseAppServices();
        var settings = new EmaSettings
        {
            Tracks =
            [
                new EmaTrackSettings { Preset = EmaPresets.EmaPytorch, Decay = 0.99 },
                new EmaTrackSettings { Decay = 0.99, Every = 10, AdjustDecay = true },
                new EmaTrackSettings { Preset = EmaPresets.Swa, StartStep = 1001 },
            ],
        };
        var cut = Render<DecayLens>(p => p.Add(l => l.Rules, settings.Rules(null)).Add(l => l.PlannedSteps, 2000));

        // ema-pytorch updates every 10 steps with beta: the half-life in steps is ten times 0.99's.
        var lucid = cut.Find("tr[data-track='ema-0.99-ema-pytorch']");
        Assert.Equal("689.7", lucid.QuerySelector(".half-life")!.TextContent);
        Assert.Contains("after step 100", lucid.QuerySelector(".rule")!.TextContent);
        // Adjusted to 0.99^10 per update, the same 0.99 keeps its horizon in steps.
        var adjusted = cut.Find("tr[data-track='ema-0.99-every10-adjusted']");
        Assert.Equal("69.0", adjusted.QuerySelector(".half-life")!.TextContent);
        Assert.Equal(Math.Pow(0.99, 10).ToString("G6", System.Globalization.CultureInfo.InvariantCulture), adjusted.QuerySelector(".decay")!.TextContent);
        // SWA: a uniform average of the second half; the first weights it copied weigh 1/1000 at the end.
        var swa = cut.Find("tr[data-track='swa-from-1001']");
        Assert.Equal("uniform", swa.QuerySelector(".decay")!.TextContent);
        Assert.Equal("0.1 %", swa.QuerySelector(".share")!.TextContent);
        Assert.Equal("uniform average of steps 1,001–2,000", swa.QuerySelector(".note")!.TextContent);

        // ema-pytorch's curve: it copies (0) until its counter passes update_after_step, then warms up towards beta.
        var curves = cut.FindComponent<MetricChart>().Instance.Series;
        var lucidCurve = curves[0].Points;
        Assert.Equal(0, lucidCurve.Single(p => p.Step == 100).Value);
        Assert.Equal((double)0.99f, lucidCurve[^1].Value); // clamped to beta in float32, as its tensors do
    }

    [Fact]
    public async Task Run_detail_draws_one_trace_per_track_and_lists_the_checkpoints()
    {
        UseAppServices();
        var body = Api.DigitsRun(steps: 100);
        body["checkpointEvery"] = 50;
        var (runId, cut) = await FinishedRunPageAsync(body);
        var charts = cut.FindComponents<MetricChart>().ToDictionary(c => c.Instance.Id, c => c.Instance);
        Assert.Equal(["raw", "ema-0.9", "ema-0.99"], charts["chart-accuracy"].TraceNames);
        Assert.Equal(["raw", "ema-0.9", "ema-0.99"], charts["chart-loss"].TraceNames);
        Assert.Equal(["raw", "raw (smoothed)"], charts["chart-train"].TraceNames);
        Assert.Equal(["ema-0.9", "ema-0.99"], charts["chart-gap"].TraceNames);
        Assert.Equal(3, cut.FindAll("[data-testid=summary] tbody tr").Count);
        // The ranking at the top: each EMA against raw, the better best first, the difference in points.
        var summaries = Services.GetRequiredService<MetricQueries>().Summaries([runId], "eval/accuracy");
        var raw = summaries.Single(s => s.Track == "raw");
        var expected = summaries.Where(s => s.Track != "raw").OrderByDescending(s => s.Best).ThenByDescending(s => s.Final).ToList();
        var ranked = cut.FindAll("[data-testid=ranking] .ranking-name");
        Assert.Equal(expected.Select(s => s.Track), ranked.Select(e => e.GetAttribute("data-track")));
        var firstBest = cut.FindAll("[data-testid=ranking] .ranking-bar.best .delta")[0].TextContent;
        Assert.Equal(((expected[0].Best - raw.Best) * 100).ToString("+0.00;−0.00;0.00", System.Globalization.CultureInfo.InvariantCulture) + " pt", firstBest);
        // Each track keeps its colour from the ranking to the charts; raw is grey.
        var accuracy = charts["chart-accuracy"].Series.ToDictionary(s => s.Name);
        Assert.Equal(TrackColors.Raw, accuracy["raw"].Color);
        Assert.Equal([TrackColors.Palette[0], TrackColors.Palette[1]], [accuracy["ema-0.9"].Color, accuracy["ema-0.99"].Color]);
        Assert.Contains(accuracy[expected[0].Track].Color, ranked[0].QuerySelector(".swatch")!.GetAttribute("style"));
        Assert.Equal(9, cut.FindAll("[data-testid=checkpoints] a[download]").Count); // 3 tracks × steps 0, 50, 100
        Assert.Contains("\"decays\"", cut.Find("[data-testid=spec]").TextContent);
        Assert.Contains("Completed 100 steps.", cut.Find("[data-testid=log]").TextContent);
        // Every chart was drawn through Plotly's interop module: the tracks' four and the system section's (the training and
        // evaluation seconds of each evaluation, and the cost samples if the run took more than their 10 s interval).
        var system = cut.FindComponents<MetricChart>().Count(c => c.Instance.Id.StartsWith("chart-system-", StringComparison.Ordinal));
        Assert.True(system >= 2, $"{system} system charts");
        Assert.Equal(4 + system, _plotly!.Invocations.Count(i => i.Identifier == "newPlot"));
    }

    [Fact]
    public async Task A_switch_ema_run_says_so_beside_its_curves_and_its_weights_become_the_tracks()
    {
        UseAppServices();
        var body = Api.DigitsRun(steps: 60, evalInterval: 30);
        body["switchEma"] = new System.Text.Json.Nodes.JsonObject { ["track"] = "ema-0.9", ["every"] = 20 };
        var (runId, cut) = await FinishedRunPageAsync(body);
        const string note = "Switch EMA: ema-0.9 copied into the trained weights every 20 steps: the raw curves are of this training, not of plain training.";
        Assert.Equal(note, cut.Find("[data-testid=switch-ema]").TextContent);
        Assert.Equal(note, cut.Find("[data-chart=chart-train] .chart-note").TextContent);
        Assert.Equal(note, cut.Find("[data-chart=chart-accuracy] .chart-note").TextContent);
        // At step 60, a switch step, the raw weights are the track's: their evaluations are the same numbers.
        async Task<double> Final(string track) => (await Api.GetAsync(_client, $"/api/runs/{runId}/metrics?key=eval/accuracy&track={track}&maxPoints=0"))[0]
            .GetProperty("points").EnumerateArray().Last().GetProperty("value").GetDouble();
        Assert.Equal(await Final("ema-0.9"), await Final("raw"));
        Assert.NotEqual(await Final("ema-0.99"), await Final("raw"));

        Services.GetRequiredService<Microsoft.AspNetCore.Components.NavigationManager>().NavigateTo($"compare?runs={runId}");
        var compare = Render<Compare>();
        Assert.Contains($"#{runId} raw (switch EMA)", compare.FindComponent<MetricChart>().Instance.TraceNames);
        Assert.Equal("switch EMA", compare.Find("[data-testid=switch-ema-badge]").TextContent);
    }

    [Fact]
    public async Task The_run_page_says_which_lawa_the_kept_checkpoints_allow_and_averages_one()
    {
        UseAppServices();
        var body = Api.DigitsRun(steps: 90, evalInterval: 30);
        body["checkpointEvery"] = 30;
        var (runId, cut) = await FinishedRunPageAsync(body);
        Assert.Contains("Raw weights kept at steps 0, 30, 60, 90.", cut.Find("[data-testid=lawa-kept]").TextContent);
        Assert.Equal("Possible: every 30: k ≤ 3; every 60: k ≤ 2.", cut.Find("[data-testid=lawa-choices]").TextContent);
        cut.Find("#lawa-k").Change("4");
        await cut.Find("#lawa-average").ClickAsync(new());
        Assert.Equal("With every 30, at most 3 of the kept checkpoints are that far apart.", cut.Find("[data-testid=lawa-message]").TextContent);
        cut.Find("#lawa-k").Change("3");
        await cut.Find("#lawa-average").ClickAsync(new());
        cut.WaitForAssertion(() => Assert.StartsWith("posthoc-lawa-k3-every30", cut.Find("[data-testid=lawa-result]").TextContent));
    }

    [Fact]
    public async Task Run_detail_says_which_images_the_points_score_and_what_share_of_the_time_evaluation_took()
    {
        UseAppServices();
        var body = Api.DigitsRun(steps: 100, evalInterval: 25);
        body["evalSubset"] = 120;
        var (runId, cut) = await FinishedRunPageAsync(body);
        var all = EmaLab.TrainingEngine.Data.DatasetCatalog.Describe("digits-8x8").EvalCount;
        var note = $"Before step 100 each point scores a fixed subset of 120 of the {all:N0} held-out images; the last step scores all {all:N0}.";
        Assert.Equal(note, cut.Find("[data-chart=chart-accuracy] .chart-note").TextContent);
        Assert.Equal(note, cut.Find("[data-chart=chart-loss] .chart-note").TextContent);
        Assert.Empty(cut.FindAll("[data-chart=chart-train] .chart-note"));

        // The share is the engine's measurements as stored: five evaluations (steps 0, 25, 50, 75, 100).
        async Task<double> Sum(string key) => (await Api.GetAsync(_client, $"/api/runs/{runId}/metrics?key={key}&track=raw&maxPoints=0"))[0]
            .GetProperty("points").EnumerateArray().Sum(p => p.GetProperty("value").GetDouble());
        var (training, evaluation) = (await Sum(EmaLab.TrainingEngine.MetricKeys.TrainingSeconds), await Sum(EmaLab.TrainingEngine.MetricKeys.EvaluationSeconds));
        var split = cut.Find("[data-testid=time-split]").TextContent;
        Assert.Contains($"Evaluation took {(evaluation / (training + evaluation)).ToString("P0", System.Globalization.CultureInfo.InvariantCulture)} of the run's time", split);
        Assert.Contains("in 5 evaluations of 3 tracks", split);

        // Without a subset the charts carry no note.
        var whole = await Api.CreateAsync(_client, Api.DigitsRun(steps: 20, evalInterval: 10));
        await Api.WaitForFinishAsync(_client, whole.Id());
        var plain = Render<RunDetail>(p => p.Add(d => d.Id, whole.Id()));
        Assert.Empty(plain.FindAll(".chart-note"));
    }

    [Fact]
    public async Task Run_detail_shows_what_a_low_precision_shadow_loses_against_its_float32_twin()
    {
        UseAppServices();
        var body = Api.DigitsRun(steps: 60, evalInterval: 30);
        body["ema"]!["tracks"] = new System.Text.Json.Nodes.JsonArray(
            new System.Text.Json.Nodes.JsonObject { ["decay"] = 0.99 },
            new System.Text.Json.Nodes.JsonObject { ["decay"] = 0.99, ["dtype"] = "bfloat16" },
            new System.Text.Json.Nodes.JsonObject { ["decay"] = 0.9, ["dtype"] = "float16" });
        var (runId, cut) = await FinishedRunPageAsync(body);
        var gaps = (await Api.GetAsync(_client, $"/api/runs/{runId}/metrics?key=weights/float32_gap"))[0];
        Assert.Equal("ema-0.99-bf16", gaps.GetProperty("track").GetString());
        var last = gaps.GetProperty("points").EnumerateArray().Last().GetProperty("value").GetDouble();
        Assert.True(last > 0);
        var bf16 = cut.Find("[data-testid=precision] tr[data-track='ema-0.99-bf16']");
        Assert.Contains("ema-0.99", bf16.Children[1].TextContent);
        Assert.Equal(last.ToString("G3", System.Globalization.CultureInfo.InvariantCulture), bf16.QuerySelector(".gap")!.TextContent);
        Assert.EndsWith(" pt", bf16.QuerySelector(".delta")!.TextContent);
        Assert.Contains("No float32 track with the same rule", cut.Find("[data-testid=precision] tr[data-track='ema-0.9-fp16']").TextContent);
        Assert.Equal(["ema-0.99-bf16"], cut.FindComponents<MetricChart>().Single(c => c.Instance.Id == "chart-precision").Instance.TraceNames);
        // The bfloat16 shadow is drawn dashed in its float32 twin's colour; the unpaired float16 one has its own.
        var lines = cut.FindComponents<MetricChart>().Single(c => c.Instance.Id == "chart-accuracy").Instance.Series.ToDictionary(s => s.Name);
        Assert.Equal((lines["ema-0.99"].Color, "dash"), (lines["ema-0.99-bf16"].Color, lines["ema-0.99-bf16"].Dash));
        Assert.Null(lines["ema-0.99"].Dash);
        Assert.NotEqual(lines["ema-0.99"].Color, lines["ema-0.9-fp16"].Color);
    }

    [Fact]
    public async Task Compare_puts_a_client_run_beside_an_engine_run_each_on_its_own_accuracy_key()
    {
        UseAppServices();
        var engine = await Api.CreateAsync(_client, Api.DigitsRun(steps: 20, evalInterval: 10));
        await Api.WaitForFinishAsync(_client, engine.Id());
        async Task<System.Text.Json.JsonElement> Mlflow(string path, string body)
        {
            var response = await _client.PostAsync("/api/2.0/mlflow/" + path, Api.JsonBody(body));
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            return System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        }
        var uuid = (await Mlflow("runs/create", """{"tags": [{"key": "emalab.track_suffixes", "value": "{\"_ema\": \"ema-0.999\"}"}]}"""))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        await Mlflow("runs/log-batch", $$"""{"run_id": "{{uuid}}", "metrics": [{"key": "val_acc", "value": 0.8, "timestamp": 1, "step": 10}, {"key": "val_acc_ema", "value": 0.85, "timestamp": 1, "step": 10}]}""");
        var client = (await Api.GetAsync(_client, "/api/runs?pageSize=100")).GetProperty("items").EnumerateArray().Single(r => r.GetProperty("trackingId").GetString() == uuid).Id();

        Services.GetRequiredService<Microsoft.AspNetCore.Components.NavigationManager>().NavigateTo($"compare?runs={engine.Id()},{client}");
        var cut = Render<Compare>();
        var chart = cut.FindComponents<MetricChart>().Single(c => c.Instance.Id == "chart-compare").Instance;
        Assert.Equal([$"#{engine.Id()} raw", $"#{engine.Id()} ema-0.9", $"#{engine.Id()} ema-0.99", $"#{client} raw", $"#{client} ema-0.999"], chart.TraceNames);
        Assert.Equal("accuracy (eval/accuracy, val_acc)", chart.Title);
        Assert.Contains("85.00 %", cut.Find("[data-testid=compare-table]").TextContent);
    }

    [Fact]
    public void Run_detail_of_an_unknown_run_says_so()
    {
        UseAppServices();
        var cut = Render<RunDetail>(p => p.Add(d => d.Id, 987654));
        Assert.Contains("This run does not exist", cut.Markup);
    }
}
