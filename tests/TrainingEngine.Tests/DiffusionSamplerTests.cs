using EmaLab.TrainingEngine.Diffusion;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>The noise schedules against their published values, and both samplers driven by the exact noise predictor of known data.</summary>
public class DiffusionSamplerTests
{
    [Fact]
    public void The_schedules_have_their_published_values()
    {
        var linear = NoiseSchedule.Linear();
        Assert.Equal((1000, 1e-4, 0.02), (linear.Timesteps, linear.Betas[0], linear.Betas[^1]));
        Assert.Equal(4.03583e-5, linear.AlphasCumulative[^1], 9); // √ᾱ_T ≈ 0.0064: DDPM's x_T is almost pure noise
        var cosine = NoiseSchedule.Cosine();
        Assert.Equal(4.12842e-5, cosine.Betas[0], 9);
        Assert.Equal(0.999, cosine.Betas[^1]);
        Assert.Equal(2.42877e-9, cosine.AlphasCumulative[^1], 13);
        Assert.Equal(1.0, cosine.AlphaCumulativeBefore(0));
        Assert.Equal(cosine.AlphasCumulative[9], cosine.AlphaCumulativeBefore(10));
        Assert.Equal([980L, 960, 940], Samplers.DdimTimesteps(1000, 50)[..3]);
        Assert.Equal(0L, Samplers.DdimTimesteps(1000, 50)[^1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => Samplers.DdimTimesteps(1000, 0));
    }

    [Fact]
    public void Adding_noise_is_the_forward_process_per_example()
    {
        var schedule = NoiseSchedule.Linear();
        using var clean = ones([2, 1, 2, 2], dtype: ScalarType.Float64);
        using var noise = full([2, 1, 2, 2], 2.0, dtype: ScalarType.Float64);
        using var noisy = schedule.AddNoise(clean, noise, tensor(new long[] { 0, 999 }));
        var expected = new[] { 0, 999 }.Select(t => Math.Sqrt(schedule.AlphasCumulative[t]) + 2 * Math.Sqrt(1 - schedule.AlphasCumulative[t])).ToArray();
        Assert.Equal(expected[0], noisy[0].mean().item<double>(), 12);
        Assert.Equal(expected[1], noisy[1].mean().item<double>(), 12);
    }

    /// <summary>E[ε | x_t] for data N(μ, σ²) per element: √(1 − ᾱ)(x − √ᾱ μ) / (ᾱσ² + 1 − ᾱ); σ = 0 is a point mass.</summary>
    static Func<Tensor, long, Tensor> Oracle(NoiseSchedule schedule, double mu, double sigma) => (x, t) =>
    {
        var a = schedule.AlphasCumulative[t];
        return Math.Sqrt(1 - a) * (x - Math.Sqrt(a) * mu) / (a * sigma * sigma + 1 - a);
    };

    [Theory]
    [InlineData("linear")]
    [InlineData("cosine")]
    public void With_the_exact_predictor_of_a_point_both_samplers_land_on_it(string kind)
    {
        var schedule = kind == "linear" ? NoiseSchedule.Linear() : NoiseSchedule.Cosine();
        using var generator = new Generator(5);
        using var noise = randn([64], ScalarType.Float64, generator: generator);
        using var ddim = Samplers.Ddim(Oracle(schedule, 0.7, 0), schedule, noise, steps: 20);
        Assert.True(ddim.sub(0.7).abs().max().item<double>() < 1e-6, $"DDIM ends {ddim.sub(0.7).abs().max().item<double>()} away");
        using var ddpm = Samplers.Ddpm(Oracle(schedule, 0.7, 0), schedule, noise, generator);
        Assert.True(ddpm.sub(0.7).abs().max().item<double>() < 1e-6, $"DDPM ends {ddpm.sub(0.7).abs().max().item<double>()} away");
    }

    [Fact]
    public void With_the_exact_predictor_of_gaussian_data_ddim_is_the_linear_map_worked_out_by_hand_and_ddpm_draws_that_gaussian()
    {
        var schedule = NoiseSchedule.Linear();
        using var generator = new Generator(9);
        using var noise = randn([20_000], ScalarType.Float64, generator: generator);
        var (mu, sigma) = (0.5, 0.3);
        // For Gaussian data every DDIM step is affine in x: x ← a x + b. The chain of (a, b), worked out on scalars, is
        // what the sampler must do to each element (it under-disperses with few steps: 0.287 of 0.3 at 100, 0.2985 at 1,000).
        foreach (var steps in new[] { 100, 1000 })
        {
            var times = Samplers.DdimTimesteps(schedule.Timesteps, steps);
            var (scale, shift) = (1.0, 0.0);
            for (var i = 0; i < times.Length; i++)
            {
                var a = schedule.AlphasCumulative[times[i]];
                var previous = i + 1 < times.Length ? schedule.AlphasCumulative[times[i + 1]] : 1.0;
                var c = Math.Sqrt(1 - a) / (a * sigma * sigma + 1 - a); // ε = c (x − √ᾱ μ)
                var cleanScale = (1 - Math.Sqrt(1 - a) * c) / Math.Sqrt(a);
                var cleanShift = Math.Sqrt(1 - a) * c * Math.Sqrt(a) * mu / Math.Sqrt(a);
                var (nextScale, nextShift) = (Math.Sqrt(previous) * cleanScale + Math.Sqrt(1 - previous) * c,
                    Math.Sqrt(previous) * cleanShift - Math.Sqrt(1 - previous) * c * Math.Sqrt(a) * mu);
                (scale, shift) = (nextScale * scale, nextScale * shift + nextShift);
            }
            using var ddim = Samplers.Ddim(Oracle(schedule, mu, sigma), schedule, noise, steps);
            using var expected = noise * scale + shift;
            Assert.True(ddim.sub(expected).abs().max().item<double>() < 1e-9, $"{steps} steps: {ddim.sub(expected).abs().max().item<double>()}");
            if (steps == 1000) Assert.InRange(scale, sigma * 0.99, sigma);
        }
        using var ddpm = Samplers.Ddpm(Oracle(schedule, mu, sigma), schedule, noise, generator);
        Assert.InRange(ddpm.mean().item<double>(), mu - 0.01, mu + 0.01);
        Assert.InRange(ddpm.std().item<double>(), sigma * 0.97, sigma * 1.03);
    }
}
