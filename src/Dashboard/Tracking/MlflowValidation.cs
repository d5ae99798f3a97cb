using EmaLab.Dashboard.Data;
using static EmaLab.Dashboard.Data.MlflowLimits;

namespace EmaLab.Dashboard.Tracking;

/// <summary>The tracking API's checks of MLflow's limits and name rules (<see cref="MlflowLimits"/>): a broken one is MLflow's error.</summary>
public static partial class MlflowValidation
{
    /// <summary>A URI's scheme (<c>s3</c>, <c>file</c>, <c>mlflow-artifacts</c>), or null for a plain path, as Python's
    /// <c>urlparse</c> reads it for MLflow's <c>is_local_uri</c> and <c>resolve_uri_if_local</c>.</summary>
    public static string? UriScheme(string uri) => SchemePrefix().Match(uri) is { Success: true } m ? m.Groups[1].Value : null;

    [System.Text.RegularExpressions.GeneratedRegex(@"^([A-Za-z][A-Za-z0-9+.\-]*):")]
    private static partial System.Text.RegularExpressions.Regex SchemePrefix();

    /// <summary>
    /// <c>validate_param_and_metric_name</c> on Linux, <c>^[/\w.\- :]*$</c> with Python's Unicode <c>\w</c> (letters,
    /// numbers and '_'), and <c>path_not_unique</c>: a name must not resolve to another path.
    /// </summary>
    public static void Name(string kind, string? name, string path)
    {
        if (name is null) throw MlflowException.Invalid($"{Capitalized(kind)} name cannot be None. A key name must be provided.");
        if (NameProblem(name) is { } problem) throw MlflowException.Invalid($"Invalid value {Json(name)} for parameter '{path}' supplied: {problem}");
    }

    /// <summary><c>_validate_length_limit</c> without truncation: over the limit is refused.</summary>
    public static void LengthLimit(string entity, int limit, string value)
    {
        if (value.Length > limit && Length(value) > limit)
            throw MlflowException.Invalid($"'{entity}' exceeds the maximum length of {limit} characters");
    }

    public static void BatchLimit(string entity, int limit, int count)
    {
        if (count > limit)
            throw MlflowException.Invalid($"A batch logging request can contain at most {limit} {entity}. Got {count} {entity}. Please split up {entity} across multiple requests and try again.");
    }

    static string Capitalized(string kind) => kind == "param" ? "Parameter" : char.ToUpperInvariant(kind[0]) + kind[1..];

    /// <summary>A value as <c>json.dumps</c> writes it in MLflow's <c>invalid_value</c> messages.</summary>
    static string Json(string value) => System.Text.Json.JsonSerializer.Serialize(value, MlflowJson.Options);
}
