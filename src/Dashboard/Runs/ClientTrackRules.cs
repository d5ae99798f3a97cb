using System.Text.Json;
using System.Text.Json.Serialization;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine;
using EmaLab.TrainingEngine.Averaging;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// A script's track rules as the Python companion records them in the tag <c>emalab.tracks</c>: a JSON list of complete
/// rules under the engine's names (a decay of <c>"NaN"</c> for SWA). With them the σ_rel plot marks a script's tracks
/// at their equivalent σ_rel, as it marks an engine run's.
/// </summary>
public static class ClientTrackRules
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals | JsonNumberHandling.AllowReadingFromString,
    };

    /// <summary>The rules of the tag's value, or null when there is none or it is not a list of valid rules.</summary>
    public static IReadOnlyList<EmaRule>? Parse(string? tag) => tag is null || Problem(tag) is not null ? null : Read(tag);

    /// <summary>Why the tag's value is not a list of valid rules (the tracking API refuses it so), or null.</summary>
    public static string? Problem(string tag)
    {
        try
        {
            var rules = Read(tag);
            for (var i = 0; i < rules.Count; i++) rules[i].Check($"[{i}]");
            return null;
        }
        catch (JsonException e)
        {
            return $"Tag '{TagNames.Tracks}' must be a JSON list of track rules (emalab's EmaTracks.rules): {e.Message}";
        }
        catch (InvalidSettingException e)
        {
            return $"Tag '{TagNames.Tracks}': rule {e.Field}: {e.Reason}";
        }
    }

    static List<EmaRule> Read(string tag) =>
        JsonSerializer.Deserialize<List<EmaRule>>(tag, Json) ?? throw new JsonException("null is not a list.");
}
