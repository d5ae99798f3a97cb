namespace EmaLab.Dashboard.Groups;

/// <summary>Student's t distribution: the two-sided tail and the quantiles a confidence interval over a few seeds needs.</summary>
public static class StudentT
{
    /// <summary>P(T ≤ t) for <paramref name="degreesOfFreedom"/> &gt; 0.</summary>
    public static double Cdf(double t, double degreesOfFreedom)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(degreesOfFreedom);
        if (double.IsNaN(t)) return double.NaN;
        if (double.IsInfinity(t)) return t > 0 ? 1 : 0;
        var tail = 0.5 * RegularizedIncompleteBeta(degreesOfFreedom / (degreesOfFreedom + t * t), degreesOfFreedom / 2, 0.5);
        return t >= 0 ? 1 - tail : tail;
    }

    /// <summary>P(|T| ≥ |t|): the two-sided p-value of a t statistic.</summary>
    public static double TwoSidedPValue(double t, double degreesOfFreedom)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(degreesOfFreedom);
        if (double.IsNaN(t)) return double.NaN;
        if (double.IsInfinity(t)) return 0;
        return RegularizedIncompleteBeta(degreesOfFreedom / (degreesOfFreedom + t * t), degreesOfFreedom / 2, 0.5);
    }

    /// <summary>The t with P(T ≤ t) = <paramref name="p"/> (bisection on the CDF to full double precision).</summary>
    public static double Quantile(double p, double degreesOfFreedom)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(degreesOfFreedom);
        if (p is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "p must be between 0 and 1 (exclusive).");
        if (p < 0.5) return -Quantile(1 - p, degreesOfFreedom);
        double low = 0, high = 1;
        while (Cdf(high, degreesOfFreedom) < p) high *= 2;
        for (var i = 0; i < 200 && high - low > 1e-15 * Math.Max(1, high); i++)
        {
            var middle = (low + high) / 2;
            if (Cdf(middle, degreesOfFreedom) < p) low = middle; else high = middle;
        }
        return (low + high) / 2;
    }

    /// <summary>I_x(a, b), by the continued fraction (Lentz), on the side where it converges fast.</summary>
    internal static double RegularizedIncompleteBeta(double x, double a, double b)
    {
        if (x <= 0) return 0;
        if (x >= 1) return 1;
        var front = Math.Exp(LogGamma(a + b) - LogGamma(a) - LogGamma(b) + a * Math.Log(x) + b * Math.Log(1 - x));
        return x < (a + 1) / (a + b + 2)
            ? front * BetaContinuedFraction(x, a, b) / a
            : 1 - front * BetaContinuedFraction(1 - x, b, a) / b;
    }

    static double BetaContinuedFraction(double x, double a, double b)
    {
        const double tiny = 1e-300;
        double c = 1, d = 1 - (a + b) * x / (a + 1);
        d = 1 / (Math.Abs(d) < tiny ? tiny : d);
        var result = d;
        for (var m = 1; m <= 500; m++)
        {
            var even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
            d = 1 + even * d; d = 1 / (Math.Abs(d) < tiny ? tiny : d);
            c = 1 + even / c; if (Math.Abs(c) < tiny) c = tiny;
            result *= d * c;
            var odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
            d = 1 + odd * d; d = 1 / (Math.Abs(d) < tiny ? tiny : d);
            c = 1 + odd / c; if (Math.Abs(c) < tiny) c = tiny;
            var step = d * c;
            result *= step;
            if (Math.Abs(step - 1) < 1e-16) break;
        }
        return result;
    }

    /// <summary>ln Γ(x) for x &gt; 0 (Lanczos, g = 7, 9 terms: about 15 significant digits).</summary>
    internal static double LogGamma(double x)
    {
        if (x < 0.5) return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        ReadOnlySpan<double> coefficients =
        [
            0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
        ];
        x -= 1;
        var sum = coefficients[0];
        for (var i = 1; i < coefficients.Length; i++) sum += coefficients[i] / (x + i);
        var t = x + 7.5;
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(sum);
    }
}

/// <summary>Mean, spread and a Student-t confidence interval of a few values (one per seed).</summary>
public sealed record SampleSummary(int Count, double Mean, double StandardDeviation, double Min, double Max, double ConfidenceHalfWidth)
{
    public const double Confidence = 0.95;

    /// <summary>NaN values (a diverged seed) are refused: a mean that silently skipped them would flatter the configuration.</summary>
    public static SampleSummary Of(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("At least one value is needed.", nameof(values));
        if (values.Any(double.IsNaN))
            throw new ArgumentException("A value is NaN (a diverged run): summarise the runs that have a value.", nameof(values));
        var mean = values.Average();
        if (values.Count == 1) return new SampleSummary(1, mean, double.NaN, mean, mean, double.NaN);
        // Sample standard deviation (n − 1): the seeds are a sample of what the configuration does.
        var deviation = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
        var halfWidth = StudentT.Quantile(0.5 + Confidence / 2, values.Count - 1) * deviation / Math.Sqrt(values.Count);
        return new SampleSummary(values.Count, mean, deviation, values.Min(), values.Max(), halfWidth);
    }
}

/// <summary>
/// The paired difference of two tracks over seeds (EMA − raw of the same seed at the same step): its summary, the paired
/// t statistic and its two-sided p-value. Pairing removes what the seeds share, so a small but steady EMA gain shows.
/// </summary>
public sealed record PairedComparison(SampleSummary Difference, double T, double PValue)
{
    public static PairedComparison Of(IReadOnlyList<double> candidate, IReadOnlyList<double> baseline)
    {
        if (candidate.Count != baseline.Count)
            throw new ArgumentException($"Pairs need as many values on each side ({candidate.Count} vs {baseline.Count}).", nameof(baseline));
        var difference = SampleSummary.Of(candidate.Zip(baseline, (c, b) => c - b).ToList());
        if (difference.Count < 2) return new PairedComparison(difference, double.NaN, double.NaN);
        var standardError = difference.StandardDeviation / Math.Sqrt(difference.Count);
        // Identical pairs on every seed: no spread, so either no difference at all or one beyond any doubt.
        if (standardError == 0)
            return new PairedComparison(difference, difference.Mean == 0 ? 0 : Math.CopySign(double.PositiveInfinity, difference.Mean),
            difference.Mean == 0 ? 1 : 0);
        var t = difference.Mean / standardError;
        return new PairedComparison(difference, t, StudentT.TwoSidedPValue(t, difference.Count - 1));
    }

    /// <summary>
    /// A plain sentence for people: "ema-0.999 beats raw by 0.31 ± 0.12 pt (5 seeds, p = 0.004)", or that the data show
    /// no difference at the 95 % level. Values are written in <paramref name="units"/> (points of accuracy by default).
    /// </summary>
    public string Verdict(string candidate, string baseline, bool higherIsBetter, ValueFormat? units = null)
    {
        units ??= ValueFormat.Points;
        var seeds = $"{Difference.Count} seed{(Difference.Count == 1 ? "" : "s")}";
        if (Difference.Count < 2) return $"{seeds}: too few to tell {candidate} from {baseline} (at least 2 seeds are needed).";
        var p = PValue < 0.001 ? "p < 0.001" : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"p = {PValue:0.000}");
        if (PValue >= 1 - SampleSummary.Confidence)
            return $"No evidence of a difference between {candidate} and {baseline}: {units.Interval(Difference.Mean, Difference.ConfidenceHalfWidth, signed: true)} ({seeds}, {p}).";
        var better = Difference.Mean > 0 == higherIsBetter;
        var (winner, loser) = better ? (candidate, baseline) : (baseline, candidate);
        return $"{winner} beats {loser} by {units.Interval(Math.Abs(Difference.Mean), Difference.ConfidenceHalfWidth)} ({seeds}, {p}).";
    }
}

/// <summary>
/// How differences of a metric are written: accuracy in points (0.0049 → "0.49 pt"), a loss as itself with more digits.
/// The verdicts and the group page's gaps use the same one.
/// </summary>
public sealed record ValueFormat(double Scale, string Digits, string Unit)
{
    public static readonly ValueFormat Points = new(100, "0.00", "pt");
    public static readonly ValueFormat Plain = new(1, "0.0000", "");

    public static ValueFormat For(bool higherIsBetter) => higherIsBetter ? Points : Plain;

    public string Number(double value) => (value * Scale).ToString(Digits, System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>"0.49 ± 0.42 pt" ("+0.49 …" when <paramref name="signed"/>); without a half-width (one seed), the value alone.</summary>
    public string Interval(double value, double halfWidth, bool signed = false)
    {
        var text = signed ? (value * Scale)
            .ToString($"+{Digits};-{Digits};{Digits}", System.Globalization.CultureInfo.InvariantCulture) : Number(value);
        if (!double.IsNaN(halfWidth)) text += $" ± {Number(halfWidth)}";
        return Unit.Length == 0 ? text : $"{text} {Unit}";
    }
}
