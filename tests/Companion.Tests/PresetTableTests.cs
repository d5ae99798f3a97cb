using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using EmaLab.TrainingEngine.Averaging;

namespace EmaLab.Companion.Tests;

/// <summary>
/// The companion's preset table (clients/python/emalab/rules.py) is the engine's (EmaPresets.cs): every preset, the
/// settings it takes, its default decay, its warm-ups and its source's defaults. The parity test holds the arithmetic
/// equal; this holds the table equal, so a preset or default added on one side alone fails here.
/// </summary>
[Trait("Speed", "Process")]
public sealed class PresetTableTests
{
    [Fact]
    public async Task The_companions_preset_table_is_the_engines()
    {
        var (code, output) = await Python.RunAsync("preset_table.py");
        Assert.True(code == 0, output);
        var companion = Canonical(JsonNode.Parse(output)!);
        var engine = Canonical(EngineTable());
        Assert.Equal(engine, companion);
    }

    static JsonObject EngineTable()
    {
        var table = new JsonObject();
        foreach (var preset in EmaPresets.All)
        {
            var defaults = new JsonObject();
            foreach (var field in EmaPresets.Fields(preset))
                if (EmaPresets.SourceDefault(preset, field) is { } value)
                    defaults[field] = value is double d && double.IsNaN(d) ? null : JsonValue.Create(Convert.ToDouble(value, CultureInfo.InvariantCulture));
            table[preset] = new JsonObject
            {
                ["settings"] = new JsonArray([.. EmaPresets.Fields(preset).Select(f => (JsonNode)JsonValue.Create(f))]),
                ["defaultDecay"] = EmaPresets.DefaultDecay(preset) is { } decay ? JsonValue.Create(decay) : null,
                ["warmups"] = new JsonArray([.. EmaPresets.Warmups(preset).Select(w => (JsonNode)JsonValue.Create(w))]),
                ["sourceDefaults"] = defaults,
            };
        }
        return table;
    }

    /// <summary>Objects with sorted keys and every number as a double, so 10 and 10.0 (Python's int and float) compare equal.</summary>
    static string Canonical(JsonNode node) => JsonSerializer.Serialize(Normalize(node));

    static JsonNode? Normalize(JsonNode? node) => node switch
    {
        JsonObject o => new JsonObject(o.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, Normalize(p.Value)))),
        JsonArray a => new JsonArray([.. a.Select(Normalize)]),
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => JsonValue.Create(v.GetValue<double>()),
        JsonValue v => JsonValue.Create(v.GetValue<string>()),
        _ => null,
    };
}
