using EmaLab.TrainingEngine;
using System.Globalization;
using System.Text.RegularExpressions;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>
/// One colour per track on every page: <c>raw</c> is slate grey, and an EMA's hue follows its
/// timescale (−log10(1 − d): 0.9 → 1, 0.99 → 2, ...), so a decay has the same colour in every run.
/// </summary>
public static partial class TrackColors
{
    /// <summary>A slate grey that reads on the light and the dark (prefers-color-scheme) page alike.</summary>
    public const string Raw = "#5f6b85";
    public const string PostHoc = "#8a8f98";

    public const string Swa = "#b7791f";

    /// <summary>
    /// <c>ema-&lt;decay&gt;</c> takes its decay's hue; a track with its own rule (<c>ema-0.999-timm</c>) keeps that hue,
    /// turned by a fixed amount per rule so two rules of one decay differ; SWA is amber; anything else the raw grey.
    /// </summary>
    public static string For(string track)
    {
        if (track.StartsWith(TrackNames.PostHocPrefix, StringComparison.Ordinal)) return PostHoc;
        if (track == "swa" || track.StartsWith("swa-", StringComparison.Ordinal)) return Swa;
        var match = EmaName().Match(track);
        if (!match.Success || !double.TryParse(match.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var decay) || decay is <= 0 or >= 1)
            return Raw;
        var timescale = -Math.Log10(1 - decay);
        var rule = match.Groups[2].Value;
        // A stable turn per rule name (not string.GetHashCode, which differs between processes).
        var turn = rule.Length == 0 ? 0 : 25 + rule.Aggregate(0, (h, c) => (h * 31 + c) % 997) % 6 * 22;
        var hue = (int)Math.Round((200 + timescale * 110 + turn) % 360);
        return rule.Length == 0 ? $"hsl({hue}, 70%, 40%)" : $"hsl({hue}, 60%, 48%)";
    }

    [GeneratedRegex(@"^ema-(\d*\.?\d+(?:E-?\d+)?)(?:-(.+))?$", RegexOptions.IgnoreCase)]
    private static partial Regex EmaName();

    /// <summary>A track's name without its kind where that is clear: <c>ema-0.99</c> → 0.99, <c>posthoc-0.075</c> → post-hoc σ 0.075.</summary>
    public static string ShortName(string track) =>
        track.StartsWith("ema-", StringComparison.Ordinal) ? track["ema-".Length..]
        : track.StartsWith("posthoc-", StringComparison.Ordinal) ? "post-hoc σ " + track["posthoc-".Length..]
        : track;

    /// <summary>A fixed palette for runs on the compare page.</summary>
    public static string ForIndex(int index) => Palette[index % Palette.Length];

    /// <summary>The colour with an alpha (for bands): <c>hsl(…)</c> → <c>hsla(…, a)</c>, <c>#rrggbb</c> → <c>rgba(…, a)</c>.</summary>
    public static string Translucent(string color, double alpha)
    {
        var a = alpha.ToString("0.###", CultureInfo.InvariantCulture);
        if (color.StartsWith("hsl(", StringComparison.Ordinal)) return $"hsla({color[4..^1]}, {a})";
        if (color is ['#', _, _, _, _, _, _])
        {
            var rgb = Convert.FromHexString(color[1..]);
            return $"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {a})";
        }
        return color;
    }

    static readonly string[] Palette = ["#2f5bd3", "#d35f2f", "#1f8a4c", "#8e44ad", "#c0392b", "#16a085", "#b7791f", "#34495e"];
}
