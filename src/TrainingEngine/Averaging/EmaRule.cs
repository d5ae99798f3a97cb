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
    /// <summary>NaN for SWA (it has no decay).</summary>
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
        if (Preset != EmaPresets.Swa && !(Decay >= 0 && Decay < 1 && (Decay > 0 || Preset != EmaPresets.EmaLab)))
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

    /// <summary>
    /// <c>ema-&lt;decay&gt;</c> for the run's own rule; otherwise the decay followed by what differs
    /// (<c>ema-0.999-power</c>, <c>ema-0.9999-timm-warmup</c>, <c>swa-from-1500</c>, <c>…-bf16</c>).
    /// </summary>
    internal string DefaultName(EmaSettings run)
    {
        var parts = new List<string>();
        if (Preset == EmaPresets.Swa)
        {
            parts.Add("swa");
            if (StartStep > 1) parts.Add("from-" + StartStep.ToString(CultureInfo.InvariantCulture));
            if (Every > 1) parts.Add("every" + Every.ToString(CultureInfo.InvariantCulture));
        }
        else
        {
            parts.Add(TrackNames.Ema(Decay));
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
