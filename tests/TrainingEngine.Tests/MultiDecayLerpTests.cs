using EmaLab.TrainingEngine.Averaging;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

public class MultiDecayLerpTests
{
    [Fact]
    public void The_fused_update_allocates_nothing_per_step()
    {
        using var model = EmaLab.TrainingEngine.Models.ModelFactory.Build(new EmaLab.TrainingEngine.Models.ModelArchitecture
        {
            Kind = "mlp", Height = 8, Width = 8, Classes = 10, Hidden = [64, 64],
        }, new Generator(1));
        using var ema = new ExponentialMovingAverage(model, new EmaSettings { Decays = [0.9, 0.99, 0.999], Warmup = true }, null);
        Assert.True(ema.UsesFusedKernel);
        for (var step = 1; step <= 10; step++) ema.Update(step); // warm up the JIT
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var step = 11; step <= 1010; step++) ema.Update(step);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1_000_003, 2)] // above the parallel threshold, odd length: exercises the split and the scalar tail
    public void Fused_pass_matches_torch_lerp_and_separate_passes(long length, int parallelism)
    {
        using var generator = new Generator(42);
        using var w = randn([length], generator: generator);
        var alphas = new[] { 0.1f, 0.01f, 0.001f };
        var fused = alphas.Select(_ => randn([length], generator: generator)).ToArray();
        var separate = fused.Select(t => t.clone()).ToArray();
        var viaTorch = fused.Select(t => t.clone()).ToArray();
        var before = fused.Select(t => t.clone()).ToArray();

        MultiDecayLerp.Apply(w, fused, alphas, parallelism);
        for (var k = 0; k < alphas.Length; k++)
        {
            MultiDecayLerp.Apply(w, [separate[k]], [alphas[k]], parallelism);
            viaTorch[k].lerp_(w, tensor(alphas[k]));
        }

        for (var k = 0; k < alphas.Length; k++)
        {
            TensorAssert.Identical(fused[k], separate[k], $"shadow {k}: one pass for K shadows must equal K single passes bit for bit");
            var maxDifference = (fused[k] - viaTorch[k]).abs().max().item<float>();
            Assert.True(maxDifference < 1e-6, $"shadow {k}: differs from torch lerp_ by {maxDifference}");
            TensorAssert.Different(fused[k], before[k], $"shadow {k} did not move");
        }
    }
}
