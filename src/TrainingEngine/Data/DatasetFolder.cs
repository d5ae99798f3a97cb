using System.Text.Json;

namespace EmaLab.TrainingEngine.Data;

/// <summary>How an uploaded dataset's files are laid out.</summary>
public enum DatasetFormat
{
    /// <summary>An IDX image file and an IDX label file (MNIST, Fashion-MNIST), each gzip-compressed or plain.</summary>
    Idx,
    /// <summary>One CSV file, a sample a line: the pixel values (0–255) then the integer label; gzip-compressed or plain.</summary>
    Csv,
}

/// <summary>
/// What a dataset folder holds (<c>dataset.json</c>): its files, how its held-out split is made (given test files, or a
/// seeded fraction of the training files), and what was detected at import — so listing it needs no loading.
/// </summary>
/// <param name="Id">A new id per import: a dataset deleted and imported again under the same name is not served from a stale cache.</param>
/// <param name="UploadedBy">The account that uploaded it, when the server has accounts: it (and admins) may delete it.</param>
public sealed record DatasetManifest(
    string Name, string Id, DatasetFormat Format, IReadOnlyList<string> TrainFiles, IReadOnlyList<string>? TestFiles,
    double? EvalFraction, long? SplitSeed, int Height, int Width, int PixelMax, int ClassCount, int TrainCount, int EvalCount,
    DateTimeOffset CreatedAt, string? UploadedBy = null)
{
    public string Description => $"Uploaded {Format.ToString().ToUpperInvariant()}, {Height}x{Width}, {ClassCount} classes, " +
        (TestFiles is null ? $"{EvalFraction:P0} held out (seed {SplitSeed})" : "with its own test files");
}

/// <summary>
/// A dataset as files in a folder of its own (<c>datasets/&lt;name&gt;/</c>) with its manifest: how uploaded datasets are
/// stored, loaded by the same readers as the built-in ones.
/// </summary>
public static class DatasetFolder
{
    public const string ManifestFile = "dataset.json";
    public const double DefaultEvalFraction = 0.2;
    /// <summary>A held-out split needs samples on both sides.</summary>
    public const double MinEvalFraction = 0.01, MaxEvalFraction = 0.5;

    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public static DatasetManifest? ReadManifest(string directory)
    {
        var path = Path.Combine(directory, ManifestFile);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<DatasetManifest>(File.ReadAllText(path), Json);
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            return null; // a folder without a readable manifest is not a dataset (an import in progress, say)
        }
    }

    /// <summary>Loads the splits the manifest describes, reading each file by its own name.</summary>
    public static DatasetSplits Load(string directory, DatasetManifest manifest)
    {
        var train = Read(directory, manifest.Format, manifest.TrainFiles, manifest.Height, manifest.Width, manifest.PixelMax);
        LabeledImages eval;
        if (manifest.TestFiles is { } test) eval = Read(directory, manifest.Format, test, manifest.Height, manifest.Width, manifest.PixelMax);
        else (train, eval) = Split(train, manifest.EvalFraction ?? DefaultEvalFraction, manifest.SplitSeed ?? 1, manifest.Name);
        return new DatasetSplits(manifest.Name, train, eval, Normalization.FitTo(train));
    }

    /// <summary>
    /// Validates the files in <paramref name="directory"/> by reading them (each problem names its file), detects the
    /// shape, pixel range and classes, and writes the manifest. <paramref name="csvWidth"/> is needed only for CSV images
    /// that are not square (a square's side is found from the number of values a line). The splits are made here only to be
    /// checked; <see cref="Load"/> makes them again when a run needs them.
    /// </summary>
    public static DatasetManifest Import(
        string directory, string name, DatasetFormat format, IReadOnlyList<string> trainFiles, IReadOnlyList<string>? testFiles,
        double evalFraction, long splitSeed, int? csvWidth = null, string? uploadedBy = null)
    {
        if (testFiles is null && evalFraction is < MinEvalFraction or > MaxEvalFraction)
            throw new InvalidDataException($"The held-out fraction must be from {MinEvalFraction} to {MaxEvalFraction}.");
        var (height, width) = format == DatasetFormat.Csv ? CsvShape(directory, trainFiles[0], csvWidth) : (0, 0);
        // The pixel scale is the training files' (test images are scaled as the model's inputs were).
        var train = Read(directory, format, trainFiles, height, width, pixelMax: null);
        LabeledImages eval;
        if (testFiles is not null)
        {
            eval = Read(directory, format, testFiles, train.Height, train.Width, train.PixelMax);
            if (eval.Height != train.Height || eval.Width != train.Width)
                throw new InvalidDataException($"{testFiles[0]}: images are {eval.Height}x{eval.Width} but the training images are {train.Height}x{train.Width}");
        }
        else (train, eval) = Split(train, evalFraction, splitSeed, name);
        if (train.Count < 2) throw new InvalidDataException($"{trainFiles[0]}: {train.Count} training sample(s) is too few to train on");
        var manifest = new DatasetManifest(name, Guid.NewGuid().ToString("N"), format, trainFiles, testFiles,
            testFiles is null ? evalFraction : null, testFiles is null ? splitSeed : null,
            train.Height, train.Width, train.PixelMax, Math.Max(train.ClassCount, eval.ClassCount), train.Count, eval.Count, DateTimeOffset.UtcNow, uploadedBy);
        File.WriteAllText(Path.Combine(directory, ManifestFile), JsonSerializer.Serialize(manifest, Json));
        return manifest;
    }

    /// <summary>The files' images; <paramref name="pixelMax"/> null: detected from them. IDX files carry their own shape.</summary>
    static LabeledImages Read(string directory, DatasetFormat format, IReadOnlyList<string> files, int height, int width, int? pixelMax)
    {
        byte[] pixels, labels;
        if (format == DatasetFormat.Idx)
        {
            if (files.Count != 2) throw new InvalidDataException("An IDX dataset needs an image file and a label file.");
            using var imageFile = File.OpenRead(Path.Combine(directory, files[0]));
            using var labelFile = File.OpenRead(Path.Combine(directory, files[1]));
            var read = LabeledImages.FromIdx(imageFile, files[0], labelFile, files[1]);
            (pixels, labels, height, width) = (read.Pixels, read.Labels, read.Height, read.Width);
        }
        else
        {
            using var stream = File.OpenRead(Path.Combine(directory, files[0]));
            (pixels, labels) = CsvImageReader.Read(stream, files[0], height * width);
        }
        return new LabeledImages(files[0], pixels, labels, height, width, pixelMax ?? DetectPixelMax(pixels));
    }

    /// <summary>The image side from the first line's number of values (pixels then the label): a square unless a width is given.</summary>
    static (int Height, int Width) CsvShape(string directory, string file, int? width)
    {
        using var reader = new StreamReader(MaybeGzip.Open(File.OpenRead(Path.Combine(directory, file))));
        string? line;
        while ((line = reader.ReadLine()) is not null && string.IsNullOrWhiteSpace(line)) { }
        if (line is null) throw new InvalidDataException($"{file}: no samples in the file");
        var pixels = line.Split(',').Length - 1;
        if (pixels < 1) throw new InvalidDataException($"{file}: line 1 has no pixel values before the label");
        if (width is { } w)
        {
            if (w < 1 || pixels % w != 0) throw new InvalidDataException($"{file}: {pixels} pixels a line cannot be rows of {w}");
            return (pixels / w, w);
        }
        var side = (int)Math.Round(Math.Sqrt(pixels));
        if (side * side != pixels)
            throw new InvalidDataException($"{file}: {pixels} pixels a line is not a square image; give the image width");
        return (side, side);
    }

    /// <summary>The scale the pixels were stored on: 1, 16 (the UCI digits) or 255.</summary>
    static int DetectPixelMax(byte[] pixels)
    {
        var max = pixels.Length == 0 ? 0 : pixels.Max();
        return max <= 1 ? 1 : max <= 16 ? 16 : 255;
    }

    /// <summary>A seeded permutation holds out a fraction, the same for every run (as the built-in digits' split).</summary>
    static (LabeledImages Train, LabeledImages Eval) Split(LabeledImages all, double fraction, long seed, string name)
    {
        var order = DeterministicShuffle.Permutation(all.Count, seed, 0);
        var evalCount = (int)Math.Round(all.Count * fraction);
        if (evalCount < 1 || evalCount >= all.Count)
            throw new InvalidDataException($"{all.Source}: {all.Count} samples cannot be split with {fraction:P0} held out");
        return (all.Subset(order[evalCount..], $"{name} (train)"), all.Subset(order[..evalCount], $"{name} (held-out {fraction:P0})"));
    }
}
