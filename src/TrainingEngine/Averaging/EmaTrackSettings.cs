using System.Globalization;
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

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]*$")]
    private static partial Regex NameCharacters();

    /// <summary>
    /// The complete rule for this track. <paramref name="field"/> is its path (<c>ema.tracks[2]</c>) for errors;
    /// <paramref name="run"/> supplies the defaults of the <c>emalab</c> preset. Throws <see cref="InvalidSettingException"/>.
    /// </summary>
    public EmaRule Resolve(EmaSettings run, string field)
    {
        var preset = Preset ?? EmaPresets.EmaLab;
        if (!EmaPresets.All.Contains(preset))
            throw new InvalidSettingException(field + ".preset", $"Unknown preset '{preset}'; use one of {string.Join(", ", EmaPresets.All)}.");
        foreach (var (name, given) in Given())
            if (given && !EmaPresets.Accepts(preset, name))
                throw new InvalidSettingException($"{field}.{name}", $"The {preset} preset has no '{name}' setting (it takes {string.Join(", ", EmaPresets.Fields(preset))}).");

        var isEmaLab = preset == EmaPresets.EmaLab;
        var rule = new EmaRule
        {
            Preset = preset,
            Decay = preset == EmaPresets.Swa ? double.NaN : Decay ?? EmaPresets.DefaultDecay(preset)
                ?? throw new InvalidSettingException(field + ".decay", "A decay is needed."),
            Warmup = Warmup ?? (isEmaLab ? (run.Warmup ? EmaWarmup.Tf : EmaWarmup.None) : EmaPresets.Warmups(preset)[0]),
            InvGamma = InvGamma ?? 1.0,
            Power = Power ?? 2.0 / 3.0,
            MinDecay = MinDecay ?? 0.0,
            UpdateAfterStep = UpdateAfterStep ?? (preset == EmaPresets.EmaPytorch ? 100 : 0),
            StartStep = StartStep ?? (isEmaLab ? run.StartStep : preset == EmaPresets.Swa ? 1 : 0),
            Every = Every ?? (isEmaLab ? run.Every : preset == EmaPresets.EmaPytorch ? 10 : 1),
            AdjustDecay = AdjustDecay ?? false,
            Init = Init ?? EmaInit.Initial,
            ZeroDebias = ZeroDebias ?? (isEmaLab && run.ZeroDebias),
            Dtype = Dtype ?? EmaDtype.Float32,
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
        ("decay", Decay is not null), ("warmup", Warmup is not null), ("invGamma", InvGamma is not null), ("power", Power is not null),
        ("minDecay", MinDecay is not null), ("updateAfterStep", UpdateAfterStep is not null), ("startStep", StartStep is not null),
        ("every", Every is not null), ("adjustDecay", AdjustDecay is not null), ("init", Init is not null),
        ("zeroDebias", ZeroDebias is not null), ("dtype", Dtype is not null),
    ];
}

public static class EmaWarmup
{
    public const string None = "none";
    public const string Tf = "tf";
    public const string Power = "power";
}

public static class EmaInit
{
    public const string Initial = "initial";
    public const string FirstUpdate = "first-update";
}

public static class EmaDtype
{
    public const string Float32 = "float32";
    public const string BFloat16 = "bfloat16";
    public const string Float16 = "float16";
    public static IReadOnlyList<string> All { get; } = [Float32, BFloat16, Float16];
}

/// <summary>The presets: which library's update loop a track reproduces, and which of the shared settings it takes.</summary>
public static class EmaPresets
{
    /// <summary>EMA Lab's rule: TF semantics with every option (warm-up, every-N, start, init, zero-debias), decays in double.</summary>
    public const string EmaLab = "emalab";
    /// <summary><c>tf.train.ExponentialMovingAverage</c> (optionally with <c>num_updates</c> = global step, zero-debias), arithmetic in float32.</summary>
    public const string TensorFlow = "tensorflow";
    /// <summary>timm <c>ModelEmaV3</c>, updated with <c>step=num_updates</c> as timm's train.py does.</summary>
    public const string Timm = "timm";
    /// <summary>diffusers <c>EMAModel.step</c> after each optimizer step.</summary>
    public const string Diffusers = "diffusers";
    /// <summary>lucidrains ema-pytorch <c>EMA.update()</c> after each optimizer step.</summary>
    public const string EmaPytorch = "ema-pytorch";
    /// <summary>Keras 3 optimizer <c>use_ema=True</c> (no <c>ema_overwrite_frequency</c>).</summary>
    public const string Keras = "keras";
    /// <summary>PyTorch <c>AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))</c>, <c>update_parameters</c> every step.</summary>
    public const string AveragedModel = "averaged-model";
    /// <summary>Lightning <c>EMAWeightAveraging</c> (an <c>AveragedModel</c> with <c>get_ema_avg_fn</c>).</summary>
    public const string Lightning = "lightning";
    /// <summary>Stochastic weight averaging: the uniform average from a start step (PyTorch <c>AveragedModel</c>'s default).</summary>
    public const string Swa = "swa";

    public static IReadOnlyList<string> All { get; } = [EmaLab, TensorFlow, Timm, Diffusers, EmaPytorch, Keras, AveragedModel, Lightning, Swa];

    static readonly Dictionary<string, string[]> Settings = new()
    {
        [EmaLab] = ["decay", "warmup", "invGamma", "power", "minDecay", "startStep", "every", "adjustDecay", "init", "zeroDebias", "dtype"],
        [TensorFlow] = ["decay", "warmup", "zeroDebias", "dtype"],
        [Timm] = ["decay", "warmup", "invGamma", "power", "minDecay", "updateAfterStep", "dtype"],
        [Diffusers] = ["decay", "warmup", "invGamma", "power", "minDecay", "updateAfterStep", "dtype"],
        [EmaPytorch] = ["decay", "invGamma", "power", "minDecay", "updateAfterStep", "every", "dtype"],
        [Keras] = ["decay", "dtype"],
        [AveragedModel] = ["decay", "dtype"],
        [Lightning] = ["decay", "startStep", "every", "dtype"],
        [Swa] = ["startStep", "every", "dtype"],
    };

    public static IReadOnlyList<string> Fields(string preset) => Settings[preset];

    public static bool Accepts(string preset, string field) => field != "name" && field != "preset" && Settings[preset].Contains(field);

    /// <summary>The library's default decay (null where the run must say: EMA Lab's own rule).</summary>
    public static double? DefaultDecay(string preset) => preset switch
    {
        Timm or Diffusers or EmaPytorch => 0.9999,
        Keras => 0.99,
        AveragedModel or Lightning => 0.999,
        _ => null,
    };

    /// <summary>Warm-ups each preset can use (the first is its default).</summary>
    public static IReadOnlyList<string> Warmups(string preset) => preset switch
    {
        EmaLab => [EmaWarmup.None, EmaWarmup.Tf, EmaWarmup.Power],
        TensorFlow => [EmaWarmup.None, EmaWarmup.Tf],
        Timm or Diffusers => [EmaWarmup.None, EmaWarmup.Power],
        EmaPytorch => [EmaWarmup.Power],
        _ => [EmaWarmup.None],
    };
}

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

    internal void Check(string field)
    {
        if (Preset != EmaPresets.Swa && !(Decay >= 0 && Decay < 1 && (Decay > 0 || Preset != EmaPresets.EmaLab)))
            throw new InvalidSettingException(field + ".decay", $"Decay {Decay.ToString(CultureInfo.InvariantCulture)} is outside {(Preset == EmaPresets.EmaLab ? "(0, 1)" : "[0, 1)")}.");
        if (!EmaPresets.Warmups(Preset).Contains(Warmup))
            throw new InvalidSettingException(field + ".warmup", $"The {Preset} preset's warm-up is one of {string.Join(", ", EmaPresets.Warmups(Preset))}.");
        if (!(InvGamma > 0) || double.IsInfinity(InvGamma)) throw new InvalidSettingException(field + ".invGamma", "invGamma must be a positive number.");
        if (!(Power > 0) || double.IsInfinity(Power)) throw new InvalidSettingException(field + ".power", "power must be a positive number.");
        if (!(MinDecay >= 0 && MinDecay < 1)) throw new InvalidSettingException(field + ".minDecay", "minDecay must be in [0, 1).");
        if (MinDecay > Decay) throw new InvalidSettingException(field + ".minDecay", "minDecay must not exceed the decay.");
        if (UpdateAfterStep < 0) throw new InvalidSettingException(field + ".updateAfterStep", "updateAfterStep must not be negative.");
        if (StartStep < 0) throw new InvalidSettingException(field + ".startStep", "The start step must not be negative.");
        if (Every < 1) throw new InvalidSettingException(field + ".every", "'every' must be at least 1.");
        if (Init is not (EmaInit.Initial or EmaInit.FirstUpdate)) throw new InvalidSettingException(field + ".init", $"init is '{EmaInit.Initial}' or '{EmaInit.FirstUpdate}'.");
        if (!EmaDtype.All.Contains(Dtype)) throw new InvalidSettingException(field + ".dtype", $"dtype is one of {string.Join(", ", EmaDtype.All)}.");
        if (ZeroDebias && Init == EmaInit.FirstUpdate) throw new InvalidSettingException(field + ".zeroDebias", "A zero-debiased shadow starts at zero; it cannot also start with a copy (init 'first-update').");
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
