using EmaLab.TrainingEngine;
namespace EmaLab.Dashboard.Data;

/// <summary>A point of a series; <see cref="WallTimeMs"/> (Unix ms when it was logged) is 0 where a point has no time (derived series).</summary>
public readonly record struct MetricValue(long Step, double Value)
{
    public long WallTimeMs { get; init; }
}

public sealed record MetricSeries(string Track, string Key, int TotalPoints, bool Downsampled, IReadOnlyList<MetricValue> Points);

public sealed record SeriesInfo(string Track, string Key, int Points, long LastStep, double LastValue);

/// <summary>Where an engine run's time went: seconds in training steps and in its evaluations (every track each time).</summary>
public sealed record RunTimeSplit(double TrainingSeconds, double EvaluationSeconds, int Evaluations)
{
    public double EvaluationShare => EvaluationSeconds / Math.Max(TrainingSeconds + EvaluationSeconds, 1e-9);
}

/// <summary>Best and final value of one track for one metric.</summary>
public sealed record TrackSummary(long RunId, string Track, double Best, long BestStep, double Final, long FinalStep);

/// <summary>
/// <b>Where a chart reads a metric.</b> Reads go to the <see cref="EmaLabDatabase"/> (its key (run, key, track, step)
/// serves every query in step order), and long series are downsampled here so a browser never receives more than
/// it can draw.
/// </summary>
public sealed class MetricQueries(EmaLabDatabase database, MetricVersions versions)
{
    public const int DefaultMaxPoints = 2000;
    const int CachedSeries = 256;

    /// <summary>
    /// The last read of each series with the run's committed version at the time: while a run trains, many
    /// pollers and pages asking for the same series between two writer flushes cost one read.
    /// </summary>
    readonly System.Collections.Concurrent.ConcurrentDictionary<(long Run, string Track, string Key, int MaxPoints),
        (long Version, MetricSeries Series)> _cache = new();

    /// <summary>Which (track, key) series a run has, with their last values.</summary>
    public List<SeriesInfo> ListSeries(long runId) => database.ListSeries(runId);

    /// <summary>One series in step order; <paramref name="maxPoints"/> ≤ 0 means full resolution.</summary>
    public MetricSeries Read(long runId, string track, string key, int maxPoints = DefaultMaxPoints)
    {
        var version = versions.Of(runId);
        var cacheKey = (runId, track, key, maxPoints);
        if (_cache.TryGetValue(cacheKey, out var cached) && cached.Version == version) return cached.Series;
        var series = ReadUncached(runId, track, key, maxPoints);
        if (_cache.Count >= CachedSeries) _cache.Clear();
        _cache[cacheKey] = (version, series);
        return series;
    }

    MetricSeries ReadUncached(long runId, string track, string key, int maxPoints)
    {
        var points = database.ReadPoints(runId, track, key);
        var total = points.Count;
        if (maxPoints <= 0 || total <= maxPoints) return new MetricSeries(track, key, total, false, points);
        return new MetricSeries(track, key, total, true, Downsampling.MinMax(points, maxPoints));
    }

    /// <summary>
    /// One series for a chart: every point when they fit in <paramref name="maxPoints"/>, else the lowest and highest of
    /// each bucket of consecutive points (<see cref="Downsampling.MinMax"/>: spikes and the spread survive); with a
    /// <paramref name="window"/> (a zoomed chart), the points of those steps, one more each side, by the same rule.
    /// </summary>
    public IReadOnlyList<MetricValue> ForChart(long runId, string track, string key, int maxPoints = DefaultMaxPoints, (long From, long To)? window = null)
    {
        var points = Read(runId, track, key, maxPoints: 0).Points;
        if (window is { } w) points = Downsampling.Window(points, w.From, w.To);
        return points.Count <= maxPoints ? points : Downsampling.MinMax(points, maxPoints);
    }

    /// <summary>The engine's time split of a run, summed over its evaluations; null before its first (or for a client's run).</summary>
    public RunTimeSplit? TimeSplit(long runId)
    {
        var evaluations = Read(runId, MetricKeys.RawTrack, MetricKeys.EvaluationSeconds, maxPoints: 0).Points;
        if (evaluations.Count == 0) return null;
        var training = Read(runId, MetricKeys.RawTrack, MetricKeys.TrainingSeconds, maxPoints: 0).Points;
        return new RunTimeSplit(training.Sum(p => p.Value), evaluations.Sum(p => p.Value), evaluations.Count);
    }

    /// <summary>Best (highest, or lowest when <paramref name="lowerIsBetter"/>) and final value per run and track of one metric.</summary>
    public List<TrackSummary> Summaries(IReadOnlyCollection<long> runIds, string key, bool lowerIsBetter = false) =>
        runIds.Count == 0 ? [] : database.Summaries(runIds, key, lowerIsBetter);

    /// <summary>Every row of a run as CSV (track, key, step, value, wall time), streamed.</summary>
    public async Task WriteCsvAsync(long runId, Stream output, CancellationToken cancellationToken)
    {
        await using var writer = new StreamWriter(output, leaveOpen: true);
        await writer.WriteLineAsync("track,key,step,value,wall_time_ms");
        foreach (var row in database.Rows(runId))
        {
            cancellationToken.ThrowIfCancellationRequested();
            await writer.WriteLineAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{row.Track},{row.Key},{row.Step},{row.Value:R},{row.WallTimeMs}"));
        }
    }
}

