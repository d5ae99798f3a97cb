namespace EmaLab.TrainingEngine.Data;

/// <summary>
/// Training-time augmentation of a batch of single-channel images, as torchvision's <c>RandomCrop(size, padding)</c>
/// then <c>RandomHorizontalFlip()</c>: each image is shifted by up to <see cref="CropPadding"/> pixels each way (what
/// the shift uncovers is the fill, a pixel of 0 after normalisation) and mirrored with probability ½. Each image's
/// draw is a pure function of (seed, step, position in the batch), so a run is reproducible and a resumed run sees
/// exactly the images an uninterrupted one would. Evaluation and batch-norm recalibration read the images as they are.
/// </summary>
public sealed class Augmentation(int cropPadding, bool horizontalFlip, float fill)
{
    /// <summary>Keeps the draws of augmentation apart from those of the batch order, which use the epoch as stream.</summary>
    const long StreamOffset = 1L << 40;

    public int CropPadding { get; } = cropPadding;
    public bool HorizontalFlip { get; } = horizontalFlip;

    /// <summary>Writes the augmented <paramref name="images"/> (<c>[count, height, width]</c>, row-major) into <paramref name="output"/>.</summary>
    public void Apply(ReadOnlySpan<float> images, Span<float> output, int count, int height, int width, long seed, long step)
    {
        var size = height * width;
        var shifts = 2 * CropPadding + 1;
        for (var i = 0; i < count; i++)
        {
            var draw = DeterministicShuffle.Draw(seed, StreamOffset + step, i);
            // Three independent parts of one draw: the vertical and horizontal offsets and the flip.
            var dy = (int)(draw % (ulong)shifts) - CropPadding;
            var dx = (int)(draw / (ulong)shifts % (ulong)shifts) - CropPadding;
            var flip = HorizontalFlip && (draw >> 63) != 0;
            var source = images.Slice(i * size, size);
            var target = output.Slice(i * size, size);
            for (var y = 0; y < height; y++)
            {
                var sy = y + dy;
                var row = target.Slice(y * width, width);
                if (sy < 0 || sy >= height)
                {
                    row.Fill(fill);
                    continue;
                }
                for (var x = 0; x < width; x++)
                {
                    var sx = (flip ? width - 1 - x : x) + dx;
                    row[x] = sx >= 0 && sx < width ? source[sy * width + sx] : fill;
                }
            }
        }
    }
}
