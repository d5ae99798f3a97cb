using EmaLab.Dashboard.Hosting;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Nodes;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Runs;

/// <summary>A request to create a run: the engine's run specification plus the service's own fields (name, checkpoint cadence).</summary>
/// <param name="ExperimentId">The experiment the run joins (the default experiment, 0, when not given); checked against
/// the database when the run is created.</param>
/// <param name="Group">The group the run joins within its experiment (its <see cref="TagNames.Group"/> tag), if any.</param>
public sealed record RunRequest(string Name, long? CheckpointEvery, RunSpec Spec, long ExperimentId = Data.Experiment.DefaultId, string? Group = null)
{
    public const int MaxNameLength = 200;
    /// <summary>Checkpoint files one run may write ((steps / checkpointEvery + 2) × tracks).</summary>
    public const int MaxCheckpoints = 1000;

    /// <summary>Reads and validates a request body; every problem is reported by field (JSON path, camelCase).</summary>
    public static RunRequest Parse(JsonNode? body)
    {
        if (body is not JsonObject fields) throw new RequestValidationException("$", "The body must be a JSON object holding the run specification.");
        fields = (JsonObject)fields.DeepClone();

        var name = TakeString(fields, "name");
        if (name is { Length: > MaxNameLength })
            throw new RequestValidationException("name", $"The name must be at most {MaxNameLength} characters.");
        var checkpointEvery = TakeLong(fields, "checkpointEvery");
        var experimentId = TakeLong(fields, "experimentId") ?? Data.Experiment.DefaultId;
        if (experimentId < 0)
            throw new RequestValidationException("experimentId", "experimentId is an experiment's id (0 is the default experiment).");
        if (checkpointEvery is < 1) throw new RequestValidationException("checkpointEvery", "checkpointEvery must be at least 1 step.");
        var group = TakeString(fields, "group")?.Trim();
        if (group is { Length: > MaxNameLength })
            throw new RequestValidationException("group", $"The group name must be at most {MaxNameLength} characters.");

        var spec = RequestJson.Deserialize<RunSpec>(fields);
        var problems = spec.Problems().Select(p => (p.Field, p.Reason)).ToList();
        if (checkpointEvery is { } every && problems.Count == 0)
        {
            var steps = spec.PlannedSteps();
            var tracks = 1 + spec.Ema.ShadowCount;
            var files = DiskPlan.CheckpointFiles(steps, every, tracks);
            if (every > steps) problems.Add(("checkpointEvery", "checkpointEvery must not exceed the number of steps."));
            else if (files > MaxCheckpoints)
                problems.Add(("checkpointEvery",
                    $"Every {every:N0} steps writes {files:N0} checkpoint files over {steps:N0} steps and {tracks} tracks; at most {MaxCheckpoints:N0} are allowed."));
        }
        if (problems.Count > 0)
            throw new RequestValidationException(problems.GroupBy(p => p.Field).ToDictionary(g => g.Key, g => g.Select(p => p.Reason).ToArray()));
        return new RunRequest(string.IsNullOrWhiteSpace(name) ? $"{spec.Model} on {spec.Dataset}" : name.Trim(), checkpointEvery, spec, experimentId,
            string.IsNullOrEmpty(group) ? null : group);
    }

    /// <summary>Applies <paramref name="overrides"/> (a partial request; nested objects such as <c>ema</c> merge field
    /// by field) to an existing run's request.</summary>
    public static RunRequest CloneOf(Data.Run original, JsonNode? overrides)
    {
        if (original.SpecJson is null)
            throw new RequestValidationException("$", $"Run {original.Id} was logged by a client; only runs EMA Lab trained can be cloned to train.");
        var merged = JsonNode.Parse(original.SpecJson)!.AsObject();
        const string suffix = " (clone)";
        merged["name"] = (original.Name.Length + suffix.Length > MaxNameLength ? original.Name[..(MaxNameLength - suffix.Length)]
            : original.Name) + suffix;
        if (original.CheckpointEvery is { } every) merged["checkpointEvery"] = every;
        merged["experimentId"] = original.ExperimentId;
        if (overrides is not null and not JsonObject) throw new RequestValidationException("$", "Overrides must be a JSON object.");
        if (overrides is JsonObject changes) Merge(merged, changes);
        return Parse(merged);
    }

    static void Merge(JsonObject target, JsonObject changes)
    {
        foreach (var (key, value) in changes)
        {
            var existing = target.FirstOrDefault(p => string.Equals(p.Key, key, StringComparison.OrdinalIgnoreCase));
            if (value is JsonObject nested && existing.Value is JsonObject inner) Merge(inner, nested);
            else
            {
                if (existing.Key is not null) target.Remove(existing.Key);
                target[key] = value?.DeepClone();
            }
        }
    }

    static JsonNode? Take(JsonObject fields, string name)
    {
        var match = fields.FirstOrDefault(p => string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase));
        if (match.Key is null) return null;
        fields.Remove(match.Key);
        return match.Value;
    }

    static string? TakeString(JsonObject fields, string name) => Take(fields, name) switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => throw new RequestValidationException(name, $"'{name}' must be a string."),
    };

    static long? TakeLong(JsonObject fields, string name) => Take(fields, name) switch
    {
        null => null,
        JsonValue v when v.TryGetValue<long>(out var n) => n,
        JsonValue v when v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < 1e15 => (long)d,
        _ => throw new RequestValidationException(name, $"'{name}' must be an integer."),
    };
}
