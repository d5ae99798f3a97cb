using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// Switch EMA (Li et al. 2024, arXiv 2402.09240; ema-pytorch's <c>update_model_with_ema_every</c>): every
/// <see cref="Every"/> steps, after the shadows' update, the trained weights become one track's weights as read.
/// It changes training itself, so it is a setting of the run, not a track: the raw curve of such a run is not the
/// raw curve of one without it. The optimizer's state is kept, as ema-pytorch keeps it.
/// </summary>
public sealed record SwitchEmaSettings
{
    /// <summary>The track whose weights replace the trained ones; null: the run's first EMA track.</summary>
    public string? Track { get; init; }
    /// <summary>Steps between switches (ema-pytorch <c>update_model_with_ema_every</c>).</summary>
    public int Every { get; init; }

    /// <summary>The problems of these settings for a run with <paramref name="rules"/> (null while the tracks are invalid).</summary>
    public IEnumerable<InvalidSettingException> Problems(IReadOnlyList<EmaRule>? rules)
    {
        if (Every < 1) yield return new InvalidSettingException("switchEma.every", "Switch EMA's 'every' must be at least 1 step.");
        if (rules is not null && Resolve(rules) is null)
            yield return new InvalidSettingException("switchEma.track", $"'{Track}' is not one of this run's EMA tracks ({string.Join(", ", rules.Select(r => r.Name))}).");
    }

    /// <summary>The index of the track switched to among <paramref name="rules"/>, or null when it names none.</summary>
    public int? Resolve(IReadOnlyList<EmaRule> rules) => IndexIn(rules.Select(r => r.Name).ToList());

    /// <summary>The index of the track switched to among the EMA tracks named <paramref name="tracks"/>, or null when it names none.</summary>
    public int? IndexIn(IReadOnlyList<string> tracks)
    {
        if (tracks.Count == 0) return null;
        if (Track is null) return 0;
        var index = tracks.ToList().IndexOf(Track);
        return index < 0 ? null : index;
    }

    /// <summary>
    /// Whether the weights switch after step <paramref name="t"/> (1-based). For an <c>ema-pytorch</c> track, its own
    /// <c>update()</c>: the counter is t − 1, the first call only copies, and a call that copies because the counter is
    /// within <c>update_after_step</c> returns before the switch; then when (t − 1) % every == 0. For the other rules,
    /// on multiples of every.
    /// </summary>
    public bool SwitchesAt(EmaRule rule, long t)
    {
        if (rule.Preset != EmaPresets.EmaPytorch) return t % Every == 0;
        var counter = t - 1;
        if (counter == 0) return false;
        if (counter % rule.Every == 0 && counter <= rule.UpdateAfterStep) return false;
        return counter % Every == 0;
    }

    /// <summary>What the run's raw curve is, given its EMA tracks: <c>Switch EMA: ema-0.999 copied into the trained weights every 500 steps</c>.</summary>
    public string Describe(IReadOnlyList<string> tracks) =>
        $"Switch EMA: {(IndexIn(tracks) is { } k ? tracks[k] : Track)} copied into the trained weights every {Every:N0} steps";
}

/// <summary>A run's Switch EMA at work: after the shadows' update at each step, the trained weights become the track's when due.</summary>
public sealed class SwitchEma(SwitchEmaSettings settings, ExponentialMovingAverage ema, int track)
{
    public SwitchEmaSettings Settings { get; } = settings;
    public int Track { get; } = track;

    /// <summary>Call after <see cref="ExponentialMovingAverage.Update"/> for the same step: true when the weights switched.</summary>
    public bool AfterUpdate(long step, nn.Module liveModel)
    {
        if (!Settings.SwitchesAt(ema.Shadows[Track].Rule, step)) return false;
        ema.WriteInto(Track, liveModel);
        return true;
    }
}
