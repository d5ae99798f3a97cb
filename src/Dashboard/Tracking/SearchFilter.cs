using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// MLflow's search filter (mlflow/utils/search_utils.py): clauses joined by <c>AND</c>, each
/// <c>&lt;entity&gt;.&lt;name&gt; &lt;comparator&gt; &lt;value&gt;</c>. Entities: <c>metrics.</c> (numbers: = != &lt; &lt;= &gt; &gt;=),
/// <c>params.</c> and <c>tags.</c> (strings: = != LIKE ILIKE), <c>attributes.</c> or a bare attribute name
/// (runs: run_id, run_name, status, user_id, start_time, end_time, artifact_uri, lifecycle_stage; experiments:
/// name, creation_time, last_update_time; <c>IN</c>/<c>NOT IN</c> for run_id). Names may be quoted with "…" or `…`.
/// </summary>
public sealed partial class SearchFilter
{
    public enum Entity { Run, Experiment, LoggedModel }

    readonly List<Clause> _clauses;

    SearchFilter(List<Clause> clauses) => _clauses = clauses;

    sealed record Clause(string Kind, string Name, string Comparator, object Value);

    public static SearchFilter Parse(string? filter, Entity entity)
    {
        var clauses = new List<Clause>();
        if (string.IsNullOrWhiteSpace(filter)) return new SearchFilter(clauses);
        var tokens = Tokenize(filter);
        var i = 0;
        while (i < tokens.Count)
        {
            if (clauses.Count > 0)
            {
                if (!tokens[i].Equals("AND", StringComparison.OrdinalIgnoreCase)) throw Invalid(filter, $"expected AND before '{tokens[i]}'");
                i++;
            }
            if (tokens.Count - i < 3) throw Invalid(filter, "a clause needs a name, a comparator and a value");
            var (kind, name) = Identifier(tokens[i++], entity, filter);
            var comparator = tokens[i++].ToUpperInvariant();
            if (comparator == "NOT" && i < tokens.Count && tokens[i].Equals("IN", StringComparison.OrdinalIgnoreCase)) { comparator = "NOT IN"; i++; }
            if (i >= tokens.Count) throw Invalid(filter, $"'{name}' {comparator} has no value");
            object value;
            if (comparator is "IN" or "NOT IN")
            {
                if (tokens[i] != "(") throw Invalid(filter, $"{comparator} takes a list in parentheses");
                var list = new List<string>();
                for (i++; i < tokens.Count && tokens[i] != ")"; i++)
                    if (tokens[i] != ",") list.Add(StringValue(tokens[i], filter));
                if (i >= tokens.Count) throw Invalid(filter, "the list is not closed");
                i++;
                value = list;
            }
            else value = tokens[i++];
            clauses.Add(Check(new Clause(kind, name, comparator, value), filter));
        }
        return new SearchFilter(clauses);
    }

    static Clause Check(Clause c, string filter)
    {
        var numeric = c.Kind == "metrics" || c.Kind == "attributes" && c.Name is "start_time" or "end_time" or "creation_time" or "last_update_time"
            or "creation_timestamp" or "last_updated_timestamp";
        if (numeric)
        {
            if (c.Comparator is not ("=" or "!=" or "<" or "<=" or ">" or ">="))
                throw Invalid(filter, $"'{c.Comparator}' is not a comparator for {c.Kind}.{c.Name}: use =, !=, <, <=, > or >=");
            var text = (string)c.Value;
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
                throw Invalid(filter, $"expected a number for {c.Kind}.{c.Name}, got {text}");
            return c with { Value = number };
        }
        if (c.Comparator is "IN" or "NOT IN")
        {
            if (c.Kind != "attributes" || c.Name is not ("run_id" or "model_id" or "source_run_id")) throw Invalid(filter, $"{c.Comparator} works on run_id, model_id and source_run_id only");
            return c;
        }
        if (c.Comparator is not ("=" or "!=" or "LIKE" or "ILIKE"))
            throw Invalid(filter, $"'{c.Comparator}' is not a comparator for {c.Kind}.{c.Name}: use =, !=, LIKE or ILIKE");
        return c with { Value = StringValue((string)c.Value, filter) };
    }

    public bool Matches(MlflowRun run) => _clauses.All(c => c.Kind switch
    {
        "metrics" => run.Data.Metrics.FirstOrDefault(m => m.Key == c.Name) is { Value: { } v } && Compare(v, c),
        "params" => run.Data.Params.FirstOrDefault(p => p.Key == c.Name) is { Value: { } p } && Compare(p, c),
        "tags" => run.Data.Tags.FirstOrDefault(t => t.Key == c.Name) is { Value: { } t } && Compare(t, c),
        _ => c.Name switch
        {
            "run_id" => Compare(run.Info.RunId, c),
            "run_name" => Compare(run.Info.RunName, c),
            "status" => Compare(run.Info.Status, c),
            "user_id" => Compare(run.Info.UserId, c),
            "artifact_uri" => Compare(run.Info.ArtifactUri, c),
            "lifecycle_stage" => Compare(run.Info.LifecycleStage, c),
            "start_time" => Compare(run.Info.StartTime, c),
            "end_time" => run.Info.EndTime is { } end && Compare(end, c),
            _ => false,
        },
    });

    public bool Matches(MlflowExperiment experiment) => _clauses.All(c => c.Kind switch
    {
        "tags" => experiment.Tags.FirstOrDefault(t => t.Key == c.Name) is { Value: { } t } && Compare(t, c),
        _ => c.Name switch
        {
            "name" => Compare(experiment.Name, c),
            "creation_time" => Compare(experiment.CreationTime, c),
            "last_update_time" => Compare(experiment.LastUpdateTime, c),
            _ => false,
        },
    });

    public bool Matches(MlflowLoggedModel model) => _clauses.All(c => c.Kind switch
    {
        "metrics" => LatestMetric(model, c.Name) is { } v && Compare(v, c),
        "params" => model.Data.Params.FirstOrDefault(p => p.Key == c.Name) is { Value: { } p } && Compare(p, c),
        "tags" => model.Info.Tags.FirstOrDefault(t => t.Key == c.Name) is { Value: { } t } && Compare(t, c),
        _ => LoggedModelAttribute(model, c.Name) switch
        {
            string text => Compare(text, c),
            long number => Compare(number, c),
            _ => false,
        },
    });

    /// <summary>A logged model's latest value of a metric, by the one rule of <see cref="Data.LatestValues"/>.</summary>
    internal static double? LatestMetric(MlflowLoggedModel model, string key)
    {
        MlflowMetric? latest = null;
        foreach (var metric in model.Data.Metrics.Where(m => m.Key == key))
            if (latest is null || Data.LatestValues.Replaces(metric.Step ?? 0, metric.Timestamp ?? 0, latest.Step ?? 0, latest.Timestamp ?? 0)) latest = metric;
        return latest?.Value;
    }

    /// <summary>An attribute of a logged model by its search name (the status without its <c>LOGGED_MODEL_</c> prefix, as MLflow's filter writes it).</summary>
    internal static object? LoggedModelAttribute(MlflowLoggedModel model, string name) => name switch
    {
        "name" => model.Info.Name,
        "model_id" => model.Info.ModelId,
        "model_type" => model.Info.ModelType,
        "status" => model.Info.Status.Replace("LOGGED_MODEL_", "", StringComparison.Ordinal),
        "source_run_id" => model.Info.SourceRunId,
        "creation_timestamp" => model.Info.CreationTimestampMs,
        "last_updated_timestamp" => model.Info.LastUpdatedTimestampMs,
        _ => null,
    };

    static bool Compare(double value, Clause c)
    {
        var target = (double)c.Value;
        return c.Comparator switch
        {
            "=" => value == target, "!=" => value != target, "<" => value < target,
            "<=" => value <= target, ">" => value > target, _ => value >= target,
        };
    }

    static bool Compare(string value, Clause c) => c.Comparator switch
    {
        "=" => value == (string)c.Value,
        "!=" => value != (string)c.Value,
        "LIKE" => Like((string)c.Value, RegexOptions.None).IsMatch(value),
        "ILIKE" => Like((string)c.Value, RegexOptions.IgnoreCase).IsMatch(value),
        "IN" => ((List<string>)c.Value).Contains(value),
        _ => !((List<string>)c.Value).Contains(value),
    };

    /// <summary>SQL's LIKE: % any run of characters, _ one character.</summary>
    static Regex Like(string pattern, RegexOptions options)
    {
        var regex = new StringBuilder("^");
        foreach (var ch in pattern) regex.Append(ch switch { '%' => ".*", '_' => ".", _ => Regex.Escape(ch.ToString()) });
        return new Regex(regex.Append('$').ToString(), options | RegexOptions.Singleline | RegexOptions.CultureInvariant);
    }

    static readonly string[] RunAttributes = ["run_id", "run_name", "status", "user_id", "start_time", "end_time", "artifact_uri", "lifecycle_stage"];
    static readonly string[] ExperimentAttributes = ["name", "creation_time", "last_update_time"];
    static readonly string[] LoggedModelAttributes = ["name", "model_id", "model_type", "status", "source_run_id", "creation_timestamp", "last_updated_timestamp"];

    /// <summary>(kind, name) of <c>metrics.x</c>, <c>params."a b"</c>, <c>attributes.status</c> or a bare attribute.</summary>
    internal static (string Kind, string Name) Identifier(string token, Entity entity, string text)
    {
        var dot = token.IndexOf('.');
        var prefix = dot > 0 ? token[..dot].ToLowerInvariant() : "";
        var kind = prefix switch
        {
            "metric" or "metrics" => entity != Entity.Experiment ? "metrics" : null,
            "param" or "params" or "parameter" or "parameters" => entity != Entity.Experiment ? "params" : null,
            "tag" or "tags" => "tags",
            "attribute" or "attributes" or "attr" or "run" => "attributes",
            _ => null,
        };
        var name = kind is null ? token : token[(dot + 1)..];
        name = Unquote(name);
        kind ??= "attributes";
        if (kind == "attributes")
        {
            name = name switch { "run_uuid" => "run_id", "experiment_name" => "name", _ => name };
            var known = entity switch { Entity.Run => RunAttributes, Entity.Experiment => ExperimentAttributes, _ => LoggedModelAttributes };
            if (!known.Contains(name))
                throw Invalid(text, $"'{token}' is not a searchable {entity switch { Entity.Run => "run", Entity.Experiment => "experiment", _ => "logged model" }} attribute (use {string.Join(", ", known)}, or metrics., params., tags.)");
        }
        if (name.Length == 0) throw Invalid(text, $"'{token}' has no name");
        return (kind, name);
    }

    static string Unquote(string name) =>
        name.Length >= 2 && (name[0] == '"' && name[^1] == '"' || name[0] == '`' && name[^1] == '`') ? name[1..^1] : name;

    static string StringValue(string token, string text) =>
        token.Length >= 2 && (token[0] == '\'' && token[^1] == '\'' || token[0] == '"' && token[^1] == '"') ? token[1..^1]
            : throw Invalid(text, $"expected a quoted string, got {token}");

    [GeneratedRegex("""\s*(`[^`]*`|"[^"]*"|'[^']*'|[A-Za-z_][\w.]*(?:\.(?:`[^`]*`|"[^"]*"))?|-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|!=|<=|>=|=|<|>|\(|\)|,)""")]
    private static partial Regex Token();

    static List<string> Tokenize(string filter)
    {
        var tokens = new List<string>();
        var at = 0;
        while (at < filter.Length)
        {
            if (char.IsWhiteSpace(filter[at])) { at++; continue; }
            var match = Token().Match(filter, at);
            if (!match.Success || match.Index != at) throw Invalid(filter, $"cannot read from '{filter[at..]}'");
            tokens.Add(match.Groups[1].Value);
            at = match.Index + match.Length;
        }
        return tokens;
    }

    static MlflowException Invalid(string filter, string why) => MlflowException.Invalid($"Invalid filter '{filter}': {why}.");
}

/// <summary>MLflow's order_by: <c>metrics.x DESC</c>, <c>params.p</c>, <c>attributes.start_time ASC</c>; missing values last.</summary>
public sealed class SearchOrder
{
    readonly List<(string Kind, string Name, bool Descending)> _keys;

    SearchOrder(List<(string, string, bool)> keys) => _keys = keys;

    public static SearchOrder Parse(IReadOnlyList<string>? orderBy, SearchFilter.Entity entity)
    {
        var keys = new List<(string, string, bool)>();
        foreach (var item in orderBy ?? [])
        {
            var parts = item.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length is 0 or > 2 || parts.Length == 2 && parts[1].ToUpperInvariant() is not ("ASC" or "DESC"))
                throw MlflowException.Invalid($"Invalid order_by clause '{item}'. Could not be parsed.");
            var (kind, name) = SearchFilter.Identifier(parts[0], entity, item);
            keys.Add((kind, name, parts.Length == 2 && parts[1].Equals("DESC", StringComparison.OrdinalIgnoreCase)));
        }
        return new SearchOrder(keys);
    }

    /// <summary>The requested order, then MLflow's tiebreak: runs by start time (newest first) and id; experiments by id, highest first.</summary>
    public List<MlflowRun> Sort(List<MlflowRun> runs)
    {
        IOrderedEnumerable<MlflowRun>? sorted = null;
        foreach (var (kind, name, descending) in _keys)
        {
            object? Key(MlflowRun r) => kind switch
            {
                "metrics" => r.Data.Metrics.FirstOrDefault(m => m.Key == name)?.Value,
                "params" => r.Data.Params.FirstOrDefault(p => p.Key == name)?.Value,
                "tags" => r.Data.Tags.FirstOrDefault(t => t.Key == name)?.Value,
                _ => name switch
                {
                    "start_time" => r.Info.StartTime, "end_time" => r.Info.EndTime, "run_name" => r.Info.RunName,
                    "status" => r.Info.Status, "run_id" => r.Info.RunId, "user_id" => r.Info.UserId, _ => null,
                },
            };
            sorted = Then(sorted, runs, Key, descending);
        }
        sorted = Then(sorted, runs, r => r.Info.StartTime, descending: true);
        return sorted.ThenBy(r => r.Info.RunId, StringComparer.Ordinal).ToList();
    }

    public List<MlflowExperiment> Sort(List<MlflowExperiment> experiments)
    {
        IOrderedEnumerable<MlflowExperiment>? sorted = null;
        foreach (var (kind, name, descending) in _keys)
        {
            object? Key(MlflowExperiment e) => kind == "tags" ? e.Tags.FirstOrDefault(t => t.Key == name)?.Value : name switch
            {
                "name" => e.Name, "creation_time" => e.CreationTime, "last_update_time" => e.LastUpdateTime, _ => null,
            };
            sorted = Then(sorted, experiments, Key, descending);
        }
        return (sorted is null ? experiments.OrderByDescending(e => long.Parse(e.ExperimentId, CultureInfo.InvariantCulture))
            : sorted.ThenByDescending(e => long.Parse(e.ExperimentId, CultureInfo.InvariantCulture))).ToList();
    }

    static IOrderedEnumerable<T> Then<T>(IOrderedEnumerable<T>? sorted, IEnumerable<T> items, Func<T, object?> key, bool descending)
    {
        // Missing values sort last in both directions.
        sorted = sorted is null ? items.OrderBy(x => key(x) is null) : sorted.ThenBy(x => key(x) is null);
        return descending ? sorted.ThenByDescending(key, ValueComparer.Instance) : sorted.ThenBy(key, ValueComparer.Instance);
    }

    sealed class ValueComparer : IComparer<object?>
    {
        public static readonly ValueComparer Instance = new();

        public int Compare(object? x, object? y) => (x, y) switch
        {
            (null, null) => 0,
            (null, _) => 1,
            (_, null) => -1,
            (string a, string b) => string.CompareOrdinal(a, b),
            _ => Convert.ToDouble(x, CultureInfo.InvariantCulture).CompareTo(Convert.ToDouble(y, CultureInfo.InvariantCulture)),
        };
    }
}
