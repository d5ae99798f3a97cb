using EmaLab.Dashboard.Hosting;
using System.Text.Json;
using System.Text.Json.Nodes;
using EmaLab.Dashboard.Runs;

namespace EmaLab.Dashboard.Groups;

/// <summary>One field the grid varies and the values it takes, in the order given.</summary>
public sealed record GridAxis(string Field, IReadOnlyList<string> Values);

/// <summary>
/// A group to launch: one run request whose top-level fields may be lists (<c>"seed": [1, 2, 3]</c>,
/// <c>"learningRate": [0.001, 0.003]</c>; for the list-valued <c>hidden</c> and <c>channels</c> a list of lists) →
/// the cross product as runs of one group, axes in the body's order with the seed last (varying fastest). Decays stay
/// inside each run (<c>ema</c> is never an axis): a run shadows
/// all its decays at once, so multiplying runs by decays would only repeat the same raw training.
/// </summary>
public sealed record GroupRequest(string Name, long ExperimentId, IReadOnlyList<GridAxis> Axes, IReadOnlyList<RunRequest> Runs, long TotalSteps)
{
    /// <summary>Runs one group request may create (a typo such as 100 seeds × 10 rates should not queue a thousand runs).</summary>
    public const int MaxRuns = 100;

    /// <summary>Fields whose plain value is already a list: an axis over them is a list of lists.</summary>
    static readonly string[] ListValued = ["hidden", "channels"];
    /// <summary>Fields that belong to the group, not to each combination.</summary>
    static readonly string[] GroupFields = ["name", "group", "experimentId", "checkpointEvery"];

    /// <summary>Reads and validates a group body; every combination is validated as a run would be, problems named by field.</summary>
    public static GroupRequest Parse(JsonNode? body)
    {
        if (body is not JsonObject fields)
            throw new RequestValidationException("$", "The body must be a JSON object holding the run specification, some of its fields as lists.");
        fields = (JsonObject)fields.DeepClone();
        if (Find(fields, "group") is { Key: not null } misplaced)
            throw new RequestValidationException(misplaced.Key,
                "A group's name is 'name' here; 'group' is how a single run joins a group (POST /api/runs).");

        var axes = new List<(string Field, List<JsonNode?> Values)>();
        foreach (var (key, value) in fields.ToList())
        {
            if (value is not JsonArray list || GroupFields.Contains(key, StringComparer.OrdinalIgnoreCase)) continue;
            var field = JsonNamingPolicy.CamelCase.ConvertName(key);
            var listValued = ListValued.Contains(field, StringComparer.OrdinalIgnoreCase);
            if (listValued && !list.All(v => v is JsonArray)) continue; // a plain [256, 256] is one value
            if (list.Count == 0) throw new RequestValidationException(field, $"'{field}' lists no values; give at least one.");
            var texts = list.Select(RunParameters.Text).ToList();
            if (texts.GroupBy(t => t).FirstOrDefault(g => g.Count() > 1) is { } twice)
                throw new RequestValidationException(field, $"'{field}' lists {twice.Key} more than once; each combination would run twice.");
            axes.Add((field, list.Select(v => v?.DeepClone()).ToList()));
            fields.Remove(key);
        }

        // The seed varies fastest: a configuration's seeds are queued together, so its statistics can show first.
        axes = [.. axes.OrderBy(a => a.Field == RunParameters.Seed)];
        // In double: many long axes must be refused by count, not wrap around a long.
        var count = axes.Aggregate(1.0, (product, axis) => product * axis.Values.Count);
        if (count > MaxRuns)
        {
            var largest = axes.MaxBy(a => a.Values.Count).Field;
            throw new RequestValidationException(largest,
                $"The grid makes {count:N0} runs ({string.Join(" × ", axes.Select(a => $"{a.Values.Count} {a.Field}"))}); at most {MaxRuns} per group.");
        }

        var givenName = Find(fields, "name").Value;
        fields.Remove(Find(fields, "name").Key ?? "name");
        var runs = new List<(RunRequest Request, string Label)>((int)count);
        for (var index = 0; index < count; index++)
        {
            var label = Label(axes, index);
            try
            {
                runs.Add((RunRequest.Parse(Combination(fields, axes, index)), label));
            }
            catch (RequestValidationException e) when (label.Length > 0)
            {
                throw new RequestValidationException(e.Errors.ToDictionary(p => p.Key, p =>
                    p.Value.Select(m => $"{m} (in the run with {label})").ToArray()));
            }
        }
        string name;
        if (givenName is null) name = DefaultName(runs[0].Request, axes);
        else if (givenName is JsonValue v && v.TryGetValue<string>(out var text))
        {
            name = string.IsNullOrWhiteSpace(text) ? DefaultName(runs[0].Request, axes) : text.Trim();
            if (name.Length > RunRequest.MaxNameLength)
                throw new RequestValidationException("name", $"The group name must be at most {RunRequest.MaxNameLength} characters.");
        }
        else throw new RequestValidationException("name", "'name' must be a string.");
        return new GroupRequest(name, runs[0].Request.ExperimentId,
            axes.Select(a => new GridAxis(a.Field, a.Values.Select(RunParameters.Text).ToList())).ToList(),
            runs.Select(r => r.Request with { Name = Truncate(r.Label.Length == 0 ? name : $"{name} · {r.Label}", RunRequest.MaxNameLength),
                Group = name }).ToList(),
            runs.Sum(r => r.Request.Spec.PlannedSteps()));
    }

    /// <summary>The fields with the values of combination <paramref name="index"/> (the last axis varies fastest).</summary>
    static JsonObject Combination(JsonObject fields, List<(string Field, List<JsonNode?> Values)> axes, long index)
    {
        var combination = (JsonObject)fields.DeepClone();
        foreach (var (field, values) in Enumerable.Reverse(axes))
        {
            combination[field] = values[(int)(index % values.Count)]?.DeepClone();
            index /= values.Count;
        }
        return combination;
    }

    /// <summary><c>seed=2 learningRate=0.003</c>: what sets a run of the group apart (axes of one value say nothing).</summary>
    static string Label(List<(string Field, List<JsonNode?> Values)> axes, long index)
    {
        var parts = new List<string>();
        foreach (var (field, values) in Enumerable.Reverse(axes))
        {
            if (values.Count > 1) parts.Add($"{field}={RunParameters.Text(values[(int)(index % values.Count)])}");
            index /= values.Count;
        }
        parts.Reverse();
        return string.Join(' ', parts);
    }

    static string DefaultName(RunRequest shared, List<(string Field, List<JsonNode?> Values)> axes)
    {
        var varied = axes.Where(a => a.Values.Count > 1).Select(a => $"{a.Field} ×{a.Values.Count}").ToList();
        return $"{shared.Spec.Model} on {shared.Spec.Dataset}" + (varied.Count > 0 ? $": {string.Join(", ", varied)}" : "");
    }

    static KeyValuePair<string, JsonNode?> Find(JsonObject fields, string name) =>
        fields.FirstOrDefault(p => string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase));

    static string Truncate(string text, int length) => text.Length <= length ? text : text[..(length - 1)] + "…";
}
