using EmaLab.Dashboard.Groups;

namespace EmaLab.Dashboard.Tests;

/// <summary>The statistics of seed groups against closed forms and published t-table values.</summary>
public sealed class GroupStatisticsTests
{
    [Theory]
    [InlineData(-3.0)]
    [InlineData(-0.5)]
    [InlineData(0.0)]
    [InlineData(0.7)]
    [InlineData(10.0)]
    public void The_t_distribution_matches_its_closed_forms_for_one_two_and_three_degrees_of_freedom(double t)
    {
        // ν = 1 is Cauchy; ν = 2 and ν = 3 have elementary CDFs.
        Assert.Equal(0.5 + Math.Atan(t) / Math.PI, StudentT.Cdf(t, 1), 1e-12);
        Assert.Equal(0.5 + t / (2 * Math.Sqrt(2 + t * t)), StudentT.Cdf(t, 2), 1e-12);
        var u = t / Math.Sqrt(3);
        Assert.Equal(0.5 + (u / (1 + u * u) + Math.Atan(u)) / Math.PI, StudentT.Cdf(t, 3), 1e-12);
    }

    [Theory]
    [InlineData(1, 12.7062047361747)]
    [InlineData(2, 4.30265272974946)]
    [InlineData(3, 3.18244630528371)]
    [InlineData(4, 2.77644510519779)]
    [InlineData(9, 2.26215716279820)]
    [InlineData(30, 2.04227245630124)]
    public void The_975_quantiles_are_the_t_table_values_and_give_back_a_five_percent_tail(int degreesOfFreedom, double expected)
    {
        Assert.Equal(expected, StudentT.Quantile(0.975, degreesOfFreedom), 1e-9);
        Assert.Equal(-expected, StudentT.Quantile(0.025, degreesOfFreedom), 1e-9);
        Assert.Equal(0.05, StudentT.TwoSidedPValue(expected, degreesOfFreedom), 1e-11);
        // Many degrees of freedom approach the normal distribution's 1.959964.
        Assert.Equal(1.959964, StudentT.Quantile(0.975, 1e7), 1e-5);
    }

    [Fact]
    public void Log_gamma_matches_known_values()
    {
        Assert.Equal(Math.Log(24), StudentT.LogGamma(5), 1e-13);
        Assert.Equal(0.5 * Math.Log(Math.PI), StudentT.LogGamma(0.5), 1e-13);
        Assert.Equal(0, StudentT.LogGamma(1), 1e-13);
    }

    [Fact]
    public void A_sample_summary_has_the_n_minus_1_deviation_and_a_t_interval()
    {
        var summary = SampleSummary.Of([1, 2, 3, 4, 5]);
        Assert.Equal(3, summary.Mean);
        Assert.Equal(Math.Sqrt(2.5), summary.StandardDeviation, 1e-12);
        Assert.Equal(2.77644510519779 * Math.Sqrt(2.5) / Math.Sqrt(5), summary.ConfidenceHalfWidth, 1e-9);
        Assert.Equal((1.0, 5.0), (summary.Min, summary.Max));

        var one = SampleSummary.Of([0.9]);
        Assert.True(double.IsNaN(one.StandardDeviation) && double.IsNaN(one.ConfidenceHalfWidth));
        Assert.Contains("diverged", Assert.Throws<ArgumentException>(() => SampleSummary.Of([0.9, double.NaN])).Message);
        Assert.Throws<ArgumentException>(() => SampleSummary.Of([]));
    }

    [Fact]
    public void A_steady_ema_gain_over_four_seeds_is_called_with_its_interval_and_p_value()
    {
        // Differences 0.01, 0.005, 0.01, 0.005: mean 0.0075, sd 0.0025·√(4/3), t = 3√3 on 3 degrees of freedom.
        var comparison = PairedComparison.Of([0.95, 0.96, 0.97, 0.955], [0.94, 0.955, 0.96, 0.95]);
        Assert.Equal(0.0075, comparison.Difference.Mean, 1e-12);
        Assert.Equal(3 * Math.Sqrt(3), comparison.T, 1e-9);
        var exactTail = 0.5 - (3 / (1 + 9.0) + Math.Atan(3)) / Math.PI; // the ν = 3 closed form at t/√3 = 3
        Assert.Equal(2 * exactTail, comparison.PValue, 1e-12);
        Assert.Equal(3.18244630528371 * 0.0025 * Math.Sqrt(4.0 / 3) / 2, comparison.Difference.ConfidenceHalfWidth, 1e-9);
        Assert.Equal("ema-0.999 beats raw by 0.75 ± 0.46 pt (4 seeds, p = 0.014).", comparison.Verdict("ema-0.999", "raw", higherIsBetter: true));
    }

    [Fact]
    public void Noise_is_no_evidence_and_a_lower_loss_wins_when_lower_is_better()
    {
        var noise = PairedComparison.Of([0.95, 0.94, 0.955, 0.946], [0.94, 0.95, 0.95, 0.95]);
        Assert.StartsWith("No evidence of a difference between ema-0.99 and raw:", noise.Verdict("ema-0.99", "raw", higherIsBetter: true));

        var loss = PairedComparison.Of([0.20, 0.21, 0.19], [0.25, 0.27, 0.24]);
        Assert.StartsWith("ema-0.99 beats raw by 5.33 ±", loss.Verdict("ema-0.99", "raw", higherIsBetter: false));
        Assert.StartsWith("raw beats ema-0.99 by", PairedComparison.Of([0.25, 0.27, 0.24], [0.20, 0.21, 0.19]).Verdict("ema-0.99", "raw", higherIsBetter: false));

        Assert.Equal("1 seed: too few to tell ema-0.99 from raw (at least 2 seeds are needed).", PairedComparison.Of([0.9], [0.8]).Verdict("ema-0.99", "raw", true));
        Assert.Equal(0, PairedComparison.Of([0.9, 0.8], [0.9, 0.8]).T);
        Assert.Throws<ArgumentException>(() => PairedComparison.Of([0.9, 0.8], [0.9]));
    }
}
