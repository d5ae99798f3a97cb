namespace EmaLab.TrainingEngine.Data;

/// <summary>
/// Input preprocessing: <c>x = (pixel * Scale - Mean) / Std</c>, one channel. Exported checkpoints
/// carry these numbers so a consumer feeds the model exactly what it was trained on.
/// </summary>
public sealed record Normalization(double Scale, double Mean, double Std)
{
    /// <summary>Scale pixels to [0, 1], then standardise with the mean and deviation of the training split.</summary>
    public static Normalization FitTo(LabeledImages train)
    {
        var scale = 1.0 / train.PixelMax;
        double sum = 0, sumSquares = 0;
        foreach (var p in train.Pixels)
        {
            var x = p * scale;
            sum += x;
            sumSquares += x * x;
        }
        var n = (double)train.Pixels.Length;
        var mean = sum / n;
        var std = Math.Sqrt(Math.Max(sumSquares / n - mean * mean, 1e-12));
        return new Normalization(scale, mean, std);
    }

    public float[] Apply(byte[] pixels)
    {
        var result = new float[pixels.Length];
        for (var i = 0; i < pixels.Length; i++) result[i] = (float)((pixels[i] * Scale - Mean) / Std);
        return result;
    }
}
