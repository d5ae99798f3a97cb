using System.IO.Compression;
using EmaLab.TrainingEngine.Data;

namespace EmaLab.TrainingEngine.Tests;

public class DataTests
{
    static string DatasetFile(string relative) =>
        Path.Combine(AppContext.BaseDirectory, "../../../../../src/TrainingEngine/Data/Datasets", relative);

    [Fact]
    public void Shipped_mnist_loads_with_the_general_idx_reader()
    {
        var (count, rows, cols, pixels) = IdxReader.ReadImages(DatasetFile("mnist-10k/train-images-idx3-ubyte.gz"));
        var labels = IdxReader.ReadLabels(DatasetFile("mnist-10k/train-labels-idx1-ubyte.gz"));
        Assert.Equal((8000, 28, 28), (count, rows, cols));
        Assert.Equal(8000 * 28 * 28, pixels.Length);
        Assert.Equal(8000, labels.Length);
        Assert.Equal(10, labels.Distinct().Count());
        Assert.Contains(pixels, p => p == 255);
    }

    [Fact]
    public void Fashion_mnist_is_read_from_debians_package_complete_and_checked()
    {
        // The build installs Debian's dataset-fashion-mnist (eng/install-prereqs.sh fashion-mnist, asked by this engine).
        Assert.Null(DatasetCatalog.MissingReason(DatasetCatalog.FashionMnist));
        Assert.Contains(DatasetCatalog.FashionMnist, DatasetCatalog.Names);
        var (train, test) = InstalledDataset.FashionMnist.Load();
        Assert.Equal((60_000, 10_000, 28, 28), (train.Count, test.Count, train.Height, train.Width));
        // Zalando's splits are balanced: 6,000 and 1,000 images of each of the 10 classes.
        Assert.All(train.Labels.CountBy(l => l), c => Assert.Equal(6_000, c.Value));
        Assert.All(test.Labels.CountBy(l => l), c => Assert.Equal(1_000, c.Value));
        Assert.Equal(10, train.Labels.Distinct().Count());
        // Described without loading, with the numbers the files hold.
        var info = DatasetCatalog.Describe(DatasetCatalog.FashionMnist);
        Assert.Equal((60_000, 10_000, 28, 28, 10, true), (info.TrainCount, info.EvalCount, info.Height, info.Width, info.ClassCount, info.BuiltIn));
    }

    [Fact]
    public void A_changed_or_cut_fashion_mnist_file_is_refused_by_name_with_the_fix()
    {
        var folder = Directory.CreateTempSubdirectory("fashion-").FullName;
        try
        {
            var dataset = InstalledDataset.FashionMnist with { Directory = folder };
            foreach (var file in Directory.GetFiles(InstalledDataset.FashionMnist.Directory)) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
            // Copied as installed: read (re-compressing changes nothing the check looks at).
            var labels = Path.Combine(folder, "t10k-labels-idx1-ubyte.gz");
            var contents = Decompress(labels);
            WriteGzip(labels, contents);
            Assert.Equal(10_000, dataset.Load().Test.Count);

            contents[5_000] ^= 1; // one label changed, still a valid IDX file
            WriteGzip(labels, contents);
            var changed = Assert.Throws<InvalidDataException>(() => dataset.Load());
            Assert.Contains(labels, changed.Message);
            Assert.Contains("SHA-256", changed.Message);
            Assert.Contains("apt-get install --reinstall dataset-fashion-mnist", changed.Message);

            WriteGzip(labels, contents[..9_000]);
            var cut = Assert.Throws<InvalidDataException>(() => dataset.Load());
            Assert.Contains("9,000 bytes, not the 10,008 bytes", cut.Message);

            File.Delete(labels);
            var missing = (dataset with { Name = "fashion-mnist" }).MissingReason;
            Assert.Contains("eng/install-prereqs.sh fashion-mnist", missing);
            Assert.Throws<FileNotFoundException>(() => dataset.Load());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    static byte[] Decompress(string path)
    {
        using var plain = new MemoryStream();
        using (var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress)) gz.CopyTo(plain);
        return plain.ToArray();
    }

    static void WriteGzip(string path, byte[] contents)
    {
        using var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        gz.Write(contents);
    }

    [Fact]
    public void Plain_and_gzip_idx_read_the_same()
    {
        var path = DatasetFile("mnist-10k/t10k-labels-idx1-ubyte.gz");
        using var plain = new MemoryStream();
        using (var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress)) gz.CopyTo(plain);
        plain.Position = 0;
        Assert.Equal(IdxReader.ReadLabels(path), IdxReader.ReadLabels(plain, "plain"));
    }

    [Fact]
    public void Catalog_splits_are_disjoint_and_normalised()
    {
        var digits = DatasetCatalog.Load(DatasetCatalog.Digits8x8);
        Assert.Equal(1797, digits.Train.Count + digits.Eval.Count);
        Assert.Equal(359, digits.Eval.Count);
        Assert.Equal(10, digits.ClassCount);
        Assert.Equal(1.0 / 16, digits.Normalization.Scale);
        var standardised = digits.Normalization.Apply(digits.Train.Pixels);
        Assert.Equal(0, standardised.Average(), 3);
        Assert.Equal(1, Math.Sqrt(standardised.Select(x => (double)x * x).Average()), 3);

        var mnist = DatasetCatalog.Load(DatasetCatalog.Mnist10k);
        Assert.Equal((8000, 2000, 28, 28), (mnist.Train.Count, mnist.Eval.Count, mnist.Height, mnist.Width));
    }

    [Fact]
    public void Wrong_magic_names_the_file()
    {
        var bytes = new byte[] { 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 7 };
        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(new MemoryStream(bytes), "labels.idx"));
        Assert.StartsWith("labels.idx:", e.Message);
        Assert.Contains("magic", e.Message);
    }

    [Fact]
    public void Truncated_idx_names_the_file_and_sizes()
    {
        var bytes = new byte[] { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3 };
        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(new MemoryStream(bytes), "images.idx"));
        Assert.Equal("images.idx: truncated: the header promises 8 bytes of data (2 x 2 x 2) but the file holds 3", e.Message);
    }

    [Fact]
    public void Truncated_gzip_is_reported_as_truncated()
    {
        var full = File.ReadAllBytes(DatasetFile("mnist-10k/t10k-images-idx3-ubyte.gz"));
        var cut = full[..(full.Length / 2)];
        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(new MemoryStream(cut), "half.gz"));
        Assert.StartsWith("half.gz: truncated", e.Message);
    }

    [Fact]
    public void Label_and_image_counts_must_match()
    {
        var images = new byte[] { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 5, 6 };
        var labels = new byte[] { 0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3 };
        var e = Assert.Throws<InvalidDataException>(() =>
            LabeledImages.FromIdx(new MemoryStream(images), "img.idx", new MemoryStream(labels), "lbl.idx"));
        Assert.Equal("lbl.idx: holds 3 labels but img.idx holds 2 images; the counts must match", e.Message);
    }

    [Fact]
    public void Csv_with_wrong_row_width_names_file_and_line()
    {
        var csv = "1,2,3,4,0\n1,2,3,1\n"u8.ToArray();
        var e = Assert.Throws<InvalidDataException>(() => CsvImageReader.Read(new MemoryStream(csv), "d.csv", pixelsPerRow: 4));
        Assert.Equal("d.csv: line 2 has 4 values; expected 5 (4 pixels then the label)", e.Message);
    }

    [Fact]
    public void Csv_with_a_non_integer_value_names_file_line_and_value()
    {
        var csv = "1,2,x,4,0\n"u8.ToArray();
        var e = Assert.Throws<InvalidDataException>(() => CsvImageReader.Read(new MemoryStream(csv), "d.csv", pixelsPerRow: 4));
        Assert.Equal("d.csv: line 1, value 3 is 'x'; expected an integer from 0 to 255", e.Message);
    }

    [Fact]
    public void Csv_reads_pixels_then_label()
    {
        var (pixels, labels) = CsvImageReader.Read(new MemoryStream("1,2,3,4,7\n\n5,6,7,8,9\n"u8.ToArray()), "d.csv", 4);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, pixels);
        Assert.Equal(new byte[] { 7, 9 }, labels);
    }

    [Fact]
    public void Batches_are_seeded_permutations_per_epoch()
    {
        var a = new BatchSchedule(100, 32, seed: 5);
        var b = new BatchSchedule(100, 32, seed: 5);
        var c = new BatchSchedule(100, 32, seed: 6);
        Assert.Equal(3, a.BatchesPerEpoch);
        var epoch0 = Enumerable.Range(1, 3).SelectMany(s => a.IndicesOf(s).ToArray()).ToList();
        Assert.Equal(96, epoch0.Distinct().Count());                    // no repeats within an epoch
        Assert.Equal(epoch0, Enumerable.Range(1, 3).SelectMany(s => b.IndicesOf(s).ToArray()));
        Assert.NotEqual(epoch0, Enumerable.Range(1, 3).SelectMany(s => c.IndicesOf(s).ToArray()));
        Assert.NotEqual(a.IndicesOf(1).ToArray(), a.IndicesOf(4).ToArray()); // epoch 1 reshuffles
        Assert.Equal((1L, 0), a.PositionOf(4));
        // Random access gives the same batch as sequential access (what resuming relies on).
        Assert.Equal(b.IndicesOf(2).ToArray(), new BatchSchedule(100, 32, 5).IndicesOf(2).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchSchedule(10, 11, 1));
    }
}
