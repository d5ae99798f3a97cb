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
}

/// <summary>One step of a shadow's rule: the action, its arithmetic, and the decay it amounts to (for the counters and the lens).</summary>
public readonly record struct ShadowStep(ShadowAction Action, ShadowUpdate Update, double Decay)
{
    public static readonly ShadowStep None = new(ShadowAction.None, default, double.NaN);
    public static readonly ShadowStep FollowLive = new(ShadowAction.FollowLive, default, 0);
    public static readonly ShadowStep Copy = new(ShadowAction.Copy, default, 0);
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
}
