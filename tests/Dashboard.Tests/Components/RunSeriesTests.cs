using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Tests;

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

    [Fact]
    public void A_live_evaluation_series_that_outgrows_what_the_chart_shows_asks_for_the_history_again()
    {
        var series = new EmaLab.Dashboard.Components.Shared.RunSeries(["raw", "ema-0.9"], 0, 0.6, EmaLab.Dashboard.Metrics.MetricRoles.Engine);
        var limit = 2 * EmaLab.Dashboard.Components.Shared.RunSeries.MaxPoints;
        var batch = series.Apply(Enumerable.Range(1, limit).SelectMany(i => new MetricRow[] { new("raw", "eval/accuracy", i, 0.5), new("ema-0.9", "eval/accuracy", i, 0.6) }));
        Assert.Equal(limit, batch.Accuracy["raw"].Count);
        Assert.Equal(limit, batch.Gap["ema-0.9"].Count);
        Assert.All(batch.Gap["ema-0.9"], p => Assert.Equal(0.1, p.Value, 12));
        Assert.False(series.Outgrown);
        series.Apply([new("raw", "eval/accuracy", limit + 1, 0.5)]);
        Assert.True(series.Outgrown); // the page reads it again, thinned for its new length
    }
}
