using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>
/// Where a metric chart's y axis looks unless "full range" is asked for: at the tracks where they are compared. That is
/// the last half of the steps shown — past a schedule that starts late (SWA holding the initial weights until its start,
/// a warm-up that lags) and past the first steps of a model learning from scratch, both of which would otherwise stretch
/// the axis until a 0.2-point difference is one pixel. When three or more series are shown, one whose median there lies
/// far outside the others' range (more than ten times their spread: a diverged track, a schedule that never started) is
/// left out, so it cannot flatten the rest; it stays drawn, off the focused range. The margin is 8 % of the range.
/// </summary>
public static class ChartFocus
{
    /// <summary>The focus starts this far into the steps shown.</summary>
    public const double From = 0.5;

    /// <summary>How many times the other series' spread a series must be away from all of them to be left out.</summary>
    public const double OutlierDistance = 10;

    public const double Margin = 0.08;

    /// <summary>The focused range of these series (each a list of points by step), or null when there is nothing to focus on.</summary>
    public static (double Low, double High)? Range(IReadOnlyList<IReadOnlyList<MetricValue>> series)
    {
        var finite = series.Select(s => s.Where(p => double.IsFinite(p.Value)).ToList()).Where(s => s.Count > 0).ToList();
        if (finite.Sum(s => s.Count) < 3) return null;
        var first = finite.Min(s => s.Min(p => p.Step));
        var last = finite.Max(s => s.Max(p => p.Step));
        var from = first + (long)Math.Ceiling((last - first) * From);
        var bands = finite.Select(s => s.Where(p => p.Step >= from).Select(p => p.Value).Order().ToList()).Where(v => v.Count > 0)
            .Select(v => new Band(v[0], v[^1], v[v.Count / 2])).ToList();
        if (bands.Count == 0) return null;

        var kept = bands;
        if (bands.Count >= 3)
        {
            var inliers = bands.Where((band, i) => !FarFromTheOthers(band, bands.Where((_, j) => j != i).ToList())).ToList();
            // Outliers are the exception: when half the series would go, none does.
            if (inliers.Count > bands.Count / 2) kept = inliers;
        }
        double low = kept.Min(b => b.Low), high = kept.Max(b => b.High);
        var pad = Math.Max((high - low) * Margin, Math.Max(Math.Abs(high), 1e-12) * 1e-4);
        return (low - pad, high + pad);
    }

    /// <summary>A series over the focus window: its lowest, highest and median value.</summary>
    readonly record struct Band(double Low, double High, double Median);

    /// <summary>
    /// Whether a series' median lies far outside the others' range: by its median, so a track that diverges partway
    /// (normal, then huge) counts as the huge values it mostly is, and one spike does not.
    /// </summary>
    static bool FarFromTheOthers(Band band, IReadOnlyList<Band> others)
    {
        double low = others.Min(b => b.Low), high = others.Max(b => b.High);
        var spread = Math.Max(high - low, Math.Max(Math.Abs(high), 1e-12) * 1e-6);
        var distance = Math.Max(low - band.Median, band.Median - high);
        return distance > OutlierDistance * spread;
    }
}
