using System.Security.Cryptography;

namespace EmaLab.TrainingEngine.Data;

/// <summary>One file of an <see cref="InstalledDataset"/>: its name and what its (decompressed) contents must be.</summary>
public sealed record IdxFile(string FileName, long Length, string Sha256);

/// <summary>
/// A built-in dataset too large to ship inside the assembly, read from the IDX files a system package installs
/// (Debian's <c>dataset-fashion-mnist</c>). The files are the ones published, checked by the length and SHA-256 of
/// their decompressed contents: packagers re-compress files (Debian's gzip headers differ from the original ones),
/// so a hash of the .gz would refuse an identical dataset.
/// </summary>
public sealed record InstalledDataset(
    string Name, string Description, string Directory, string Package,
    IdxFile TrainImages, IdxFile TrainLabels, IdxFile TestImages, IdxFile TestLabels,
    int TrainCount, int TestCount, int Height, int Width, int ClassCount)
{
    /// <summary>Zalando's Fashion-MNIST (MIT licence) as Debian installs it.</summary>
    public static InstalledDataset FashionMnist { get; } = new(
        "fashion-mnist",
        "Fashion-MNIST (Zalando), 28x28 clothing, 60,000 train / 10,000 test (MIT); from Debian's dataset-fashion-mnist",
        "/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist",
        new("train-images-idx3-ubyte.gz", 47_040_016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        new("train-labels-idx1-ubyte.gz", 60_008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        new("t10k-images-idx3-ubyte.gz", 7_840_016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        new("t10k-labels-idx1-ubyte.gz", 10_008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        TrainCount: 60_000, TestCount: 10_000, Height: 28, Width: 28, ClassCount: 10);

    IEnumerable<IdxFile> Files => [TrainImages, TrainLabels, TestImages, TestLabels];

    public bool IsInstalled => Files.All(f => File.Exists(Path.Combine(Directory, f.FileName)));

    /// <summary>Why a run cannot train on it here, with the command that fixes it; null when it is installed.</summary>
    public string? MissingReason => IsInstalled ? null :
        $"The dataset '{Name}' is not installed on this machine: 'sudo bash eng/install-prereqs.sh {Name}' installs Debian's " +
        $"{Package} (or put its four IDX files in {Directory}).";

    /// <summary>Reads both splits, refusing any file whose contents are not the published ones.</summary>
    public (LabeledImages Train, LabeledImages Test) Load()
    {
        if (MissingReason is { } missing) throw new FileNotFoundException(missing);
        return (Read(TrainImages, TrainLabels), Read(TestImages, TestLabels));
    }

    LabeledImages Read(IdxFile images, IdxFile labels)
    {
        var (imagesPath, labelsPath) = (Path.Combine(Directory, images.FileName), Path.Combine(Directory, labels.FileName));
        using var imageStream = Verified(images, imagesPath);
        using var labelStream = Verified(labels, labelsPath);
        return LabeledImages.FromIdx(imageStream, imagesPath, labelStream, labelsPath);
    }

    /// <summary>The decompressed contents of <paramref name="path"/>, once their length and hash are the expected ones.</summary>
    MemoryStream Verified(IdxFile file, string path)
    {
        using var raw = File.OpenRead(path);
        using var stream = MaybeGzip.Open(raw);
        // One byte more than expected is enough to tell a longer file; nothing larger is read into memory.
        var buffer = new byte[file.Length + 1];
        int read = 0, n;
        try
        {
            while (read < buffer.Length && (n = stream.Read(buffer, read, buffer.Length - read)) > 0) read += n;
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: the file is damaged ({e.Message}). {Reinstall}", e);
        }
        if (read != file.Length)
            throw new InvalidDataException(
                $"{path}: its contents are {(read > file.Length ? "longer than" : $"{read:N0} bytes, not")} the {file.Length:N0} bytes of {Name}'s {file.FileName}. {Reinstall}");
        var hash = Convert.ToHexStringLower(SHA256.HashData(buffer.AsSpan(0, read)));
        if (hash != file.Sha256)
            throw new InvalidDataException($"{path}: its contents have SHA-256 {hash}, not {file.Sha256} as {Name}'s {file.FileName}. {Reinstall}");
        return new MemoryStream(buffer, 0, read, writable: false);
    }

    string Reinstall => $"Reinstall it with 'sudo apt-get install --reinstall {Package}'.";
}
