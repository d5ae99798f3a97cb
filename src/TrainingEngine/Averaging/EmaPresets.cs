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
    /// <summary>
    /// BEMA as its authors run it (abblock/bema <c>src/core_online.py</c>, the 2025-12-03 "fixed update bug" version):
    /// θ₀ and the EMA are the weights before training; β = γ(1 + max(0, t − ρ))^−κ, α = γ(1 + max(0, t − ρ))^−η.
    /// </summary>
    public const string Bema = "bema";
    /// <summary>Hugging Face TRL <c>BEMACallback</c> (trl/trainer/callbacks.py): β = max((ρ + γt)^−κ, min), α = (ρ + γt)^−η, θ₀ taken at <c>update_after</c>.</summary>
    public const string TrlBema = "trl-bema";
    /// <summary>LAWA: the uniform mean of the k latest weights taken every ν steps (Kaddour 2022; Sanyal et al. 2023's <c>lawa.py</c> arithmetic).</summary>
    public const string Lawa = "lawa";
    /// <summary>EDM's EMA by half-life in samples (NVlabs/edm training/training_loop.py): β = 0.5^(B / H), H ramped up to a share of the samples seen.</summary>
    public const string Edm = "edm";
    /// <summary>
    /// torchvision's classification reference (references/classification/train.py): the EMA scaling rule to first order,
    /// α = min(1, (1 − decay)·batch·every/epochs), an <c>AveragedModel</c> updated every <c>model_ema_steps</c> iterations of each epoch.
    /// </summary>
    public const string Torchvision = "torchvision";

    public static IReadOnlyList<string> All { get; } = [EmaLab, TensorFlow, Timm, Diffusers, EmaPytorch, Keras, AveragedModel, Lightning, Swa, Bema, TrlBema, Lawa, Edm, Torchvision];

    static readonly Dictionary<string, string[]> Settings = new()
    {
        [EmaLab] = [Decay, HalfLifeSamples, Warmup, InvGamma, Power, MinDecay, StartStep, Every, AdjustDecay, Init, ZeroDebias, Dtype],
        [TensorFlow] = [Decay, Warmup, ZeroDebias, Dtype],
        [Timm] = [Decay, Warmup, InvGamma, Power, MinDecay, UpdateAfterStep, Dtype],
        [Diffusers] = [Decay, Warmup, InvGamma, Power, MinDecay, UpdateAfterStep, Dtype],
        [EmaPytorch] = [Decay, InvGamma, Power, MinDecay, UpdateAfterStep, Every, Dtype],
        [Keras] = [Decay, Dtype],
        [AveragedModel] = [Decay, Dtype],
        [Lightning] = [Decay, StartStep, Every, Dtype],
        [Swa] = [StartStep, Every, Dtype],
        [Bema] = [Every, EmaPower, BiasPower, Lag, Multiplier, UpdateAfterStep, MinEmaMultiplier],
        [TrlBema] = [Every, EmaPower, BiasPower, Lag, Multiplier, UpdateAfterStep, MinEmaMultiplier],
        [Lawa] = [EmaFields.Checkpoints, Every],
        [Edm] = [HalfLifeKimg, RampupRatio],
        [Torchvision] = [Decay, Every, Epochs, WarmupEpochs],
    };

    /// <summary>
    /// Each preset's own defaults for the settings it takes, as its source sets them (the shared settings of the run's own
    /// rule and the decay are not here: <see cref="EmaTrackSettings.Resolve"/> fills those). A null default means
    /// "none" (EDM without ramp-up); LAWA's <c>every</c> defaults to one epoch of the run (a checkpoint per epoch, as LAWA takes
    /// them), torchvision's <c>epochs</c> to the run's epochs.
    /// </summary>
    static readonly Dictionary<string, Dictionary<string, object?>> SourceDefaults = new()
    {
        [EmaPytorch] = new() { [UpdateAfterStep] = 100L, [Every] = 10 },
        // abblock/bema core_online.py: update_freq 100, ema_power 0.5, eta_power 0.2, scaling_lag 10, ema_gamma 1, update_after 0, min_ema_multiplier 0.
        [Bema] = new() { [Every] = 100, [EmaPower] = 0.5, [BiasPower] = 0.2, [Lag] = 10L, [Multiplier] = 1.0, [UpdateAfterStep] = 0L, [MinEmaMultiplier] = 0.0 },
        // TRL BEMACallback: update_freq 400, ema_power 0.5, bias_power 0.2, lag 10, multiplier 1, update_after 0, min_ema_multiplier 0.
        [TrlBema] = new() { [Every] = 400, [EmaPower] = 0.5, [BiasPower] = 0.2, [Lag] = 10L, [Multiplier] = 1.0, [UpdateAfterStep] = 0L, [MinEmaMultiplier] = 0.0 },
        // Sanyal et al.'s lawa.py averages NUM_MODELS = 5 checkpoints.
        [Lawa] = new() { [EmaFields.Checkpoints] = 5 },
        // EDM's train.py: --ema 0.5 (Mimg, i.e. 500 kimg), --ema-rampup 0.05.
        [Edm] = new() { [HalfLifeKimg] = 500.0, [RampupRatio] = 0.05 },
        // train.py: --model-ema-steps 32, --lr-warmup-epochs 0 (its --epochs defaults to the run's own here).
        [Torchvision] = new() { [Every] = 32, [WarmupEpochs] = 0 },
    };

    /// <summary>The preset's source default for <paramref name="field"/>, or null when it has none of its own.</summary>
    public static object? SourceDefault(string preset, string field) =>
        SourceDefaults.TryGetValue(preset, out var defaults) && defaults.TryGetValue(field, out var value) ? value : null;

    /// <summary>Presets that have one decay (the others average by a count, a schedule of their own, or half-life in samples).</summary>
    public static bool HasDecay(string preset) => preset is not (Swa or Bema or TrlBema or Lawa or Edm);

    /// <summary>Presets whose averaging rate depends on the samples per step: they need the run's batch size to resolve.</summary>
    public static bool UsesBatchSize(string preset) => preset is Edm or Torchvision;

    public static IReadOnlyList<string> Fields(string preset) => Settings[preset];

    public static bool Accepts(string preset, string field) => field != "name" && field != "preset" && Settings[preset].Contains(field);

    /// <summary>The library's default decay (null where the run must say: EMA Lab's own rule).</summary>
    public static double? DefaultDecay(string preset) => preset switch
    {
        Timm or Diffusers or EmaPytorch => 0.9999,
        Keras => 0.99,
        Torchvision => 0.99998,
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
