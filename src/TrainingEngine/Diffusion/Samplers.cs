using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Diffusion;

/// <summary>
/// The two samplers of a DDPM trained to predict the noise ε(x_t, t): DDIM (Song et al., η = 0: deterministic given the
/// starting noise, over K of the T steps) and DDPM's ancestral sampler (Ho et al., the posterior variance β̃_t,
/// diffusers' <c>fixed_small</c>). Neither clips the predicted x₀: the engine's images are normalized by their dataset's
/// mean and deviation, not to [−1, 1]. The formulas are diffusers' DDIMScheduler and DDPMScheduler, so the README's
/// PyTorch sampler reproduces them. Coefficients multiply as 0-dimensional tensors, never as implicit torch scalars (a
/// finalizer can free one mid-call: see <see cref="TorchScalars"/>).
/// </summary>
public static class Samplers
{
    /// <summary>a·x + b·y with a and b as tensors of x's type (inside the caller's dispose scope).</summary>
    static Tensor Combine(double a, Tensor x, double b, Tensor y) =>
        x.mul(tensor(a, x.dtype, x.device)).add_(y.mul(tensor(b, y.dtype, y.device)), TorchScalars.One);

    /// <summary>The K timesteps DDIM visits, last first: T/K apart from 0 (diffusers' "leading" spacing).</summary>
    public static long[] DdimTimesteps(int timesteps, int steps)
    {
        if (steps < 1 || steps > timesteps) throw new ArgumentOutOfRangeException(nameof(steps), $"DDIM takes from 1 to {timesteps} steps, not {steps}.");
        var ratio = timesteps / steps;
        return Enumerable.Range(0, steps).Select(i => (long)i * ratio).Reverse().ToArray();
    }

    /// <summary>DDIM from <paramref name="noise"/> (x_T) in <paramref name="steps"/> steps: x̂₀ = (x − √(1 − ᾱ_t) ε)/√ᾱ_t, x ← √ᾱ_prev x̂₀ + √(1 − ᾱ_prev) ε.</summary>
    public static Tensor Ddim(Func<Tensor, long, Tensor> epsilon, NoiseSchedule schedule, Tensor noise, int steps)
    {
        var times = DdimTimesteps(schedule.Timesteps, steps);
        var x = noise.alias();
        for (var i = 0; i < times.Length; i++)
        {
            using var scope = NewDisposeScope();
            var t = times[i];
            var alphaBar = schedule.AlphasCumulative[t];
            var alphaBarPrevious = i + 1 < times.Length ? schedule.AlphasCumulative[times[i + 1]] : 1.0;
            var predicted = epsilon(x, t);
            var clean = Combine(1 / Math.Sqrt(alphaBar), x, -Math.Sqrt(1 - alphaBar) / Math.Sqrt(alphaBar), predicted);
            var next = Combine(Math.Sqrt(alphaBarPrevious), clean, Math.Sqrt(1 - alphaBarPrevious), predicted);
            x.Dispose();
            x = next.MoveToOuterDisposeScope();
        }
        return x;
    }

    /// <summary>DDPM's ancestral sampler over every step from <paramref name="noise"/>, its fresh noise drawn from <paramref name="generator"/>.</summary>
    public static Tensor Ddpm(Func<Tensor, long, Tensor> epsilon, NoiseSchedule schedule, Tensor noise, Generator generator)
    {
        var x = noise.alias();
        for (long t = schedule.Timesteps - 1; t >= 0; t--)
        {
            using var scope = NewDisposeScope();
            var (alphaBar, alphaBarPrevious, beta) = (schedule.AlphasCumulative[t], schedule.AlphaCumulativeBefore(t), schedule.Betas[t]);
            var predicted = epsilon(x, t);
            var clean = Combine(1 / Math.Sqrt(alphaBar), x, -Math.Sqrt(1 - alphaBar) / Math.Sqrt(alphaBar), predicted);
            // The posterior q(x_{t−1} | x_t, x̂₀): its mean, and its variance β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t.
            var mean = Combine(Math.Sqrt(alphaBarPrevious) * beta / (1 - alphaBar), clean, Math.Sqrt(1 - beta) * (1 - alphaBarPrevious) / (1 - alphaBar), x);
            var next = t > 0
                ? Combine(1, mean, Math.Sqrt(Math.Max((1 - alphaBarPrevious) / (1 - alphaBar) * beta, 1e-20)), randn(x.shape, x.dtype, x.device, generator: generator))
                : mean;
            x.Dispose();
            x = next.MoveToOuterDisposeScope();
        }
        return x;
    }
}
