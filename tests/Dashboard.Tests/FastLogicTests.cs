using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Tests;

public class DownsamplingTests
{
    [Fact]
    public void Min_max_buckets_keep_spikes_ends_and_order()
    {
        var points = Enumerable.Range(0, 100_000).Select(i => new MetricValue(i, Math.Sin(i / 1000.0))).ToList();
        points[31_337] = new MetricValue(31_337, 50);    // a spike
        points[77_777] = new MetricValue(77_777, -40);   // a dip
        var result = Downsampling.MinMax(points, 2000);

        Assert.InRange(result.Count, 1000, 2000);
        Assert.Equal(points[0], result[0]);
        Assert.Equal(points[^1], result[^1]);
        Assert.Contains(points[31_337], result);
        Assert.Contains(points[77_777], result);
        Assert.Equal(result.Select(p => p.Step).Order(), result.Select(p => p.Step));
        Assert.Equal(result.Count, result.Select(p => p.Step).Distinct().Count());
    }

    [Fact]
    public void Short_series_are_returned_whole() =>
        Assert.Equal(10, Downsampling.MinMax(Enumerable.Range(0, 10).Select(i => new MetricValue(i, i)).ToList(), 100).Count);
}

/// <summary>
/// The fast tier: dashboard logic that needs no server and no training (request parsing, live events,
/// chart series, colours). Runs in milliseconds.
/// </summary>
public class RequestParsingTests
{
    [Fact]
    public void A_body_is_utf8_json_and_nulls_and_unknown_fields_are_named()
    {
        Assert.Equal("$", Assert.Throws<RequestValidationException>(() => RequestJson.Parse([0x7b, 0xff, 0x7d])).Field);
        Assert.Equal("$", Assert.Throws<RequestValidationException>(() => RequestJson.Parse("{\"a\":"u8)).Field);
        var body = System.Text.Json.Nodes.JsonNode.Parse("""{"dataset":null,"steps":10}""");
        Assert.Equal("dataset", Assert.Throws<RequestValidationException>(() => RunRequest.Parse(body)).Field);
        Assert.Equal("lr", Assert.Throws<RequestValidationException>(() => RunRequest.Parse(System.Text.Json.Nodes.JsonNode.Parse("""{"lr":0.1}"""))).Field);
        Assert.Equal("sigma", Assert.Throws<RequestValidationException>(() => RequestJson.Deserialize<PostHocRequest>(System.Text.Json.Nodes.JsonNode.Parse("""{"sigma":0.1}"""))).Field);
    }

    [Fact]
    public void A_clone_keeps_its_name_within_the_limit()
    {
        var original = new EmaLab.Dashboard.Data.Run { Name = new string('n', RunRequest.MaxNameLength), Uuid = EmaLab.Dashboard.Data.Run.NewUuid(), SpecJson = new EmaLab.TrainingEngine.Training.RunSpec { Steps = 5 }.ToJson() };
        var clone = RunRequest.CloneOf(original, null);
        Assert.Equal(RunRequest.MaxNameLength, clone.Name.Length);
        Assert.EndsWith(" (clone)", clone.Name);
    }
}

public class LiveEventTests
{
    [Fact]
    public async Task Events_reach_the_subscribers_of_their_run_and_streams_are_capped()
    {
        var hub = new RunEventHub();
        using var one = hub.Subscribe(1);
        using var all = hub.Subscribe();
        hub.Publish(new RunEvent(RunEventType.Progress, 2) { Step = 5 });
        hub.Publish(new RunEvent(RunEventType.Progress, 1) { Step = 7 });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Equal(7, (await one.Reader.ReadAsync(timeout.Token)).Step);
        var first5 = (await all.Reader.ReadAsync(timeout.Token)).Step;
        var then7 = (await all.Reader.ReadAsync(timeout.Token)).Step;
        Assert.Equal((5L, 7L), (first5!.Value, then7!.Value));

        var first = hub.TrySubscribeStream(1, maxPerRun: 1, maxTotal: 2);
        Assert.NotNull(first);
        Assert.Null(hub.TrySubscribeStream(1, maxPerRun: 1, maxTotal: 2));
        var other = hub.TrySubscribeStream(2, maxPerRun: 1, maxTotal: 2);
        Assert.NotNull(other);
        Assert.Null(hub.TrySubscribeStream(3, maxPerRun: 1, maxTotal: 2));
        first!.Dispose();
        first.Dispose(); // twice: released once
        using var again = hub.TrySubscribeStream(1, maxPerRun: 1, maxTotal: 2);
        Assert.NotNull(again);
        other!.Dispose();
    }

    [Fact]
    public void Event_kinds_have_their_wire_names()
    {
        Assert.Equal(["metrics", "progress", "status", "log", "posthoc", "sweep", "deleted"], Enum.GetValues<RunEventType>().Select(WireNames.Of));
        var options = new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web) { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
        var json = System.Text.Json.JsonSerializer.Serialize(new RunEvent(RunEventType.PostHoc, 3) { Points = [new MetricRow("raw", "train/loss", 1, double.NaN)] }, options);
        Assert.Contains("\"type\":\"posthoc\"", json);
        Assert.Equal(RunEventType.PostHoc, System.Text.Json.JsonSerializer.Deserialize<RunEvent>(json, options)!.Type);
        // The same names in the database and the API: read back whatever their case.
        Assert.Equal(("completed", RunStatus.Completed, RunOrigin.Client), (RunStatus.Completed.ToApi(), WireNames.Parse<RunStatus>("COMPLETED"), WireNames.Parse<RunOrigin>("client")));
        Assert.Contains("\"value\":\"NaN\"", json);
    }
}

public class RunSeriesTests
{
    [Fact]
    public void History_and_live_points_follow_one_rule_so_a_reload_draws_the_same_curve()
    {
        var tracks = new[] { "raw", "ema-0.9" };
        var points = Enumerable.Range(1, 10_000).Select(i => new MetricRow("raw", "train/loss", i, 1.0 / i)).ToList();

        // All at once (a reload) and in live batches give the same train-loss points.
        var whole = new EmaLab.Dashboard.Components.Shared.RunSeries(tracks, 10_000, 0.6, EmaLab.Dashboard.Metrics.MetricRoles.Engine).Apply(points);
        var live = new EmaLab.Dashboard.Components.Shared.RunSeries(tracks, 10_000, 0.6, EmaLab.Dashboard.Metrics.MetricRoles.Engine);
        var collected = new Dictionary<string, List<MetricValue>>();
        foreach (var chunk in points.Chunk(37))
            foreach (var (name, list) in live.Apply(chunk).Train)
                (collected.TryGetValue(name, out var into) ? into : collected[name] = []).AddRange(list);
        Assert.Equal(whole.Train["raw (smoothed)"], collected["raw (smoothed)"]);
        Assert.Equal(whole.Train["raw (band high)"], collected["raw (band high)"]);
        Assert.Equal(5, live.Stride); // 10,000 steps → about 2,000 points
        Assert.Equal(2001, whole.Train["raw (band low)"].Count); // step 1 and every 5th
        // Each kept point's band spans the raw values since the one before: steps 6 … 10 for step 10.
        var atTen = whole.Train["raw (band low)"].FindIndex(p => p.Step == 10);
        Assert.Equal((1.0 / 10, 1.0 / 6), (whole.Train["raw (band low)"][atTen].Value, whole.Train["raw (band high)"][atTen].Value));
        Assert.False(whole.Train.ContainsKey("raw")); // thinned: the band stands for the raw points
    }

    [Fact]
    public void A_client_runs_accuracy_and_losses_are_found_among_its_keys_or_named_by_its_tag()
    {
        var run = new EmaLab.Dashboard.Data.Run { Name = "script", Uuid = EmaLab.Dashboard.Data.Run.NewUuid(), Origin = EmaLab.Dashboard.Data.RunOrigin.Client };
        (string, string)[] series =
        [
            ("raw", "val_acc"), ("ema-0.999", "val_acc"), ("raw", "top5_acc"), ("raw", "loss"), ("raw", "val_loss"), ("ema-0.999", "val_loss"), ("raw", "lr"),
        ];
        Assert.Equal(new EmaLab.Dashboard.Metrics.MetricRoles("val_acc", "val_loss", "loss"), EmaLab.Dashboard.Metrics.MetricRoles.For(run, null, series));
        // The tag names them; a part it leaves out is still inferred.
        Assert.Equal(new EmaLab.Dashboard.Metrics.MetricRoles("top5_acc", "val_loss", "loss"), EmaLab.Dashboard.Metrics.MetricRoles.For(run, """{"accuracy": "top5_acc"}""", series));
        Assert.NotNull(EmaLab.Dashboard.Metrics.MetricRoles.Problem("""{"acc": "x"}"""));
        // The engine's runs always use its own keys.
        Assert.Same(EmaLab.Dashboard.Metrics.MetricRoles.Engine, EmaLab.Dashboard.Metrics.MetricRoles.For(new EmaLab.Dashboard.Data.Run { Name = "e", Uuid = "x" }, null, series));
    }

    [Fact]
    public void The_gap_is_ema_minus_raw_at_each_evaluation_whichever_arrives_first()
    {
        var series = new EmaLab.Dashboard.Components.Shared.RunSeries(["raw", "ema-0.9", "ema-0.99"], 100, 0.6, EmaLab.Dashboard.Metrics.MetricRoles.Engine);
        var batch = series.Apply([new("ema-0.9", "eval/accuracy", 50, 0.8), new("raw", "eval/accuracy", 50, 0.75), new("ema-0.99", "eval/accuracy", 50, 0.7)]);
        Assert.Equal(0.05, batch.Gap["ema-0.9"].Single().Value, 12);
        Assert.Equal(-0.05, batch.Gap["ema-0.99"].Single().Value, 12);
        // Post-hoc points belong to their own panel.
        Assert.False(series.Apply([new("posthoc-0.1", "eval/accuracy", 100, 0.9)]).Any);
    }
}

public class TrackRankingTests
{
    static TrackSummary S(string track, double best, double final) => new(1, track, best, 10, final, 20);

    [Fact]
    public void Tracks_are_ranked_by_how_much_their_best_beats_raws_then_their_final()
    {
        var ranked = TrackRanking.Rank(["raw", "ema-0.99", "swa", "ema-0.999", "ema-0.9"],
            [S("raw", 0.9815, 0.980), S("ema-0.99", 0.9845, 0.983), S("swa", 0.9830, 0.9829), S("ema-0.999", 0.9700, 0.9700), S("ema-0.9", 0.9830, 0.9831)], lowerIsBetter: false);
        Assert.Equal(["ema-0.99", "ema-0.9", "swa", "ema-0.999"], ranked.Select(e => e.Track));
        Assert.Equal(0.003, ranked[0].BestGain, 12);
        Assert.Equal(-0.0115, ranked[^1].BestGain, 12);
    }

    [Fact]
    public void For_a_loss_lower_is_better_and_a_track_without_values_or_a_run_without_raw_is_not_ranked()
    {
        var ranked = TrackRanking.Rank(["raw", "a", "b", "c"], [S("raw", 0.5, 0.6), S("a", 0.4, 0.7), S("b", 0.55, 0.5)], lowerIsBetter: true);
        Assert.Equal(["a", "b"], ranked.Select(e => e.Track));
        Assert.Equal(0.1, ranked[0].BestGain, 12);
        Assert.Equal(-0.1, ranked[0].FinalGain, 12);
        Assert.Empty(TrackRanking.Rank(["raw", "a"], [S("a", 0.4, 0.7)], lowerIsBetter: true));
    }
}

public class LoggedModelTrackTests
{
    static readonly string[] OneEma = ["raw", "ema-0.999"];
    static readonly string[] TwoEmas = ["raw", "ema-0.99", "ema-0.999", "swa"];

    [Theory]
    // The tag names the track; a name or tag value that is a track; "ema"/"swa" when the run has one such track.
    [InlineData("model", "emalab.track=ema-0.99", "two", "ema-0.99")]
    [InlineData("ema-0.999", "", "two", "ema-0.999")]
    [InlineData("weights", "kind=ema-0.99", "two", "ema-0.99")]
    [InlineData("ema", "", "one", "ema-0.999")]
    [InlineData("EMA_model", "", "one", "ema-0.999")]
    [InlineData("swa", "", "two", "swa")]
    [InlineData("ema", "ema_decay=0.99", "two", "ema-0.99")]
    // Nothing says which: no track rather than a guess.
    [InlineData("ema", "", "two", null)]
    [InlineData("model", "", "one", null)]
    [InlineData("emanuel", "", "one", null)]
    [InlineData("model", "emalab.track=ema-0.5", "one", null)]
    public void A_logged_model_goes_with_the_track_its_name_or_tags_say(string name, string tag, string tracks, string? expected)
    {
        var tags = tag.Length == 0 ? new Dictionary<string, string>() : new Dictionary<string, string> { [tag.Split('=')[0]] = tag.Split('=')[1] };
        Assert.Equal(expected, EmaLab.Dashboard.Tracking.LoggedModelService.TrackOf(name, tags, tracks == "one" ? OneEma : TwoEmas));
    }
}

public class ChartFocusTests
{
    /// <summary>An accuracy curve over 1,500 steps (every 50) that learns from 0.1 and settles near <paramref name="final"/>.</summary>
    static List<MetricValue> Track(double final, Func<long, double>? early = null) =>
        [.. Enumerable.Range(0, 31).Select(i => (long)i * 50).Select(step => new MetricValue(step, early?.Invoke(step) ?? final - (final - 0.1) * Math.Exp(-step / 60.0)))];

    [Fact]
    public void Six_tracks_with_an_swa_start_and_a_lagging_warm_up_are_focused_where_they_are_compared()
    {
        // Raw 98.15 %, AveragedModel 98.45 %, SWA from step 500 (the initial weights' 0.1 until then), timm's warm-up lagging.
        List<MetricValue> swa = [.. Track(0.9830).Select(p => p.Step < 500 ? p with { Value = 0.1 } : p)];
        List<MetricValue> timm = [.. Track(0.9840).Select(p => p with { Value = p.Step < 600 ? 0.1 + p.Step / 600.0 * 0.8 : p.Value })];
        var series = new List<IReadOnlyList<MetricValue>> { Track(0.9815), Track(0.9845), Track(0.9838), swa, timm, Track(0.9842) };
        var (low, high) = ChartFocus.Range(series)!.Value;
        // The last half (steps 750 …) holds every track within a few tenths of a point: 0.2 points are a visible part of it.
        Assert.InRange(low, 0.975, 0.9815);
        Assert.InRange(high, 0.9845, 0.99);
        Assert.True(0.002 / (high - low) > 0.1, $"0.2 points are {0.002 / (high - low):P0} of the axis");
    }

    [Fact]
    public void A_diverged_track_is_left_out_of_the_focus_when_three_or_more_are_shown_but_two_tracks_are_both_kept()
    {
        var diverged = Track(0.98).Select(p => p with { Value = p.Step >= 700 ? 0.1 : p.Value }).ToList();
        var (low, high) = ChartFocus.Range([Track(0.981), Track(0.984), diverged])!.Value;
        Assert.InRange(low, 0.97, 0.981);
        Assert.InRange(high, 0.984, 0.99);
        // Two series are compared with each other: neither is an outlier of the other.
        var (pairLow, _) = ChartFocus.Range([Track(0.981), diverged])!.Value;
        Assert.True(pairLow < 0.1);
        // A loss that blows up in one of three tracks (infinite values are not drawn, huge ones are left out).
        var losses = new List<IReadOnlyList<MetricValue>>
        {
            Track(0.05, s => 2.0 * Math.Exp(-s / 100.0) + 0.05), Track(0.045, s => 2.0 * Math.Exp(-s / 100.0) + 0.045),
            Track(0, s => s < 800 ? 2.0 * Math.Exp(-s / 100.0) + 0.05 : s < 1000 ? 1e6 : double.PositiveInfinity),
        };
        Assert.True(ChartFocus.Range(losses)!.Value.High < 0.1);
    }

    [Fact]
    public void The_ema_minus_raw_gap_is_focused_past_swas_start()
    {
        // SWA − raw is −0.85 until step 500, then about +0.15 points; an EMA's gap +0.3 points throughout the last half.
        List<MetricValue> swaGap = [.. Enumerable.Range(0, 31).Select(i => new MetricValue(i * 50L, i * 50 < 500 ? -0.85 : 0.0015))];
        List<MetricValue> emaGap = [.. Enumerable.Range(0, 31).Select(i => new MetricValue(i * 50L, 0.003))];
        var (low, high) = ChartFocus.Range([swaGap, emaGap])!.Value;
        Assert.True(low > -0.01 && high < 0.01, $"({low}, {high})");
    }

    [Fact]
    public void Nothing_to_focus_on_is_no_range()
    {
        Assert.Null(ChartFocus.Range([]));
        Assert.Null(ChartFocus.Range([[new MetricValue(0, 0.5), new MetricValue(1, double.NaN)]]));
    }
}

public class ByteSizeTests
{
    [Theory]
    [InlineData(0, "0 B")]
    [InlineData(612, "612 B")]
    [InlineData(1023, "1023 B")]
    [InlineData(1024, "1.0 KiB")]
    [InlineData(3_500, "3.4 KiB")]
    [InlineData(62_000, "61 KiB")]
    [InlineData(1_258_291, "1.2 MiB")]
    [InlineData(5L << 30, "5.0 GiB")]
    public void A_size_reads_with_at_least_two_figures_and_a_small_file_is_never_zero(long bytes, string expected) =>
        Assert.Equal(expected, ByteSize.Format(bytes));
}
