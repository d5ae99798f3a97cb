using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// MLflow's search filter (mlflow/utils/search_utils.py): clauses joined by <c>AND</c>, each
/// <c>&lt;entity&gt;.&lt;name&gt; &lt;comparator&gt; &lt;value&gt;</c>. Entities: <c>metrics.</c> (numbers: = != &lt; &lt;= &gt; &gt;=),
/// <c>params.</c> and <c>tags.</c> (strings: = != LIKE ILIKE), <c>attributes.</c> or a bare attribute name
/// (runs: run_id, run_name, status, user_id, start_time, end_time, artifact_uri, and MLflow's aliases <c>created</c> and
/// <c>"run name"</c>; experiments: name, creation_time, last_update_time; <c>IN</c>/<c>NOT IN</c> for run_id);
/// <c>IS NULL</c>/<c>IS NOT NULL</c> for params and tags; <c>datasets.name</c>, <c>datasets.digest</c>, <c>datasets.context</c> (a run
/// matches when one of its dataset inputs does). Names may be quoted with "…" or `…` (<c>metrics.`train/loss`</c>).
/// Runs are searched in SQL (<see cref="RunSearch"/>); experiments and logged models, few, in memory.
/// </summary>
public sealed partial class SearchFilter
{
    public enum Entity { Run, Experiment, LoggedModel, RegisteredModel, ModelVersion }

    readonly List<Clause> _clauses;

    SearchFilter(List<Clause> clauses) => _clauses = clauses;

    /// <summary>One comparison: Value is a double (metrics), a long (time attributes), a string, a list of strings (IN) or null (IS NULL).</summary>
    internal sealed record Clause(string Kind, string Name, string Comparator, object? Value);

    internal IReadOnlyList<Clause> Clauses => _clauses;

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
            if (comparator == "IS")
            {
                var not = i < tokens.Count && tokens[i].Equals("NOT", StringComparison.OrdinalIgnoreCase);
                if (not) i++;
                if (i >= tokens.Count || !tokens[i].Equals("NULL", StringComparison.OrdinalIgnoreCase))
                    throw Invalid(filter, $"expected IS NULL or IS NOT NULL after '{name}'");
                i++;
                if (kind is not ("params" or "tags"))
                    throw Invalid(filter, $"IS NULL / IS NOT NULL is only supported for tags and params, not for '{kind}' '{name}'");
                clauses.Add(new Clause(kind, name, not ? "IS NOT NULL" : "IS NULL", null));
                continue;
            }
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
        // Times are milliseconds since the epoch and a version is a number: integers (MLflow reads them with int()).
        var integer = c.Kind == "attributes" && (IsTime(c.Name) || c.Name == "version_number");
        if (c.Kind == "metrics" || integer)
        {
            if (c.Comparator is not ("=" or "!=" or "<" or "<=" or ">" or ">="))
                throw Invalid(filter, $"'{c.Comparator}' is not a comparator for {c.Kind}.{c.Name}: use =, !=, <, <=, > or >=");
            var text = (string)c.Value!;
            if (integer)
                return long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var whole) ? c with { Value = whole }
                    : throw Invalid(filter, c.Name == "version_number" ? $"expected an integer for version_number, got {text}"
                        : $"expected an integer (milliseconds since the epoch) for {c.Name}, got {text}");
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
                throw Invalid(filter, $"expected a number for {c.Kind}.{c.Name}, got {text}");
            return c with { Value = number };
        }
        if (c.Comparator is "IN" or "NOT IN")
        {
            if (c.Kind != "datasets" && (c.Kind != "attributes" || c.Name is not ("run_id" or "model_id" or "source_run_id")))
                throw Invalid(filter, $"{c.Comparator} works on run_id, model_id, source_run_id and datasets only");
            return c;
        }
        if (c.Comparator is not ("=" or "!=" or "LIKE" or "ILIKE"))
            throw Invalid(filter, $"'{c.Comparator}' is not a comparator for {c.Kind}.{c.Name}: use =, !=, LIKE or ILIKE");
        return c with { Value = StringValue((string)c.Value!, filter) };
    }

    internal static bool IsTime(string attribute) =>
        attribute is "start_time" or "end_time" or "creation_time" or "last_update_time" or "creation_timestamp" or "last_updated_timestamp";

    public bool Matches(MlflowExperiment experiment) => _clauses.All(c => c.Kind switch
    {
        "tags" => CompareOptional(experiment.Tags.FirstOrDefault(t => t.Key == c.Name)?.Value, c),
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
        "params" => CompareOptional(model.Data.Params.FirstOrDefault(p => p.Key == c.Name)?.Value, c),
        "tags" => CompareOptional(model.Info.Tags.FirstOrDefault(t => t.Key == c.Name)?.Value, c),
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
            if (latest is null || Data.LatestValues.Replaces(metric.Step ?? 0, metric.Timestamp ?? 0, latest.Step ?? 0, latest.Timestamp ?? 0))
                latest = metric;
        return latest?.Value;
    }

    /// <summary>An attribute of a logged model by its search name (the status without its <c>LOGGED_MODEL_</c> prefix,
    /// as MLflow's filter writes it).</summary>
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

    internal static bool Compare(double value, Clause c)
    {
        var target = Convert.ToDouble(c.Value, CultureInfo.InvariantCulture);
        return c.Comparator switch
        {
            "=" => value == target, "!=" => value != target, "<" => value < target,
            "<=" => value <= target, ">" => value > target, _ => value >= target,
        };
    }

    /// <summary>A param's or tag's value, null when the entity has none: only IS NULL matches a missing one.</summary>
    internal static bool CompareOptional(string? value, Clause c) => c.Comparator switch
    {
        "IS NULL" => value is null,
        "IS NOT NULL" => value is not null,
        _ => value is not null && Compare(value, c),
    };

    internal static bool Compare(string value, Clause c) => c.Comparator switch
    {
        "=" => value == (string)c.Value!,
        "!=" => value != (string)c.Value!,
        "LIKE" => Like((string)c.Value!, RegexOptions.None).IsMatch(value),
        "ILIKE" => Like((string)c.Value!, RegexOptions.IgnoreCase).IsMatch(value),
        "IN" => ((List<string>)c.Value!).Contains(value),
        _ => !((List<string>)c.Value!).Contains(value),
    };

    /// <summary>SQL's LIKE: % any run of characters, _ one character.</summary>
    static Regex Like(string pattern, RegexOptions options)
    {
        var regex = new StringBuilder("^");
        foreach (var ch in pattern) regex.Append(ch switch { '%' => ".*", '_' => ".", _ => Regex.Escape(ch.ToString()) });
        return new Regex(regex.Append('$').ToString(), options | RegexOptions.Singleline | RegexOptions.CultureInvariant);
    }

    static readonly string[] RunAttributes = ["run_id", "run_name", "status", "user_id", "start_time", "end_time", "artifact_uri"];
    static readonly string[] ExperimentAttributes = ["name", "creation_time", "last_update_time"];
    static readonly string[] LoggedModelAttributes = ["name", "model_id", "model_type", "status", "source_run_id", "creation_timestamp",
        "last_updated_timestamp"];
    // The registry's (SearchModelUtils, SearchModelVersionUtils): what its filters may name.
    static readonly string[] RegisteredModelAttributes = ["name"];
    static readonly string[] ModelVersionAttributes = ["name", "version_number", "run_id", "source_path"];

    /// <summary>(kind, name) of <c>metrics.x</c>, <c>params."a b"</c>, <c>attributes.status</c> or a bare attribute.</summary>
    internal static (string Kind, string Name) Identifier(string token, Entity entity, string text)
    {
        if (entity is Entity.RegisteredModel or Entity.ModelVersion) return RegistryIdentifier(token, entity);
        var dot = token.IndexOf('.');
        var prefix = dot > 0 ? token[..dot].ToLowerInvariant() : "";
        var kind = prefix switch
        {
            "metric" or "metrics" => entity != Entity.Experiment ? "metrics" : null,
            "param" or "params" or "parameter" or "parameters" => entity != Entity.Experiment ? "params" : null,
            "tag" or "tags" => "tags",
            "attribute" or "attributes" or "attr" or "run" => "attributes",
            "dataset" or "datasets" => entity == Entity.Run ? "datasets" : null,
            _ => null,
        };
        var name = kind is null ? token : token[(dot + 1)..];
        name = Unquote(name);
        kind ??= "attributes";
        if (kind == "attributes")
        {
            // MLflow's aliases (SearchUtils.translate_key_alias), and the older names of two attributes.
            name = name switch
            {
                "run_uuid" => "run_id",
                "experiment_name" => "name",
                "created" or "Created" when entity == Entity.Run => "start_time",
                "run name" or "Run name" or "Run Name" when entity == Entity.Run => "run_name",
                _ => name,
            };
            var known = entity switch { Entity.Run => RunAttributes, Entity.Experiment => ExperimentAttributes, _ => LoggedModelAttributes };
            if (!known.Contains(name))
                throw Invalid(text, $"'{token}' is not a searchable {entity switch { Entity.Run => "run", Entity.Experiment => "experiment", _ => "logged model" }} attribute (use {string.Join(", ", known)}, or metrics., params., tags.)");
        }
        if (kind == "datasets" && name is not ("name" or "digest" or "context"))
            throw Invalid(text, $"Invalid dataset key '{name}' specified. Valid keys are name, digest and context");
        if (name.Length == 0) throw Invalid(text, $"'{token}' has no name");
        return (kind, name);
    }

    /// <summary>The registry's names (SearchModelUtils._get_model_search_identifier): <c>tag.</c>/<c>tags.</c>, <c>attribute.</c>
    /// or a bare attribute, with MLflow's messages.</summary>
    static (string Kind, string Name) RegistryIdentifier(string token, Entity entity)
    {
        var known = entity == Entity.RegisteredModel ? RegisteredModelAttributes : ModelVersionAttributes;
        var dot = token.IndexOf('.');
        var kind = "attributes";
        var name = token;
        if (dot > 0)
        {
            kind = token[..dot] switch
            {
                "tag" or "tags" => "tags",
                "attribute" => "attributes",
                var other => throw MlflowException.Invalid($"Invalid entity type '{other}'. Valid entity types are ('attribute', 'tag', 'tags')"),
            };
            name = token[(dot + 1)..];
        }
        if (kind == "attributes" && !known.Contains(name))
            throw MlflowException.Invalid($"Invalid attribute key '{name}' specified. Valid keys are '{{{string.Join(", ", known.Select(k => $"'{k}'"))}}}'");
        return (kind, Unquote(name));
    }

    static string Unquote(string name) =>
        name.Length >= 2 && (name[0] == '"' && name[^1] == '"' || name[0] == '`' && name[^1] == '`') ? name[1..^1] : name;

    static string StringValue(string token, string text) =>
        token.Length >= 2 && (token[0] == '\'' && token[^1] == '\'' || token[0] == '"' && token[^1] == '"') ? token[1..^1]
            : throw Invalid(text, $"expected a quoted string, got {token}");

    [GeneratedRegex("""\s*(`[^`]*`|"[^"]*"|'[^']*'|[A-Za-z_]\w*(?:\.(?:\w+|`[^`]*`|"[^"]*"))*|-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|!=|<=|>=|=|<|>|\(|\)|,)""")]
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

/// <summary>
/// MLflow's order_by: <c>metrics.x DESC</c>, <c>params.p</c>, <c>attributes.start_time ASC</c>, <c>metrics.`val loss`</c>;
/// missing values last in both directions. A field may appear once.
/// </summary>
public sealed class SearchOrder
{
    readonly List<(string Kind, string Name, bool Descending)> _keys;

    SearchOrder(List<(string, string, bool)> keys) => _keys = keys;

    internal IReadOnlyList<(string Kind, string Name, bool Descending)> Keys => _keys;

    public static SearchOrder Parse(IReadOnlyList<string>? orderBy, SearchFilter.Entity entity)
    {
        var keys = new List<(string Kind, string Name, bool Descending)>();
        foreach (var item in orderBy ?? [])
        {
            var parts = ShellWords(item);
            if (parts.Count is 0 or > 2) throw MlflowException.Invalid($"Invalid order_by clause '{item}'. Could not be parsed.");
            if (parts.Count == 2 && parts[1].ToUpperInvariant() is not ("ASC" or "DESC"))
                throw MlflowException.Invalid($"Invalid ordering key in order_by clause '{item}'.");
            var (kind, name) = SearchFilter.Identifier(parts[0], entity, item);
            if (kind == "datasets") throw MlflowException.Invalid($"Invalid order_by clause '{item}': runs are not ordered by their datasets.");
            if (keys.Any(k => k.Kind == kind && k.Name == name))
                throw MlflowException.Invalid($"`order_by` contains duplicate fields: [{string.Join(", ", orderBy!.Select(o => $"'{o}'"))}]");
            keys.Add((kind, name, parts.Count == 2 && parts[1].Equals("DESC", StringComparison.OrdinalIgnoreCase)));
        }
        return new SearchOrder(keys);
    }

    /// <summary>
    /// The words of an order_by item as MLflow reads them (<c>shlex.split</c> after backticks become double quotes):
    /// <c>metrics.`val loss` DESC</c> is <c>metrics.val loss</c> and <c>DESC</c>.
    /// </summary>
    static List<string> ShellWords(string item)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        var inWord = false;
        char? quote = null;
        foreach (var ch in item.Replace('`', '"'))
        {
            if (quote is { } open)
            {
                if (ch == open) quote = null;
                else word.Append(ch);
            }
            else if (ch is '"' or '\'') { quote = ch; inWord = true; }
            else if (char.IsWhiteSpace(ch))
            {
                if (inWord) words.Add(word.ToString());
                word.Clear();
                inWord = false;
            }
            else { word.Append(ch); inWord = true; }
        }
        if (quote is not null) throw MlflowException.Invalid($"Invalid order_by clause '{item}'. Could not be parsed.");
        if (inWord) words.Add(word.ToString());
        return words;
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
