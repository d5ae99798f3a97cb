using EmaLab.TrainingEngine.Diffusion;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>FID's formula, checked against closed forms and against an independent matrix square root (Denman–Beavers on Σ₁Σ₂ itself).</summary>
public class FrechetDistanceTests
{
    static FrechetDistance.Moments Gaussian(double[] mean, double[,] covariance) =>
        new(mean, Enumerable.Range(0, mean.Length).SelectMany(i => Enumerable.Range(0, mean.Length).Select(j => covariance[i, j])).ToArray());

    static double[,] Diagonal(params double[] values)
    {
        var m = new double[values.Length, values.Length];
        for (var i = 0; i < values.Length; i++) m[i, i] = values[i];
        return m;
    }

    [Fact]
    public void Diagonal_gaussians_give_the_closed_form()
    {
        // ‖μ₁ − μ₂‖² + Σᵢ (σ₁ᵢ + σ₂ᵢ − 2√(σ₁ᵢσ₂ᵢ)) = ‖Δμ‖² + Σᵢ (√σ₁ᵢ − √σ₂ᵢ)²
        var a = Gaussian([0, 1, 2], Diagonal(1, 4, 9));
        var b = Gaussian([1, 1, 0], Diagonal(4, 1, 9));
        Assert.Equal(1 + 0 + 4 + (1 - 2) * (1 - 2) + (2 - 1) * (2 - 1) + 0, FrechetDistance.Between(a, b), 10);
        Assert.Equal(0, FrechetDistance.Between(a, a), 10);
        Assert.Equal(FrechetDistance.Between(a, b), FrechetDistance.Between(b, a), 10);
    }

    [Fact]
    public void A_scaled_covariance_gives_the_closed_form_and_a_random_pair_matches_an_independent_square_root()
    {
        var random = new Random(3);
        const int d = 12;
        double[,] Spd()
        {
            var m = new double[d, d];
            for (var i = 0; i < d; i++) for (var j = 0; j < d; j++) m[i, j] = random.NextDouble() - 0.5;
            var s = Multiply(m, Transpose(m));
            for (var i = 0; i < d; i++) s[i, i] += 0.5;
            return s;
        }
        var sigma1 = Spd();
        var mean1 = Enumerable.Range(0, d).Select(_ => random.NextDouble()).ToArray();
        var mean2 = Enumerable.Range(0, d).Select(_ => random.NextDouble()).ToArray();
        var meanGap = mean1.Zip(mean2).Sum(p => (p.First - p.Second) * (p.First - p.Second));
        var trace1 = Enumerable.Range(0, d).Sum(i => sigma1[i, i]);

        // Σ₂ = c²Σ₁: (Σ₁Σ₂)^½ = cΣ₁, so the distance is ‖Δμ‖² + (1 − c)² Tr Σ₁.
        var scaled = new double[d, d];
        for (var i = 0; i < d; i++) for (var j = 0; j < d; j++) scaled[i, j] = 2.25 * sigma1[i, j];
        Assert.Equal(meanGap + 0.25 * trace1, FrechetDistance.Between(Gaussian(mean1, sigma1), Gaussian(mean2, scaled)), 9);

        // Any pair: the formula as written, Tr((Σ₁Σ₂)^½) by Denman–Beavers iteration on the (non-symmetric) product.
        var sigma2 = Spd();
        var root = DenmanBeaversSqrt(Multiply(sigma1, sigma2));
        var expected = meanGap + trace1 + Enumerable.Range(0, d).Sum(i => sigma2[i, i]) - 2 * Enumerable.Range(0, d).Sum(i => root[i, i]);
        Assert.Equal(expected, FrechetDistance.Between(Gaussian(mean1, sigma1), Gaussian(mean2, sigma2)), 9);
    }

    [Fact]
    public void Moments_are_numpys_mean_and_unbiased_covariance_and_a_singular_covariance_still_gives_a_distance()
    {
        using var features = tensor(new double[] { 1, 2, 3, 5, 6, 4, 0, 1 }, [4, 2]);
        var moments = FrechetDistance.Of(features);
        Assert.Equal([2.5, 3.0], moments.Mean);
        // numpy.cov(x.T): [[7 − 0.?]] computed by hand: deviations (−1.5,−1), (0.5,2), (3.5,1), (−2.5,−2)
        Assert.Equal([(2.25 + 0.25 + 12.25 + 6.25) / 3, (1.5 + 1 + 3.5 + 5) / 3, (1.5 + 1 + 3.5 + 5) / 3, (1 + 4 + 1 + 4) / 3.0], moments.Covariance);

        // Features on a line (rank 1 of 3 dimensions): finite, never negative, zero against itself.
        using var line = arange(0, 50, dtype: ScalarType.Float64).unsqueeze(1).matmul(tensor(new double[] { 1, 2, -1 }, [1, 3]));
        var flat = FrechetDistance.Of(line);
        var trace = flat.Covariance[0] + flat.Covariance[4] + flat.Covariance[8];
        Assert.InRange(FrechetDistance.Between(flat, flat), 0, 1e-7 * trace);
        var round = Gaussian([0, 0, 0], Diagonal(1, 1, 1));
        var distance = FrechetDistance.Between(flat, round);
        Assert.True(double.IsFinite(distance) && distance > 0, $"{distance}");
    }

    [Fact]
    public void Samples_of_the_same_gaussian_come_close_and_the_estimate_shrinks_with_more_of_them()
    {
        using var generator = new Generator(11);
        var truth = Gaussian([0, 0, 0, 0], Diagonal(1, 1, 1, 1));
        double At(int n)
        {
            using var x = randn([n, 4], dtype: ScalarType.Float64, generator: generator);
            return FrechetDistance.Between(FrechetDistance.Of(x), truth);
        }
        var (few, many) = (At(500), At(50_000));
        Assert.InRange(many, 0, 0.01);
        Assert.True(few > many, $"{few} with 500 samples, {many} with 50,000");
    }

    static double[,] Multiply(double[,] a, double[,] b)
    {
        var n = a.GetLength(0);
        var r = new double[n, n];
        for (var i = 0; i < n; i++) for (var k = 0; k < n; k++) for (var j = 0; j < n; j++) r[i, j] += a[i, k] * b[k, j];
        return r;
    }

    static double[,] Transpose(double[,] a)
    {
        var n = a.GetLength(0);
        var r = new double[n, n];
        for (var i = 0; i < n; i++) for (var j = 0; j < n; j++) r[i, j] = a[j, i];
        return r;
    }

    /// <summary>A^½ by the Denman–Beavers iteration (Y ← (Y + Z⁻¹)/2, Z ← (Z + Y⁻¹)/2 from Y = A, Z = I).</summary>
    static double[,] DenmanBeaversSqrt(double[,] a)
    {
        var n = a.GetLength(0);
        var y = (double[,])a.Clone();
        var z = new double[n, n];
        for (var i = 0; i < n; i++) z[i, i] = 1;
        for (var iteration = 0; iteration < 60; iteration++)
        {
            var (yInverse, zInverse) = (Inverse(y), Inverse(z));
            for (var i = 0; i < n; i++)
                for (var j = 0; j < n; j++)
                    (y[i, j], z[i, j]) = ((y[i, j] + zInverse[i, j]) / 2, (z[i, j] + yInverse[i, j]) / 2);
        }
        return y;
    }

    /// <summary>Gauss–Jordan elimination with partial pivoting.</summary>
    static double[,] Inverse(double[,] a)
    {
        var n = a.GetLength(0);
        var m = new double[n, 2 * n];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++) m[i, j] = a[i, j];
            m[i, n + i] = 1;
        }
        for (var c = 0; c < n; c++)
        {
            var pivot = Enumerable.Range(c, n - c).MaxBy(r => Math.Abs(m[r, c]));
            for (var j = 0; j < 2 * n; j++) (m[c, j], m[pivot, j]) = (m[pivot, j], m[c, j]);
            var p = m[c, c];
            for (var j = 0; j < 2 * n; j++) m[c, j] /= p;
            for (var r = 0; r < n; r++)
            {
                if (r == c) continue;
                var f = m[r, c];
                for (var j = 0; j < 2 * n; j++) m[r, j] -= f * m[c, j];
            }
        }
        var inverse = new double[n, n];
        for (var i = 0; i < n; i++) for (var j = 0; j < n; j++) inverse[i, j] = m[i, n + j];
        return inverse;
    }
}
