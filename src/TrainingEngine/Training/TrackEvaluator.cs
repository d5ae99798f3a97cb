using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Training;

/// <summary>
/// Scores weights of one run's architecture on its held-out split — a classifier by its loss and accuracy, a diffusion
/// U-Net by its denoising loss and the Fréchet distance of its samples (<see cref="DiffusionScorer"/>): holds the run's
/// data as tensors and an evaluation model that weights are loaded into (raw weights, an EMA shadow, or weights made after
/// training such as a post-hoc reconstruction), applying the run's batch-norm policy to averaged weights.
/// A training session evaluates through one; post-hoc reconstruction and export need nothing else, so
/// they build no live model, optimizer or EMA. Not thread-safe.
/// </summary>
public sealed class TrackEvaluator : IDisposable
{
    /// <summary>The batch whose loss is summed in float32 before it is added up in double: part of the number a run reports.</summary>
    const int EvalBatchSize = 512;
    /// <summary>
    /// Images per forward pass. The logits are bit for bit those of a whole 512-image pass (tested for every model), but
    /// their feature maps are a quarter of the size: 512 images' 25 MB blocks do not fit the 64 MB heaps of a thread's
    /// malloc arena, so on a worker thread each one was mapped and unmapped again at every pass (an evaluation spent most
    /// of its time in page faults: 36 s against 12 s on the process's main thread).
    /// </summary>
    internal const int ForwardChunk = 128;

    readonly nn.Module _model;

    public TrackEvaluator(RunSpec spec)
    {
        spec.Validate();
        Spec = spec;
        Data = DatasetCatalog.Load(spec.Dataset);
        Architecture = spec.ArchitectureFor(Data);
        (TrainX, TrainY) = ToTensors(Data.Train, Data.Normalization);
        (EvalX, EvalY) = ToTensors(Data.Eval, Data.Normalization);
        using var subset = spec.EvalSubset is > 0 and var size && size < Data.Eval.Count ? Indices(SubsetOf(Data.Eval.Count, size)) : null;
        (SubsetX, SubsetY) = subset is null ? (EvalX, EvalY) : (EvalX.index_select(0, subset), EvalY.index_select(0, subset));
        if (spec.DiffusionOrDefault() is { } diffusion) Diffusion = new DiffusionScorer(diffusion, spec.Dataset, EvalX, subset, Data.Normalization);
        _model = ModelFactory.Create(Architecture);
        _model.eval();
    }

    /// <summary>How a diffusion run's tracks are scored; null for a classifier.</summary>
    public DiffusionScorer? Diffusion { get; }

    public RunSpec Spec { get; }
    public DatasetSplits Data { get; }
    public ModelArchitecture Architecture { get; }
    /// <summary>The training split, normalised (the session trains on it; recalibration reads it).</summary>
    internal Tensor TrainX { get; }
    internal Tensor TrainY { get; }
    Tensor EvalX { get; }
    Tensor EvalY { get; }
    /// <summary>What an intermediate evaluation scores: the fixed subset the spec asks for, else the whole held-out split.</summary>
    Tensor SubsetX { get; }
    Tensor SubsetY { get; }

    /// <summary>How many held-out images an evaluation scores (a classifier's, or a denoiser's loss): the whole split, or at intermediate points the spec's subset.</summary>
    public long ImagesScored(bool subset) => (subset ? SubsetY : EvalY).shape[0];

    /// <summary>
    /// The held-out images an intermediate evaluation scores: <paramref name="size"/> of <paramref name="count"/>, drawn once
    /// from a permutation that depends on neither the run's seed nor its settings (every run of a dataset, every seed of a
    /// group, is compared on the same images), in ascending order (batches read the split front to back).
    /// </summary>
    public static int[] SubsetOf(int count, int size)
    {
        var chosen = DeterministicShuffle.Permutation(count, seed: 0, stream: -2)[..size];
        Array.Sort(chosen);
        return chosen;
    }

    /// <summary>The evaluation model with the weights loaded last (eval mode). Read it; load weights through this class.</summary>
    public nn.Module Model => _model;

    /// <summary>Loads the current weights and statistics of <paramref name="source"/> as they are (the raw track).</summary>
    public void LoadRaw(nn.Module source)
    {
        using var _ = no_grad();
        var state = _model.state_dict();
        foreach (var (name, tensor) in source.state_dict()) state[name].copy_(tensor);
    }

    /// <summary>Loads one shadow of <paramref name="ema"/>, applying the run's batch-norm policy.</summary>
    public void LoadShadow(ExponentialMovingAverage ema, int shadow)
    {
        ema.WriteInto(shadow, _model);
        RecalibrateIfAsked();
    }

    /// <summary>
    /// Loads averaged weights made outside training (a post-hoc reconstruction); <paramref name="state"/> must hold
    /// every state_dict entry. The run's batch-norm policy applies as for a shadow.
    /// </summary>
    public void LoadAveraged(IReadOnlyDictionary<string, Tensor> state, string track)
    {
        var targets = _model.state_dict();
        foreach (var name in targets.Keys)
            if (!state.ContainsKey(name)) throw new ArgumentException($"The weights of '{track}' have no {name}.", nameof(state));
        using (no_grad())
            foreach (var (name, target) in targets) target.copy_(state[name]);
        RecalibrateIfAsked();
    }

    /// <summary>Evaluates the loaded weights on the whole held-out split, or on the spec's subset.</summary>
    public EvalResult Evaluate(bool subset = false, CancellationToken cancellationToken = default, long[]? confusion = null) =>
        Evaluate(_model, subset, cancellationToken, confusion);

    /// <summary>
    /// Evaluates any model of this architecture on the held-out split (the model is left in eval mode). A classifier: with
    /// <paramref name="confusion"/> (classes × classes, row = true label, column = prediction) also counts each pair. A
    /// diffusion U-Net: its denoising loss, and on the whole split also its samples' Fréchet distance at the final count.
    /// </summary>
    public EvalResult Evaluate(nn.Module model, bool subset = false, CancellationToken cancellationToken = default, long[]? confusion = null) =>
        model is DiffusionUNet denoiser
            ? EvaluateDenoiser(denoiser, subset, subset ? 0 : Diffusion!.Settings.FinalSamples, cancellationToken).Result
            : EvaluateClassifier((nn.Module<Tensor, Tensor>)model, subset, cancellationToken, confusion);

    /// <summary>A diffusion track's scores, and the grid of its first samples when they were drawn.</summary>
    public sealed record DenoiserEvaluation(EvalResult Result, byte[]? SampleGrid);

    /// <summary>The loaded U-Net's denoising loss and, when <paramref name="samples"/> &gt; 0, that many samples' Fréchet distance and grid.</summary>
    public DenoiserEvaluation EvaluateDenoiser(bool subset, int samples, CancellationToken cancellationToken = default) =>
        EvaluateDenoiser((DiffusionUNet)_model, subset, samples, cancellationToken);

    DenoiserEvaluation EvaluateDenoiser(DiffusionUNet model, bool subset, int samples, CancellationToken cancellationToken)
    {
        var scorer = Diffusion ?? throw new InvalidOperationException("A classifier's run has no diffusion scorer.");
        var loss = scorer.DenoisingLoss(model, subset, cancellationToken);
        if (samples == 0) return new(new EvalResult(loss, double.NaN), null);
        using var drawn = scorer.Sample(model, samples, cancellationToken);
        return new(new EvalResult(loss, double.NaN, scorer.FrechetDistanceOf(drawn)), scorer.Grid(drawn));
    }

    EvalResult EvaluateClassifier(nn.Module<Tensor, Tensor> model, bool subset, CancellationToken cancellationToken, long[]? confusion)
    {
        var classes = Architecture.Classes;
        if (confusion is not null && confusion.Length != classes * classes)
            throw new ArgumentException($"A confusion matrix of {classes} classes has {classes * classes} cells.", nameof(confusion));
        model.eval();
        using var _ = no_grad();
        // A (label, prediction) pair's cell is label × classes + prediction: the width as a tensor, the sum's alpha explicit
        // (no implicit torch scalar: see TorchScalars).
        using var width = confusion is null ? null : tensor((long)classes);
        var (images, labels) = subset ? (SubsetX, SubsetY) : (EvalX, EvalY);
        var count = images.shape[0];
        double lossSum = 0;
        long correct = 0;
        for (long start = 0; start < count; start += EvalBatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var length = Math.Min(EvalBatchSize, count - start);
            var x = images.narrow(0, start, length);
            var y = labels.narrow(0, start, length);
            var logits = length <= ForwardChunk ? model.forward(x)
                : cat(Enumerable.Range(0, (int)((length + ForwardChunk - 1) / ForwardChunk))
                    .Select(c => model.forward(x.narrow(0, c * ForwardChunk, Math.Min(ForwardChunk, length - c * ForwardChunk)))).ToList(), 0);
            lossSum += nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).item<float>();
            var predicted = logits.argmax(1);
            correct += predicted.eq(y).sum().item<long>();
            if (confusion is not null)
            {
                using var pairs = y.mul(width!).add(predicted, TorchScalars.One).bincount(null, classes * classes);
                var counts = pairs.data<long>().ToArray();
                for (var i = 0; i < counts.Length; i++) confusion[i] += counts[i];
            }
        }
        return new EvalResult(lossSum / count, (double)correct / count);
    }

    void RecalibrateIfAsked()
    {
        if (Spec.Ema.BnPolicy == BatchNormPolicy.Recalibrate) RecalibrateBatchNorm();
    }

    /// <summary>
    /// Recomputes batch-norm running statistics for the loaded weights with a cumulative average over fixed
    /// training batches in train mode (as <c>torch.optim.swa_utils.update_bn</c>). The batches are the same
    /// for every call, so the result depends only on the weights.
    /// </summary>
    void RecalibrateBatchNorm()
    {
        var norms = _model.modules().OfType<BatchNorm>().ToList();
        if (norms.Count == 0) return;
        var momenta = norms.Select(n => n.momentum).ToList();
        foreach (var n in norms)
        {
            n.reset_running_stats();
            n.momentum = null;
        }
        var order = DeterministicShuffle.Permutation(Data.Train.Count, Spec.Seed, stream: -1);
        var batchSize = Spec.BatchSize;
        var batches = Math.Min(Spec.Ema.RecalibrationBatches, Math.Max(1, order.Length / batchSize));
        _model.train();
        using (no_grad())
        {
            for (var b = 0; b < batches; b++)
            {
                using var scope = NewDisposeScope();
                var indices = Indices(order.AsSpan(b * batchSize, Math.Min(batchSize, order.Length - b * batchSize)));
                ((nn.Module<Tensor, Tensor>)_model).forward(TrainX.index_select(0, indices));
            }
        }
        _model.eval();
        for (var i = 0; i < norms.Count; i++) norms[i].momentum = momenta[i];
    }

    /// <summary>Sample indices as the int64 tensor <c>index_select</c> takes.</summary>
    internal static Tensor Indices(ReadOnlySpan<int> indices)
    {
        var longs = new long[indices.Length];
        for (var i = 0; i < indices.Length; i++) longs[i] = indices[i];
        return tensor(longs, ScalarType.Int64);
    }

    static (Tensor X, Tensor Y) ToTensors(LabeledImages images, Normalization normalization)
    {
        var x = tensor(normalization.Apply(images.Pixels), [images.Count, 1, images.Height, images.Width]);
        var y = tensor(images.Labels.Select(l => (long)l).ToArray(), ScalarType.Int64);
        return (x, y);
    }

    public void Dispose()
    {
        _model.Dispose();
        Diffusion?.Dispose();
        if (!ReferenceEquals(SubsetX, EvalX)) { SubsetX.Dispose(); SubsetY.Dispose(); }
        foreach (var t in new[] { TrainX, TrainY, EvalX, EvalY }) t.Dispose();
    }
}
