using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Diffusion;

/// <summary>
/// A DDPM noise schedule over <see cref="Timesteps"/> steps, in float64: β_t, α_t = 1 − β_t, ᾱ_t = Π α. <see cref="Linear"/>
/// is Ho et al.'s (β from 1e-4 to 0.02; diffusers' <c>linear</c>), <see cref="Cosine"/> Nichol and Dhariwal's
/// (ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), β capped at 0.999; diffusers' <c>squaredcos_cap_v2</c>).
/// </summary>
public sealed class NoiseSchedule
{
    public int Timesteps => Betas.Length;
    public double[] Betas { get; }
    public double[] AlphasCumulative { get; }

    NoiseSchedule(double[] betas)
    {
        Betas = betas;
        AlphasCumulative = new double[betas.Length];
        var product = 1.0;
        for (var t = 0; t < betas.Length; t++) AlphasCumulative[t] = product *= 1 - betas[t];
    }

    public static NoiseSchedule Linear(int timesteps = 1000, double first = 1e-4, double last = 0.02) =>
        new(Enumerable.Range(0, timesteps).Select(t => first + (last - first) * t / Math.Max(1, timesteps - 1)).ToArray());

    public static NoiseSchedule Cosine(int timesteps = 1000, double offset = 0.008, double maxBeta = 0.999)
    {
        double AlphaBar(double t) => Math.Pow(Math.Cos((t / timesteps + offset) / (1 + offset) * Math.PI / 2), 2);
        return new(Enumerable.Range(0, timesteps).Select(t => Math.Min(1 - AlphaBar(t + 1) / AlphaBar(t), maxBeta)).ToArray());
    }

    /// <summary>ᾱ before step <paramref name="t"/> (1 before the first: clean data).</summary>
    public double AlphaCumulativeBefore(long t) => t <= 0 ? 1 : AlphasCumulative[t - 1];

    /// <summary>The forward process: x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε, per example (<paramref name="timesteps"/> [B]).</summary>
    public Tensor AddNoise(Tensor clean, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var shape = new long[clean.dim()];
        Array.Fill(shape, 1L);
        shape[0] = clean.shape[0];
        // Square roots taken here in float64, so no implicit torch scalar is needed (see TorchScalars).
        var signal = tensor(AlphasCumulative.Select(Math.Sqrt).ToArray(), clean.dtype, clean.device).index_select(0, timesteps).reshape(shape);
        var spread = tensor(AlphasCumulative.Select(a => Math.Sqrt(1 - a)).ToArray(), clean.dtype, clean.device).index_select(0, timesteps).reshape(shape);
        return clean.mul(signal).add_(noise.mul(spread), TorchScalars.One).MoveToOuterDisposeScope();
    }
}
