namespace EmaLab.Dashboard.Data;

/// <summary>A point of a series; <see cref="WallTimeMs"/> (Unix ms when it was logged) is 0 where a point has no time (derived series).</summary>
public readonly record struct MetricValue(long Step, double Value)
{
    public long WallTimeMs { get; init; }
}

public sealed record MetricSeries(string Track, string Key, int TotalPoints, bool Downsampled, IReadOnlyList<MetricValue> Points);

/// <summary>A series as a chart draws it: the line, and where it was thinned, the band of what each point stands for.</summary>
public sealed record SeriesEnvelope(IReadOnlyList<MetricValue> Line, IReadOnlyList<MetricValue>? Low, IReadOnlyList<MetricValue>? High);

public sealed record SeriesInfo(string Track, string Key, int Points, long LastStep, double LastValue);

/// <summary>Best and final value of one track for one metric.</summary>
public sealed record TrackSummary(long RunId, string Track, double Best, long BestStep, double Final, long FinalStep);

/// <summary>
/// <b>Where a chart reads a metric.</b> Reads go to the <see cref="MetricStore"/> (its key (run, key, track, step)
/// serves every query in step order), and long series are downsampled here so a browser never receives more than
/// it can draw.
/// </summary>
public sealed class MetricQueries(MetricStore store, MetricVersions versions)
{
    public const int DefaultMaxPoints = 2000;
    const int CachedSeries = 256;

    /// <summary>
    /// The last read of each series with the run's committed version at the time: while a run trains, many
    /// pollers and pages asking for the same series between two writer flushes cost one read.
    /// </summary>
    readonly System.Collections.Concurrent.ConcurrentDictionary<(long Run, string Track, string Key, int MaxPoints), (long Version, MetricSeries Series)> _cache = new();

    /// <summary>Which (track, key) series a run has, with their last values.</summary>
    public List<SeriesInfo> ListSeries(long runId) => store.ListSeries(runId);

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
        var points = store.ReadPoints(runId, track, key);
        var total = points.Count;
        if (maxPoints <= 0 || total <= maxPoints) return new MetricSeries(track, key, total, false, points);
        return new MetricSeries(track, key, total, true, Downsampling.MinMax(points, maxPoints));
    }

    /// <summary>
    /// One series for a chart: every point when it has at most <paramref name="maxPoints"/>, else one point per bucket of
    /// consecutive points (their mean, at the bucket's last step) with the bucket's min and max as a band, so a long,
    /// noisy series keeps its spread in a few thousand points.
    /// </summary>
    public SeriesEnvelope ReadEnvelope(long runId, string track, string key, int maxPoints = DefaultMaxPoints)
    {
        var points = Read(runId, track, key, maxPoints: 0).Points;
        if (points.Count <= maxPoints) return new SeriesEnvelope(points, null, null);
        var buckets = Downsampling.Buckets(points, maxPoints);
        return new SeriesEnvelope(buckets.Select(b => b.Mean).ToList(), buckets.Select(b => b.Mean with { Value = b.Min }).ToList(), buckets.Select(b => b.Mean with { Value = b.Max }).ToList());
    }

    /// <summary>Best (highest, or lowest when <paramref name="lowerIsBetter"/>) and final value per run and track of one metric.</summary>
    public List<TrackSummary> Summaries(IReadOnlyCollection<long> runIds, string key, bool lowerIsBetter = false) =>
        runIds.Count == 0 ? [] : store.Summaries(runIds, key, lowerIsBetter);

    /// <summary>Every row of a run as CSV (track, key, step, value, wall time), streamed.</summary>
    public async Task WriteCsvAsync(long runId, Stream output, CancellationToken cancellationToken)
    {
        await using var writer = new StreamWriter(output, leaveOpen: true);
        await writer.WriteLineAsync("track,key,step,value,wall_time_ms");
        foreach (var row in store.Rows(runId))
        {
            cancellationToken.ThrowIfCancellationRequested();
            await writer.WriteLineAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{row.Track},{row.Key},{row.Step},{row.Value:R},{row.WallTimeMs}"));
        }
    }
}

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

/// <summary>
/// TensorBoard's smoothing: an exponential moving average of a series with a weight in [0, 1), debiased by
/// 1 − weight^n so that the first points are not pulled towards zero.
/// </summary>
public static class Smoothing
{
    /// <summary>The running state: history and live points go through the same one, point by point.</summary>
    public sealed class State(double weight)
    {
        double _biased;
        double _correction = 1;

        public MetricValue Next(MetricValue point)
        {
            _biased = _biased * weight + (1 - weight) * point.Value;
            _correction *= weight;
            return point with { Value = _biased / (1 - _correction) };
        }
    }
}

public static class Downsampling
{
    /// <summary>One bucket of consecutive points: their mean (at the bucket's last step and time), lowest and highest finite value.</summary>
    public readonly record struct Bucket(MetricValue Mean, double Min, double Max);

    /// <summary>
    /// <paramref name="count"/> buckets of consecutive points, as equal in size as the points allow; non-finite values
    /// (a diverged loss) are left out of a bucket's mean and band (a bucket of only such values is a gap: NaN).
    /// </summary>
    public static List<Bucket> Buckets(IReadOnlyList<MetricValue> points, int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var result = new List<Bucket>(count);
        for (var b = 0; b < count; b++)
        {
            var start = (int)((long)points.Count * b / count);
            var end = (int)((long)points.Count * (b + 1) / count);
            if (start >= end) continue;
            double sum = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
            var finite = 0;
            for (var i = start; i < end; i++)
            {
                var v = points[i].Value;
                if (!double.IsFinite(v)) continue;
                sum += v;
                finite++;
                min = Math.Min(min, v);
                max = Math.Max(max, v);
            }
            var last = points[end - 1];
            result.Add(finite == 0
                ? new Bucket(last with { Value = double.NaN }, double.NaN, double.NaN)
                : new Bucket(last with { Value = sum / finite }, min, max));
        }
        return result;
    }

    /// <summary>
    /// Min/max buckets: the series is cut into maxPoints/2 buckets of consecutive points and each keeps its
    /// lowest and highest point (in step order), so spikes and dips survive; the first and last points always do.
    /// </summary>
    public static List<MetricValue> MinMax(IReadOnlyList<MetricValue> points, int maxPoints)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPoints, 4);
        if (points.Count <= maxPoints) return points.ToList();
        var buckets = (maxPoints - 2) / 2;
        var result = new List<MetricValue>(maxPoints) { points[0] };
        var inner = points.Count - 2;
        for (var b = 0; b < buckets; b++)
        {
            var start = 1 + (int)((long)inner * b / buckets);
            var end = 1 + (int)((long)inner * (b + 1) / buckets);
            if (start >= end) continue;
            int min = start, max = start;
            for (var i = start + 1; i < end; i++)
            {
                if (points[i].Value < points[min].Value) min = i;
                if (points[i].Value > points[max].Value) max = i;
            }
            if (min == max) result.Add(points[min]);
            else
            {
                result.Add(points[Math.Min(min, max)]);
                result.Add(points[Math.Max(min, max)]);
            }
        }
        result.Add(points[^1]);
        return result;
    }
}
