namespace EmaLab.Dashboard.Data;

/// <summary>
/// A counter per run that the metric writer advances whenever it commits rows of the run (or they are
/// deleted); readers compare it to know whether what they read before is still current.
/// </summary>
public sealed class MetricVersions
{
    readonly System.Collections.Concurrent.ConcurrentDictionary<long, long> _versions = new();

    public long Of(long runId) => _versions.TryGetValue(runId, out var version) ? version : 0;

    public void Advance(long runId) => _versions.AddOrUpdate(runId, 1, (_, v) => v + 1);
}
