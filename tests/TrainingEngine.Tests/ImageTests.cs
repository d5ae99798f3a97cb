using System.Buffers.Binary;
using System.IO.Compression;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Formats;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>The images the engine logs: a PNG any reader decodes, and each track's confusion matrix at the last evaluation.</summary>
[Collection(TrainingCollection.Name)]
public class ImageTests
{
    /// <summary>Decodes the PNGs this engine writes (RGB, 8 bits, filter 0), checking every chunk's CRC: width, height, pixels.</summary>
    internal static (int Width, int Height, byte[] Rgb) Decode(byte[] png)
    {
        Assert.Equal([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], png[..8]);
        int width = 0, height = 0;
        using var idat = new MemoryStream();
        for (var at = 8; at < png.Length;)
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            var type = System.Text.Encoding.ASCII.GetString(png, at + 4, 4);
            var body = png.AsSpan(at + 8, length);
            Assert.Equal(BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length)), Png.Crc32(png.AsSpan(at + 4, length + 4)));
            if (type == "IHDR")
            {
                (width, height) = (BinaryPrimitives.ReadInt32BigEndian(body), BinaryPrimitives.ReadInt32BigEndian(body[4..]));
                Assert.Equal([8, 2, 0, 0, 0], body[8..].ToArray());
            }
            else if (type == "IDAT") idat.Write(body);
            at += 12 + length;
        }
        using var inflated = new MemoryStream();
        idat.Position = 0;
        using (var zlib = new ZLibStream(idat, CompressionMode.Decompress)) zlib.CopyTo(inflated);
        var raw = inflated.ToArray();
        var rgb = new byte[width * height * 3];
        for (var y = 0; y < height; y++)
        {
            Assert.Equal(0, raw[y * (width * 3 + 1)]); // filter: none
            Array.Copy(raw, y * (width * 3 + 1) + 1, rgb, y * width * 3, width * 3);
        }
        return (width, height, rgb);
    }

    [Fact]
    public void Png_writes_chunks_with_the_standard_crc_and_the_pixels_back()
    {
        // The CRC-32 of the IEND chunk's type is a constant of every PNG file: AE 42 60 82.
        Assert.Equal(0xAE426082u, Png.Crc32("IEND"u8));
        byte[] pixels = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90];
        var (width, height, rgb) = Decode(Png.Encode(3, 2, pixels));
        Assert.Equal((3, 2), (width, height));
        Assert.Equal(pixels, rgb);
        Assert.Throws<ArgumentException>(() => Png.Encode(3, 2, pixels[..5]));
    }

    [Fact]
    public void A_confusion_matrix_shades_each_cell_by_its_share_of_the_true_class()
    {
        // 3 classes: class 0 always right, class 1 half confused with 2, class 2 never seen.
        long[] counts = [10, 0, 0, 0, 5, 5, 0, 0, 0];
        var (width, _, rgb) = Decode(ConfusionMatrixImage.Render(counts, 3));
        var cell = Math.Max(6, 240 / 3);
        Assert.Equal(3 * cell + 1, width);
        (byte, byte, byte) Pixel(int row, int column)
        {
            var (x, y) = (column * cell + cell / 2, row * cell + cell / 2);
            var at = (y * width + x) * 3;
            return (rgb[at], rgb[at + 1], rgb[at + 2]);
        }
        Assert.Equal(((byte)8, (byte)48, (byte)107), Pixel(0, 0));     // all of class 0: darkest
        Assert.Equal(((byte)247, (byte)251, (byte)255), Pixel(0, 1));  // none: white
        Assert.Equal(Pixel(1, 1), Pixel(1, 2));                         // half and half: the same middle shade
        Assert.Equal(((byte)128, (byte)150, (byte)181), Pixel(1, 1));
        Assert.Equal(((byte)247, (byte)251, (byte)255), Pixel(2, 2));  // a class with no images: white
    }

    [Fact]
    public void The_last_evaluation_logs_each_tracks_confusion_matrix_whose_counts_match_its_accuracy()
    {
        var spec = new RunSpec
        {
            Dataset = "digits-8x8", Model = "mlp", Hidden = [32], Optimizer = RunSpec.Adam, LearningRate = 3e-3,
            BatchSize = 32, Steps = 40, Seed = 5, EvalInterval = 20, EvalSubset = 100, Ema = new EmaSettings { Decays = [0.9] },
        };
        var observer = new RecordingObserver();
        using var session = TrainingSession.Create(spec);
        session.Train(observer);
        // Only at the last step (every held-out image), one per track.
        Assert.Equal([("raw", 40L), ("ema-0.9", 40L)], observer.Images.Select(i => (i.Track, i.Step)));
        Assert.All(observer.Images, i => Assert.Equal(ConfusionMatrixImage.Key, i.Key));
        Assert.All(observer.Images, i => Assert.Equal(10 * Math.Max(6, 240 / 10) + 1, Decode(i.Png).Width));

        // The counts behind the picture: every held-out image once, the diagonal its accuracy.
        var confusion = new long[100];
        session.LoadTrack("raw");
        var result = session.Evaluator.Evaluate(subset: false, confusion: confusion);
        Assert.Equal(session.Evaluator.ImagesScored(subset: false), confusion.Sum());
        Assert.Equal(result.Accuracy, (double)Enumerable.Range(0, 10).Sum(c => confusion[c * 10 + c]) / confusion.Sum(), 12);
        Assert.Equal(observer.Series("raw", MetricKeys.EvalAccuracy).Last().Value, result.Accuracy, 12);
    }
}
