using static EmaLab.TrainingEngine.Averaging.EmaFields;

namespace EmaLab.TrainingEngine.Averaging;

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
        [EmaLab] = [Decay, Warmup, InvGamma, Power, MinDecay, StartStep, Every, AdjustDecay, Init, ZeroDebias, Dtype],
        [TensorFlow] = [Decay, Warmup, ZeroDebias, Dtype],
        [Timm] = [Decay, Warmup, InvGamma, Power, MinDecay, UpdateAfterStep, Dtype],
        [Diffusers] = [Decay, Warmup, InvGamma, Power, MinDecay, UpdateAfterStep, Dtype],
        [EmaPytorch] = [Decay, InvGamma, Power, MinDecay, UpdateAfterStep, Every, Dtype],
        [Keras] = [Decay, Dtype],
        [AveragedModel] = [Decay, Dtype],
        [Lightning] = [Decay, StartStep, Every, Dtype],
        [Swa] = [StartStep, Every, Dtype],
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

public static class EmaWarmup
{
    public const string None = "none";
    public const string Tf = "tf";
    public const string Power = EmaFields.Power;
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
