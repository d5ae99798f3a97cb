using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Diffusion;

/// <summary>
/// The Fréchet distance between two Gaussians fitted to feature vectors — FID's formula (Heusel et al. 2017):
/// <c>‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½)</c>, in float64 throughout. The trace of the matrix square root is taken as
/// Tr((Σ₁^½ Σ₂ Σ₁^½)^½) — the same value, as the two products are similar — from symmetric eigendecompositions, so it
/// stays real and needs no offset where a covariance is singular (pytorch-fid adds one then); eigenvalues a rounding
/// error made slightly negative count as 0. No implicit torch scalar is created (see <see cref="TorchScalars"/>).
/// </summary>
public static class FrechetDistance
{
    /// <summary>A fitted Gaussian: the mean [D] and the unbiased covariance [D, D] (numpy's <c>cov</c>, divided by N − 1), float64.</summary>
    public sealed record Moments(double[] Mean, double[] Covariance)
    {
        public int Dimensions => Mean.Length;
    }

    /// <summary>The moments of <paramref name="features"/> [N, D] (N ≥ 2).</summary>
    public static Moments Of(Tensor features)
    {
        if (features.dim() != 2 || features.shape[0] < 2) throw new ArgumentException($"Features must be [N ≥ 2, D], not [{string.Join(", ", features.shape)}].", nameof(features));
        using var scope = NewDisposeScope();
        var x = features.to(ScalarType.Float64);
        var mean = x.mean([0]);
        var centered = x.sub(mean);
        var covariance = centered.T.matmul(centered).div(tensor((double)(x.shape[0] - 1), ScalarType.Float64));
        return new Moments(mean.data<double>().ToArray(), covariance.contiguous().data<double>().ToArray());
    }

    /// <summary>The distance between two fitted Gaussians of the same dimension.</summary>
    public static double Between(Moments a, Moments b)
    {
        if (a.Dimensions != b.Dimensions) throw new ArgumentException($"Moments of {a.Dimensions} and {b.Dimensions} dimensions.");
        var d = a.Dimensions;
        using var scope = NewDisposeScope();
        var (mean1, mean2) = (tensor(a.Mean, ScalarType.Float64), tensor(b.Mean, ScalarType.Float64));
        var (sigma1, sigma2) = (tensor(a.Covariance, ScalarType.Float64).reshape(d, d), tensor(b.Covariance, ScalarType.Float64).reshape(d, d));
        var root1 = SymmetricSqrt(sigma1);
        var middle = root1.matmul(sigma2).matmul(root1);
        middle = Symmetric(middle); // symmetric in exact arithmetic: remove the rounding's asymmetry
        var traceOfRoot = linalg.eigvalsh(middle).relu().sqrt().sum().item<double>();
        var difference = mean1.sub(mean2).square().sum().item<double>();
        // Never below 0 in exact arithmetic; with a singular covariance the square roots of rounding-sized eigenvalues can
        // take it a few parts in 10⁸ of the traces below.
        return Math.Max(0, difference + sigma1.trace().item<double>() + sigma2.trace().item<double>() - 2 * traceOfRoot);
    }

    /// <summary>The square root of a symmetric positive semi-definite matrix: V diag(√λ) Vᵀ, negative rounding made 0.</summary>
    static Tensor SymmetricSqrt(Tensor matrix)
    {
        var (values, vectors) = linalg.eigh(Symmetric(matrix));
        return vectors.matmul(diag(values.relu().sqrt())).matmul(vectors.T);
    }

    /// <summary>(M + Mᵀ)/2, the half as a tensor and the sum's alpha explicit (no implicit torch scalar: see <see cref="TorchScalars"/>).</summary>
    static Tensor Symmetric(Tensor matrix) => matrix.add(matrix.T, TorchScalars.One).mul(tensor(0.5, ScalarType.Float64));
}
