using System.Globalization;
using System.Text;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// MLflow's limits and name rules (mlflow/utils/validation.py), in one place, for everything that stores names and
/// values the way MLflow does (the tracking API, a run's notes and tags). Lengths are Python's <c>len</c>: Unicode
/// code points, not UTF-16 units (a key with '𝔼' is one character longer, not two), and a value cut to its limit is
/// cut between code points, never inside a surrogate pair.
/// </summary>
public static class MlflowLimits
{
    public const int MaxMetricsPerBatch = 1000;
    public const int MaxParamsTagsPerBatch = 100;
    public const int MaxEntitiesPerBatch = 1000;
    public const int MaxBatchRequestBytes = 1_000_000;
    public const int MaxEntityKeyLength = 250;
    public const int MaxParamValueLength = 6000;
    public const int MaxTagValueLength = 8000;
    public const int MaxExperimentTagValueLength = 5000;
    public const int MaxRunNameLength = 200;

    /// <summary>Python's <c>len</c> of a string: its code points.</summary>
    public static int Length(string text)
    {
        var surrogatePairs = 0;
        for (var i = 0; i < text.Length - 1; i++)
            if (char.IsHighSurrogate(text[i]) && char.IsLowSurrogate(text[i + 1])) { surrogatePairs++; i++; }
        return text.Length - surrogatePairs;
    }

    /// <summary>The first <paramref name="limit"/> code points (MLflow truncates long param and tag values rather than refusing them).</summary>
    public static string Truncate(string value, int limit)
    {
        if (value.Length <= limit) return value; // fewer UTF-16 units than the limit: fewer code points too
        var units = 0;
        for (var points = 0; points < limit && units < value.Length; points++)
            units += char.IsHighSurrogate(value[units]) && units + 1 < value.Length && char.IsLowSurrogate(value[units + 1]) ? 2 : 1;
        return value[..units];
    }

    /// <summary>Why <paramref name="name"/> is not a valid param, metric or tag name, or null.</summary>
    public static string? NameProblem(string name)
    {
        foreach (var rune in name.EnumerateRunes())
            if (!IsNameCharacter(rune))
                return "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).";
        return PathProblem(name);
    }

    /// <summary>MLflow's <c>path_not_unique</c> with its <c>bad_path_message</c>: a name must not resolve to another path.</summary>
    public static string? PathProblem(string name)
    {
        var normalized = NormalizePath(name);
        if (normalized != name || normalized == "." || normalized.StartsWith("..", StringComparison.Ordinal) || normalized.StartsWith('/'))
            return $"Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '{normalized}'";
        return null;
    }

    static bool IsNameCharacter(Rune rune) =>
        rune.Value is '/' or '.' or '-' or ' ' or ':' or '_'
        || Rune.GetUnicodeCategory(rune) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber
            or UnicodeCategory.OtherNumber;

    /// <summary>Python's <c>posixpath.normpath</c> (collapses '//', '.', 'x/..', trailing '/').</summary>
    public static string NormalizePath(string path)
    {
        if (path.Length == 0) return ".";
        var initialSlashes = path.StartsWith('/') ? path.StartsWith("//", StringComparison.Ordinal)
            && !path.StartsWith("///", StringComparison.Ordinal) ? 2 : 1 : 0;
        var parts = new List<string>();
        foreach (var part in path.Split('/'))
        {
            if (part is "" or ".") continue;
            if (part != ".." || (initialSlashes == 0 && parts.Count == 0) || (parts.Count > 0 && parts[^1] == "..")) parts.Add(part);
            else if (parts.Count > 0) parts.RemoveAt(parts.Count - 1);
        }
        var result = new string('/', initialSlashes) + string.Join('/', parts);
        return result.Length == 0 ? "." : result;
    }
}
