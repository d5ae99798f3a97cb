namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// The maths of power-function EMA profiles and post-hoc reconstruction from Karras et al., "Analyzing and
/// Improving the Training Dynamics of Diffusion Models" (EDM2, CVPR 2024, section 3 and appendix C),
/// with time measured in training steps.
/// <para>
/// A power-function EMA at step t averages the weights of steps τ ≤ t with weight ∝ τ^γ. Its width relative
/// to t is σ_rel = √((γ + 1) / ((γ + 2)² (γ + 3))). It is tracked during training with the per-step decay
/// β_t = (1 − 1/t)^(γ+1). Snapshots of two such EMAs taken every few steps span profiles from which any other
/// σ_rel is approximated, after training, as the least-squares combination of the snapshots' profiles.
/// </para>
/// </summary>
public static class PowerFunctionProfile
{
    /// <summary>σ_rel of the profile with exponent γ (γ &gt; −1).</summary>
    public static double SigmaRel(double gamma)
    {
        if (!(gamma > -1)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "γ must be greater than −1.");
        return Math.Sqrt((gamma + 1) / ((gamma + 2) * (gamma + 2) * (gamma + 3)));
    }

    /// <summary>
    /// The exponent γ of a given σ_rel: the largest real root of γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) = 0
    /// (EDM2 eq. 126). Newton's method from above converges to it monotonically (the cubic is increasing and
    /// convex beyond its largest root).
    /// </summary>
    public static double Gamma(double sigmaRel)
    {
        if (!IsSupported(sigmaRel)) throw new ArgumentOutOfRangeException(nameof(sigmaRel), sigmaRel, SupportedRange);
        var t = 1 / (sigmaRel * sigmaRel);
        var gamma = Math.Max(t, 10.0);
        for (var i = 0; i < 200; i++)
        {
            var f = ((gamma + 7) * gamma + 16 - t) * gamma + 12 - t;
            var slope = (3 * gamma + 14) * gamma + 16 - t;
            var next = gamma - f / slope;
            if (Math.Abs(next - gamma) <= 1e-14 * Math.Max(1, Math.Abs(gamma))) return next;
            gamma = next;
        }
        return gamma;
    }

    /// <summary>σ_rel of γ = 0: the uniform average, √(1/12). Wider profiles do not exist.</summary>
    public static readonly double MaxSigmaRel = Math.Sqrt(1.0 / 12);

    /// <summary>
    /// The narrowest σ_rel the engine works with (γ ≈ 10⁶). Narrower profiles are indistinguishable from the
    /// last snapshot at any snapshot spacing, and as σ_rel → 0 γ overflows (σ_rel = 1e-200 gives γ = ∞ and NaN weights).
    /// </summary>
    public const double MinSigmaRel = 1e-3;

    /// <summary>Whether <paramref name="sigmaRel"/> is a profile the engine can track and reconstruct: [<see cref="MinSigmaRel"/>, <see cref="MaxSigmaRel"/>].</summary>
    public static bool IsSupported(double sigmaRel) => sigmaRel >= MinSigmaRel && sigmaRel <= MaxSigmaRel;

    /// <summary>The message for a σ_rel outside <see cref="IsSupported"/>.</summary>
    public static string SupportedRange => $"σ_rel must be from {MinSigmaRel.ToString(System.Globalization.CultureInfo.InvariantCulture)} to {MaxSigmaRel.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)} (the uniform average of the whole run).";

    /// <summary>The decay applied after (1-based) step t to track the profile: (1 − 1/t)^(γ+1); 0 at step 1 (the shadow starts as a copy).</summary>
    public static double Beta(double gamma, long step)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        return Math.Pow(1 - 1.0 / step, gamma + 1);
    }

    /// <summary>
    /// The equivalent σ_rel of a classic EMA with decay d read at step t: the standard deviation of its
    /// (geometric) profile, √d / (1 − d) steps, relative to t.
    /// </summary>
    public static double SigmaRelOfDecay(double decay, long step) => Math.Sqrt(decay) / (1 - decay) / step;

    /// <summary>The classic decay whose equivalent σ_rel at <paramref name="step"/> is <paramref name="sigmaRel"/> (inverse of <see cref="SigmaRelOfDecay"/>).</summary>
    public static double DecayOfSigmaRel(double sigmaRel, long step)
    {
        // √d = s (1 − d) with s = σ_rel·t: a quadratic in u = √d.
        var s = sigmaRel * step;
        var u = (Math.Sqrt(1 + 4 * s * s) - 1) / (2 * s);
        return u * u;
    }

    /// <summary>
    /// The inner product of the profiles (t_a, γ_a) and (t_b, γ_b), each normalised to unit mass on [0, t]
    /// (EDM2 eq. 151): (γ_a + 1)(γ_b + 1)(t_a/t_b)^(t_a &lt; t_b ? γ_b : −γ_a) / ((γ_a + γ_b + 1) max(t_a, t_b)).
    /// </summary>
    public static double Correlation(double stepA, double gammaA, double stepB, double gammaB)
    {
        var ratio = stepA / stepB;
        var exponent = stepA < stepB ? gammaB : -gammaA;
        return (gammaA + 1) * (gammaB + 1) * Math.Pow(ratio, exponent) / ((gammaA + gammaB + 1) * Math.Max(stepA, stepB));
    }

    /// <summary>
    /// The coefficients x (one per snapshot, summing to 1) whose combination Σ xᵢ·profileᵢ is the least-squares
    /// approximation of the target profile: solves A x = b with A the snapshots' mutual inner products and b
    /// their inner products with the target (EDM2 algorithm 3).
    /// </summary>
    public static double[] SolveCoefficients(IReadOnlyList<(long Step, double Gamma)> snapshots, long targetStep, double targetGamma)
    {
        var n = snapshots.Count;
        if (n == 0) throw new ArgumentException("At least one snapshot is needed.", nameof(snapshots));
        var a = new double[n, n];
        var b = new double[n];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++) a[i, j] = Correlation(snapshots[i].Step, snapshots[i].Gamma, snapshots[j].Step, snapshots[j].Gamma);
            b[i] = Correlation(snapshots[i].Step, snapshots[i].Gamma, targetStep, targetGamma);
        }
        var x = Solve(a, b);
        var sum = x.Sum();
        return x.Select(v => v / sum).ToArray();
    }

    /// <summary>Gaussian elimination with partial pivoting (the systems are small: tens of snapshots).</summary>
    static double[] Solve(double[,] a, double[] b)
    {
        var n = b.Length;
        for (var col = 0; col < n; col++)
        {
            var pivot = col;
            for (var row = col + 1; row < n; row++)
                if (Math.Abs(a[row, col]) > Math.Abs(a[pivot, col])) pivot = row;
            if (a[pivot, col] == 0) throw new InvalidOperationException("The snapshot profiles are linearly dependent (two snapshots of one profile at one step?).");
            if (pivot != col)
            {
                for (var k = 0; k < n; k++) (a[col, k], a[pivot, k]) = (a[pivot, k], a[col, k]);
                (b[col], b[pivot]) = (b[pivot], b[col]);
            }
            for (var row = col + 1; row < n; row++)
            {
                var factor = a[row, col] / a[col, col];
                if (factor == 0) continue;
                for (var k = col; k < n; k++) a[row, k] -= factor * a[col, k];
                b[row] -= factor * b[col];
            }
        }
        var x = new double[n];
        for (var row = n - 1; row >= 0; row--)
        {
            var sum = b[row];
            for (var k = row + 1; k < n; k++) sum -= a[row, k] * x[k];
            x[row] = sum / a[row, row];
        }
        return x;
    }
}
