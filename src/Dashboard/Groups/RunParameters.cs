using System.Globalization;
using System.Text.Json.Nodes;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Groups;

/// <summary>
/// A run's settings as flat name → text pairs, the same for every run whatever trained it: an engine run's spec flattened
/// to dotted JSON paths (<c>learningRate</c>, <c>ema.decays</c>; lists written compactly, <c>[256,256]</c>), a client's
/// run its logged params. Groups tell configurations apart by them, and compare shows the ones that differ.
/// </summary>
public static class RunParameters
{
    /// <summary>The parameter that only picks the random stream: runs that differ in it alone are one configuration.</summary>
    public const string Seed = "seed";

    public static SortedDictionary<string, string> Of(Run run, IEnumerable<RunParam> clientParams)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (run.SpecJson is not null) Flatten(JsonNode.Parse(run.SpecJson), "", result);
        else foreach (var p in clientParams) result[p.Key] = p.Value;
        return result;
    }

    /// <summary>Whether <paramref name="key"/> is the seed (a client's <c>Seed</c> or <c>seed</c> param too).</summary>
    public static bool IsSeed(string key) => string.Equals(key, Seed, StringComparison.OrdinalIgnoreCase);

    /// <summary>The keys whose values are not the same in every one of <paramref name="runs"/> (a key some lack counts as differing).</summary>
    public static List<string> Differing(IReadOnlyCollection<IReadOnlyDictionary<string, string>> runs) =>
        runs.SelectMany(r => r.Keys).Distinct().Order(StringComparer.Ordinal)
            .Where(key => runs.Select(r => r.GetValueOrDefault(key)).Distinct().Skip(1).Any()).ToList();

    static void Flatten(JsonNode? node, string path, IDictionary<string, string> into)
    {
        switch (node)
        {
            case JsonObject fields:
                foreach (var (key, value) in fields) Flatten(value, path.Length == 0 ? key : $"{path}.{key}", into);
                break;
            case JsonArray list when list.Any(item => item is JsonObject):
                // A list of settings objects (per-track EMA rules): each item under its index.
                for (var i = 0; i < list.Count; i++) Flatten(list[i], $"{path}[{i}]", into);
                break;
            case null:
                break;
            default:
                into[path] = Text(node);
                break;
        }
    }

    /// <summary>A JSON value as parameters and grid labels show it: strings and numbers bare, lists compact (<c>[128,128]</c>).</summary>
    public static string Text(JsonNode? node) => node switch
    {
        null => "null",
        JsonValue value when value.TryGetValue<string>(out var text) => text,
        JsonValue number when number.TryGetValue<double>(out var d) => d.ToString("R", CultureInfo.InvariantCulture),
        _ => node.ToJsonString(),
    };
}
