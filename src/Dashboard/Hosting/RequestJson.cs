using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Nodes;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Hosting;

/// <summary>
/// How the API reads JSON bodies: UTF-8 checked first, unknown fields refused, JSON null refused where the
/// type has no null, and every failure reported as a <see cref="RequestValidationException"/> naming the field.
/// </summary>
public static class RequestJson
{
    static readonly JsonSerializerOptions StrictJson = new(RunSpec.JsonOptions)
    {
        // A misspelt field is an error the client should see, not a silently ignored setting.
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
    };

    /// <summary>Parses a request body that must be UTF-8 JSON (bytes that are not UTF-8 are refused here, not deep inside a string read).</summary>
    public static JsonNode? Parse(ReadOnlySpan<byte> body)
    {
        if (!System.Text.Unicode.Utf8.IsValid(body)) throw new RequestValidationException("$", "The body is not valid UTF-8 JSON.");
        try
        {
            return JsonNode.Parse(body);
        }
        catch (JsonException e)
        {
            throw new RequestValidationException("$", $"Malformed JSON: {e.Message}");
        }
    }

    /// <summary>Reads <paramref name="node"/> as a <typeparamref name="T"/> (a JSON object); problems name their field.</summary>
    public static T Deserialize<T>(JsonNode? node) where T : class
    {
        if (node is not JsonObject) throw new RequestValidationException("$", "The body must be a JSON object.");
        try
        {
            return node.Deserialize<T>(StrictJson) ?? throw new RequestValidationException("$", "The body is empty.");
        }
        catch (JsonException e)
        {
            throw FromJsonException(e);
        }
    }

    static RequestValidationException FromJsonException(JsonException e)
    {
        const string unmapped = "The JSON property '";
        if (e.Message.StartsWith(unmapped, StringComparison.Ordinal))
        {
            var property = e.Message[unmapped.Length..e.Message.IndexOf('\'', unmapped.Length)];
            // The path of an unmapped member already ends with the member's name.
            var field = FieldFromPath(e.Path);
            if (field == "$") field = property;
            return new RequestValidationException(field, $"Unknown field '{field}'.");
        }
        var path = FieldFromPath(e.Path);
        if (e.Message.Contains("null", StringComparison.OrdinalIgnoreCase) && e.Message.Contains("nullab", StringComparison.OrdinalIgnoreCase))
            return new RequestValidationException(path, $"'{path}' must not be null.");
        return new RequestValidationException(path, path switch
        {
            "model" or "dataset" or "optimizer" or "schedule" or "name" => $"'{path}' must be a string.",
            "ema.bnPolicy" => "Unknown batch-norm policy; choose one of average, copy, recalibrate.",
            "emaApplication" => "Unknown EMA application; choose hook or fused.",
            "ema.decays" => "'ema.decays' must be a list of numbers.",
            _ => $"'{path}' has a value of the wrong type.",
        });
    }

    /// <summary><c>$.ema.decays[1]</c> → <c>ema.decays</c>.</summary>
    static string FieldFromPath(string? path)
    {
        if (string.IsNullOrEmpty(path) || path == "$") return "$";
        var field = path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path;
        var bracket = field.IndexOf('[');
        if (bracket >= 0) field = field[..bracket];
        return string.Join('.', field.Split('.').Select(JsonNamingPolicy.CamelCase.ConvertName));
    }
}

