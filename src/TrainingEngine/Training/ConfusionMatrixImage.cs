using EmaLab.TrainingEngine.Formats;

namespace EmaLab.TrainingEngine.Training;

/// <summary>
/// A track's confusion matrix at the run's last evaluation as an image: one square cell per (true class, predicted class),
/// rows the true classes top to bottom, columns the predictions left to right, shaded white to dark blue by the share of
/// the row's images (scikit-learn's "Blues": each row is a class's recall, the diagonal its correct share), with a thin
/// grid. Nearest-neighbour scaling keeps the cells sharp when the page enlarges it.
/// </summary>
public static class ConfusionMatrixImage
{
    public const string Key = "confusion_matrix";

    public static byte[] Render(IReadOnlyList<long> counts, int classes)
    {
        if (counts.Count != classes * classes) throw new ArgumentException($"{classes} classes need {classes * classes} counts.", nameof(counts));
        var cell = Math.Max(6, 240 / classes);
        var size = classes * cell + 1;
        var rgb = new byte[size * size * 3];
        rgb.AsSpan().Fill(0xC8); // the grid's lines, where no cell is drawn
        for (var row = 0; row < classes; row++)
        {
            var total = 0L;
            for (var column = 0; column < classes; column++) total += counts[row * classes + column];
            for (var column = 0; column < classes; column++)
            {
                var share = total == 0 ? 0 : (double)counts[row * classes + column] / total;
                var (r, g, b) = (Shade(247, 8, share), Shade(251, 48, share), Shade(255, 107, share));
                for (var y = row * cell + 1; y < (row + 1) * cell; y++)
                    for (var x = column * cell + 1; x < (column + 1) * cell; x++)
                    {
                        var at = (y * size + x) * 3;
                        (rgb[at], rgb[at + 1], rgb[at + 2]) = (r, g, b);
                    }
            }
        }
        return Png.Encode(size, size, rgb);
    }

    static byte Shade(int light, int dark, double share) => (byte)Math.Round(light + (dark - light) * Math.Clamp(share, 0, 1));
}
