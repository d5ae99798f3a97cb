using System.Text.RegularExpressions;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// One track of <c>ema.tracks</c> as a client writes it: a preset (the library whose update loop it reproduces,
/// default <c>emalab</c>, the run's own rule) and that library's arguments under shared names. A field left out
/// takes the preset's default (for <c>emalab</c>, the run's shared settings); a field the preset does not have
/// is refused by name. <see cref="Resolve"/> turns it into a complete <see cref="EmaRule"/>.
/// </summary>
public sealed partial record EmaTrackSettings
{
    public const int MaxNameLength = 64;

    public string? Name { get; init; }
    public string? Preset { get; init; }
    /// <summary>TF/timm/diffusers/AveragedModel/Lightning <c>decay</c>, ema-pytorch <c>beta</c>, Keras <c>ema_momentum</c>.</summary>
    public double? Decay { get; init; }
    /// <summary><c>none</c>, <c>tf</c> (TF's <c>num_updates</c>) or <c>power</c> (timm/diffusers/ema-pytorch).</summary>
    public string? Warmup { get; init; }
    /// <summary>Power warm-up: timm <c>warmup_gamma</c>, diffusers/ema-pytorch <c>inv_gamma</c>.</summary>
    public double? InvGamma { get; init; }
    /// <summary>Power warm-up exponent: timm <c>warmup_power</c>, diffusers/ema-pytorch <c>power</c>.</summary>
    public double? Power { get; init; }
    /// <summary>Lower bound of the warm-up decay: timm/diffusers <c>min_decay</c>, ema-pytorch <c>min_value</c>.</summary>
    public double? MinDecay { get; init; }
    /// <summary>timm/diffusers/ema-pytorch <c>update_after_step</c>.</summary>
    public long? UpdateAfterStep { get; init; }
    /// <summary>emalab/swa: first step averaged; Lightning: <c>update_starting_at_step</c> (a zero-based step index).</summary>
    public long? StartStep { get; init; }
    /// <summary>emalab/swa: update on multiples of this step; ema-pytorch <c>update_every</c>; Lightning <c>update_every_n_steps</c>.</summary>
    public int? Every { get; init; }
    /// <summary>emalab: with <c>every</c> N, apply d^N per update so the horizon in steps stays the same.</summary>
    public bool? AdjustDecay { get; init; }
    /// <summary>emalab: <c>initial</c> (TF: the weights before the first step) or <c>first-update</c> (the first update copies).</summary>
    public string? Init { get; init; }
    /// <summary>emalab/tensorflow: start the shadow at zero and divide by the bias.</summary>
    public bool? ZeroDebias { get; init; }
    /// <summary>The shadow's storage: <c>float32</c>, <c>bfloat16</c> or <c>float16</c>.</summary>
    public string? Dtype { get; init; }
    /// <summary>emalab: the decay as a half-life in samples, <c>decay = 0.5^(batch / halfLifeSamples)</c> (instead of <c>decay</c>).</summary>
    public double? HalfLifeSamples { get; init; }
    /// <summary>edm <c>ema_halflife_kimg</c>.</summary>
    public double? HalfLifeKimg { get; init; }
    /// <summary>edm <c>ema_rampup_ratio</c> (EDM's 0.05 when left out); 0 for none (EDM's <c>None</c>: a ratio of 0 would only ever copy).</summary>
    public double? RampupRatio { get; init; }
    /// <summary>BEMA <c>ema_power</c> κ.</summary>
    public double? EmaPower { get; init; }
    /// <summary>BEMA η: TRL <c>bias_power</c>, the authors' <c>eta_power</c>.</summary>
    public double? BiasPower { get; init; }
    /// <summary>BEMA ρ: TRL <c>lag</c>, the authors' <c>scaling_lag</c>.</summary>
    public long? Lag { get; init; }
    /// <summary>BEMA γ: TRL <c>multiplier</c>, the authors' <c>ema_gamma</c>.</summary>
    public double? Multiplier { get; init; }
    /// <summary>BEMA <c>min_ema_multiplier</c>.</summary>
    public double? MinEmaMultiplier { get; init; }
    /// <summary>LAWA k: the mean of this many latest weights.</summary>
    public int? Checkpoints { get; init; }
    /// <summary>torchvision <c>epochs</c> (the run's epochs when left out).</summary>
    public int? Epochs { get; init; }
    /// <summary>torchvision <c>lr_warmup_epochs</c>.</summary>
    public int? WarmupEpochs { get; init; }

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]*$")]
    private static partial Regex NameCharacters();

    /// <summary>
    /// The complete rule for this track. <paramref name="field"/> is its path (<c>ema.tracks[2]</c>) for errors;
    /// <paramref name="run"/> supplies the defaults of the <c>emalab</c> preset; <paramref name="shape"/>, the run's batch size
    /// and epoch length, which rules counted in samples or epochs need (null where not known: such a rule is refused).
    /// Throws <see cref="InvalidSettingException"/>.
    /// </summary>
    public EmaRule Resolve(EmaSettings run, string field, EmaRunShape? shape)
    {
        var preset = Preset ?? EmaPresets.EmaLab;
        if (!EmaPresets.All.Contains(preset))
            throw new InvalidSettingException(field + ".preset", $"Unknown preset '{preset}'; use one of {string.Join(", ", EmaPresets.All)}.");
        foreach (var (name, given) in Given())
            if (given && !EmaPresets.Accepts(preset, name))
                throw new InvalidSettingException($"{field}.{name}", $"The {preset} preset has no '{name}' setting (it takes {string.Join(", ", EmaPresets.Fields(preset))}).");

        var isEmaLab = preset == EmaPresets.EmaLab;
        T Default<T>(string name, T fallback) => EmaPresets.SourceDefault(preset, name) is T value ? value : fallback;
        if (HalfLifeSamples is not null && Decay is not null)
            throw new InvalidSettingException(field + "." + EmaFields.HalfLifeSamples, "Give either a decay or a half-life in samples, not both.");
        if (preset == EmaPresets.Torchvision && Epochs is null && shape is not { TotalSteps: > 0 })
            throw new InvalidSettingException(field + "." + EmaFields.Epochs, "torchvision adjusts its decay to the run's epochs, which are not known here: give 'epochs'.");
        var needsBatch = HalfLifeSamples is not null || EmaPresets.UsesBatchSize(preset);
        if (needsBatch && shape is null)
            throw HalfLifeSamples is not null || preset == EmaPresets.Edm
                ? new InvalidSettingException(field + "." + (HalfLifeSamples is not null ? EmaFields.HalfLifeSamples : EmaFields.HalfLifeKimg), "A half-life in samples needs the run's batch size.")
                : new InvalidSettingException(field + ".preset", $"The {preset} preset needs the run's batch size and epoch length.");
        if (preset == EmaPresets.Lawa && Every is null && shape is null)
            throw new InvalidSettingException(field + "." + EmaFields.Every, "LAWA takes a checkpoint per epoch unless 'every' says otherwise, and the run's epoch length is not known here: give 'every'.");
        var rule = new EmaRule
        {
            Preset = preset,
            Decay = !EmaPresets.HasDecay(preset) ? double.NaN
                : HalfLifeSamples is { } halfLife ? (halfLife > 0 ? Math.Pow(0.5, shape!.Value.BatchSize / halfLife) : double.NaN)
                : Decay ?? EmaPresets.DefaultDecay(preset) ?? throw new InvalidSettingException(field + "." + EmaFields.Decay, "A decay is needed."),
            Warmup = Warmup ?? (isEmaLab ? (run.Warmup ? EmaWarmup.Tf : EmaWarmup.None) : EmaPresets.Warmups(preset)[0]),
            InvGamma = InvGamma ?? 1.0,
            Power = Power ?? 2.0 / 3.0,
            MinDecay = MinDecay ?? 0.0,
            UpdateAfterStep = UpdateAfterStep ?? Default(EmaFields.UpdateAfterStep, 0L),
            StartStep = StartStep ?? (isEmaLab ? run.StartStep : preset == EmaPresets.Swa ? 1 : 0),
            // LAWA takes a checkpoint per epoch unless told otherwise.
            Every = Every ?? (isEmaLab ? run.Every : preset == EmaPresets.Lawa ? shape!.Value.BatchesPerEpoch : Default(EmaFields.Every, 1)),
            AdjustDecay = AdjustDecay ?? false,
            Init = Init ?? EmaInit.Initial,
            ZeroDebias = ZeroDebias ?? (isEmaLab && run.ZeroDebias),
            Dtype = Dtype ?? EmaDtype.Float32,
            HalfLifeSamples = HalfLifeSamples ?? double.NaN,
            HalfLifeKimg = HalfLifeKimg ?? Default(EmaFields.HalfLifeKimg, double.NaN),
            RampupRatio = RampupRatio is 0 ? double.NaN : RampupRatio ?? Default(EmaFields.RampupRatio, double.NaN),
            BatchSize = needsBatch ? shape!.Value.BatchSize : 0,
            EmaPower = EmaPower ?? Default(EmaFields.EmaPower, 0.0),
            BiasPower = BiasPower ?? Default(EmaFields.BiasPower, 0.0),
            Lag = Lag ?? Default(EmaFields.Lag, 0L),
            Multiplier = Multiplier ?? Default(EmaFields.Multiplier, 0.0),
            MinEmaMultiplier = MinEmaMultiplier ?? Default(EmaFields.MinEmaMultiplier, 0.0),
            Checkpoints = Checkpoints ?? Default(EmaFields.Checkpoints, 0),
            Epochs = Epochs ?? (preset == EmaPresets.Torchvision ? shape!.Value.Epochs : 0),
            WarmupEpochs = WarmupEpochs ?? Default(EmaFields.WarmupEpochs, 0),
            BatchesPerEpoch = preset == EmaPresets.Torchvision ? shape!.Value.BatchesPerEpoch : 0,
            Name = "",
        };
        rule.Check(field);
        return rule with { Name = Name ?? rule.DefaultName(run) };
    }

    /// <summary>Checks a user-given name (charset, length, reserved prefixes).</summary>
    public static string? NameProblem(string name)
    {
        if (name.Length is 0 or > MaxNameLength) return $"A track name has 1 to {MaxNameLength} characters.";
        if (!NameCharacters().IsMatch(name)) return $"Track name '{name}' may use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit.";
        if (name == TrackNames.Raw || name.StartsWith(TrackNames.PowerFunctionPrefix, StringComparison.Ordinal) || name.StartsWith(TrackNames.PostHocPrefix, StringComparison.Ordinal))
            return $"Track name '{name}' is reserved ('raw', 'pf-…' and 'posthoc-…' name other tracks).";
        return null;
    }

    IEnumerable<(string Name, bool Given)> Given() =>
    [
        (EmaFields.Decay, Decay is not null), (EmaFields.Warmup, Warmup is not null), (EmaFields.InvGamma, InvGamma is not null), (EmaFields.Power, Power is not null),
        (EmaFields.MinDecay, MinDecay is not null), (EmaFields.UpdateAfterStep, UpdateAfterStep is not null), (EmaFields.StartStep, StartStep is not null),
        (EmaFields.Every, Every is not null), (EmaFields.AdjustDecay, AdjustDecay is not null), (EmaFields.Init, Init is not null),
        (EmaFields.ZeroDebias, ZeroDebias is not null), (EmaFields.Dtype, Dtype is not null),
        (EmaFields.HalfLifeSamples, HalfLifeSamples is not null), (EmaFields.HalfLifeKimg, HalfLifeKimg is not null), (EmaFields.RampupRatio, RampupRatio is not null),
        (EmaFields.EmaPower, EmaPower is not null), (EmaFields.BiasPower, BiasPower is not null), (EmaFields.Lag, Lag is not null),
        (EmaFields.Multiplier, Multiplier is not null), (EmaFields.MinEmaMultiplier, MinEmaMultiplier is not null), (EmaFields.Checkpoints, Checkpoints is not null),
        (EmaFields.Epochs, Epochs is not null), (EmaFields.WarmupEpochs, WarmupEpochs is not null),
    ];
}


/// <summary>
/// What rules counted in samples or epochs need to know of their run: samples per step, steps per epoch and the run's
/// length in steps (0 where not known).
/// </summary>
public readonly record struct EmaRunShape(int BatchSize, int BatchesPerEpoch, long TotalSteps = 0)
{
    /// <summary>The run's epochs, a last partial one counted (what an epoch-based script would be told).</summary>
    public int Epochs => BatchesPerEpoch < 1 ? 0 : (int)((TotalSteps + BatchesPerEpoch - 1) / BatchesPerEpoch);
}
