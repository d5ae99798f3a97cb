using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>The diffusion U-Net: its shapes at every size the engine's datasets have, its time embedding, and that it learns to denoise real digits.</summary>
[Collection(TrainingCollection.Name)]
public class DiffusionUNetTests
{
    static DiffusionUNet Seeded(DiffusionUNet.Settings settings, ulong seed = 1)
    {
        var net = new DiffusionUNet(settings);
        using var generator = new Generator(seed);
        ModelFactory.Initialise(net, generator);
        return net;
    }

    [Theory]
    [InlineData(28, new[] { 16, 32, 32 }, true)]   // Fashion-MNIST: 28 → 14 → 7 and back
    [InlineData(8, new[] { 8, 16 }, false)]         // the 8x8 digits
    [InlineData(7, new[] { 8, 16, 16 }, true)]      // an odd size: 7 → 4 → 2, back up to each skip's size
    public void The_output_has_the_inputs_shape_at_every_size(int size, int[] widths, bool attention)
    {
        using var net = Seeded(new DiffusionUNet.Settings(1, widths, BlocksPerLevel: 1, MiddleAttention: attention));
        using var x = randn(3, 1, size, size);
        using var t = tensor(new long[] { 0, 500, 999 });
        using var y = net.forward(x, t);
        Assert.Equal(new long[] { 3, 1, size, size }, y.shape);
        Assert.Equal(attention, net.named_modules().Any(m => m.name == "attention"));
        // Every GroupNorm starts as PyTorch's does: γ = 1, β = 0 (TorchSharp leaves them unset).
        foreach (var (name, parameter) in net.named_parameters().Where(p => p.name.Contains("norm")))
            Assert.True(parameter.eq(name.EndsWith("weight") ? 1f : 0f).all().item<bool>(), name);
    }

    [Fact]
    public void The_time_embedding_is_sin_then_cos_of_t_times_the_frequencies_and_the_output_depends_on_t()
    {
        using var net = Seeded(new DiffusionUNet.Settings(1, [8, 16]));
        using var embedding = net.TimeEmbedding(tensor(new long[] { 0, 10 }));
        Assert.Equal(new long[] { 2, 8 }, embedding.shape);
        var values = embedding.data<float>().ToArray();
        Assert.Equal([0, 0, 0, 0, 1, 1, 1, 1], values[..8]);
        for (var i = 0; i < 4; i++)
        {
            var angle = 10 * Math.Exp(-Math.Log(10_000) * i / 4);
            Assert.Equal(Math.Sin(angle), values[8 + i], 5);
            Assert.Equal(Math.Cos(angle), values[12 + i], 5);
        }
        using var x = randn(1, 1, 8, 8);
        using var early = net.forward(x, tensor(new long[] { 10 }));
        using var late = net.forward(x, tensor(new long[] { 900 }));
        Assert.True(early.sub(late).abs().max().item<float>() > 1e-4f, $"output moved by {early.sub(late).abs().max().item<float>()}; embedding rows differ by {net.TimeEmbedding(tensor(new long[] { 10, 900 })).diff(dim: 0).abs().max().item<float>()}");
        // Seeded: the same seed, the same network.
        using var again = Seeded(new DiffusionUNet.Settings(1, [8, 16]));
        using var same = again.forward(x, tensor(new long[] { 10 }));
        Assert.True(early.eq(same).all().item<bool>());
    }

    [Fact]
    public void It_learns_to_predict_the_noise_of_real_digits_and_every_parameter_gets_a_gradient()
    {
        var digits = DatasetCatalog.Load("digits-8x8").Train;
        var count = 128;
        var pixels = digits.Pixels.AsSpan(0, count * 64).ToArray().Select(p => (float)(p / (double)digits.PixelMax * 2 - 1)).ToArray();
        using var images = tensor(pixels, [count, 1, 8, 8]);
        var schedule = NoiseSchedule.Linear();
        using var net = Seeded(new DiffusionUNet.Settings(1, [16, 32], BlocksPerLevel: 1, MiddleAttention: true));
        using var optimizer = optim.Adam(net.parameters(), lr: 2e-3);
        using var generator = new Generator(3);
        double Loss(bool step)
        {
            using var scope = NewDisposeScope();
            var noise = randn([count, 1, 8, 8], generator: generator);
            var t = randint(0, schedule.Timesteps, [count], generator: generator);
            var noisy = schedule.AddNoise(images, noise, t);
            var loss = nn.functional.mse_loss(net.forward(noisy, t), noise);
            if (step)
            {
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
            }
            return loss.item<float>();
        }
        var first = Loss(step: true);
        Assert.All(net.named_parameters(), p => Assert.True(p.parameter.grad is { } g && g.abs().sum().item<float>() > 0, $"{p.name} got no gradient"));
        for (var i = 0; i < 60; i++) Loss(step: true);
        var last = Enumerable.Range(0, 5).Average(_ => Loss(step: false));
        // Predicting zero scores 1 (the noise's variance); a network that learned the digits scores well under it
        // (measured: 1.08 at the start, 0.18 after 60 steps).
        Assert.True(first > 0.7 && last < 0.45, $"ε-prediction loss {first:F3} at the start, {last:F3} after 60 steps");
    }
}
