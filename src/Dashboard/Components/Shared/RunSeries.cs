using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Training;
using EmaLab.TrainingEngine;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>
/// The run page's chart series (keys from <see cref="MetricRoles"/>), from the history and then from live points by the
/// same rules, so a reload draws what the live page drew. Train loss is smoothed over every point, then one point in
/// <see cref="Stride"/> is kept with the min–max band of those between; the EMA − raw gap is computed here alone.
/// </summary>
public sealed class RunSeries(IReadOnlyList<string> tracks, long totalSteps, double smoothing, MetricRoles roles)
{
    /// <summary>The tracks this series set draws (a point of another track means the page must reload).</summary>
    public IReadOnlyList<string> Tracks => tracks;

    public const string SmoothedTrainName = "raw (smoothed)";

    /// <summary>Train-loss points kept for the browser: about <see cref="MetricQueries.DefaultMaxPoints"/> over the whole run.</summary>
    public long Stride { get; } = Math.Max(1, (totalSteps + MetricQueries.DefaultMaxPoints - 1) / MetricQueries.DefaultMaxPoints);

    readonly Data.Smoothing.State _smoother = new(smoothing);
    // The raw train losses since the last kept point: the band's edges at the next one.
    double _bucketLow = double.PositiveInfinity, _bucketHigh = double.NegativeInfinity;
    readonly Dictionary<long, Dictionary<string, double>> _accuracyByStep = new();

    /// <summary>Points to add to each chart, by series name.</summary>
    public sealed class Batch
    {
        public Dictionary<string, List<MetricValue>> Accuracy { get; } = new();
        public Dictionary<string, List<MetricValue>> Loss { get; } = new();
        public Dictionary<string, List<MetricValue>> Train { get; } = new();
        public Dictionary<string, List<MetricValue>> Gap { get; } = new();
        public bool Any => Accuracy.Count + Loss.Count + Train.Count + Gap.Count > 0;
    }

    /// <summary>Reads the history (train loss at full resolution, so its smoothing matches the live one) into a first batch.</summary>
    public Batch Load(MetricQueries metrics, long runId)
    {
        var batch = new Batch();
        if (roles.Train is { } train)
            foreach (var point in metrics.Read(runId, MetricKeys.RawTrack, train, maxPoints: 0).Points)
                Add(batch, MetricKeys.RawTrack, train, point);
        foreach (var track in tracks)
            foreach (var key in new[] { roles.Accuracy, roles.Loss }.OfType<string>())
                foreach (var point in metrics.Read(runId, track, key, maxPoints: 0).Points) Add(batch, track, key, point);
        return batch;
    }

    /// <summary>Live points (a <c>metrics</c> event's) into a batch; points of other tracks (post-hoc) are skipped.</summary>
    public Batch Apply(IEnumerable<MetricRow> points, Batch? into = null)
    {
        var batch = into ?? new Batch();
        foreach (var point in points)
            if (tracks.Contains(point.Track)) Add(batch, point.Track, point.Key, point.Point);
        return batch;
    }

    void Add(Batch batch, string track, string key, MetricValue point)
    {
        if (key == roles.Accuracy)
        {
            Append(batch.Accuracy, track, point);
            AddGap(batch.Gap, track, point);
        }
        else if (key == roles.Loss) Append(batch.Loss, track, point);
        else if (key == roles.Train && track == MetricKeys.RawTrack)
        {
            var smoothed = _smoother.Next(point);
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
    }

    /// <summary>EMA − raw accuracy at each evaluation step, for every EMA track whose pair is complete with this point.</summary>
    void AddGap(Dictionary<string, List<MetricValue>> gap, string track, MetricValue point)
    {
        var byTrack = _accuracyByStep.TryGetValue(point.Step, out var existing) ? existing : _accuracyByStep[point.Step] = new();
        byTrack[track] = point.Value;
        if (!byTrack.TryGetValue(MetricKeys.RawTrack, out var raw)) return;
        foreach (var (t, v) in byTrack.Where(p => p.Key != MetricKeys.RawTrack && (p.Key == track || track == MetricKeys.RawTrack)))
            Append(gap, t, point with { Value = v - raw });
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
