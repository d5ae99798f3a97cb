namespace EmaLab.TrainingEngine.Data;

/// <summary>
/// Single-channel images with integer class labels, as stored on disk (pixels in 0..<see cref="PixelMax"/>).
/// </summary>
public sealed class LabeledImages
{
    public LabeledImages(string source, byte[] pixels, byte[] labels, int height, int width, int pixelMax)
    {
        if (labels.Length == 0) throw new InvalidDataException($"{source}: the dataset is empty");
        if (pixels.Length != (long)labels.Length * height * width)
            throw new InvalidDataException(
                $"{source}: {labels.Length} labels but {pixels.Length / Math.Max(1, height * width)} images of {height}x{width}; the counts must match");
        Source = source;
        Pixels = pixels;
        Labels = labels;
        Height = height;
        Width = width;
        PixelMax = pixelMax;
    }

    public string Source { get; }
    public byte[] Pixels { get; }
    public byte[] Labels { get; }
    public int Height { get; }
    public int Width { get; }
    public int PixelMax { get; }
    public int Count => Labels.Length;
    public int ClassCount => Labels.Max() + 1;

    /// <summary>Reads an IDX image file and its label file (MNIST, Fashion-MNIST, ...).</summary>
    public static LabeledImages FromIdx(Stream images, string imagesName, Stream labels, string labelsName)
    {
        var (count, rows, cols, pixels) = IdxReader.ReadImages(images, imagesName);
        var labelBytes = IdxReader.ReadLabels(labels, labelsName);
        if (labelBytes.Length != count)
            throw new InvalidDataException($"{labelsName}: holds {labelBytes.Length} labels but {imagesName} holds {count} images; the counts must match");
        return new LabeledImages(imagesName, pixels, labelBytes, rows, cols, pixelMax: 255);
    }

    /// <summary>Selects samples by index (used to make a held-out split).</summary>
    public LabeledImages Subset(IReadOnlyList<int> indices, string source)
    {
        var size = Height * Width;
        var pixels = new byte[indices.Count * size];
        var labels = new byte[indices.Count];
        for (var i = 0; i < indices.Count; i++)
        {
            Array.Copy(Pixels, (long)indices[i] * size, pixels, (long)i * size, size);
            labels[i] = Labels[indices[i]];
        }
        return new LabeledImages(source, pixels, labels, Height, Width, PixelMax);
    }
}
