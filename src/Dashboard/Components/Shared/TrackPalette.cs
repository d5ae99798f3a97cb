using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine;
using EmaLab.TrainingEngine.Averaging;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>How one track is drawn: its colour, and a Plotly dash (null for a solid line).</summary>
public readonly record struct TrackStyle(string Color, string? Dash)
{
    /// <summary>The CSS of a swatch for the track: its colour, striped like the line when dashed.</summary>
    public string SwatchCss => Dash is null
        ? $"background:{Color}"
        : $"background:repeating-linear-gradient(90deg, {Color} 0 3px, transparent 3px 5px); outline: 1px solid {Color}";
}

/// <summary>
/// The colours of one run's tracks. <c>raw</c> is grey; the other tracks take <see cref="TrackColors.Palette"/>'s colours
/// in display order (<see cref="EmaTrack.InDisplayOrder"/>), so no two of a run's first twelve share one (after twelve the
/// colours repeat, dotted). A low-precision track whose float32 twin is in the run takes the twin's colour, dashed: the
/// pair reads as one rule in two precisions. The run page, its lens, its group and the runs list build the palette from
/// the same track order, so a track has one colour everywhere.
/// </summary>
public sealed class TrackPalette
{
    /// <summary>The line of a low-precision twin.</summary>
    public const string TwinDash = "dash";
    const string RepeatDash = "dot";

    readonly Dictionary<string, TrackStyle> _styles = new(StringComparer.Ordinal);

    TrackPalette(IEnumerable<string> tracks, Func<string, string?> float32TwinOf)
    {
        var all = tracks.Distinct().ToList();
        var twins = all.Select(t => (Track: t, Twin: float32TwinOf(t))).Where(p => p.Twin is not null && all.Contains(p.Twin))
            .ToDictionary(p => p.Track, p => p.Twin!);
        var next = 0;
        foreach (var track in all.Where(t => !twins.ContainsKey(t)))
        {
            _styles[track] = track == TrackNames.Raw ? new TrackStyle(TrackColors.Raw, null)
                : new TrackStyle(TrackColors.ForIndex(next), next >= TrackColors.Palette.Count ? RepeatDash : null);
            if (track != TrackNames.Raw) next++;
        }
        foreach (var (track, twin) in twins) _styles[track] = _styles[twin] with { Dash = TwinDash };
    }

    /// <summary>
    /// A palette for tracks in their display order (raw anywhere); <paramref name="float32TwinOf"/> names a track's
    /// float32 twin, if any (by default the engine's naming: <c>ema-0.99-bf16</c> is the twin of <c>ema-0.99</c>).
    /// </summary>
    public static TrackPalette Of(IEnumerable<string> tracks, Func<string, string?>? float32TwinOf = null)
    {
        var list = tracks.ToList();
        return new(list, float32TwinOf ?? TwinsByName(list));
    }

    /// <summary>The palette of a run to be made from <paramref name="rules"/> (the new-run form, its lens): raw, then the rules' tracks.</summary>
    public static TrackPalette OfRules(IReadOnlyList<EmaRule> rules) =>
        Of([TrackNames.Raw, .. rules.Select(r => r.Name)], TwinsBy(rules));

    /// <summary>
    /// A run's palette: its tracks in display order; twins by the engine's rules (<paramref name="rules"/> when the caller
    /// has them already), or for a client's run by name.
    /// </summary>
    public static TrackPalette ForRun(Run run, IReadOnlyList<EmaRule>? rules = null) =>
        Of(EmaTrack.InDisplayOrder(run.Tracks).Select(t => t.Name), run.SpecJson is null ? null : TwinsBy(rules ?? run.EngineSpec().EmaRules()));

    static Func<string, string?> TwinsBy(IReadOnlyList<EmaRule> rules) =>
        track => rules.FirstOrDefault(r => r.Name == track) is { } rule ? EmaRule.Float32Twin(rule, rules)?.Name : null;

    static Func<string, string?> TwinsByName(IReadOnlyList<string> tracks) => track =>
        LowPrecisionSuffixes.FirstOrDefault(s => track.EndsWith(s, StringComparison.Ordinal)) is { } suffix
        && tracks.Contains(track[..^suffix.Length]) ? track[..^suffix.Length] : null;

    static readonly string[] LowPrecisionSuffixes = ["-bf16", "-fp16"];

    /// <summary>
    /// A track's style. A track the palette was not built with (a client's new track before the page reloads) gets a
    /// colour by its name, the same in every process.
    /// </summary>
    public TrackStyle this[string track] => _styles.TryGetValue(track, out var style) ? style
        : track == TrackNames.Raw ? new TrackStyle(TrackColors.Raw, null)
        : new TrackStyle(TrackColors.ForIndex(track.Aggregate(0, (h, c) => (h * 31 + c) % 9973)), null);

    /// <summary>The chart line of a track.</summary>
    public ChartSeries Series(string track, IReadOnlyList<MetricValue> points)
    {
        var style = this[track];
        return new ChartSeries(track, style.Color, points, Dash: style.Dash);
    }
}
