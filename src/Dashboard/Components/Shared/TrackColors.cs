using System.Globalization;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>
/// The colours EMA Lab draws with: <see cref="Raw"/> grey for the raw weights and a categorical palette of twelve for
/// everything compared with it (a run's tracks through <see cref="TrackPalette"/>, runs on the compare page, a group's
/// configurations).
/// </summary>
public static class TrackColors
{
    /// <summary>A neutral grey that reads on the light and the dark page alike; no palette colour is grey.</summary>
    public const string Raw = "#6b7280";

    /// <summary>
    /// Twelve colours chosen greedily, each the one farthest from raw's grey and from all before it (CIEDE2000, in
    /// normal vision and as protanopia, deuteranopia and tritanopia show them: Machado et al. 2009), among colours with
    /// a contrast of at least 2.5:1 against the light and the dark card. The first colours are the most distinct, so a
    /// run with few tracks gets the clearest ones. <c>TrackPaletteTests</c> holds the measured distances.
    /// </summary>
    public static readonly IReadOnlyList<string> Palette =
    [
        "#2563eb", "#e07000", "#00b880", "#b80030", "#e080d0", "#007048",
        "#983090", "#88a050", "#a078ff", "#e02880", "#986800", "#f88080",
    ];

    /// <summary>The <paramref name="index"/>-th palette colour (repeating after twelve): runs on the compare page, a
    /// group's configurations.</summary>
    public static string ForIndex(int index) => Palette[index % Palette.Count];

    /// <summary>A track's name without its kind where that is clear: <c>ema-0.99</c> → 0.99, <c>posthoc-0.075</c> → post-hoc σ 0.075.</summary>
    public static string ShortName(string track) =>
        track.StartsWith("ema-", StringComparison.Ordinal) ? track["ema-".Length..]
        : track.StartsWith("posthoc-", StringComparison.Ordinal) ? "post-hoc σ " + track["posthoc-".Length..]
        : track;

    /// <summary>The colour with an alpha (for bands): <c>#rrggbb</c> → <c>rgba(…, a)</c>.</summary>
    public static string Translucent(string color, double alpha)
    {
        var a = alpha.ToString("0.###", CultureInfo.InvariantCulture);
        if (color is not ['#', _, _, _, _, _, _]) return color;
        var rgb = Convert.FromHexString(color[1..]);
        return $"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {a})";
    }
}
