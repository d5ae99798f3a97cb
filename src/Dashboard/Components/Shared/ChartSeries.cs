using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>One line (or set of markers) on a chart: y over steps, or over <see cref="X"/> when given (σ_rel on the post-hoc sweep).</summary>
public sealed record ChartSeries(string Name, string Color, IReadOnlyList<MetricValue> Points, double Width = 2, double Opacity = 1,
    string? Dash = null, bool ShowLegend = true)
{
    /// <summary>X values replacing the points' steps.</summary>
    public IReadOnlyList<double>? X { get; init; }
    public bool Markers { get; init; }
    public bool LinesToo { get; init; } = true;
    public double MarkerSize { get; init; } = 7;
    /// <summary>Fills the area between this line and the series drawn just before it (a band's upper edge over its lower edge).</summary>
    public string? FillToPrevious { get; init; }

    /// <summary>
    /// A band from <paramref name="lower"/> to <paramref name="upper"/> as Plotly draws one: an invisible lower edge, then the
    /// upper edge filled down to it. Both stay out of the legend (the mean line names the band).
    /// </summary>
    public static IEnumerable<ChartSeries> Band(string name, string color, IReadOnlyList<MetricValue> lower, IReadOnlyList<MetricValue> upper)
    {
        yield return BandEdge(BandLow(name), color, lower);
        yield return BandEdge(BandHigh(name), color, upper);
    }

    public static string BandLow(string name) => name + " (band low)";
    public static string BandHigh(string name) => name + " (band high)";

    /// <summary>One edge of a band by its name (<see cref="BandLow"/> or <see cref="BandHigh"/>; the high one fills down to the low).</summary>
    public static ChartSeries BandEdge(string edgeName, string color, IReadOnlyList<MetricValue> points) =>
        new(edgeName, color, points, Width: 0, ShowLegend: false)
        {
            FillToPrevious = edgeName.EndsWith(" (band high)", StringComparison.Ordinal) ? TrackColors.Translucent(color, 0.18) : null,
        };

    public static ChartSeries Xy(string name, string color, IReadOnlyList<(double X, double Y)> points, bool lines = true, double markerSize = 7) =>
        new(name, color, points.Select(p => new MetricValue(0, p.Y)).ToList())
        {
            X = points.Select(p => p.X).ToList(),
            Markers = true,
            LinesToo = lines,
            MarkerSize = markerSize,
        };
}
