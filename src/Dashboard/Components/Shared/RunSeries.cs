using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Training;
using EmaLab.TrainingEngine;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>
/// The run page's chart series (keys from <see cref="MetricRoles"/>), from the history and then from live points by the
/// same rules, so a reload draws what the live page drew. Every series is thinned to what a chart can show (about
/// <see cref="MaxPoints"/> points): train loss is smoothed over every point, then one point in <see cref="Stride"/> steps is
/// kept with the min–max band of those between; an evaluation series longer than that (a script that evaluates at every
/// step) keeps the lowest and highest point of each bucket of consecutive points (<see cref="Downsampling.MinMaxStream"/>),
/// as does the EMA − raw gap, which is computed here alone. With a <c>window</c> (a zoomed chart) the same rules apply to
/// the steps in it: every point once they fit. A page whose live run has outgrown its thinning reads the history again
/// (<see cref="Outgrown"/>), so it stays thin however long the run grows.
/// </summary>
public sealed class RunSeries(IReadOnlyList<string> tracks, long totalSteps, double smoothing, MetricRoles roles, (long From, long To)? window = null)
{
    /// <summary>Points of one series the browser is given at most (about: a min–max pair per pixel column of a wide chart).</summary>
    public const int MaxPoints = MetricQueries.DefaultMaxPoints;

    /// <summary>The tracks this series set draws (a point of another track means the page must reload).</summary>
    public IReadOnlyList<string> Tracks => tracks;

    public const string SmoothedTrainName = "raw (smoothed)";

    /// <summary>Train-loss points kept for the browser: about <see cref="MaxPoints"/> over the run (or the window).</summary>
    public long Stride { get; private set; } = StrideFor(window is { } w ? w.To - w.From : totalSteps);

    static long StrideFor(long steps) => Math.Max(1, (steps + MaxPoints - 1) / MaxPoints);

    readonly Data.Smoothing.State _smoother = new(smoothing);
    // The raw train losses since the last kept point: the band's edges at the next one.
    double _bucketLow = double.PositiveInfinity, _bucketHigh = double.NegativeInfinity;
    // Evaluation and gap series by (track, key or the gap's name): their thinning, and the count that means "read again".
    readonly Dictionary<(string Track, string Key), Downsampling.MinMaxStream> _thinning = new();
    readonly Dictionary<(string Track, string Key), (int Count, int ReloadAt)> _growth = new();
    long _trainReloadAt = long.MaxValue;
    // Live evaluations waiting for their pair (raw, or an EMA track) to compute the gap; dropped once every track has its value.
    readonly Dictionary<long, Dictionary<string, double>> _accuracyByStep = new();
    const string GapKey = "EMA − raw"; // not a key a run can log (MLflow's keys are ASCII)

    /// <summary>True once live points made a series twice as long as when it was read: the page reads the history again.</summary>
    public bool Outgrown { get; private set; }

    /// <summary>Points to add to each chart, by series name.</summary>
    public sealed class Batch
    {
        public Dictionary<string, List<MetricValue>> Accuracy { get; } = new();
        public Dictionary<string, List<MetricValue>> Loss { get; } = new();
        public Dictionary<string, List<MetricValue>> Train { get; } = new();
        public Dictionary<string, List<MetricValue>> Gap { get; } = new();
        public bool Any => Accuracy.Count + Loss.Count + Train.Count + Gap.Count > 0;
    }

    /// <summary>Reads the history (every point, each series thinned by how many it has) into a first batch.</summary>
    public Batch Load(MetricQueries metrics, long runId)
    {
        var batch = new Batch();
        if (roles.Train is { } train)
        {
            var points = metrics.Read(runId, MetricKeys.RawTrack, train, maxPoints: 0).Points;
            if (window is null && points.Count > 0)
            {
                // A script's run has no total: the steps logged so far set the stride, and twice as many read the history again.
                var span = Math.Max(totalSteps, points[^1].Step);
                Stride = StrideFor(span);
                if (totalSteps <= 0) _trainReloadAt = 2 * Math.Max(span, MaxPoints);
            }
            foreach (var point in points) AddTrain(batch, point);
        }
        Dictionary<long, double>? rawAccuracy = null;
        foreach (var track in tracks)
            foreach (var key in new[] { roles.Score, roles.Loss }.OfType<string>())
            {
                var points = InWindow(metrics.Read(runId, track, key, maxPoints: 0).Points);
                var thinning = Thin(track, key, points.Count);
                var into = key == roles.Score ? batch.Accuracy : batch.Loss;
                foreach (var point in points) Emit(into, track, point, thinning);
                Flush(into, track, thinning);
                if (key != roles.Score) continue;
                if (track == MetricKeys.RawTrack) rawAccuracy = ByStep(points);
                else if (rawAccuracy is not null)
                {
                    // The gap at each of the track's evaluations that raw has too (the last value at a step, as the live page pairs them).
                    var gap = Thin(track, GapKey, points.Count);
                    foreach (var point in points)
                        if (rawAccuracy.TryGetValue(point.Step, out var raw)) Emit(batch.Gap, track, point with { Value = point.Value - raw }, gap);
                    Flush(batch.Gap, track, gap);
                }
            }
        return batch;
    }

    static Dictionary<long, double> ByStep(IReadOnlyList<MetricValue> points)
    {
        var byStep = new Dictionary<long, double>(points.Count);
        foreach (var point in points) byStep[point.Step] = point.Value;
        return byStep;
    }

    IReadOnlyList<MetricValue> InWindow(IReadOnlyList<MetricValue> points) =>
        window is { } w ? Downsampling.Window(points, w.From, w.To) : points;

    Downsampling.MinMaxStream Thin(string track, string key, int count)
    {
        var thinning = _thinning[(track, key)] = new Downsampling.MinMaxStream(Downsampling.BucketSize(count, MaxPoints));
        _growth[(track, key)] = (count, Math.Max(2 * count, 2 * MaxPoints));
        return thinning;
    }

    readonly List<MetricValue> _kept = [];

    void Emit(Dictionary<string, List<MetricValue>> into, string track, MetricValue point, Downsampling.MinMaxStream thinning)
    {
        _kept.Clear();
        thinning.Add(point, _kept);
        foreach (var kept in _kept) Append(into, track, kept);
    }

    void Flush(Dictionary<string, List<MetricValue>> into, string track, Downsampling.MinMaxStream thinning)
    {
        _kept.Clear();
        thinning.Flush(_kept);
        foreach (var kept in _kept) Append(into, track, kept);
    }

    /// <summary>Live points (a <c>metrics</c> event's) into a batch; points of other tracks (post-hoc) are skipped.</summary>
    public Batch Apply(IEnumerable<MetricRow> points, Batch? into = null)
    {
        var batch = into ?? new Batch();
        foreach (var point in points)
        {
            if (!tracks.Contains(point.Track)) continue;
            if (point.Key == roles.Train && point.Track == MetricKeys.RawTrack)
            {
                AddTrain(batch, point.Point);
                if (point.Step > _trainReloadAt) Outgrown = true;
            }
            else if (point.Key == roles.Score || point.Key == roles.Loss)
            {
                var accuracy = point.Key == roles.Score;
                Emit(accuracy ? batch.Accuracy : batch.Loss, point.Track, point.Point, LiveThinning(point.Track, point.Key));
                if (accuracy) AddGap(batch.Gap, point.Track, point.Point);
            }
        }
        return batch;
    }

    /// <summary>The thinning of a series as live points grow it (every point for a series the history did not have).</summary>
    Downsampling.MinMaxStream LiveThinning(string track, string key)
    {
        var (count, reloadAt) = _growth.TryGetValue((track, key), out var growth) ? growth : (0, 2 * MaxPoints);
        if (++count > reloadAt) Outgrown = true;
        _growth[(track, key)] = (count, reloadAt);
        return _thinning.TryGetValue((track, key), out var thinning) ? thinning : _thinning[(track, key)] = new Downsampling.MinMaxStream(1);
    }

    void AddTrain(Batch batch, MetricValue point)
    {
        var smoothed = _smoother.Next(point);
        if (window is { } w && point.Step < w.From)
        {
            (_bucketLow, _bucketHigh) = (double.PositiveInfinity, double.NegativeInfinity); // the band starts in the window
            return;
        }
        if (window is { } end && point.Step > end.To + Stride) return;
        if (double.IsFinite(point.Value))
            (_bucketLow, _bucketHigh) = (Math.Min(_bucketLow, point.Value), Math.Max(_bucketHigh, point.Value));
        if (point.Step % Stride != 0 && point.Step != 1) return;
        if (Stride == 1) Append(batch.Train, MetricKeys.RawTrack, point);
        else
        {
            var empty = _bucketLow > _bucketHigh; // only non-finite values since the last kept point: a gap
            Append(batch.Train, ChartSeries.BandLow(MetricKeys.RawTrack), point with { Value = empty ? double.NaN : _bucketLow });
            Append(batch.Train, ChartSeries.BandHigh(MetricKeys.RawTrack), point with { Value = empty ? double.NaN : _bucketHigh });
        }
        (_bucketLow, _bucketHigh) = (double.PositiveInfinity, double.NegativeInfinity);
        Append(batch.Train, SmoothedTrainName, smoothed);
    }

    /// <summary>EMA − raw accuracy at each evaluation step, for every EMA track whose pair is complete with this point.</summary>
    void AddGap(Dictionary<string, List<MetricValue>> gap, string track, MetricValue point)
    {
        var byTrack = _accuracyByStep.TryGetValue(point.Step, out var existing) ? existing : _accuracyByStep[point.Step] = new();
        byTrack[track] = point.Value;
        if (!byTrack.TryGetValue(MetricKeys.RawTrack, out var raw)) return;
        foreach (var (t, v) in byTrack.Where(p => p.Key != MetricKeys.RawTrack && (p.Key == track || track == MetricKeys.RawTrack)))
        {
            var thinning = _thinning.TryGetValue((t, GapKey), out var known) ? known : _thinning[(t, GapKey)] = new Downsampling.MinMaxStream(1);
            Emit(gap, t, point with { Value = v - raw }, thinning);
        }
        if (byTrack.Count == tracks.Count) _accuracyByStep.Remove(point.Step); // complete: no more pairs to make at this step
    }

    static void Append(Dictionary<string, List<MetricValue>> into, string name, MetricValue point) =>
        (into.TryGetValue(name, out var list) ? list : into[name] = []).Add(point);

    /// <summary>Chart series of a batch, in track order, drawn as the run's palette draws each track.</summary>
    public static IReadOnlyList<ChartSeries> Series(Dictionary<string, List<MetricValue>> points, IEnumerable<string> order, TrackPalette palette) =>
        order.Where(points.ContainsKey).Select(name => palette.Series(name, points[name])).ToList();

    /// <summary>Train-loss series: the raw points (or their min–max band when thinned) faint behind their smoothing.</summary>
    public static IReadOnlyList<ChartSeries> TrainSeries(Dictionary<string, List<MetricValue>> points) =>
        points.Keys.Order(Comparer<string>.Create((a, b) => TrainOrder(a).CompareTo(TrainOrder(b))))
            .Select(name => NewTrainSeries(name) with { Points = points[name] }).ToList();

    /// <summary>Band edges first (low before high, which fills down to it), then the raw line, then the smoothed one on top.</summary>
    static int TrainOrder(string name) =>
        name == ChartSeries.BandLow(MetricKeys.RawTrack) ? 0 : name == ChartSeries.BandHigh(MetricKeys.RawTrack) ? 1 : name == MetricKeys.RawTrack
            ? 2 : 3;

    /// <summary>How a train-loss series is drawn by its name (also for a live name that is not yet a trace).</summary>
    public static ChartSeries NewTrainSeries(string name) => name switch
    {
        MetricKeys.RawTrack => new ChartSeries(name, TrackColors.Raw, [], Width: 1, Opacity: 0.25, ShowLegend: false),
        SmoothedTrainName => new ChartSeries(name, TrackColors.Raw, []),
        _ => ChartSeries.BandEdge(name, TrackColors.Raw, []),
    };
}
