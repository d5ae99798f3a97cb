using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Optimization;

/// <summary>
/// The optimizers a run can use (SGD with momentum and weight decay, Adam, AdamW), with PyTorch's update
/// rules and TorchSharp's numbers, but computed by <see cref="OptimizerKernels"/> over tensor memory.
/// TorchSharp 0.107's own optimizers pass implicitly created <c>Scalar</c>s to native calls without keeping
/// them alive, so a garbage collection on another thread (a busy web server) can free one mid-call and fail
/// the run; these steps create no native objects at all. Not thread-safe: drive it from the training thread.
/// </summary>
public abstract unsafe class Optimizer : IDisposable
{
    private protected readonly (string Name, Parameter Parameter)[] Parameters;
    /// <summary>Each parameter's weight decay: the run's, or 0 for norms and biases when they are exempt.</summary>
    private protected readonly double[] WeightDecays;
    readonly int _parallelism;

    /// <param name="decayNormsAndBiases">
    /// False exempts every parameter of fewer than two dimensions (biases, batch-norm γ and β) from weight decay, as
    /// timm's <c>filter_bias_and_bn</c> and nanoGPT's parameter groups do: shrinking them toward zero regularises nothing.
    /// </param>
    private protected Optimizer(nn.Module model, double weightDecay, bool decayNormsAndBiases, int parallelism)
    {
        Parameters = model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        foreach (var (name, p) in Parameters)
            if (p.dtype != ScalarType.Float32 || !p.is_contiguous() || p.device_type != DeviceType.CPU)
                throw new ArgumentException($"Parameter {name} is not a contiguous float32 CPU tensor.", nameof(model));
        WeightDecays = Parameters.Select(p => decayNormsAndBiases || p.Parameter.dim() >= 2 ? weightDecay : 0).ToArray();
        _parallelism = Math.Max(1, parallelism);
    }

    /// <summary>
    /// Scales every gradient so that their joint L2 norm is at most <paramref name="maxNorm"/>, as
    /// <c>torch.nn.utils.clip_grad_norm_</c> does (coefficient <c>maxNorm / (norm + 1e-6)</c>, applied when below 1, in
    /// float32); the norm is summed in double here, where PyTorch sums per-tensor float32 norms. Returns the norm before.
    /// </summary>
    public double ClipGradientNorm(double maxNorm)
    {
        double sumOfSquares = 0;
        foreach (var (_, parameter) in Parameters)
        {
            using var gradient = parameter.grad;
            if (gradient is null) continue;
            foreach (var g in Span(gradient)) sumOfSquares += (double)g * g;
        }
        var norm = Math.Sqrt(sumOfSquares);
        var coefficient = (float)(maxNorm / (norm + 1e-6));
        if (coefficient < 1)
            foreach (var (_, parameter) in Parameters)
            {
                using var gradient = parameter.grad;
                if (gradient is null) continue;
                foreach (ref var g in Span(gradient)) g *= coefficient;
            }
        return norm;
    }

    static Span<float> Span(Tensor t) => new(Pointer(t), checked((int)t.NumberOfElements));

    /// <summary>Steps taken (each parameter with a gradient is updated once per step).</summary>
    public long Steps { get; private set; }

    /// <summary>One update of every parameter that has a gradient, with the given learning rate.</summary>
    public void Step(double learningRate)
    {
        Steps++;
        for (var i = 0; i < Parameters.Length; i++)
        {
            using var gradient = Parameters[i].Parameter.grad;
            if (gradient is null) continue;
            // Element i of the gradient must be element i of the parameter. Autograd lays a gradient out like its
            // parameter (channels-last feature maps included); a gradient set by hand might not be.
            if (!gradient.is_contiguous())
                throw new InvalidOperationException($"The gradient of {Parameters[i].Name} is not contiguous: the update would pair the wrong elements.");
            var parameter = Pointer(Parameters[i].Parameter);
            var length = Parameters[i].Parameter.NumberOfElements;
            if (_parallelism <= 1 || length < OptimizerKernels.ParallelThreshold) UpdateRange(i, parameter, Pointer(gradient), 0, length, learningRate);
            else UpdateInChunks(i, parameter, Pointer(gradient), length, learningRate);
        }
    }

    /// <summary>
    /// Splits a large tensor across the run's threads in chunks of a multiple of 16 elements (as libtorch's
    /// vectorized loops split, so every chunk runs the vector path). A method of its own: the lambda's
    /// closure would otherwise be allocated on every step, parallel or not.
    /// </summary>
    void UpdateInChunks(int index, float* parameter, float* gradient, long length, double learningRate)
    {
        var chunk = (length / _parallelism + 15) / 16 * 16;
        var (p, g) = ((IntPtr)parameter, (IntPtr)gradient);
        Parallel.For(0, _parallelism, new ParallelOptions { MaxDegreeOfParallelism = _parallelism }, part =>
        {
            var start = part * chunk;
            var end = Math.Min(length, start + chunk);
            if (start < end) UpdateRange(index, (float*)p, (float*)g, start, end, learningRate);
        });
    }

    /// <summary>Sets every gradient to zero in place (PyTorch's <c>zero_grad(set_to_none=False)</c>): backward then accumulates into the same memory.</summary>
    public void ZeroGrad()
    {
        foreach (var (_, parameter) in Parameters)
        {
            using var gradient = parameter.grad;
            if (gradient is null) continue;
            var length = gradient.NumberOfElements;
            var start = Pointer(gradient);
            for (long offset = 0; offset < length; offset += int.MaxValue / 4)
                new Span<float>(start + offset, (int)Math.Min(length - offset, int.MaxValue / 4)).Clear();
        }
    }

    /// <summary>Applies the rule to elements [start, end) of one parameter (<paramref name="index"/> into <see cref="Parameters"/>).</summary>
    private protected abstract void UpdateRange(int index, float* parameter, float* gradient, long start, long end, double learningRate);

    /// <summary>The optimizer's state tensors by name (<c>&lt;parameter&gt;/&lt;state&gt;</c>), for the resume bundle.</summary>
    public abstract IEnumerable<(string Key, Tensor Tensor)> StateTensors();

    /// <summary>Restores what <see cref="StateTensors"/> and <see cref="Steps"/> captured.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> tensors, long steps)
    {
        using var _ = no_grad();
        foreach (var (key, tensor) in StateTensors())
        {
            if (!tensors.TryGetValue(key, out var saved)) throw new InvalidDataException($"The optimizer state has no tensor {key}.");
            if (!saved.shape.SequenceEqual(tensor.shape)) throw new InvalidDataException($"The optimizer state's {key} has shape [{string.Join(", ", saved.shape)}], expected [{string.Join(", ", tensor.shape)}].");
            tensor.copy_(saved);
        }
        Steps = steps;
    }

    private protected static Tensor ZerosLike(Parameter p) => zeros_like(p).DetachFromDisposeScope();

    private protected static float* Pointer(Tensor t) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    public void Dispose()
    {
        foreach (var (_, tensor) in StateTensors()) tensor.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>SGD with optional momentum (no dampening, not Nesterov) and L2 weight decay, as <c>torch.optim.SGD</c>.</summary>
public sealed unsafe class Sgd : Optimizer
{
    readonly double _momentum;
    readonly Tensor[]? _buffers;

    public Sgd(nn.Module model, double momentum, double weightDecay, int parallelism = 1, bool decayNormsAndBiases = true)
        : base(model, weightDecay, decayNormsAndBiases, parallelism)
    {
        _momentum = momentum;
        if (momentum != 0) _buffers = Parameters.Select(p => ZerosLike(p.Parameter)).ToArray();
    }

    private protected override void UpdateRange(int index, float* parameter, float* gradient, long start, long end, double learningRate)
    {
        // The buffer starts as the first gradient (a resumed run is past step 1 on its first call).
        var constants = new SgdConstants(learningRate, _momentum, WeightDecays[index], firstStep: Steps == 1);
        OptimizerKernels.Sgd(parameter, gradient, _buffers is null ? null : Pointer(_buffers[index]), start, end, constants);
    }

    public override IEnumerable<(string Key, Tensor Tensor)> StateTensors() =>
        _buffers is null ? [] : Parameters.Select((p, i) => ($"{p.Name}/momentum_buffer", _buffers[i]));
}

/// <summary>
/// Adam (L2 weight decay added to the gradient, as <c>torch.optim.Adam</c>) or, with <c>decoupled</c>, AdamW
/// (weights shrunk by <c>1 − lr·wd</c> before the update, as <c>torch.optim.AdamW</c>); β = (0.9, 0.999), ε = 1e-8.
/// </summary>
public sealed unsafe class Adam : Optimizer
{
    public const double Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8;

    readonly bool _decoupled;
    readonly Tensor[] _firstMoments, _secondMoments;

    public Adam(nn.Module model, double weightDecay, bool decoupled, int parallelism = 1, bool decayNormsAndBiases = true)
        : base(model, weightDecay, decayNormsAndBiases, parallelism)
    {
        _decoupled = decoupled;
        _firstMoments = Parameters.Select(p => ZerosLike(p.Parameter)).ToArray();
        _secondMoments = Parameters.Select(p => ZerosLike(p.Parameter)).ToArray();
    }

    private protected override void UpdateRange(int index, float* parameter, float* gradient, long start, long end, double learningRate)
    {
        var constants = new AdamConstants(learningRate, Beta1, Beta2, Epsilon, WeightDecays[index], _decoupled, Steps);
        OptimizerKernels.Adam(parameter, gradient, Pointer(_firstMoments[index]), Pointer(_secondMoments[index]), start, end, constants);
    }

    public override IEnumerable<(string Key, Tensor Tensor)> StateTensors() =>
        Parameters.SelectMany((p, i) => new[] { ($"{p.Name}/exp_avg", _firstMoments[i]), ($"{p.Name}/exp_avg_sq", _secondMoments[i]) });
}
