using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Optimization;
using EmaLab.TrainingEngine.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>The training recipe's parts one by one: augmentation, learning-rate warm-up, gradient clipping, weight decay that spares norms and biases.</summary>
public class TrainingRecipeTests
{
    [Fact]
    public void Augmentation_shifts_within_the_padding_fills_what_it_uncovers_and_flips_half_the_images()
    {
        const int count = 4000, height = 5, width = 6, padding = 2;
        var images = new float[count * height * width];
        for (var i = 0; i < images.Length; i++) images[i] = 1 + i % (height * width); // pixel (y, x) holds 1 + y·width + x
        var output = new float[images.Length];
        var augmentation = new Augmentation(padding, horizontalFlip: true, fill: -7f);
        augmentation.Apply(images, output, count, height, width, seed: 3, step: 11);

        var seen = new HashSet<(int, int, bool)>();
        for (var i = 0; i < count; i++)
        {
            var image = output.AsSpan(i * height * width, height * width).ToArray();
            // Every image is the original moved by one (dy, dx) within the padding, maybe mirrored, with the fill elsewhere.
            var match = (from dy in Enumerable.Range(-padding, 2 * padding + 1)
                         from dx in Enumerable.Range(-padding, 2 * padding + 1)
                         from flip in new[] { false, true }
                         where image.SequenceEqual(Expected(dy, dx, flip))
                         select (dy, dx, flip)).ToList();
            Assert.NotEmpty(match);
            seen.Add(match[0]);
        }
        // 25 shifts × 2 flips, all drawn over 4,000 images.
        Assert.Equal(50, seen.Count);

        // A pure function of (seed, step, position): the same again, another step differs.
        var again = new float[images.Length];
        augmentation.Apply(images, again, count, height, width, seed: 3, step: 11);
        Assert.Equal(output, again);
        augmentation.Apply(images, again, count, height, width, seed: 3, step: 12);
        Assert.NotEqual(output, again);

        float[] Expected(int dy, int dx, bool flip)
        {
            var e = new float[height * width];
            for (var y = 0; y < height; y++)
                for (var x = 0; x < width; x++)
                {
                    var (sy, sx) = (y + dy, (flip ? width - 1 - x : x) + dx);
                    e[y * width + x] = sy >= 0 && sy < height && sx >= 0 && sx < width ? 1 + sy * width + sx : -7f;
                }
            return e;
        }
    }

    [Fact]
    public void The_learning_rate_warms_up_linearly_then_the_schedule_runs_over_the_remaining_steps()
    {
        var spec = new RunSpec { Steps = 110, LearningRate = 0.1, LearningRateWarmup = 10, Schedule = RunSpec.Cosine };
        using var session = TrainingSession.Create(spec);
        Assert.Equal(0.01, session.LearningRateAt(1), 12);
        Assert.Equal(0.05, session.LearningRateAt(5), 12);
        Assert.Equal(0.1, session.LearningRateAt(10), 12);
        // Cosine over steps 11..110 as an unwarmed 100-step run over 1..100.
        using var plain = TrainingSession.Create(spec with { Steps = 100, LearningRateWarmup = 0 });
        foreach (var t in new[] { 1, 2, 50, 99, 100 }) Assert.Equal(plain.LearningRateAt(t), session.LearningRateAt(10 + t), 15);
        using var stepped = TrainingSession.Create(spec with { Schedule = RunSpec.StepSchedule, StepSize = 20, StepGamma = 0.5 });
        Assert.Equal(0.1, stepped.LearningRateAt(30), 12);
        Assert.Equal(0.05, stepped.LearningRateAt(31), 12);
        Assert.Equal("learningRateWarmup", (spec with { LearningRateWarmup = 110 }).Problems().Single().Field);
    }

    [Fact]
    public void Clipping_matches_torchs_clip_grad_norm_and_leaves_small_gradients_alone()
    {
        using var model = ModelFactory.Build(new ModelArchitecture { Kind = "mlp", Height = 4, Width = 4, Classes = 3, Hidden = [5] }, new Generator(2));
        using var reference = ModelFactory.Build(new ModelArchitecture { Kind = "mlp", Height = 4, Width = 4, Classes = 3, Hidden = [5] }, new Generator(2));
        using var x = randn([8, 1, 4, 4], generator: new Generator(3)) * 10;
        using var y = tensor(new long[] { 0, 1, 2, 0, 1, 2, 0, 1 });
        foreach (var m in new[] { model, reference }) nn.functional.cross_entropy(m.forward(x), y).backward();
        using var optimizer = new Sgd(model, momentum: 0, weightDecay: 0);

        var norm = optimizer.ClipGradientNorm(0.5);
        var expected = nn.utils.clip_grad_norm_(reference.parameters(), 0.5);
        Assert.Equal(expected, norm, 5);
        Assert.True(norm > 0.5, $"the test needs gradients above the limit (norm {norm})");
        foreach (var (mine, theirs) in model.parameters().Zip(reference.parameters()))
            Assert.True(mine.grad!.allclose(theirs.grad!, rtol: 1e-6, atol: 1e-9));
        // Under the limit nothing moves.
        using var before = model.parameters().First().grad!.clone();
        optimizer.ClipGradientNorm(1e6);
        Assert.True(before.eq(model.parameters().First().grad!).all().item<bool>());
    }

    [Fact]
    public void Weight_decay_can_spare_biases_and_batch_norm_while_it_shrinks_weights()
    {
        var architecture = new ModelArchitecture { Kind = "cnn", Height = 8, Width = 8, Classes = 3, Channels = [2] };
        foreach (var decayAll in new[] { true, false })
        {
            using var model = ModelFactory.Build(architecture, new Generator(1));
            using (no_grad())
                foreach (var p in model.parameters()) p.copy_(ones_like(p)); // β starts at 0, which decay leaves at 0
            var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
            foreach (var p in model.parameters()) p.grad = zeros_like(p); // only the decay moves anything
            using var optimizer = new Sgd(model, momentum: 0, weightDecay: 0.5, decayNormsAndBiases: decayAll);
            optimizer.Step(learningRate: 0.1);
            foreach (var (name, p) in model.named_parameters())
            {
                var shrunk = !p.eq(before[name]).all().item<bool>();
                // Conv and linear weights always shrink; "1.weight"/"1.bias" (batch norm) and "4.bias" only when all decay.
                Assert.True(shrunk == (decayAll || p.dim() >= 2), $"{name} (decay all: {decayAll}) shrunk: {shrunk}");
            }
        }
    }
}
