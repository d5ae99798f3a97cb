namespace EmaLab.Dashboard.Data;

/// <summary>
/// One metric value of a run, wherever it travels in the dashboard: a client's logged point on its way to the writer,
/// a committed point in a live event, a stored row in the CSV export. The run is the container's (the batch's, the event's).
/// </summary>
public readonly record struct MetricRow(string Track, string Key, long Step, double Value, long WallTimeMs = 0)
{
    /// <summary>The value on a chart's step axis (with its time, for the time axes).</summary>
    public MetricValue Point => new(Step, Value) { WallTimeMs = WallTimeMs };
}

/// <summary>Where a series stands: its last (step, time), as the table's key orders rows and <see cref="LatestMetric"/> keeps it.</summary>
public readonly record struct SeriesPosition(long Step, long WallTimeMs);
