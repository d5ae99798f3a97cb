using System.Globalization;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// A track's complete averaging rule (every field set): what <see cref="ExponentialMovingAverage"/> runs, what a
/// checkpoint's metadata records, what the API shows. Field meanings follow <see cref="EmaTrackSettings"/>.
/// </summary>
public sealed record EmaRule
{
    public required string Name { get; init; }
    public required string Preset { get; init; }
    /// <summary>NaN for the presets without one decay (<see cref="EmaPresets.HasDecay"/>).</summary>
    public double Decay { get; init; }
    public string Warmup { get; init; } = EmaWarmup.None;
    public double InvGamma { get; init; } = 1.0;
    public double Power { get; init; } = 2.0 / 3.0;
    public double MinDecay { get; init; }
    public long UpdateAfterStep { get; init; }
    public long StartStep { get; init; }
    public int Every { get; init; } = 1;
    public bool AdjustDecay { get; init; }
    public string Init { get; init; } = EmaInit.Initial;
    public bool ZeroDebias { get; init; }
    public string Dtype { get; init; } = EmaDtype.Float32;
    /// <summary>emalab: the decay was given as a half-life in samples (decay = 0.5^(B / H)); NaN when given as a decay.</summary>
    public double HalfLifeSamples { get; init; } = double.NaN;
    /// <summary>edm: <c>ema_halflife_kimg</c>, the half-life in thousands of samples.</summary>
    public double HalfLifeKimg { get; init; } = double.NaN;
    /// <summary>edm: <c>ema_rampup_ratio</c>, the half-life at most this share of the samples seen; NaN for none.</summary>
    public double RampupRatio { get; init; } = double.NaN;
    /// <summary>Samples per optimizer step (the run's batch size) for the rules that count samples; 0 for the others.</summary>
    public int BatchSize { get; init; }
    /// <summary>BEMA κ (<c>ema_power</c>).</summary>
    public double EmaPower { get; init; }
    /// <summary>BEMA η (TRL <c>bias_power</c>, the authors' <c>eta_power</c>).</summary>
    public double BiasPower { get; init; }
    /// <summary>BEMA ρ (TRL <c>lag</c>, the authors' <c>scaling_lag</c>).</summary>
    public long Lag { get; init; }
    /// <summary>BEMA γ (TRL <c>multiplier</c>, the authors' <c>ema_gamma</c>).</summary>
    public double Multiplier { get; init; }
    /// <summary>BEMA: the lower bound of β (<c>min_ema_multiplier</c>).</summary>
    public double MinEmaMultiplier { get; init; }
    /// <summary>LAWA k: how many of the latest weights the mean takes.</summary>
    public int Checkpoints { get; init; }
    /// <summary>torchvision <c>epochs</c>: the run's length its decay is adjusted for.</summary>
    public int Epochs { get; init; }
    /// <summary>torchvision <c>lr_warmup_epochs</c>: during them every update copies the weights.</summary>
    public int WarmupEpochs { get; init; }
    /// <summary>Steps per epoch, for the rules that count iterations within an epoch (torchvision); 0 for the others.</summary>
    public int BatchesPerEpoch { get; init; }

    /// <summary>BEMA of either source: a bias-corrected EMA (θ₀, the EMA and the weights read are kept apart).</summary>
    public bool IsBema => Preset is EmaPresets.Bema or EmaPresets.TrlBema;

    /// <summary>
    /// The float32 track among <paramref name="rules"/> that follows the same rule as low-precision
    /// <paramref name="rule"/> (its reference: the difference between the two is what the precision costs); null if none.
    /// </summary>
    public static EmaRule? Float32Twin(EmaRule rule, IEnumerable<EmaRule> rules)
    {
        if (rule.Dtype == EmaDtype.Float32) return null;
        var same = rule with { Name = "", Dtype = EmaDtype.Float32 };
        return rules.FirstOrDefault(r => r.Dtype == EmaDtype.Float32 && r with { Name = "" } == same);
    }

    /// <summary>Throws <see cref="InvalidSettingException"/> (under <paramref name="field"/>) for a rule no preset allows.</summary>
    public void Check(string field)
    {
        CheckNewRules(field);
        if (EmaPresets.HasDecay(Preset) && !(Decay >= 0 && Decay < 1 && (Decay > 0 || Preset != EmaPresets.EmaLab)))
            throw new InvalidSettingException(field + "." + EmaFields.Decay, $"Decay {Decay.ToString(CultureInfo.InvariantCulture)} is outside {(Preset == EmaPresets.EmaLab ? "(0, 1)" : "[0, 1)")}.");
        if (!EmaPresets.Warmups(Preset).Contains(Warmup))
            throw new InvalidSettingException(field + "." + EmaFields.Warmup, $"The {Preset} preset's warm-up is one of {string.Join(", ", EmaPresets.Warmups(Preset))}.");
        if (!(InvGamma > 0) || double.IsInfinity(InvGamma)) throw new InvalidSettingException(field + "." + EmaFields.InvGamma, "invGamma must be a positive number.");
        if (!(Power > 0) || double.IsInfinity(Power)) throw new InvalidSettingException(field + "." + EmaFields.Power, "power must be a positive number.");
        if (!(MinDecay >= 0 && MinDecay < 1)) throw new InvalidSettingException(field + "." + EmaFields.MinDecay, "minDecay must be in [0, 1).");
        if (MinDecay > Decay) throw new InvalidSettingException(field + "." + EmaFields.MinDecay, "minDecay must not exceed the decay.");
        if (UpdateAfterStep < 0) throw new InvalidSettingException(field + "." + EmaFields.UpdateAfterStep, "updateAfterStep must not be negative.");
        if (StartStep < 0) throw new InvalidSettingException(field + "." + EmaFields.StartStep, "The start step must not be negative.");
        if (Every < 1) throw new InvalidSettingException(field + "." + EmaFields.Every, "'every' must be at least 1.");
        if (Init is not (EmaInit.Initial or EmaInit.FirstUpdate)) throw new InvalidSettingException(field + "." + EmaFields.Init, $"init is '{EmaInit.Initial}' or '{EmaInit.FirstUpdate}'.");
        if (!EmaDtype.All.Contains(Dtype)) throw new InvalidSettingException(field + "." + EmaFields.Dtype, $"dtype is one of {string.Join(", ", EmaDtype.All)}.");
        if (ZeroDebias && Init == EmaInit.FirstUpdate) throw new InvalidSettingException(field + "." + EmaFields.ZeroDebias, "A zero-debiased shadow starts at zero; it cannot also start with a copy (init 'first-update').");
    }

    void CheckNewRules(string field)
    {
        string Path(string name) => field + "." + name;
        if (IsBema)
        {
            if (!(EmaPower >= 0) || double.IsInfinity(EmaPower)) throw new InvalidSettingException(Path(EmaFields.EmaPower), "emaPower (κ) must be a number ≥ 0.");
            if (!(BiasPower >= 0) || double.IsInfinity(BiasPower)) throw new InvalidSettingException(Path(EmaFields.BiasPower), "biasPower (η) must be a number ≥ 0.");
            if (Lag < 0) throw new InvalidSettingException(Path(EmaFields.Lag), "lag (ρ) must not be negative.");
            if (!(Multiplier > 0) || double.IsInfinity(Multiplier)) throw new InvalidSettingException(Path(EmaFields.Multiplier), "multiplier (γ) must be a positive number.");
            // β is the weight of the new weights: above 1 the average would leave the segment between them and the EMA.
            if (Preset == EmaPresets.Bema && Multiplier > 1) throw new InvalidSettingException(Path(EmaFields.Multiplier), "multiplier (γ) is at most 1 here: β = γ(1 + t)^−κ starts at γ.");
            if (Preset == EmaPresets.TrlBema && Lag + Multiplier < 1) throw new InvalidSettingException(Path(EmaFields.Lag), "lag + multiplier must be at least 1: β = (ρ + γt)^−κ must not exceed 1 at t = 1.");
            if (!(MinEmaMultiplier >= 0 && MinEmaMultiplier <= 1)) throw new InvalidSettingException(Path(EmaFields.MinEmaMultiplier), "minEmaMultiplier must be in [0, 1].");
        }
        if (Preset == EmaPresets.Torchvision)
        {
            if (Epochs < 1) throw new InvalidSettingException(Path(EmaFields.Epochs), "epochs must be at least 1.");
            if (WarmupEpochs < 0) throw new InvalidSettingException(Path(EmaFields.WarmupEpochs), "warmupEpochs must not be negative.");
        }
        if (Preset == EmaPresets.Lawa && Checkpoints is < 1 or > MaxLawaCheckpoints)
            throw new InvalidSettingException(Path(EmaFields.Checkpoints), $"checkpoints (k) is from 1 to {MaxLawaCheckpoints}: each one is a copy of the model kept in memory.");
        if (Preset == EmaPresets.Edm)
        {
            if (!(HalfLifeKimg > 0) || double.IsInfinity(HalfLifeKimg)) throw new InvalidSettingException(Path(EmaFields.HalfLifeKimg), "halfLifeKimg must be a positive number (thousands of samples).");
            if (!double.IsNaN(RampupRatio) && !(RampupRatio > 0 && !double.IsInfinity(RampupRatio))) throw new InvalidSettingException(Path(EmaFields.RampupRatio), "rampupRatio must be a positive number (0 for no ramp-up).");
        }
        if (!double.IsNaN(HalfLifeSamples) && !(HalfLifeSamples > 0 && !double.IsInfinity(HalfLifeSamples)))
            throw new InvalidSettingException(Path(EmaFields.HalfLifeSamples), "halfLifeSamples must be a positive number.");
    }

    /// <summary>LAWA keeps this many copies of the model at most.</summary>
    public const int MaxLawaCheckpoints = 32;

    /// <summary>
    /// <c>ema-&lt;decay&gt;</c> for the run's own rule; otherwise the decay followed by what differs
    /// (<c>ema-0.999-power</c>, <c>ema-0.9999-timm-warmup</c>, <c>swa-from-1500</c>, <c>…-bf16</c>).
    /// </summary>
    internal string DefaultName(EmaSettings run)
    {
        var parts = new List<string>();
        var invariant = CultureInfo.InvariantCulture;
        if (IsBema)
        {
            parts.Add(Preset);
            if (Every != (int)EmaPresets.SourceDefault(Preset, EmaFields.Every)!) parts.Add("every" + Every.ToString(invariant));
            if (UpdateAfterStep > 0) parts.Add("after" + UpdateAfterStep.ToString(invariant));
        }
        else if (Preset == EmaPresets.Lawa)
            parts.Add($"lawa-k{Checkpoints.ToString(invariant)}-every{Every.ToString(invariant)}");
        else if (Preset == EmaPresets.Edm)
        {
            parts.Add("edm-" + HalfLifeKimg.ToString("R", invariant) + "kimg");
            if (double.IsNaN(RampupRatio)) parts.Add("norampup");
        }
        else if (Preset == EmaPresets.Swa)
        {
            parts.Add("swa");
            if (StartStep > 1) parts.Add("from-" + StartStep.ToString(CultureInfo.InvariantCulture));
            if (Every > 1) parts.Add("every" + Every.ToString(CultureInfo.InvariantCulture));
        }
        else
        {
            parts.Add(double.IsNaN(HalfLifeSamples) ? TrackNames.Ema(Decay) : "ema-hl" + HalfLifeSamples.ToString("R", invariant));
            if (Preset == EmaPresets.EmaLab)
            {
                if (Warmup != (run.Warmup ? EmaWarmup.Tf : EmaWarmup.None)) parts.Add(Warmup == EmaWarmup.None ? "nowarmup" : Warmup);
                if (ZeroDebias != run.ZeroDebias) parts.Add(ZeroDebias ? "debias" : "biased");
                if (Every != run.Every) parts.Add("every" + Every.ToString(CultureInfo.InvariantCulture));
                if (AdjustDecay) parts.Add("adjusted");
                if (StartStep != run.StartStep) parts.Add("from-" + StartStep.ToString(CultureInfo.InvariantCulture));
                if (Init == EmaInit.FirstUpdate) parts.Add("copyfirst");
            }
            else
            {
                parts.Add(Preset);
                if (Warmup == EmaWarmup.Power && Preset != EmaPresets.EmaPytorch || Warmup == EmaWarmup.Tf) parts.Add("warmup");
                if (ZeroDebias) parts.Add("debias");
            }
        }
        if (Dtype == EmaDtype.BFloat16) parts.Add("bf16");
        if (Dtype == EmaDtype.Float16) parts.Add("fp16");
        return string.Join("-", parts);
    }
}
