using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Tests;

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
