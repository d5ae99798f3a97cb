using System.Linq.Expressions;
using System.Text.Json;
using EmaLab.Dashboard.Data;
using System.Text.RegularExpressions;
using EmaLab.TrainingEngine;
using EmaLab.TrainingEngine.Averaging;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// Which track a metric key logged by a client belongs to. Two rules, in order:
/// <list type="number">
/// <item>The run's tag <c>emalab.track_suffixes</c>, a JSON object of suffix → track
/// (<c>{"_ema": "ema-0.999"}</c>): <c>val_acc_ema</c> is metric <c>val_acc</c> of track <c>ema-0.999</c>, so a script that
/// logs <c>val_acc</c> and <c>val_acc_ema</c> is read without changing it. The longest matching suffix wins.</item>
/// <item>A first path segment that names a track — <c>raw</c>, <c>ema</c>/<c>swa</c> alone or followed by <c>-</c>, <c>_</c>
/// or <c>.</c> and more (<c>ema-0.999/eval/accuracy</c>, <c>swa/val_loss</c>), or a post-hoc reconstruction
/// (<c>posthoc-0.05/val_acc</c>, what a script logs after evaluating it) — is the track, the rest the metric.</item>
/// </list>
/// Any other key is a metric of <c>raw</c> (<c>train/loss</c> stays whole).
/// </summary>
public static partial class ClientTrackKeys
{

    [GeneratedRegex(@"^(raw|(ema|swa)([-_.][a-z0-9._-]*)?|posthoc-[0-9][0-9.]*)$")]
    private static partial Regex TrackSegment();

    public static (string Track, string Key) Map(string loggedKey, IReadOnlyDictionary<string, string> suffixes)
    {
        foreach (var (suffix, track) in suffixes.OrderByDescending(s => s.Key.Length))
            if (loggedKey.Length > suffix.Length && loggedKey.EndsWith(suffix, StringComparison.Ordinal))
                return (track, loggedKey[..^suffix.Length]);
        var slash = loggedKey.IndexOf('/');
        if (slash > 0 && slash < loggedKey.Length - 1 && IsTrackName(loggedKey[..slash]))
            return (loggedKey[..slash], loggedKey[(slash + 1)..]);
        return (TrackNames.Raw, loggedKey);
    }

    /// <summary>Whether a name (a key's first segment, a checkpoint's file name) names a track: <c>raw</c>, <c>ema</c>/<c>swa</c>
    /// alone or followed by <c>-</c>, <c>_</c> or <c>.</c> and more, or <c>posthoc-&lt;σ_rel&gt;</c>.</summary>
    public static bool IsTrackName(string name) => name.Length <= EmaTrackSettings.MaxNameLength && TrackSegment().IsMatch(name);

    /// <summary>The suffix map of the tag's value; a value that is not such a map is refused by name (nothing is logged).</summary>
    public static IReadOnlyDictionary<string, string> ParseSuffixes(string? tagValue)
    {
        if (string.IsNullOrWhiteSpace(tagValue)) return new Dictionary<string, string>();
        Dictionary<string, string>? map;
        try { map = JsonSerializer.Deserialize<Dictionary<string, string>>(tagValue); }
        catch (JsonException e) { throw MlflowException.Invalid($"Tag '{TagNames.TrackSuffixes}' must be a JSON object of suffix to track name, e.g. {{\"_ema\": \"ema-0.999\"}}: {e.Message}"); }
        foreach (var (suffix, track) in map ?? [])
        {
            if (suffix.Length == 0) throw MlflowException.Invalid($"Tag '{TagNames.TrackSuffixes}': a suffix must not be empty.");
            if (track != TrackNames.Raw && EmaTrackSettings.NameProblem(track) is { } problem)
                throw MlflowException.Invalid($"Tag '{TagNames.TrackSuffixes}': {problem}");
        }
        return map ?? [];
    }

    /// <summary>The key a track's metric is shown under in the tracking API for an engine run: <c>eval/accuracy</c> for
    /// raw, else <c>track/key</c>.</summary>
    public static string EngineKey(string track, string key) => track == TrackNames.Raw ? key : $"{track}/{key}";

    /// <summary>
    /// <see cref="EngineKey"/> read backwards, as a query over an engine run's series: exact for any track name the engine
    /// allows (a custom <c>slow</c> as well as <c>ema-0.999</c>), where <see cref="Map"/>'s rule knows only raw/ema/swa names.
    /// </summary>
    public static Expression<Func<LatestMetric, bool>> EngineKeyIs(string name) =>
        m => m.Track == TrackNames.Raw ? m.Key == name : m.Track + "/" + m.Key == name;

    /// <summary>The decay a track's name states (<c>ema-0.999</c> → 0.999), for the track row; null otherwise.</summary>
    public static double? DecayOf(string track) =>
        track.StartsWith(TrackNames.EmaPrefix, StringComparison.Ordinal)
        && double.TryParse(track[TrackNames.EmaPrefix.Length..], System.Globalization.NumberStyles.Float,
            System.Globalization.CultureInfo.InvariantCulture, out var d)
        && d is > 0 and < 1 ? d : null;
}
