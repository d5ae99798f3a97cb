using System.Collections.Concurrent;

namespace EmaLab.TrainingEngine.Data;

/// <summary>A dataset ready for training: a training split, a held-out evaluation split and the preprocessing fitted to the training split.</summary>
public sealed record DatasetSplits(string Name, LabeledImages Train, LabeledImages Eval, Normalization Normalization)
{
    public int Height => Train.Height;
    public int Width => Train.Width;
    public int ClassCount => Math.Max(Train.ClassCount, Eval.ClassCount);
}

/// <summary>What a client can show about a dataset; <see cref="BuiltIn"/> is false for an uploaded one.</summary>
public sealed record DatasetInfo(string Name, string Description, int TrainCount, int EvalCount, int Height, int Width, int ClassCount,
    bool BuiltIn = true, string? UploadedBy = null);

/// <summary>
/// The datasets runs train on: those shipped inside the assembly (see Data/Datasets/README.md for provenance and
/// licences), so a fresh machine trains with no download; Fashion-MNIST, installed by the build from Debian's package
/// (<see cref="InstalledDataset"/>); and those uploaded into a dataset directory
/// (<see cref="AddDirectory"/>: one folder per dataset, see <see cref="DatasetFolder"/>). Loaded once per process and
/// import; the splits are immutable.
/// </summary>
public static class DatasetCatalog
{
    public const string Digits8x8 = "digits-8x8";
    public const string Mnist10k = "mnist-10k";
    public static readonly string FashionMnist = InstalledDataset.FashionMnist.Name;

    /// <summary>The digits file has no official split: a fixed permutation holds out 20 % for evaluation, the same for every run.</summary>
    const long DigitsSplitSeed = 8_8_1797;
    const double DigitsEvalFraction = 0.2;

    static readonly ConcurrentDictionary<string, Lazy<DatasetSplits>> Cache = new();
    /// <summary>Folders holding uploaded datasets (a process serves one; a test process hosts several apps, each with its own).</summary>
    static readonly List<string> Directories = [];

    static readonly Dictionary<string, string> Descriptions = new()
    {
        [Digits8x8] = "UCI optical handwritten digits, 8x8, 1,797 samples (CC BY 4.0)",
        [Mnist10k] = "MNIST subset, 28x28, 8,000 train / 2,000 test (CC BY-SA 3.0)",
    };

    static readonly Dictionary<string, InstalledDataset> Installed = new() { [FashionMnist] = InstalledDataset.FashionMnist };

    /// <summary>The built-in datasets, installed here or not.</summary>
    public static IReadOnlyList<string> BuiltInNames { get; } = [Digits8x8, Mnist10k, FashionMnist];

    /// <summary>The datasets a run can train on here: the built-in ones present, then the uploaded ones by name.</summary>
    public static IReadOnlyList<string> Names =>
        [.. BuiltInNames.Where(n => MissingReason(n) is null), .. Uploaded().Select(u => u.Manifest.Name).Order(StringComparer.Ordinal)];

    /// <summary>Whether the name is a built-in dataset's, even one not installed here (an upload may not take it).</summary>
    public static bool IsBuiltIn(string name) => Descriptions.ContainsKey(name) || Installed.ContainsKey(name);

    /// <summary>Whether a run can train on it here.</summary>
    public static bool Contains(string name) => IsBuiltIn(name) ? MissingReason(name) is null : Find(name) is not null;

    /// <summary>Why a built-in dataset cannot be used here and how to install it; null when it can (or is not built in).</summary>
    public static string? MissingReason(string name) => Installed.TryGetValue(name, out var installed) ? installed.MissingReason : null;

    /// <summary>Makes the datasets uploaded into <paramref name="directory"/> (one folder each) available by name.</summary>
    public static void AddDirectory(string directory)
    {
        lock (Directories)
            if (!Directories.Contains(directory)) Directories.Add(directory);
    }

    /// <summary>The folder and manifest of an uploaded dataset, or null.</summary>
    public static (string Directory, DatasetManifest Manifest)? Find(string name)
    {
        if (string.IsNullOrEmpty(name) || IsBuiltIn(name) || name.IndexOfAny(['/', '\\']) >= 0 || name.StartsWith('.')) return null;
        lock (Directories)
            foreach (var root in Directories)
            {
                var folder = Path.Combine(root, name);
                if (DatasetFolder.ReadManifest(folder) is { } manifest && manifest.Name == name) return (folder, manifest);
            }
        return null;
    }

    static IEnumerable<(string Directory, DatasetManifest Manifest)> Uploaded()
    {
        List<string> roots;
        lock (Directories) roots = [.. Directories];
        foreach (var root in roots.Where(Directory.Exists))
            foreach (var folder in Directory.EnumerateDirectories(root))
                if (DatasetFolder.ReadManifest(folder) is { } manifest && manifest.Name == Path.GetFileName(folder)) yield return (folder, manifest);
    }

    public static DatasetSplits Load(string name)
    {
        if (IsBuiltIn(name)) return Cache.GetOrAdd(name, n => new Lazy<DatasetSplits>(() => LoadUncached(n))).Value;
        if (Find(name) is not { } uploaded)
            throw new ArgumentException($"Unknown dataset '{name}'; available: {string.Join(", ", Names)}.", nameof(name));
        // Keyed by the import's id: a dataset deleted and uploaded again under its name is read afresh.
        return Cache.GetOrAdd($"{name}#{uploaded.Manifest.Id}", _ => new Lazy<DatasetSplits>(() => DatasetFolder.Load(uploaded.Directory, uploaded.Manifest))).Value;
    }

    /// <summary>Drops what was loaded of an uploaded dataset (it was deleted).</summary>
    public static void Forget(string name)
    {
        foreach (var key in Cache.Keys.Where(k => k.StartsWith(name + "#", StringComparison.Ordinal))) Cache.TryRemove(key, out _);
    }

    public static DatasetInfo Describe(string name)
    {
        if (Find(name) is { Manifest: var m })
            return new DatasetInfo(name, m.Description, m.TrainCount, m.EvalCount, m.Height, m.Width, m.ClassCount, BuiltIn: false, m.UploadedBy);
        // Described without reading its 55 MB: listing the datasets must not load them all.
        if (Installed.TryGetValue(name, out var i)) return new DatasetInfo(name, i.Description, i.TrainCount, i.TestCount, i.Height, i.Width, i.ClassCount);
        var d = Load(name);
        return new DatasetInfo(name, Descriptions[name], d.Train.Count, d.Eval.Count, d.Height, d.Width, d.ClassCount);
    }

    static DatasetSplits LoadUncached(string name)
    {
        LabeledImages train, eval;
        if (Installed.TryGetValue(name, out var installed))
        {
            (train, eval) = installed.Load();
        }
        else if (name == Mnist10k)
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
