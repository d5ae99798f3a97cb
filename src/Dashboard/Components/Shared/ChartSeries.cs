using EmaLab.Dashboard.Runs;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>One line on a chart.</summary>
public sealed record ChartSeries(string Name, string Color, IReadOnlyList<MetricValue> Points, double Width = 2, double Opacity = 1, string? Dash = null, bool ShowLegend = true);
