using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>What a shadow does after one optimizer step.</summary>
public enum ShadowAction : byte
{
    /// <summary>Nothing (a step between updates).</summary>
    None,
    /// <summary>Take the live weights without counting an update (before averaging starts).</summary>
    FollowLive,
    /// <summary>Take the live weights as the library's first update (counted: SWA's n, <c>AveragedModel</c>'s <c>n_averaged</c>).</summary>
    Copy,
    /// <summary>Average with <see cref="ShadowStep.Update"/>.</summary>
    Average,
    /// <summary>BEMA (TRL) at <c>update_after</c>: θ₀ and the EMA become the live weights; the weights read stay as they are.</summary>
    Anchor,
    /// <summary>LAWA: keep a copy of the live weights in the ring of the latest k (counted).</summary>
    Snapshot,
}

/// <summary>
/// One step of a shadow's rule: the action, its arithmetic, and the decay it amounts to (for the counters and the lens).
/// <paramref name="Bias"/>: BEMA's α, the weight of θ_t − θ₀ added to the EMA in the weights read (NaN for the other rules).
/// </summary>
public readonly record struct ShadowStep(ShadowAction Action, ShadowUpdate Update, double Decay, double Bias = double.NaN)
{
    public static readonly ShadowStep None = new(ShadowAction.None, default, double.NaN);
    public static readonly ShadowStep FollowLive = new(ShadowAction.FollowLive, default, 0);
    public static readonly ShadowStep Copy = new(ShadowAction.Copy, default, 0);
    public static readonly ShadowStep Anchor = new(ShadowAction.Anchor, default, double.NaN);
    public static readonly ShadowStep Snapshot = new(ShadowAction.Snapshot, default, double.NaN);
}

/// <summary>
/// Each preset's update loop, step by step, as its library runs it after optimizer step <c>t</c> (1-based; the
/// engine calls after every step). <c>u</c> is the number of counted updates before this one. Decays are
/// computed in the precision the library uses (double for Python floats, float32 for tensors), and the update
/// is rounded as the library's tensor op rounds it (<see cref="UpdateForm"/>). Sources are named per preset.
/// </summary>
public static class EmaSchedule
{
    public static ShadowStep Next(EmaRule rule, long t, long u) => rule.Preset switch
    {
        EmaPresets.EmaLab => EmaLab(rule, t, u),
        EmaPresets.TensorFlow => TensorFlow(rule, t),
        EmaPresets.Timm => Timm(rule, t),
        EmaPresets.Diffusers => Diffusers(rule, t),
        EmaPresets.EmaPytorch => EmaPytorch(rule, t),
        EmaPresets.Keras => Keras(rule, t),
        EmaPresets.AveragedModel => AveragedModel(rule, u),
        EmaPresets.Lightning => Lightning(rule, t, u),
        EmaPresets.Swa => Swa(rule, t, u),
        EmaPresets.Bema => Bema(rule, t),
        EmaPresets.TrlBema => TrlBema(rule, t),
        EmaPresets.Lawa => Lawa(rule, t, u),
        EmaPresets.Edm => Edm(rule, t),
        EmaPresets.Torchvision => Torchvision(rule, t, u),
        _ => throw new ArgumentException($"Unknown preset '{rule.Preset}'.", nameof(rule)),
    };

    static ShadowStep Average(UpdateForm form, double decay) =>
        new(ShadowAction.Average, new ShadowUpdate(form, (float)(1.0 - decay)), decay);

    /// <summary>
    /// EMA Lab's rule (TF semantics in double): before <c>startStep</c> the shadow follows the weights (a zero-debiased
    /// one stays at zero); then on multiples of <c>every</c>: d = decay, TF's <c>min(d, (1+t)/(10+t))</c>, or the
    /// power warm-up over the updates counted; <c>first-update</c> makes the first update a copy; <c>adjustDecay</c> uses d^every.
    /// </summary>
    static ShadowStep EmaLab(EmaRule r, long t, long u)
    {
        if (t < r.StartStep) return r.ZeroDebias ? ShadowStep.None : ShadowStep.FollowLive;
        if (t % r.Every != 0) return ShadowStep.None;
        if (u == 0 && r.Init == EmaInit.FirstUpdate) return ShadowStep.Copy;
        var d = r.Warmup switch
        {
            EmaWarmup.Tf => EmaMath.EffectiveDecay(r.Decay, t, warmup: true),
            EmaWarmup.Power => PowerWarmup(r, u),
            _ => r.Decay,
        };
        if (r.AdjustDecay) d = Math.Pow(d, r.Every);
        return Average(UpdateForm.Subtract, d);
    }

    /// <summary>crowsonkb's warm-up as timm and diffusers write it, in double: clamp(1 − (1 + n/γ)^−p, minDecay, decay); 0 at n = 0.</summary>
    internal static double PowerWarmup(EmaRule r, long n) =>
        n <= 0 ? 0 : Math.Max(Math.Min(1 - Math.Pow(1 + n / r.InvGamma, -r.Power), r.Decay), r.MinDecay);

    /// <summary>
    /// <c>tf.train.ExponentialMovingAverage(decay, num_updates=global_step)</c> applied after the train op
    /// (tensorflow/python/training/moving_averages.py): decay, num_updates and <c>1 − decay</c> are float32
    /// tensors, and <c>assign_sub(v, (v − value) · (1 − decay))</c> rounds as the subtract form.
    /// </summary>
    static ShadowStep TensorFlow(EmaRule r, long t)
    {
        var d = (float)r.Decay;
        if (r.Warmup == EmaWarmup.Tf)
        {
            var n = (float)t;
            d = Math.Min(d, (1f + n) / (10f + n));
        }
        return new ShadowStep(ShadowAction.Average, ShadowUpdate.Subtract(1f - d), d);
    }

    /// <summary>
    /// timm <c>ModelEmaV3.update(model, step=num_updates)</c> (timm/utils/model_ema.py; train.py counts optimizer
    /// updates from 1): n = max(0, t − update_after_step − 1); d = 0 (a copy) while n ≤ 0, else the decay or, with
    /// <c>use_warmup</c>, the power warm-up; <c>_foreach_lerp_(ema, model, 1 − d)</c>.
    /// </summary>
    static ShadowStep Timm(EmaRule r, long t)
    {
        var n = Math.Max(0, t - r.UpdateAfterStep - 1);
        var d = n <= 0 ? 0 : r.Warmup == EmaWarmup.Power ? PowerWarmup(r, n) : r.Decay;
        return Average(UpdateForm.Lerp, d);
    }

    /// <summary>
    /// diffusers <c>EMAModel.step</c> (src/diffusers/training_utils.py): <c>optimization_step</c> = t;
    /// n = max(0, t − update_after_step − 1); d = 0 while n ≤ 0, else 1 − (1 + n/inv_gamma)^−power with
    /// <c>use_ema_warmup</c> or TF's (1 + n)/(10 + n) without; then min(d, decay), max(d, min_decay);
    /// <c>s.sub_((1 − d) · (s − p))</c>. Its "copy" at d = 0 is <c>s − (s − p)</c>, which is not exactly p.
    /// </summary>
    static ShadowStep Diffusers(EmaRule r, long t)
    {
        var n = Math.Max(0, t - r.UpdateAfterStep - 1);
        double d;
        if (n <= 0) d = 0;
        else
        {
            d = r.Warmup == EmaWarmup.Power ? 1 - Math.Pow(1 + n / r.InvGamma, -r.Power) : (1.0 + n) / (10.0 + n);
            d = Math.Max(Math.Min(d, r.Decay), r.MinDecay);
        }
        return Average(UpdateForm.Subtract, d);
    }

    /// <summary>
    /// lucidrains ema-pytorch <c>EMA.update()</c> (ema_pytorch/ema_pytorch.py): its counter is t − 1 before the call;
    /// the first call copies; then only when (t − 1) % update_every == 0: a copy while t − 1 ≤ update_after_step,
    /// else <c>lerp_(1 − d)</c> with d computed on float32 tensors: epoch = t − update_after_step − 1,
    /// 1 − (1 + epoch/inv_gamma)^−power clamped to [min_value, beta] in float32 (so beta 0.9999 acts as 0.99989998).
    /// </summary>
    static ShadowStep EmaPytorch(EmaRule r, long t)
    {
        if (t == 1) return ShadowStep.FollowLive;
        if ((t - 1) % r.Every != 0) return ShadowStep.None;
        if (t - 1 <= r.UpdateAfterStep) return ShadowStep.FollowLive;
        var epoch = (float)(t - r.UpdateAfterStep - 1);
        var value = 1f - LibtorchPow(1f + epoch / (float)r.InvGamma, -r.Power);
        double d = Math.Clamp(value, (float)r.MinDecay, (float)r.Decay);
        return Average(UpdateForm.Lerp, d);
    }

    /// <summary>
    /// <c>float32_tensor ** exponent</c> as libtorch computes it: its vectorized pow is not correctly rounded (it differs
    /// from <see cref="MathF.Pow"/> in about 1 in 120 values), so a library that computes its decay on tensors is
    /// reproduced only by asking libtorch. The exponent is a held Scalar, passed as Python passes a float.
    /// </summary>
    static float LibtorchPow(float value, double exponent)
    {
        using var power = exponent.ToScalar();
        using var input = tensor(value);
        using var result = input.pow(power);
        return result.item<float>();
    }

    /// <summary>
    /// Keras 3 <c>use_ema=True</c> (keras/src/optimizers/base_optimizer.py, <c>_update_model_variables_moving_average</c>,
    /// run before <c>iterations</c> is incremented): m = 0 at the first step, else <c>ema_momentum</c> as float32;
    /// <c>average = m·average + (1 − m)·var</c>.
    /// </summary>
    static ShadowStep Keras(EmaRule r, long t)
    {
        var m = t == 1 ? 0f : (float)r.Decay;
        return new ShadowStep(ShadowAction.Average, ShadowUpdate.Blend(m, 1f - m), m);
    }

    /// <summary>
    /// PyTorch <c>AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))</c> (torch/optim/swa_utils.py),
    /// <c>update_parameters</c> after every step: the first call copies, then <c>_foreach_lerp_(ema, model, 1 − decay)</c>.
    /// </summary>
    static ShadowStep AveragedModel(EmaRule r, long u) => u == 0 ? ShadowStep.Copy : Average(UpdateForm.Lerp, r.Decay);

    /// <summary>
    /// Lightning <c>EMAWeightAveraging</c> (src/lightning/pytorch/callbacks/weight_averaging.py): with step_idx = t − 1,
    /// updates when step_idx ≥ update_starting_at_step and step_idx % update_every_n_steps == 0; an <c>AveragedModel</c>
    /// with <c>get_ema_avg_fn</c>: the first update copies, then <c>decay·ema + (1 − decay)·model</c>.
    /// </summary>
    static ShadowStep Lightning(EmaRule r, long t, long u)
    {
        var index = t - 1;
        if (index < r.StartStep || index % r.Every != 0) return ShadowStep.None;
        if (u == 0) return ShadowStep.Copy;
        return new ShadowStep(ShadowAction.Average, ShadowUpdate.Blend((float)r.Decay, (float)(1.0 - r.Decay)), r.Decay);
    }

    /// <summary>
    /// SWA, <c>AveragedModel</c>'s default average from <c>startStep</c> on multiples of <c>every</c>: the first
    /// update copies, then <c>_foreach_lerp_(avg, model, 1 / (n + 1))</c> with n the updates so far (a float32 reciprocal).
    /// Before its first update the average is the model it was made from (the initial weights).
    /// </summary>
    static ShadowStep Swa(EmaRule r, long t, long u)
    {
        if (t < r.StartStep || t % r.Every != 0) return ShadowStep.None;
        if (u == 0) return ShadowStep.Copy;
        var weight = 1f / (u + 1);
        return new ShadowStep(ShadowAction.Average, ShadowUpdate.Lerp(weight), 1.0 - weight);
    }

    /// <summary>
    /// BEMA as its authors run it (abblock/bema src/core_online.py, 2025-12-03): θ₀, the EMA and the weights read are the
    /// weights before training. <c>on_step_end</c> with t = global step skips t &lt; update_after, then updates when
    /// (t − last) % update_freq == 0 with last = −1 before the first update: first at the first t ≥ update_after with
    /// (t + 1) % update_freq == 0, then every update_freq steps. With t_e = max(0, t − scaling_lag):
    /// β = γ(1 + t_e)^−κ (at least min_ema_multiplier when that is positive), α = γ(1 + t_e)^−η, in Python floats;
    /// κ = 0 makes the EMA a copy of θ_t, η = 0 reads the EMA itself.
    /// </summary>
    static ShadowStep Bema(EmaRule r, long t)
    {
        var start = Math.Max(1, r.UpdateAfterStep);
        var first = start + Modulo(r.Every - 1 - start, r.Every);
        if (t < first || (t - first) % r.Every != 0) return ShadowStep.None;
        var age = 1.0 + Math.Max(0, t - r.Lag);
        var alpha = r.BiasPower > 0 ? r.Multiplier * Math.Pow(age, -r.BiasPower) : 0.0;
        if (!(r.EmaPower > 0)) return ShadowStep.Copy with { Bias = alpha };
        var beta = r.Multiplier * Math.Pow(age, -r.EmaPower);
        if (r.MinEmaMultiplier > 0) beta = Math.Max(beta, r.MinEmaMultiplier);
        return BemaAverage(beta, alpha);
    }

    static long Modulo(long a, long m) => ((a % m) + m) % m;

    /// <summary>
    /// TRL <c>BEMACallback.on_step_end</c> (trl/trainer/callbacks.py), t = global step: nothing before update_after; at
    /// t = update_after θ₀ and the EMA take θ_t (never at 0, which is before the first step: then θ₀ is the initial
    /// weights); then every update_freq steps after it, with x = ρ + γ·t: β = max(x^−κ, min_ema_multiplier), α = x^−η.
    /// The weights read (its running model) are the initial weights until the first update.
    /// </summary>
    static ShadowStep TrlBema(EmaRule r, long t)
    {
        if (t < r.UpdateAfterStep) return ShadowStep.None;
        if (t == r.UpdateAfterStep) return ShadowStep.Anchor;
        if ((t - r.UpdateAfterStep) % r.Every != 0) return ShadowStep.None;
        var x = r.Lag + r.Multiplier * t;
        return BemaAverage(Math.Max(Math.Pow(x, -r.EmaPower), r.MinEmaMultiplier), Math.Pow(x, -r.BiasPower));
    }

    /// <summary><c>ema.mul_(1 − β).add_(θ, alpha=β)</c>: both coefficients Python floats, rounded to float32 by the ops.</summary>
    static ShadowStep BemaAverage(double beta, double alpha) =>
        new(ShadowAction.Average, ShadowUpdate.ScaleAdd((float)(1.0 - beta), (float)beta), 1.0 - beta, alpha);

    /// <summary>
    /// LAWA: a copy of the weights every ν steps into a ring of the k latest; the weights read are their uniform mean
    /// (<see cref="ExponentialMovingAverage"/> computes it afresh from the copies). Before the first copy, the live weights.
    /// </summary>
    static ShadowStep Lawa(EmaRule r, long t, long u) =>
        t % r.Every == 0 ? ShadowStep.Snapshot : u == 0 ? ShadowStep.FollowLive : ShadowStep.None;

    /// <summary>
    /// EDM (NVlabs/edm training/training_loop.py), after the optimizer step and before <c>cur_nimg += batch_size</c>, so
    /// cur_nimg = (t − 1)·B: H = ema_halflife_kimg·1000, min(H, cur_nimg·ema_rampup_ratio) with a ramp-up,
    /// β = 0.5^(B / max(H, 1e-8)) in Python floats (the first step copies), then <c>p_ema.copy_(p_net.lerp(p_ema, β))</c>.
    /// </summary>
    static ShadowStep Edm(EmaRule r, long t)
    {
        var samplesSeen = (t - 1) * r.BatchSize;
        var halfLife = r.HalfLifeKimg * 1000;
        if (!double.IsNaN(r.RampupRatio)) halfLife = Math.Min(halfLife, samplesSeen * r.RampupRatio);
        var beta = Math.Pow(0.5, r.BatchSize / Math.Max(halfLife, 1e-8));
        return new ShadowStep(ShadowAction.Average, ShadowUpdate.ReverseLerp((float)beta), beta);
    }

    /// <summary>
    /// torchvision's references/classification/train.py: adjust = world_size·batch_size·model_ema_steps/epochs (world size
    /// 1 here), α = min(1, (1 − model_ema_decay)·adjust), decay = 1 − α, all Python floats; in each epoch, after the
    /// optimizer step of iteration i (from 0), when i % model_ema_steps == 0, <c>update_parameters</c> of an
    /// <c>AveragedModel</c> with <c>decay·avg + (1 − decay)·param</c> (the first update copies), and during the
    /// lr_warmup_epochs <c>n_averaged</c> is reset to 0 after it, so the next update copies again.
    /// </summary>
    static ShadowStep Torchvision(EmaRule r, long t, long u)
    {
        var (epoch, i) = ((t - 1) / r.BatchesPerEpoch, (t - 1) % r.BatchesPerEpoch);
        if (i % r.Every != 0) return ShadowStep.None;
        // The update before this one is earlier in this epoch, or the last of the one before.
        var previousEpoch = i >= r.Every ? epoch : epoch - 1;
        if (u == 0 || previousEpoch < r.WarmupEpochs) return ShadowStep.Copy;
        var adjust = (double)(r.BatchSize * (long)r.Every) / r.Epochs;
        var alpha = Math.Min(1.0, (1.0 - r.Decay) * adjust);
        var decay = 1.0 - alpha;
        return new ShadowStep(ShadowAction.Average, ShadowUpdate.Blend((float)decay, (float)(1 - decay)), decay);
    }
}
