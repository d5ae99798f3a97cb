using System.Globalization;
using System.Linq.Expressions;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Metrics;

namespace EmaLab.Dashboard.Runs;

/// <summary>Which value of a series a table column shows: its last, its best (by the metric's direction), lowest, highest, or the one at a step.</summary>
public enum MetricSummary { Last, Best, Min, Max, AtStep }

/// <summary>
/// A metric column of the runs table or of compare: one key of one track, summarized as the person chose. Its address
/// form, <c>key~track~summary</c> (<c>val_acc~raw~best</c>, <c>eval/accuracy~ema-0.999~at:500</c>), keeps it in the
/// page's address: MLflow's keys never hold <c>~</c> or <c>,</c>, so columns join with commas.
/// </summary>
public sealed record MetricColumn(string Key, string Track, MetricSummary Summary, long Step = 0)
{
    /// <summary>A loss, an error, a distance: lower is better (<see cref="MetricRoles.IsLowerBetter"/>).</summary>
    public static bool LowerIsBetter(string key) => MetricRoles.IsLowerBetter(key);

    public bool LowerBetter => LowerIsBetter(Key);

    /// <summary>The summary the database computes: best is the lowest or the highest by the key's direction.</summary>
    public MetricSummary Computed => Summary != MetricSummary.Best ? Summary : LowerBetter ? MetricSummary.Min : MetricSummary.Max;

    public string ToAddress() => $"{Key}~{Track}~{SummaryAddress}";

    /// <summary>The summary's part of the address: <c>best</c>, <c>at:500</c>.</summary>
    public string SummaryAddress => Summary == MetricSummary.AtStep ? string.Create(CultureInfo.InvariantCulture, $"at:{Step}") : Summary.ToString().ToLowerInvariant();

    /// <summary>"val_acc · raw · best", "loss · raw · at step 500".</summary>
    public string Title => $"{Key} · {Track} · {SummaryTitle}";

    public string SummaryTitle => Summary switch
    {
        MetricSummary.AtStep => string.Create(CultureInfo.InvariantCulture, $"at step {Step:N0}"),
        MetricSummary.Best => BestName,
        _ => NameOf(Summary),
    };

    /// <summary>"best (lowest)" or "best (highest)", by the key's direction.</summary>
    public string BestName => LowerBetter ? "best (lowest)" : "best (highest)";

    /// <summary>A summary as a picker names it: "last", "best", "min", "max", "value at step".</summary>
    public static string NameOf(MetricSummary summary) => summary == MetricSummary.AtStep ? "value at step" : summary.ToString().ToLowerInvariant();

    /// <summary>A column from its address form, or null for one that is not (an address edited by hand is ignored, not an error page).</summary>
    public static MetricColumn? Parse(string text)
    {
        var parts = text.Split('~');
        if (parts.Length != 3 || parts[0].Length == 0 || parts[1].Length == 0) return null;
        if (parts[2].StartsWith("at:", StringComparison.Ordinal))
            return long.TryParse(parts[2][3..], NumberStyles.None, CultureInfo.InvariantCulture, out var step) ? new(parts[0], parts[1], MetricSummary.AtStep, step) : null;
        return Enum.TryParse<MetricSummary>(parts[2], ignoreCase: true, out var summary) && summary != MetricSummary.AtStep && !int.TryParse(parts[2], out _)
            ? new(parts[0], parts[1], summary) : null;
    }

    /// <summary>Columns from the address's comma-separated list (unreadable ones left out).</summary>
    public static List<MetricColumn> ParseList(string? text) =>
        (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(Parse).OfType<MetricColumn>().Distinct().ToList();

    /// <summary>
    /// The summary of a series' points in step order, computed as the database computes it (<see cref="ValueOf"/>):
    /// non-finite values (stored as NULL) are no value; at a step, the value logged last there.
    /// </summary>
    public double? Of(IReadOnlyList<MetricValue> points)
    {
        var finite = points.Where(p => double.IsFinite(p.Value)).ToList();
        return Computed switch
        {
            MetricSummary.Last => points.Count > 0 && double.IsFinite(points[^1].Value) ? points[^1].Value : null,
            MetricSummary.Min => finite.Count > 0 ? finite.Min(p => p.Value) : null,
            MetricSummary.Max => finite.Count > 0 ? finite.Max(p => p.Value) : null,
            _ => AtStep(points),
        };
    }

    double? AtStep(IReadOnlyList<MetricValue> points)
    {
        double? value = null;
        foreach (var point in points)
            if (point.Step == Step) value = double.IsFinite(point.Value) ? point.Value : null;
        return value;
    }

    /// <summary>The column's value of a run, as the database computes it inside a query (NaN is stored as NULL: no value).</summary>
    public Expression<Func<Run, double?>> ValueOf(EmaLabDbContext db)
    {
        var (key, track, step) = (Key, Track, Step);
        return Computed switch
        {
            MetricSummary.Last => r => db.LatestMetrics.Where(l => l.RunId == r.Id && l.Key == key && l.Track == track).Select(l => l.Value).FirstOrDefault(),
            MetricSummary.Min => r => db.Metrics.Where(m => m.RunId == r.Id && m.Key == key && m.Track == track).Min(m => m.Value),
            MetricSummary.Max => r => db.Metrics.Where(m => m.RunId == r.Id && m.Key == key && m.Track == track).Max(m => m.Value),
            _ => r => db.Metrics.Where(m => m.RunId == r.Id && m.Key == key && m.Track == track && m.Step == step)
                .OrderByDescending(m => m.WallTimeMs).Select(m => m.Value).FirstOrDefault(),
        };
    }
}

/// <summary>A list sorted by a metric column, runs without a value last either way.</summary>
public sealed record MetricOrder(MetricColumn Column, bool Descending)
{
    public IOrderedQueryable<Run> Apply(IQueryable<Run> runs, EmaLabDbContext db)
    {
        // One subquery per run: a missing value (NaN is stored as NULL) becomes the far end of the order, so it sorts last.
        var value = Column.ValueOf(db);
        var last = Expression.Constant(Descending ? double.MinValue : double.MaxValue, typeof(double));
        var ordered = Expression.Lambda<Func<Run, double>>(Expression.Coalesce(value.Body, last), value.Parameters);
        return (Descending ? runs.OrderByDescending(ordered) : runs.OrderBy(ordered)).ThenByDescending(r => r.Id);
    }
}
