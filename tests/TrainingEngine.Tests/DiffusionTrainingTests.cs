using System.Globalization;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>
/// Diffusion runs (model <c>unet</c>) through the same session, tracks and checkpoints as classifiers: ε-prediction
/// training, the held-out denoising loss, sample quality by Fréchet distance where a reference network covers the data,
/// sample grids per track, exports that import and score the same.
/// </summary>
[Collection(TrainingCollection.Name)]
public class DiffusionTrainingTests
{
    static readonly DiffusionSettings Quick = new() { Timesteps = 200, SamplingSteps = 4, Samples = 100, FinalSamples = 120 };

    static RunSpec Digits(long steps = 60) => new()
    {
        Model = ModelArchitecture.UNet, Channels = [8, 16], Optimizer = RunSpec.Adam, LearningRate = 3e-3, BatchSize = 32, Steps = steps,
        EvalInterval = 20, Seed = 2, Diffusion = Quick, Ema = new EmaSettings { Decays = [0.9, 0.99] },
    };

    [Fact]
    public void A_unet_run_trains_to_denoise_and_reports_each_track_without_accuracy()
    {
        using var session = TrainingSession.Create(Digits(), "d");
        var observer = new RecordingObserver();
        var result = session.Train(observer);

        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.IsType<DiffusionUNet>(session.LiveModel);
        Assert.Equal(["raw", "ema-0.9", "ema-0.99"], session.Tracks);
        foreach (var track in session.Tracks)
        {
            Assert.Equal([0L, 20, 40, 60], observer.Series(track, MetricKeys.EvalLoss).Select(p => p.Step));
            Assert.Empty(observer.Series(track, MetricKeys.EvalAccuracy));
            // No reference network covers the 8x8 digits: no distance, said once at the start.
            Assert.Empty(observer.Series(track, MetricKeys.EvalFrechetDistance));
            Assert.True(double.IsNaN(result.LastEvaluation[track].Accuracy));
        }
        Assert.Contains(observer.Log, l => l.Level == TrainingLogLevel.Warning && l.Message.Contains("No reference network covers digits-8x8"));
        // It learns: the held-out denoising loss falls from about 1 (the noise's variance) for the raw weights.
        var loss = observer.Series("raw", MetricKeys.EvalLoss).Select(p => p.Value).ToList();
        Assert.InRange(loss[0], 0.7, 1.6);
        Assert.True(loss[^1] < 0.75 * loss[0], $"held-out denoising loss {string.Join(", ", loss)}");
        // A sample grid per track at every evaluation after step 0: 8 x 8 cells of 8x8 digits enlarged 4 times, 2-pixel gaps.
        var grids = observer.Images.Where(i => i.Key == DiffusionScorer.GridKey).ToList();
        Assert.Equal(session.Tracks.SelectMany(_ => new[] { 20L, 40, 60 }).Order(), grids.Select(g => g.Step).Order());
        Assert.Equal(session.Tracks.Order(), grids.Where(g => g.Step == 60).Select(g => g.Track).Order());
        var (width, height, rgb) = ImageTests.Decode(grids[0].Png);
        Assert.Equal((8 * 32 + 9 * 2, 8 * 32 + 9 * 2), (width, height));
        Assert.Equal([0x30, 0x30, 0x30], rgb[..3]); // a gap
        Assert.Equal(rgb[(2 * width + 2) * 3], rgb[(5 * width + 5) * 3]); // one enlarged pixel: 4 x 4 of the same grey
    }

    [Fact]
    public void The_same_weights_score_the_same_and_the_scores_do_not_depend_on_the_runs_seed()
    {
        // Fixed noise for the held-out loss and the samples: another seed's evaluator scores the same weights identically.
        using var session = TrainingSession.Create(Digits(steps: 20), "a");
        session.Train(new RecordingObserver());
        using var other = new TrackEvaluator(Digits(steps: 20) with { Seed = 99 });
        var model = session.LoadTrack("ema-0.9");
        var first = session.Evaluator.EvaluateDenoiser(subset: false, samples: 100);
        other.LoadRaw(model);
        var second = other.EvaluateDenoiser(subset: false, samples: 100);
        Assert.Equal(first.Result, second.Result);
        Assert.Equal(first.SampleGrid, second.SampleGrid);
        // Different weights, different samples.
        session.LoadTrack("raw");
        Assert.NotEqual(first.SampleGrid, session.Evaluator.EvaluateDenoiser(subset: false, samples: 100).SampleGrid);
    }

    [Fact]
    public void On_fashion_mnist_every_track_scores_its_samples_by_frechet_distance_at_the_intervals_and_the_last_step()
    {
        if (DatasetCatalog.MissingReason(DatasetCatalog.FashionMnist) is { } missing) Assert.Fail(missing);
        var spec = new RunSpec
        {
            Dataset = DatasetCatalog.FashionMnist, Model = ModelArchitecture.UNet, Channels = [8, 16], Attention = false, BatchSize = 16,
            Steps = 6, EvalInterval = 2, EvalSubset = 300, Seed = 1, Ema = new EmaSettings { Decays = [0.5] },
            Diffusion = Quick with { QualityInterval = 4 },
        };
        using var session = TrainingSession.Create(spec, "f");
        var observer = new RecordingObserver();
        session.Train(observer, stopAfterStep: 4);
        // Between evaluations of the whole split an export is labelled with its denoising loss alone: no samples drawn again.
        using (var early = new MemoryStream())
        {
            CheckpointExport.Export(session, "raw", early);
            early.Position = 0;
            using var between = CheckpointExport.Import(early);
            Assert.False(between.Metadata.ContainsKey(CheckpointExport.Keys.EvalFrechetDistance));
            Assert.True(double.Parse(between.Metadata[CheckpointExport.Keys.EvalLoss], CultureInfo.InvariantCulture) > 0);
        }
        var result = session.Train(observer);

        foreach (var track in session.Tracks)
        {
            // Sample quality at step 4 (its interval) and 6 (the last), not at 0 or 2; the loss at every evaluation.
            Assert.Equal([4L, 6], observer.Series(track, MetricKeys.EvalFrechetDistance).Select(p => p.Step));
            Assert.Equal([0L, 2, 4, 6], observer.Series(track, MetricKeys.EvalLoss).Select(p => p.Step));
            Assert.All(observer.Series(track, MetricKeys.EvalFrechetDistance), p => Assert.InRange(p.Value, 1, 1000));
        }
        Assert.DoesNotContain(observer.Log, l => l.Level == TrainingLogLevel.Warning);
        Assert.Contains(observer.Log, l => l.Message.StartsWith("Step 2 (on 300 of 10,000 held-out images)", StringComparison.Ordinal));
        Assert.Contains(observer.Log, l => l.Message.StartsWith("Step 6: raw denoising loss", StringComparison.Ordinal) && l.Message.Contains(" FD "));

        // The last evaluation's distance is the export's and the import's: the file carries it, and no accuracy.
        using var file = new MemoryStream();
        CheckpointExport.Export(session, "ema-0.5", file);
        file.Position = 0;
        using var imported = CheckpointExport.Import(file);
        Assert.IsType<DiffusionUNet>(imported.Model);
        Assert.Equal(result.LastEvaluation["ema-0.5"].FrechetDistance, double.Parse(imported.Metadata[CheckpointExport.Keys.EvalFrechetDistance], CultureInfo.InvariantCulture));
        Assert.False(imported.Metadata.ContainsKey(CheckpointExport.Keys.EvalAccuracy));
        Assert.Contains("\"finalSamples\":120", imported.Metadata[CheckpointExport.Keys.Diffusion]);
        Assert.Equal(result.LastEvaluation["ema-0.5"], session.Evaluator.Evaluate(imported.Model));
    }

    [Theory]
    [InlineData(new[] { 32, 64 }, 1, true)]
    [InlineData(new[] { 16, 32, 32 }, 2, false)]
    [InlineData(new[] { 8 }, 1, true)]
    public void The_parameter_count_is_the_built_networks(int[] widths, int blocks, bool attention)
    {
        var architecture = new ModelArchitecture { Kind = ModelArchitecture.UNet, Height = 28, Width = 28, Classes = 10, Channels = widths, Blocks = blocks, Attention = attention };
        using var model = ModelFactory.Create(architecture);
        Assert.Equal(ModelFactory.ParameterCount(model), architecture.ParameterCount());
        // Every part once, under its PyTorch name (TorchSharp would add each block's fields again under their .NET names).
        Assert.DoesNotContain(model.state_dict().Keys, name => name.Contains("._"));
        Assert.Equal(model.parameters().Count(), model.state_dict().Count);
        Assert.Throws<ArgumentException>(() => ModelFactory.Build(architecture));
    }

    [Fact]
    public void Diffusion_settings_are_checked_by_field()
    {
        static string[] Fields(RunSpec spec) => spec.Problems().Select(p => p.Field).ToArray();
        var unet = Digits();
        Assert.Empty(Fields(unet));
        Assert.Equal(["diffusion.schedule", "diffusion.samplingSteps", "diffusion.samples", "diffusion.finalSamples", "diffusion.qualityInterval"],
            Fields(unet with { Diffusion = new DiffusionSettings { Schedule = "sigmoid", Timesteps = 100, SamplingSteps = 101, Samples = 50, FinalSamples = 20_000, QualityInterval = 30 } }));
        Assert.Equal(["diffusion.timesteps"], Fields(unet with { Diffusion = new DiffusionSettings { Timesteps = 1 } }));
        Assert.Equal(["channels"], Fields(unet with { Channels = [8, 15] }));
        Assert.Equal(["blocks"], Fields(unet with { Blocks = 0 }));
        Assert.Equal(["labelSmoothing"], Fields(unet with { LabelSmoothing = 0.1 }));
        var mlp = new RunSpec { Hidden = [8] };
        Assert.Equal(["diffusion"], Fields(mlp with { Diffusion = new DiffusionSettings() }));
        Assert.Equal(["attention"], Fields(mlp with { Attention = true }));
        // Round trip: the settings survive the spec's JSON; a classifier's JSON gains no diffusion or attention field.
        Assert.Equal(unet.Diffusion, RunSpec.FromJson(unet.ToJson()).Diffusion);
        Assert.DoesNotContain("diffusion", mlp.ToJson());
        Assert.DoesNotContain("attention", mlp.ToJson());
    }
}
