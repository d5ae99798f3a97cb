using EmaLab.TrainingEngine.Formats;
using EmaLab.TrainingEngine.Models;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Diffusion;

/// <summary>
/// The fixed network whose penultimate features the diffusion workload's Fréchet distance compares (the "FID for MNIST"
/// idea of dfaroughy/FID-MNIST, with a network that fits the data instead of Inception): the engine's ResNet-8 trained on
/// Fashion-MNIST once, shipped in the engine (Diffusion/Reference/, with the spec that reproduces it and its test
/// accuracy; bench <c>reference-features</c> retrains it). Its inputs are images preprocessed as in training (the
/// dataset's normalization), which is the space the diffusion model generates in.
/// </summary>
public sealed class FeatureNetwork : IDisposable
{
    const string FashionMnistResource = "EmaLab.Diffusion.fashion-mnist-resnet8.safetensors";

    readonly ResidualNetwork _network;

    FeatureNetwork(ResidualNetwork network, IReadOnlyDictionary<string, string> metadata) => (_network, Metadata) = (network, metadata);

    /// <summary>The Fashion-MNIST reference network shipped with the engine (an exported checkpoint: its architecture in the metadata).</summary>
    public static FeatureNetwork FashionMnist()
    {
        using var stream = typeof(FeatureNetwork).Assembly.GetManifestResourceStream(FashionMnistResource)
            ?? throw new InvalidOperationException($"The engine was built without {FashionMnistResource}.");
        using var content = SafeTensors.Read(stream, "the reference network");
        var architecture = ModelArchitecture.FromJson(content.Metadata["architecture"]);
        if (ModelFactory.Build(architecture) is not ResidualNetwork network) throw new InvalidDataException("The reference network is not a ResNet.");
        content.LoadInto(network, "the reference network");
        network.eval();
        return new FeatureNetwork(network, content.Metadata);
    }

    /// <summary>The dataset the shipped reference network was trained on: the one the Fréchet distance is scored for.</summary>
    public const string FashionMnistDataset = "fashion-mnist";

    /// <summary>The reference network for <paramref name="dataset"/>'s images, or null where none is shipped (every dataset but Fashion-MNIST).</summary>
    public static FeatureNetwork? For(string dataset) => Covers(dataset) ? FashionMnist() : null;

    /// <summary>Whether a reference network is shipped for <paramref name="dataset"/> (its samples' Fréchet distance is scored).</summary>
    public static bool Covers(string dataset) => dataset == FashionMnistDataset;

    /// <summary>The checkpoint's metadata (its track, step, the accuracy the engine measured).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The features of preprocessed images [N, 1, 28, 28]: [N, 64], in batches of <paramref name="batch"/>.</summary>
    public Tensor Features(Tensor images, int batch = 500)
    {
        using var _ = no_grad();
        _network.eval();
        var parts = new List<Tensor>();
        for (long start = 0; start < images.shape[0]; start += batch)
            parts.Add(_network.Features(images.narrow(0, start, Math.Min(batch, images.shape[0] - start))));
        var features = cat(parts, 0);
        foreach (var part in parts) part.Dispose();
        return features;
    }

    /// <summary>The Gaussian fitted to the images' features (what a Fréchet distance compares).</summary>
    public FrechetDistance.Moments MomentsOf(Tensor images)
    {
        using var features = Features(images);
        return FrechetDistance.Of(features);
    }

    public void Dispose() => _network.Dispose();
}
