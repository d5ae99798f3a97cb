using System.Collections.Concurrent;

namespace EmaLab.TrainingEngine.Data;

/// <summary>A dataset ready for training: a training split, a held-out evaluation split and the preprocessing fitted to the training split.</summary>
public sealed record DatasetSplits(string Name, LabeledImages Train, LabeledImages Eval, Normalization Normalization)
{
    public int Height => Train.Height;
    public int Width => Train.Width;
    public int ClassCount => Math.Max(Train.ClassCount, Eval.ClassCount);
}

/// <summary>What a client can show about a built-in dataset.</summary>
public sealed record DatasetInfo(string Name, string Description, int TrainCount, int EvalCount, int Height, int Width, int ClassCount);

/// <summary>
/// The datasets shipped inside the assembly (see Data/Datasets/README.md for provenance and licences),
/// so a fresh machine trains with no download. Loaded once per process; the splits are immutable.
/// </summary>
public static class DatasetCatalog
{
    public const string Digits8x8 = "digits-8x8";
    public const string Mnist10k = "mnist-10k";

    /// <summary>The digits file has no official split: a fixed permutation holds out 20 % for evaluation, the same for every run.</summary>
    const long DigitsSplitSeed = 8_8_1797;
    const double DigitsEvalFraction = 0.2;

    static readonly ConcurrentDictionary<string, Lazy<DatasetSplits>> Cache = new();

    static readonly Dictionary<string, string> Descriptions = new()
    {
        [Digits8x8] = "UCI optical handwritten digits, 8x8, 1,797 samples (CC BY 4.0)",
        [Mnist10k] = "MNIST subset, 28x28, 8,000 train / 2,000 test (CC BY-SA 3.0)",
    };

    public static IReadOnlyList<string> Names { get; } = [Digits8x8, Mnist10k];

    public static bool Contains(string name) => Descriptions.ContainsKey(name);

    public static DatasetSplits Load(string name)
    {
        if (!Contains(name))
            throw new ArgumentException($"Unknown dataset '{name}'; built-in datasets: {string.Join(", ", Names)}.", nameof(name));
        return Cache.GetOrAdd(name, n => new Lazy<DatasetSplits>(() => LoadUncached(n))).Value;
    }

    public static DatasetInfo Describe(string name)
    {
        var d = Load(name);
        return new DatasetInfo(name, Descriptions[name], d.Train.Count, d.Eval.Count, d.Height, d.Width, d.ClassCount);
    }

    static DatasetSplits LoadUncached(string name)
    {
        LabeledImages train, eval;
        if (name == Mnist10k)
        {
            train = LoadIdx("mnist-10k/train-images-idx3-ubyte.gz", "mnist-10k/train-labels-idx1-ubyte.gz");
            eval = LoadIdx("mnist-10k/t10k-images-idx3-ubyte.gz", "mnist-10k/t10k-labels-idx1-ubyte.gz");
        }
        else
        {
            using var stream = OpenResource("digits-8x8/digits.csv.gz");
            var (pixels, labels) = CsvImageReader.Read(stream, "digits-8x8/digits.csv.gz", 64);
            var all = new LabeledImages("digits-8x8/digits.csv.gz", pixels, labels, 8, 8, pixelMax: 16);
            var order = DeterministicShuffle.Permutation(all.Count, DigitsSplitSeed, 0);
            var evalCount = (int)Math.Round(all.Count * DigitsEvalFraction);
            eval = all.Subset(order[..evalCount], "digits-8x8 (held-out 20 %)");
            train = all.Subset(order[evalCount..], "digits-8x8 (train 80 %)");
        }
        return new DatasetSplits(name, train, eval, Normalization.FitTo(train));
    }

    static LabeledImages LoadIdx(string images, string labels)
    {
        using var imageStream = OpenResource(images);
        using var labelStream = OpenResource(labels);
        return LabeledImages.FromIdx(imageStream, images, labelStream, labels);
    }

    static Stream OpenResource(string relativePath) =>
        typeof(DatasetCatalog).Assembly.GetManifestResourceStream("EmaLab.Datasets." + relativePath)
        ?? throw new InvalidOperationException($"The built-in dataset file {relativePath} is missing from the assembly.");
}
