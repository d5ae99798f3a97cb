using System.Linq.Expressions;
using System.Reflection;
using System.Text;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine;
using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// MLflow's run search in one SQL query, as its SQL store builds it (sqlalchemy_store.py, <c>_search_runs</c>): a clause
/// is an EXISTS over the run's latest values (<see cref="LatestMetric"/>) or a condition on its columns; missing values
/// sort last, a NaN metric just before them. LIKE is case-sensitive (GLOB on SQLite) and ILIKE not, as in MLflow.
/// </summary>
static class RunSearch
{
    public static IQueryable<Run> Filter(IQueryable<Run> runs, EmaLabDbContext db, SearchFilter filter)
    {
        var sqlite = db.Database.IsSqlite();
        foreach (var clause in filter.Clauses)
        {
            var name = clause.Name;
            switch (clause.Kind)
            {
                case "metrics":
                    var metricValues = db.LatestMetrics.Where(Test<LatestMetric, double?>(m => m.Value, body => NumberTest(body, clause)));
                    var engineValues = metricValues.Where(ClientTrackKeys.EngineKeyIs(name));
                    runs = runs.Where(r => r.Origin == RunOrigin.Client
                        ? db.ClientMetricKeys.Where(k => k.RunId == r.Id && k.LoggedKey == name)
                            .Join(metricValues, k => new { k.RunId, k.Track, k.Key }, m => new { m.RunId, m.Track, m.Key }, (k, m) => m).Any()
                        : engineValues.Any(m => m.RunId == r.Id));
                    break;
                case "params":
                    // Correlated EXISTS throughout: each run's rows are found by the (RunId, Key) primary key.
                    var @params = db.Params.Where(p => p.Key == name);
                    var matchingParams = @params.Where(Test<RunParam, string>(p => p.Value, body => StringTest(body, clause, sqlite)));
                    runs = clause.Comparator switch
                    {
                        "IS NULL" => runs.Where(r => !@params.Any(p => p.RunId == r.Id)),
                        "IS NOT NULL" => runs.Where(r => @params.Any(p => p.RunId == r.Id)),
                        _ => runs.Where(r => matchingParams.Any(p => p.RunId == r.Id)),
                    };
                    break;
                case "tags":
                    var tags = db.RunTags.Where(t => t.Key == name);
                    var matchingTags = tags.Where(Test<RunTag, string>(t => t.Value, body => StringTest(body, clause, sqlite)));
                    runs = clause.Comparator switch
                    {
                        "IS NULL" => runs.Where(r => !tags.Any(t => t.RunId == r.Id)),
                        "IS NOT NULL" => runs.Where(r => tags.Any(t => t.RunId == r.Id)),
                        _ => runs.Where(r => matchingTags.Any(t => t.RunId == r.Id)),
                    };
                    break;
                case "datasets":
                    // A run matches when one of its dataset inputs does (a dataset without the field does not).
                    Expression<Func<RunInput, string?>> field = name switch { "name" => i => i.DatasetName, "digest" => i => i.DatasetDigest, _ =>
                        i => i.Context };
                    var inputs = db.RunInputs.Where(i => i.ModelId == null)
                        .Where(Test(field, body => Expression.NotEqual(body, Expression.Constant(null, typeof(string)))))
                        .Where(Test(field, body => StringTest(body, clause, sqlite)));
                    runs = runs.Where(r => inputs.Any(i => i.RunId == r.Id));
                    break;
                default:
                    runs = name switch
                    {
                        "start_time" => runs.Where(Test(TrackingService.StartTime, body => TimeTest(body, clause))),
                        "end_time" => runs.Where(Test<Run, DateTimeOffset?>(r => r.FinishedAt, body => TimeTest(body, clause))),
                        _ => runs.Where(Test(StringAttribute(db, name), body => StringTest(body, clause, sqlite))),
                    };
                    break;
            }
        }
        return runs;
    }

    /// <summary>The requested order, then MLflow's: start time, newest first (unless ordered by it already), and run id.</summary>
    public static IOrderedQueryable<Run> Order(IQueryable<Run> runs, EmaLabDbContext db, SearchOrder order)
    {
        IOrderedQueryable<Run>? ordered = null;
        foreach (var (kind, name, descending) in order.Keys)
        {
            switch (kind)
            {
                case "metrics":
                    var latest = db.LatestMetrics.AsQueryable();
                    var engine = latest.Where(ClientTrackKeys.EngineKeyIs(name));
                    // 0: a number, 1: NaN (stored as null), 2: no such metric.
                    Expression<Func<Run, int>> rank = r => (r.Origin == RunOrigin.Client
                        ? db.ClientMetricKeys.Where(k => k.RunId == r.Id && k.LoggedKey == name)
                            .Join(latest, k => new { k.RunId, k.Track, k.Key }, m => new { m.RunId, m.Track, m.Key }, (k, m) =>
                                (int?)(m.Value == null ? 1 : 0)).FirstOrDefault()
                        : engine.Where(m => m.RunId == r.Id).Select(m => (int?)(m.Value == null ? 1 : 0)).FirstOrDefault()) ?? 2;
                    Expression<Func<Run, double?>> value = r => r.Origin == RunOrigin.Client
                        ? db.ClientMetricKeys.Where(k => k.RunId == r.Id && k.LoggedKey == name)
                            .Join(latest, k => new { k.RunId, k.Track, k.Key }, m => new { m.RunId, m.Track, m.Key }, (k, m) => m.Value)
                                .FirstOrDefault()
                        : engine.Where(m => m.RunId == r.Id).Select(m => m.Value).FirstOrDefault();
                    ordered = Then(Then(ordered, runs, rank, descending: false), runs, value, descending);
                    break;
                case "params":
                    var @params = db.Params.Where(p => p.Key == name);
                    ordered = ThenPresentFirst(ordered, runs, r =>
                        @params.Where(p => p.RunId == r.Id).Select(p => p.Value).FirstOrDefault(), descending);
                    break;
                case "tags":
                    var tags = db.RunTags.Where(t => t.Key == name);
                    ordered = ThenPresentFirst(ordered, runs, r =>
                        tags.Where(t => t.RunId == r.Id).Select(t => t.Value).FirstOrDefault(), descending);
                    break;
                default:
                    ordered = name switch
                    {
                        "start_time" => Then(ordered, runs, TrackingService.StartTime, descending),
                        "end_time" => Then(Then(ordered, runs, r => r.FinishedAt == null, descending: false), runs, r => r.FinishedAt, descending),
                        _ => Then(ordered, runs, StringAttribute(db, name), descending),
                    };
                    break;
            }
        }
        if (!order.Keys.Any(k => k.Kind == "attributes" && k.Name == "start_time"))
            ordered = Then(ordered, runs, TrackingService.StartTime, descending: true);
        return Then(ordered, runs, r => r.Uuid, descending: false);
    }

    /// <summary>A run's string attribute as the tracking API shows it, as SQL.</summary>
    static Expression<Func<Run, string>> StringAttribute(EmaLabDbContext db, string name) => name switch
    {
        "run_id" => r => r.Uuid,
        "run_name" => r => r.Name,
        "status" => Inline(TrackingService.MlflowStatus, (Expression<Func<Run, RunStatus>>)(r => r.Status)),
        "user_id" => r => db.RunTags.Where(t => t.RunId == r.Id && t.Key == TagNames.User).Select(t => t.Value).FirstOrDefault() ?? "",
        "artifact_uri" => TrackingService.ArtifactUri,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "not a run attribute"),
    };

    // ---------------------------------------------------------------- comparisons as expression trees

    static Expression<Func<T, bool>> Test<T, TValue>(Expression<Func<T, TValue>> value, Func<Expression, Expression> test) =>
        Expression.Lambda<Func<T, bool>>(test(value.Body), value.Parameters);

    /// <summary>A metric's comparison; NaN (null) satisfies none, != included.</summary>
    static Expression NumberTest(Expression value, SearchFilter.Clause clause)
    {
        var target = Parameter<double?>((double)clause.Value!);
        Expression comparison = clause.Comparator switch
        {
            "=" => Expression.Equal(value, target),
            "!=" => Expression.NotEqual(value, target),
            "<" => Expression.LessThan(value, target),
            "<=" => Expression.LessThanOrEqual(value, target),
            ">" => Expression.GreaterThan(value, target),
            _ => Expression.GreaterThanOrEqual(value, target),
        };
        return Expression.AndAlso(Expression.NotEqual(value, Expression.Constant(null, typeof(double?))), comparison);
    }

    /// <summary>
    /// A time in whole milliseconds against a stored instant: the API shows <c>floor(ms)</c>, so <c>start_time &gt; X</c> is
    /// "at or after X + 1 ms" and <c>= X</c> is "within [X, X + 1 ms)". A missing end time satisfies none.
    /// </summary>
    static Expression TimeTest(Expression value, SearchFilter.Clause clause)
    {
        var ms = Math.Clamp((long)clause.Value!, DateTimeOffset.MinValue.ToUnixTimeMilliseconds(),
            DateTimeOffset.MaxValue.ToUnixTimeMilliseconds() - 1);
        var type = value.Type;
        var at = Parameter(DateTimeOffset.FromUnixTimeMilliseconds(ms), type);
        var next = Parameter(DateTimeOffset.FromUnixTimeMilliseconds(ms + 1), type);
        Expression comparison = clause.Comparator switch
        {
            "=" => Expression.AndAlso(Expression.GreaterThanOrEqual(value, at), Expression.LessThan(value, next)),
            "!=" => Expression.OrElse(Expression.LessThan(value, at), Expression.GreaterThanOrEqual(value, next)),
            "<" => Expression.LessThan(value, at),
            "<=" => Expression.LessThan(value, next),
            ">" => Expression.GreaterThanOrEqual(value, next),
            _ => Expression.GreaterThanOrEqual(value, at),
        };
        return type == typeof(DateTimeOffset) ? comparison
            : Expression.AndAlso(Expression.NotEqual(value, Expression.Constant(null, type)), comparison);
    }

    static readonly MethodInfo Like = typeof(DbFunctionsExtensions)
        .GetMethod(nameof(DbFunctionsExtensions.Like), [typeof(DbFunctions), typeof(string), typeof(string)])!;
    static readonly MethodInfo Glob = typeof(SqliteDbFunctionsExtensions)
        .GetMethod(nameof(SqliteDbFunctionsExtensions.Glob), [typeof(DbFunctions), typeof(string), typeof(string)])!;
    static readonly MethodInfo ILike = typeof(NpgsqlDbFunctionsExtensions)
        .GetMethod(nameof(NpgsqlDbFunctionsExtensions.ILike), [typeof(DbFunctions), typeof(string), typeof(string)])!;
    static readonly MethodInfo Contains = typeof(Enumerable).GetMethods()
        .Single(m => m.Name == nameof(Enumerable.Contains) && m.GetParameters().Length == 2).MakeGenericMethod(typeof(string));
    static readonly Expression Functions = Expression.Property(null, typeof(EF), nameof(EF.Functions));

    static Expression StringTest(Expression value, SearchFilter.Clause clause, bool sqlite)
    {
        Expression Call(MethodInfo method, string pattern) => Expression.Call(method, Functions, value, Parameter(pattern));
        return clause.Comparator switch
        {
            "=" => Expression.Equal(value, Parameter((string)clause.Value!)),
            "!=" => Expression.NotEqual(value, Parameter((string)clause.Value!)),
            // SQLite's LIKE ignores ASCII case (MLflow sets case_sensitive_like there): GLOB is its case-sensitive LIKE.
            "LIKE" => sqlite ? Call(Glob, GlobPattern((string)clause.Value!)) : Call(Like, (string)clause.Value!),
            "ILIKE" => sqlite ? Call(Like, (string)clause.Value!) : Call(ILike, (string)clause.Value!),
            "IN" => Expression.Call(Contains, Parameter((List<string>)clause.Value!), value),
            _ => Expression.Not(Expression.Call(Contains, Parameter((List<string>)clause.Value!), value)),
        };
    }

    /// <summary>A LIKE pattern as GLOB's: % → *, _ → ?, and GLOB's own wildcards taken literally.</summary>
    static string GlobPattern(string like)
    {
        var glob = new StringBuilder(like.Length);
        foreach (var ch in like)
            glob.Append(ch switch { '%' => "*", '_' => "?", '*' => "[*]", '?' => "[?]", '[' => "[[]", _ => ch.ToString() });
        return glob.ToString();
    }

    /// <summary>A value the query takes as a SQL parameter (EF reads a member of a captured object as one), not as a literal.</summary>
    static Expression Parameter<T>(T value) => Parameter(value, typeof(T));

    static Expression Parameter(object? value, Type type)
    {
        var box = Activator.CreateInstance(typeof(Box<>).MakeGenericType(type), value)!;
        return Expression.Property(Expression.Constant(box), "Value");
    }

    sealed record Box<T>(T Value);

    /// <summary><paramref name="outer"/> applied to what <paramref name="inner"/> selects, as one expression.</summary>
    static Expression<Func<TIn, TOut>> Inline<TIn, TMid, TOut>(Expression<Func<TMid, TOut>> outer, Expression<Func<TIn, TMid>> inner) =>
        Expression.Lambda<Func<TIn, TOut>>(new Substitute(outer.Parameters[0], inner.Body).Visit(outer.Body), inner.Parameters);

    sealed class Substitute(ParameterExpression parameter, Expression replacement) : ExpressionVisitor
    {
        protected override Expression VisitParameter(ParameterExpression node) => node == parameter ? replacement : node;
    }

    // ---------------------------------------------------------------- ordering

    static IOrderedQueryable<Run> Then<TKey>(IOrderedQueryable<Run>? ordered, IQueryable<Run> runs, Expression<Func<Run, TKey>> key,
        bool descending) =>
        ordered is null
            ? descending ? runs.OrderByDescending(key) : runs.OrderBy(key)
            : descending ? ordered.ThenByDescending(key) : ordered.ThenBy(key);

    /// <summary>Rows with a value first (both databases put NULL at one end, not the same one), then by the value.</summary>
    static IOrderedQueryable<Run> ThenPresentFirst(IOrderedQueryable<Run>? ordered, IQueryable<Run> runs, Expression<Func<Run, string?>> key,
        bool descending) =>
        Then(Then(ordered, runs, Test(key, body => Expression.Equal(body, Expression.Constant(null, typeof(string)))), descending: false), runs, key,
            descending);
}
