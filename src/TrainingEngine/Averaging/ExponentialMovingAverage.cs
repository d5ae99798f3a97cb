using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>One shadow copy of the model's averaged tensors for one track's rule, with its own counters.</summary>
public sealed class EmaShadow
{
    readonly Func<long, long, ShadowStep> _next;

    internal EmaShadow(EmaRule rule, Func<long, long, ShadowStep> next, Tensor[] tensors)
    {
        Rule = rule;
        _next = next;
        Tensors = tensors;
    }

    public EmaRule Rule { get; }
    public string Track => Rule.Name;
    /// <summary>The configured decay; NaN for SWA and power-function shadows (their decay changes every update).</summary>
    public double Decay => Rule.Decay;
    /// <summary>Stored in float32 (the fused pass) or in bfloat16/float16 (rounded once per update).</summary>
    public bool IsFloat32 => Rule.Dtype == EmaDtype.Float32;
    /// <summary>What the rule does after <paramref name="step"/>, given the updates counted so far.</summary>
    public ShadowStep Next(long step) => _next(step, UpdatesApplied);
    /// <summary>The weights read (evaluation, export), aligned with <see cref="ExponentialMovingAverage.AveragedNames"/>.</summary>
    internal Tensor[] Tensors { get; }
    /// <summary>BEMA: the EMA itself (the weights read add α(θ_t − θ₀) to it); null for the other rules.</summary>
    internal Tensor[]? BemaEma { get; init; }
    /// <summary>BEMA: θ₀, the weights the bias correction is measured from.</summary>
    internal Tensor[]? Anchor { get; init; }
    /// <summary>LAWA: the ring of the k latest copies; copy n (counted from 0) is in slot n % k.</summary>
    internal Tensor[][]? Ring { get; init; }
    /// <summary>The state besides the weights read, by name, for the resume bundle.</summary>
    internal IEnumerable<(string Part, Tensor[] Tensors)> ExtraState()
    {
        if (BemaEma is not null) yield return ("ema", BemaEma);
        if (Anchor is not null) yield return ("theta0", Anchor);
        if (Ring is not null)
            for (var i = 0; i < Ring.Length; i++) yield return ("ring" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), Ring[i]);
    }
    /// <summary>Updates counted so far (averages, and the first copy of the rules that count it).</summary>
    public long UpdatesApplied { get; internal set; }
    /// <summary>Π d over the updates applied (zero-debias divides by 1 − this).</summary>
    public double DecayProduct { get; internal set; } = 1.0;
    /// <summary>The last decay applied (for display; equals the decay once a warm-up is over).</summary>
    public double LastEffectiveDecay { get; internal set; } = double.NaN;
}

/// <summary>
/// <b>Where an EMA update happens.</b> K shadows of one live model, one per track, each with its own rule
/// (<see cref="EmaRule"/>: EMA Lab's TF-semantics rule or a library preset, see <see cref="EmaSchedule"/>),
/// updated after each optimizer step. Float32 shadows that update at a step go through one fused pass over
/// the weights (<see cref="MultiDecayLerp"/>); bfloat16/float16 shadows are updated in float32 from their stored
/// value and rounded once, with no hidden float32 copy. Trainable parameters are always averaged; float buffers
/// (batch-norm running statistics) only under <see cref="BatchNormPolicy.Average"/>, otherwise they are taken
/// from the live model (or recomputed by the evaluator) when a track is read. The live model is only ever read.
/// </summary>
public sealed class ExponentialMovingAverage : IDisposable
{
    readonly Tensor[] _live;
    readonly (string Name, Tensor Live)[] _copied;
    readonly bool _fused;
    readonly int _parallelism;
    // The averaged tensors are the parameters, then (under BatchNormPolicy.Average) the float buffers.
    readonly int _parameterCount;
    // Per step, the float32 shadows that average and their updates (pre-allocated: the update allocates nothing).
    readonly int[] _active;
    readonly ShadowUpdate[] _activeUpdates;
    readonly Tensor[] _activeTensors;
    // Float32 scratch per averaged tensor for low-precision shadows (null when there are none).
    readonly Tensor[]? _scratch;
    // Pre-allocated scalar weights for the lerp_ path: the double overload would allocate a tensor per call.
    readonly Tensor[] _lerpWeights;

    /// <param name="shape">The run's batch size and epoch length, for rules counted in samples or epochs (null where there are none).</param>
    public ExponentialMovingAverage(nn.Module liveModel, EmaSettings settings, EmaRunShape? shape, int parallelism = 1, EmaKernel kernel = EmaKernel.Fused)
        : this(liveModel, Validated(settings, shape).BnPolicy,
               settings.Rules(shape).Select(rule => (rule, (Func<long, long, ShadowStep>)((t, u) => EmaSchedule.Next(rule, t, u)))).ToList(),
               parallelism, kernel)
    {
    }

    /// <summary>
    /// Power-function EMAs (EDM2), one shadow per σ_rel, updated after every step t with β_t = (1 − 1/t)^(γ+1)
    /// (the first update copies the weights). Tracks are named <c>pf-&lt;σ_rel&gt;</c>.
    /// </summary>
    public static ExponentialMovingAverage PowerFunction(nn.Module liveModel, IReadOnlyList<double> sigmaRels, BatchNormPolicy bnPolicy, int parallelism = 1) =>
        new(liveModel, bnPolicy,
            sigmaRels.Select(sigma =>
            {
                var gamma = PowerFunctionProfile.Gamma(sigma);
                var rule = new EmaRule { Name = PowerFunctionTrack(sigma), Preset = EmaPresets.EmaLab, Decay = double.NaN };
                return (rule, (Func<long, long, ShadowStep>)((t, _) =>
                {
                    var beta = PowerFunctionProfile.Beta(gamma, t);
                    return new ShadowStep(ShadowAction.Average, ShadowUpdate.Subtract((float)(1.0 - beta)), beta);
                }));
            }).ToList(),
            parallelism, EmaKernel.Fused);

    public static string PowerFunctionTrack(double sigmaRel) => TrackNames.PowerFunction(sigmaRel);

    static EmaSettings Validated(EmaSettings settings, EmaRunShape? shape)
    {
        settings.Validate(shape);
        return settings;
    }

    ExponentialMovingAverage(nn.Module liveModel, BatchNormPolicy bnPolicy, IReadOnlyList<(EmaRule Rule, Func<long, long, ShadowStep> Next)> shadows, int parallelism, EmaKernel kernel)
    {
        _parallelism = Math.Max(1, parallelism);

        var averaged = new List<(string, Tensor)>(liveModel.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
        _parameterCount = averaged.Count;
        var copied = new List<(string, Tensor)>();
        foreach (var (name, buffer) in liveModel.named_buffers())
        {
            if (buffer.is_floating_point() && bnPolicy == BatchNormPolicy.Average) averaged.Add((name, buffer));
            else copied.Add((name, buffer));
        }
        AveragedNames = averaged.Select(a => a.Item1).ToArray();
        _live = averaged.Select(a => a.Item2).ToArray();
        _copied = copied.ToArray();
        _fused = kernel == EmaKernel.Fused && _live.All(MultiDecayLerp.Supports);
        if (shadows.Any(s => s.Rule.Dtype != EmaDtype.Float32 || s.Rule.IsBema || s.Rule.Preset == EmaPresets.Lawa) && !_live.All(MultiDecayLerp.Supports))
            throw new ArgumentException("Low-precision, BEMA and LAWA shadows need contiguous float32 CPU weights.", nameof(liveModel));

        using (no_grad())
        {
            Shadows = shadows.Select(d => new EmaShadow(d.Rule, d.Next, _live.Select(w => InitialShadow(w, d.Rule)).ToArray())
            {
                // BEMA's θ₀ and EMA start as the weights before training, as both sources clone them at on_train_begin.
                BemaEma = d.Rule.IsBema ? _live.Select(w => w.detach().clone()).ToArray() : null,
                Anchor = d.Rule.IsBema ? _live.Select(w => w.detach().clone()).ToArray() : null,
                Ring = d.Rule.Preset == EmaPresets.Lawa ? Enumerable.Range(0, d.Rule.Checkpoints).Select(_ => _live.Select(w => empty_like(w)).ToArray()).ToArray() : null,
            }).ToArray();
            _scratch = Shadows.Any(s => !s.IsFloat32) ? _live.Select(w => empty_like(w)).ToArray() : null;
        }
        _active = new int[Shadows.Count];
        _activeUpdates = new ShadowUpdate[Shadows.Count];
        _activeTensors = new Tensor[Shadows.Count];
        _lerpWeights = Shadows.Select(_ => tensor(0f)).ToArray();
    }

    static Tensor InitialShadow(Tensor live, EmaRule rule)
    {
        var dtype = rule.Dtype switch { EmaDtype.BFloat16 => ScalarType.BFloat16, EmaDtype.Float16 => ScalarType.Float16, _ => ScalarType.Float32 };
        return rule.ZeroDebias ? zeros_like(live, dtype) : live.detach().to(dtype, copy: true);
    }

    public IReadOnlyList<EmaShadow> Shadows { get; }
    public IReadOnlyList<string> AveragedNames { get; }
    /// <summary>The live buffers that are copied rather than averaged (batch-norm statistics under copy/recalibrate, counters).</summary>
    public IEnumerable<(string Name, Tensor Live)> CopiedBuffers => _copied;
    public bool UsesFusedKernel => _fused;

    /// <summary>Applies every shadow's rule for the global step just taken (1-based).</summary>
    public void Update(long step)
    {
        var averaging = 0;
        for (var k = 0; k < Shadows.Count; k++)
        {
            var shadow = Shadows[k];
            var next = shadow.Next(step);
            if (shadow.BemaEma is not null || shadow.Ring is not null)
            {
                if (!UpdateStateful(shadow, next)) continue;
            }
            else switch (next.Action)
            {
                case ShadowAction.None:
                    continue;
                case ShadowAction.FollowLive:
                    CopyLiveInto(shadow);
                    continue;
                case ShadowAction.Copy:
                    CopyLiveInto(shadow);
                    break;
                default:
                    if (shadow.IsFloat32 && _fused) { _active[averaging] = k; _activeUpdates[averaging++] = next.Update; }
                    else if (shadow.IsFloat32) UpdateWithLerp(shadow, k, next.Update);
                    else UpdateLowPrecision(shadow, next.Update);
                    break;
            }
            shadow.UpdatesApplied++;
            if (double.IsNaN(next.Decay)) continue; // a LAWA copy has no decay
            shadow.DecayProduct *= next.Decay;
            shadow.LastEffectiveDecay = next.Decay;
        }
        if (averaging > 0) UpdateFused(averaging);
    }

    /// <summary>BEMA and LAWA, whose weights read are computed from state of their own; true when the step counts as an update.</summary>
    bool UpdateStateful(EmaShadow shadow, ShadowStep next)
    {
        using var _ = no_grad();
        switch (next.Action)
        {
            case ShadowAction.None:
                return false;
            case ShadowAction.FollowLive:
                CopyLiveInto(shadow.Tensors);
                return false;
            case ShadowAction.Anchor:
                CopyLiveInto(shadow.Anchor!);
                CopyLiveInto(shadow.BemaEma!);
                return false;
            case ShadowAction.Snapshot:
                var ring = shadow.Ring!;
                CopyLiveInto(ring[shadow.UpdatesApplied % ring.Length]);
                // The mean is taken afresh from the copies (oldest first), so nothing accumulates rounding over the run.
                var count = (int)Math.Min(shadow.UpdatesApplied + 1, ring.Length);
                var oldest = shadow.UpdatesApplied + 1 - count;
                var copies = new Tensor[count];
                for (var i = 0; i < _live.Length; i++)
                {
                    for (var n = 0; n < count; n++) copies[n] = ring[(oldest + n) % ring.Length][i];
                    MultiDecayLerp.RunningMean(copies, shadow.Tensors[i]);
                }
                return true;
            default: // BEMA's update: the EMA (or, with κ = 0, a copy), then the weights read
                var ema = shadow.BemaEma!;
                if (next.Action == ShadowAction.Copy) CopyLiveInto(ema);
                else
                {
                    Span<ShadowUpdate> updates = [next.Update];
                    for (var i = 0; i < _live.Length; i++)
                        MultiDecayLerp.ApplyUnchecked(_live[i], new ReadOnlySpan<Tensor>(ref ema[i]), updates, _parallelism);
                }
                for (var i = 0; i < _live.Length; i++)
                {
                    // Both sources correct parameters only: an averaged batch-norm statistic is read as its EMA (a running
                    // variance pushed by α(θ_t − θ₀) could turn negative), as the run's bnPolicy has every track average it.
                    if (next.Bias == 0 || i >= _parameterCount) shadow.Tensors[i].copy_(ema[i]); // and the authors' η = 0: the EMA itself
                    else MultiDecayLerp.BiasCorrected(ema[i], _live[i], shadow.Anchor![i], (float)next.Bias, shadow.Tensors[i]);
                }
                return true;
        }
    }

    void UpdateFused(int count)
    {
        var updates = _activeUpdates.AsSpan(0, count);
        for (var i = 0; i < _live.Length; i++)
        {
            for (var j = 0; j < count; j++) _activeTensors[j] = Shadows[_active[j]].Tensors[i];
            MultiDecayLerp.ApplyUnchecked(_live[i], _activeTensors.AsSpan(0, count), updates, _parallelism);
        }
    }

    /// <summary>The reference path: one <c>lerp_</c> per tensor (every form to float rounding; blend by its weight on w).</summary>
    void UpdateWithLerp(EmaShadow shadow, int k, ShadowUpdate update)
    {
        using var _ = no_grad();
        var weight = update.Form == UpdateForm.Blend ? update.B : update.A;
        using (var alpha = weight.ToScalar()) _lerpWeights[k].fill_(alpha); // held until fill_ returns
        for (var i = 0; i < _live.Length; i++) shadow.Tensors[i].lerp_(_live[i], _lerpWeights[k]);
    }

    /// <summary>
    /// A bfloat16/float16 shadow: the update is computed in float32 from the stored value and the float32 weights and
    /// rounded to the shadow's type once (as an in-place op on a low-precision tensor does). An update smaller than
    /// half a unit in the last place is lost; that stall is what such a track shows.
    /// </summary>
    void UpdateLowPrecision(EmaShadow shadow, ShadowUpdate update)
    {
        using var _ = no_grad();
        Span<ShadowUpdate> updates = [update];
        for (var i = 0; i < _live.Length; i++)
        {
            var scratch = _scratch![i];
            scratch.copy_(shadow.Tensors[i]);
            MultiDecayLerp.ApplyUnchecked(_live[i], new ReadOnlySpan<Tensor>(ref scratch), updates, _parallelism);
            shadow.Tensors[i].copy_(scratch);
        }
    }

    void CopyLiveInto(EmaShadow shadow) => CopyLiveInto(shadow.Tensors);

    void CopyLiveInto(Tensor[] tensors)
    {
        using var _ = no_grad();
        for (var i = 0; i < _live.Length; i++) tensors[i].copy_(_live[i]);
    }

    /// <summary>
    /// Writes the value of shadow <paramref name="k"/> as it is read for evaluation or export (debiased when
    /// zero-debias is on; the live weights before the first update) into <paramref name="target"/>, a model
    /// of the same architecture. Buffers that are not averaged are copied from the live model.
    /// </summary>
    public void WriteInto(int k, nn.Module target)
    {
        var shadow = Shadows[k];
        var targetState = target.state_dict();
        using var _ = no_grad();
        var debias = shadow.Rule.ZeroDebias && shadow.UpdatesApplied > 0;
        // TF divides by 1 − d^k with the current float32 decay; EMA Lab by 1 − Π d in double.
        using var correction = (shadow.Rule.Preset == EmaPresets.TensorFlow
            ? 1f - MathF.Pow((float)shadow.LastEffectiveDecay, shadow.UpdatesApplied)
            : 1.0 - shadow.DecayProduct).ToScalar(); // held until div_ returns
        for (var i = 0; i < _live.Length; i++)
        {
            var destination = targetState[AveragedNames[i]];
            if (shadow.Rule.ZeroDebias && !debias) destination.copy_(_live[i]);
            else if (debias) destination.copy_(shadow.Tensors[i]).div_(correction);
            else destination.copy_(shadow.Tensors[i]);
        }
        foreach (var (name, live) in _copied) targetState[name].copy_(live);
    }

    /// <summary>
    /// ‖s_k − s_j‖ / ‖s_j‖ over every averaged tensor, summed in float64: how far a low-precision shadow has drifted
    /// from its float32 twin (<see cref="EmaRule.Float32Twin"/>). Both hold the same rule, so a zero-debias divisor,
    /// which they share, cancels out.
    /// </summary>
    public double RelativeDistance(int k, int j)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        double difference = 0, norm = 0;
        for (var i = 0; i < _live.Length; i++)
        {
            var reference = Shadows[j].Tensors[i].to(ScalarType.Float64);
            difference += Shadows[k].Tensors[i].to(ScalarType.Float64).sub_(reference).square().sum().item<double>();
            norm += reference.square().sum().item<double>();
        }
        return norm > 0 ? Math.Sqrt(difference / norm) : Math.Sqrt(difference);
    }

    /// <summary>The shadows' raw tensors and counters, for the resume bundle.</summary>
    public IEnumerable<(string Key, Tensor Tensor)> StateTensors() =>
        Shadows.SelectMany(s => s.Tensors.Select((t, i) => ($"{s.Track}/{AveragedNames[i]}", t))
            .Concat(s.ExtraState().SelectMany(part => part.Tensors.Select((t, i) => ($"{s.Track}#{part.Part}/{AveragedNames[i]}", t)))));

    public void LoadState(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyList<EmaShadowCounters> counters)
    {
        using var _ = no_grad();
        foreach (var shadow in Shadows)
        {
            var c = counters.FirstOrDefault(c => c.Track == shadow.Track)
                ?? throw new InvalidDataException($"The resume bundle has no counters for {shadow.Track}.");
            shadow.UpdatesApplied = c.UpdatesApplied;
            shadow.DecayProduct = c.DecayProduct;
            shadow.LastEffectiveDecay = c.LastEffectiveDecay;
            foreach (var (prefix, part) in shadow.ExtraState().Select(p => ($"{shadow.Track}#{p.Part}/", p.Tensors)).Prepend(($"{shadow.Track}/", shadow.Tensors)))
                for (var i = 0; i < part.Length; i++)
                {
                    var key = prefix + AveragedNames[i];
                    if (!tensors.TryGetValue(key, out var saved)) throw new InvalidDataException($"The resume bundle has no tensor {key}.");
                    part[i].copy_(saved);
                }
        }
    }

    public IReadOnlyList<EmaShadowCounters> Counters() =>
        Shadows.Select(s => new EmaShadowCounters(s.Track, s.Decay, s.UpdatesApplied, s.DecayProduct, s.LastEffectiveDecay)).ToArray();

    public void Dispose()
    {
        foreach (var s in Shadows)
        {
            foreach (var t in s.Tensors) t.Dispose();
            foreach (var (_, part) in s.ExtraState()) foreach (var t in part) t.Dispose();
        }
        foreach (var t in _lerpWeights) t.Dispose();
        if (_scratch is not null) foreach (var t in _scratch) t.Dispose();
    }
}

/// <summary>Which arithmetic applies the update; both give the same shadows to float rounding.</summary>
public enum EmaKernel
{
    /// <summary>One pass over the weights for all K shadows (<see cref="MultiDecayLerp"/>); falls back to <see cref="Lerp"/> for non-float32 tensors.</summary>
    Fused,
    /// <summary>One <c>lerp_</c> per shadow and tensor with a pre-allocated weight tensor.</summary>
    Lerp,
}

public sealed record EmaShadowCounters(string Track, double Decay, long UpdatesApplied, double DecayProduct, double LastEffectiveDecay);
