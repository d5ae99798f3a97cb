using System.Collections.Concurrent;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Formats;
using EmaLab.TrainingEngine.Models;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Diffusion;

/// <summary>
/// Scores a denoiser of one run's data, the same way for every track and every evaluation: the held-out denoising loss
/// (ε-MSE of each held-out image at a fixed timestep with fixed noise), and the quality of its samples — DDIM samples
/// from fixed noise, their Fréchet distance to the held-out images on the reference network's features
/// (<see cref="FeatureNetwork"/>, where one covers the dataset) and a grid of the first of them as a PNG. The noise does
/// not depend on the run's seed either, so the seeds of a group and any two runs of a dataset are scored alike.
/// Not thread-safe.
/// </summary>
public sealed class DiffusionScorer : IDisposable
{
    /// <summary>The image key of the sample grids.</summary>
    public const string GridKey = "samples";
    /// <summary>The grid shows the first GridSide² samples.</summary>
    public const int GridSide = 8;
    /// <summary>Images per forward pass (what the classifier's evaluation uses, for the same reason: smaller feature maps).</summary>
    const int Chunk = 128;
    const ulong HeldOutNoiseSeed = 0x5EED_0001, SampleNoiseSeed = 0x5EED_0002;

    /// <summary>The reference moments of each dataset's held-out images: fixed data, so computed once per process.</summary>
    static readonly ConcurrentDictionary<string, Lazy<FrechetDistance.Moments>> ReferenceMoments = new();

    readonly Tensor _images, _noise, _timesteps, _subsetImages, _subsetNoise, _subsetTimesteps, _sampleNoise;
    readonly FeatureNetwork? _features;
    readonly FrechetDistance.Moments? _reference;
    readonly Normalization _normalization;

    /// <param name="heldOut">The held-out images, normalised [N, C, H, W].</param>
    /// <param name="subset">The rows an intermediate evaluation scores (null: all of them).</param>
    public DiffusionScorer(DiffusionSettings settings, string dataset, Tensor heldOut, Tensor? subset, Normalization normalization)
    {
        Settings = settings;
        Schedule = settings.NoiseSchedule();
        _normalization = normalization;
        _images = heldOut.alias();
        using (var generator = new Generator(HeldOutNoiseSeed))
        {
            _noise = randn(heldOut.shape, generator: generator);
            _timesteps = randint(0, Schedule.Timesteps, [heldOut.shape[0]], ScalarType.Int64, generator: generator);
        }
        (_subsetImages, _subsetNoise, _subsetTimesteps) = subset is null
            ? (_images.alias(), _noise.alias(), _timesteps.alias())
            : (heldOut.index_select(0, subset), _noise.index_select(0, subset), _timesteps.index_select(0, subset));
        using (var generator = new Generator(SampleNoiseSeed))
            _sampleNoise = randn([settings.FinalSamples, heldOut.shape[1], heldOut.shape[2], heldOut.shape[3]], generator: generator);
        _features = FeatureNetwork.For(dataset);
        if (_features is not null)
        {
            var images = heldOut;
            _reference = ReferenceMoments.GetOrAdd(dataset, _ => new Lazy<FrechetDistance.Moments>(() => _features.MomentsOf(images))).Value;
        }
    }

    public DiffusionSettings Settings { get; }
    public NoiseSchedule Schedule { get; }

    /// <summary>Whether the Fréchet distance is scored: only where a reference network covers the dataset (its name says which).</summary>
    public bool ScoresFrechetDistance => _features is not null;

    /// <summary>How many held-out images the denoising loss averages over.</summary>
    public long ImagesScored(bool subset) => (subset ? _subsetImages : _images).shape[0];

    /// <summary>The mean squared error of the predicted noise over every pixel of the held-out images (or the subset's).</summary>
    public double DenoisingLoss(DiffusionUNet model, bool subset, CancellationToken cancellationToken)
    {
        var (images, noise, timesteps) = subset ? (_subsetImages, _subsetNoise, _subsetTimesteps) : (_images, _noise, _timesteps);
        model.eval();
        using var _ = no_grad();
        double sum = 0;
        var count = images.shape[0];
        for (long start = 0; start < count; start += Chunk)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var length = Math.Min(Chunk, count - start);
            var (x, e, t) = (images.narrow(0, start, length), noise.narrow(0, start, length), timesteps.narrow(0, start, length));
            var predicted = model.forward(Schedule.AddNoise(x, e, t), t);
            sum += nn.functional.mse_loss(predicted, e, nn.Reduction.Sum).to(ScalarType.Float64).item<double>();
        }
        return sum / images.numel();
    }

    /// <summary>The first <paramref name="count"/> samples of the fixed noise, by DDIM in the settings' steps [count, C, H, W].</summary>
    public Tensor Sample(DiffusionUNet model, int count, CancellationToken cancellationToken)
    {
        if (count < 1 || count > _sampleNoise.shape[0]) throw new ArgumentOutOfRangeException(nameof(count), $"From 1 to {_sampleNoise.shape[0]} samples.");
        model.eval();
        using var _ = no_grad();
        var parts = new List<Tensor>();
        try
        {
            for (long start = 0; start < count; start += Chunk)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var length = Math.Min(Chunk, count - start);
                using var noise = _sampleNoise.narrow(0, start, length);
                parts.Add(Samplers.Ddim((x, t) =>
                {
                    using var timesteps = tensor(Enumerable.Repeat(t, (int)length).ToArray());
                    return model.forward(x, timesteps);
                }, Schedule, noise, Settings.SamplingSteps));
            }
            return cat(parts, 0);
        }
        finally
        {
            foreach (var part in parts) part.Dispose();
        }
    }

    /// <summary>
    /// The Fréchet distance of <paramref name="samples"/> to the held-out images, as images: each sample made the 8-bit
    /// image a person sees in the grid (pixels clamped to the dataset's range and rounded, as the held-out images are
    /// stored), so a sampler's overshoot beyond black or white is not scored as features no image has. NaN where no
    /// reference network covers the dataset.
    /// </summary>
    public double FrechetDistanceOf(Tensor samples)
    {
        if (_features is null) return double.NaN;
        using var images = AsImages(samples);
        return FrechetDistance.Between(_features.MomentsOf(images), _reference!);
    }

    /// <summary>Samples as 8-bit images, normalised again: x → (round(255 · clamp(x·σ + μ, 0, 1)) / 255 − μ) / σ, with no implicit torch scalar.</summary>
    Tensor AsImages(Tensor samples)
    {
        using var scope = NewDisposeScope();
        var (std, mean, minusMean) = (tensor(_normalization.Std, samples.dtype), tensor(_normalization.Mean, samples.dtype), tensor(-_normalization.Mean, samples.dtype));
        var (levels, zero, one) = (tensor(255.0, samples.dtype), tensor(0.0, samples.dtype), tensor(1.0, samples.dtype));
        var pixels = samples.mul(std).add_(mean, TorchScalars.One).clamp_(zero, one).mul_(levels).round_().div_(levels);
        return pixels.add_(minusMean, TorchScalars.One).div_(std).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The first <see cref="GridSide"/>² samples (fewer when there are fewer) as a PNG grid, in pixels as the dataset stores
    /// them (the normalisation undone, clamped), each cell enlarged to at least 28 pixels, 2-pixel dark gaps.
    /// </summary>
    public byte[] Grid(Tensor samples)
    {
        var count = (int)Math.Min(samples.shape[0], GridSide * GridSide);
        var (height, width) = ((int)samples.shape[2], (int)samples.shape[3]);
        var scale = Math.Max(1, (28 + height - 1) / height);
        var columns = Math.Min(count, GridSide);
        var rows = (count + columns - 1) / columns;
        const int gap = 2;
        var (cellHeight, cellWidth) = (height * scale, width * scale);
        var (imageWidth, imageHeight) = (columns * (cellWidth + gap) + gap, rows * (cellHeight + gap) + gap);
        var rgb = new byte[imageWidth * imageHeight * 3];
        rgb.AsSpan().Fill(0x30);
        var values = samples.narrow(0, 0, count).select(1, 0).contiguous().data<float>().ToArray();
        for (var i = 0; i < count; i++)
        {
            var (top, left) = (gap + i / columns * (cellHeight + gap), gap + i % columns * (cellWidth + gap));
            for (var y = 0; y < cellHeight; y++)
                for (var x = 0; x < cellWidth; x++)
                {
                    var value = values[(i * height + y / scale) * width + x / scale] * _normalization.Std + _normalization.Mean;
                    var level = (byte)Math.Round(Math.Clamp(value, 0, 1) * 255);
                    var at = ((top + y) * imageWidth + left + x) * 3;
                    rgb[at] = rgb[at + 1] = rgb[at + 2] = level;
                }
        }
        return Png.Encode(imageWidth, imageHeight, rgb);
    }

    public void Dispose()
    {
        foreach (var t in new[] { _images, _noise, _timesteps, _subsetImages, _subsetNoise, _subsetTimesteps, _sampleNoise }) t.Dispose();
        _features?.Dispose();
    }
}
