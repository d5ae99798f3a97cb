using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>One shadow copy of the model's averaged tensors for one decay rule, with its own counters.</summary>
public sealed class EmaShadow
{
    readonly Func<long, double> _effectiveDecay;

    internal EmaShadow(string track, double decay, Func<long, double> effectiveDecay, Tensor[] tensors)
    {
        Track = track;
        Decay = decay;
        _effectiveDecay = effectiveDecay;
        Tensors = tensors;
    }

    /// <summary>The configured decay of a classic shadow; NaN for a power-function shadow (its decay changes every step).</summary>
    public double Decay { get; }
    public string Track { get; }
    /// <summary>The decay applied after a given step.</summary>
    public double EffectiveDecay(long step) => _effectiveDecay(step);
    /// <summary>Aligned with <see cref="ExponentialMovingAverage.AveragedNames"/>.</summary>
    internal Tensor[] Tensors { get; }
    /// <summary>Updates applied since averaging started.</summary>
    public long UpdatesApplied { get; internal set; }
    /// <summary>Π d_eff over the updates applied (zero-debias divides by 1 − this).</summary>
    public double DecayProduct { get; internal set; } = 1.0;
    /// <summary>The last effective decay applied (for display; equals the decay once warm-up is over).</summary>
    public double LastEffectiveDecay { get; internal set; } = double.NaN;
}

/// <summary>
/// <b>Where an EMA update happens.</b> K shadows of one live model, updated after each optimizer step
/// with TensorFlow's semantics: <c>s ← s − (1 − d_eff)(s − w)</c>, optional <c>num_updates</c> warm-up,
/// optional zero-debias, every-N and start step. Trainable parameters are always averaged; float
/// buffers (batch-norm running statistics) are averaged only under <see cref="BatchNormPolicy.Average"/>,
/// otherwise they are taken from the live model (or recomputed by the evaluator) when a track is read.
/// The live model is only ever read.
/// </summary>
public sealed class ExponentialMovingAverage : IDisposable
{
    readonly Tensor[] _live;
    readonly (string Name, Tensor Live)[] _copied;
    readonly bool _fused;
    readonly int _parallelism;
    readonly float[] _alphas;
    // Pre-allocated scalar weights for the lerp_ path: the double overload would allocate a tensor per call.
    readonly Tensor[] _lerpWeights;
    // Shadows grouped per live tensor, for the fused kernel.
    readonly Tensor[][] _shadowsPerTensor;

    public ExponentialMovingAverage(nn.Module liveModel, EmaSettings settings, int parallelism = 1, EmaKernel kernel = EmaKernel.Fused)
        : this(liveModel, Validated(settings),
               settings.Decays.Select(d => (EmaSettings.TrackName(d), d, (Func<long, double>)(step => EmaMath.EffectiveDecay(d, step, settings.Warmup)))).ToList(),
               parallelism, kernel)
    {
    }

    /// <summary>
    /// Power-function EMAs (EDM2), one shadow per σ_rel, updated after every step t with β_t = (1 − 1/t)^(γ+1)
    /// (the first update copies the weights). Tracks are named <c>pf-&lt;σ_rel&gt;</c>.
    /// </summary>
    public static ExponentialMovingAverage PowerFunction(nn.Module liveModel, IReadOnlyList<double> sigmaRels, BatchNormPolicy bnPolicy, int parallelism = 1) =>
        new(liveModel, new EmaSettings { Decays = [], BnPolicy = bnPolicy },
            sigmaRels.Select(sigma =>
            {
                var gamma = PowerFunctionProfile.Gamma(sigma);
                return (PowerFunctionTrack(sigma), double.NaN, (Func<long, double>)(step => PowerFunctionProfile.Beta(gamma, step)));
            }).ToList(),
            parallelism, EmaKernel.Fused);

    public static string PowerFunctionTrack(double sigmaRel) => TrackNames.PowerFunction(sigmaRel);

    static EmaSettings Validated(EmaSettings settings)
    {
        settings.Validate();
        return settings;
    }

    ExponentialMovingAverage(nn.Module liveModel, EmaSettings settings, IReadOnlyList<(string Track, double Decay, Func<long, double> Rule)> shadows, int parallelism, EmaKernel kernel)
    {
        Settings = settings;
        _parallelism = Math.Max(1, parallelism);

        var averaged = new List<(string, Tensor)>(liveModel.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
        var copied = new List<(string, Tensor)>();
        foreach (var (name, buffer) in liveModel.named_buffers())
        {
            if (buffer.is_floating_point() && settings.BnPolicy == BatchNormPolicy.Average) averaged.Add((name, buffer));
            else copied.Add((name, buffer));
        }
        AveragedNames = averaged.Select(a => a.Item1).ToArray();
        _live = averaged.Select(a => a.Item2).ToArray();
        _copied = copied.ToArray();
        _fused = kernel == EmaKernel.Fused && _live.All(MultiDecayLerp.Supports);

        using (no_grad())
        {
            Shadows = shadows.Select(d => new EmaShadow(d.Track, d.Decay, d.Rule, _live.Select(w =>
                settings.ZeroDebias ? zeros_like(w) : w.detach().clone()).ToArray())).ToArray();
        }
        _alphas = new float[Shadows.Count];
        _lerpWeights = Shadows.Select(_ => tensor(0f)).ToArray();
        _shadowsPerTensor = _live.Select((_, i) => Shadows.Select(s => s.Tensors[i]).ToArray()).ToArray();
    }

    public EmaSettings Settings { get; }
    public IReadOnlyList<EmaShadow> Shadows { get; }
    public IReadOnlyList<string> AveragedNames { get; }
    /// <summary>The live buffers that are copied rather than averaged (batch-norm statistics under copy/recalibrate, counters).</summary>
    public IEnumerable<(string Name, Tensor Live)> CopiedBuffers => _copied;
    public bool UsesFusedKernel => _fused;

    /// <summary>Applies the update for the global step just taken (1-based).</summary>
    public void Update(long step)
    {
        if (step < Settings.StartStep)
        {
            // Before averaging starts the shadow is the live weights (zero-debias shadows stay at zero
            // and read as the live weights until their first update).
            if (!Settings.ZeroDebias) CopyLiveIntoShadows();
            return;
        }
        if (step % Settings.Every != 0) return;

        for (var k = 0; k < Shadows.Count; k++)
        {
            var shadow = Shadows[k];
            var effective = shadow.EffectiveDecay(step);
            _alphas[k] = (float)(1.0 - effective);
            shadow.UpdatesApplied++;
            shadow.DecayProduct *= effective;
            shadow.LastEffectiveDecay = effective;
        }

        if (_fused) UpdateFused();
        else UpdateWithLerp();
    }

    void UpdateFused()
    {
        for (var i = 0; i < _live.Length; i++) MultiDecayLerp.ApplyUnchecked(_live[i], _shadowsPerTensor[i], _alphas, _parallelism);
    }

    void UpdateWithLerp()
    {
        using var _ = no_grad();
        for (var k = 0; k < Shadows.Count; k++)
        {
            using (var alpha = _alphas[k].ToScalar()) _lerpWeights[k].fill_(alpha); // held until fill_ returns
            var tensors = Shadows[k].Tensors;
            for (var i = 0; i < _live.Length; i++) tensors[i].lerp_(_live[i], _lerpWeights[k]);
        }
    }

    void CopyLiveIntoShadows()
    {
        using var _ = no_grad();
        foreach (var shadow in Shadows)
            for (var i = 0; i < _live.Length; i++) shadow.Tensors[i].copy_(_live[i]);
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
        for (var i = 0; i < _live.Length; i++)
        {
            var destination = targetState[AveragedNames[i]];
            if (shadow.UpdatesApplied == 0 && Settings.ZeroDebias) destination.copy_(_live[i]);
            else if (Settings.ZeroDebias)
            {
                using var correction = (1.0 - shadow.DecayProduct).ToScalar(); // held until div_ returns
                destination.copy_(shadow.Tensors[i]).div_(correction);
            }
            else destination.copy_(shadow.Tensors[i]);
        }
        foreach (var (name, live) in _copied) targetState[name].copy_(live);
    }

    /// <summary>The shadows' raw tensors and counters, for the resume bundle.</summary>
    public IEnumerable<(string Key, Tensor Tensor)> StateTensors() =>
        Shadows.SelectMany(s => s.Tensors.Select((t, i) => ($"{s.Track}/{AveragedNames[i]}", t)));

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
            for (var i = 0; i < shadow.Tensors.Length; i++)
            {
                var key = $"{shadow.Track}/{AveragedNames[i]}";
                if (!tensors.TryGetValue(key, out var saved)) throw new InvalidDataException($"The resume bundle has no tensor {key}.");
                shadow.Tensors[i].copy_(saved);
            }
        }
    }

    public IReadOnlyList<EmaShadowCounters> Counters() =>
        Shadows.Select(s => new EmaShadowCounters(s.Track, s.Decay, s.UpdatesApplied, s.DecayProduct, s.LastEffectiveDecay)).ToArray();

    public void Dispose()
    {
        foreach (var s in Shadows) foreach (var t in s.Tensors) t.Dispose();
        foreach (var t in _lerpWeights) t.Dispose();
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
