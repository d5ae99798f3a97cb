using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>What an evaluation scores (a fixed subset at intermediate points, everything at the end) and what it costs.</summary>
[Collection(TrainingCollection.Name)]
public class EvaluationTests
{
    static readonly RunSpec Digits = new()
    {
        Dataset = "digits-8x8", Model = "mlp", Hidden = [32], Optimizer = RunSpec.Adam, LearningRate = 3e-3,
        BatchSize = 32, Steps = 40, Seed = 5, EvalInterval = 20, EvalSubset = 100,
        Ema = new EmaSettings { Decays = [0.9] },
    };

    [Fact]
    public void The_subset_is_fixed_sorted_and_the_same_for_every_run_of_a_dataset()
    {
        var subset = TrackEvaluator.SubsetOf(1000, 200);
        Assert.Equal(200, subset.Distinct().Count());
        Assert.Equal(subset.Order(), subset);
        Assert.All(subset, i => Assert.InRange(i, 0, 999));
        Assert.Equal(subset, TrackEvaluator.SubsetOf(1000, 200));
        // Spread over the split, not its front: a split sorted by class (as some are) is still sampled throughout.
        Assert.True(subset.Max() > 900 && subset.Min() < 100, $"subset from {subset.Min()} to {subset.Max()}");

        using var one = new TrackEvaluator(Digits);
        using var other = new TrackEvaluator(Digits with { Seed = 99, BatchSize = 8 });
        Assert.Equal(100, one.ImagesScored(subset: true));
        Assert.Equal(one.Data.Eval.Count, one.ImagesScored(subset: false));
        using var model = Models.ModelFactory.Build(one.Architecture, new TorchSharp.torch.Generator(1));
        Assert.Equal(one.Evaluate(model, subset: true), other.Evaluate(model, subset: true));
    }

    [Fact]
    public void Intermediate_evaluations_score_the_subset_and_the_last_one_every_held_out_image()
    {
        var observer = new RecordingObserver();
        using (var session = TrainingSession.Create(Digits))
        {
            var result = session.Train(observer);
            Assert.Equal(TrainingOutcome.Completed, result.Outcome);
            // The last evaluation is the whole split: what the session reports for a track afterwards.
            Assert.Equal(session.Evaluate("raw"), result.LastEvaluation["raw"]);
            Assert.Equal(session.Evaluate("ema-0.9"), result.LastEvaluation["ema-0.9"]);
        }

        // The same run stopped at step 20 and scored on the subset and on everything: the point at 20 is the subset's.
        using var paused = TrainingSession.Create(Digits);
        Assert.Equal(TrainingOutcome.Paused, paused.Train(new RecordingObserver(), stopAfterStep: 20).Outcome);
        foreach (var track in paused.Tracks)
        {
            paused.LoadTrack(track);
            var onSubset = paused.Evaluator.Evaluate(subset: true);
            var reported = observer.Series(track, MetricKeys.EvalAccuracy).Single(m => m.Step == 20).Value;
            Assert.Equal(onSubset.Accuracy, reported);
            Assert.Equal(onSubset.Loss, observer.Series(track, MetricKeys.EvalLoss).Single(m => m.Step == 20).Value);
            Assert.Equal(0, onSubset.Accuracy * 100 % 1, 9); // a count out of 100 images
        }
        Assert.Contains(observer.Log, l => l.Message.StartsWith($"Step 20 (on 100 of {paused.Data.Eval.Count:N0} held-out images):", StringComparison.Ordinal));
        Assert.Contains(observer.Log, l => l.Message.StartsWith("Step 40: ", StringComparison.Ordinal));
    }

    [Fact]
    public void A_subset_as_large_as_the_split_or_none_scores_everything_every_time()
    {
        foreach (var spec in new[] { Digits with { EvalSubset = null }, Digits with { EvalSubset = 0 } })
        {
            using var session = TrainingSession.Create(spec);
            Assert.Equal(session.Data.Eval.Count, session.Evaluator.ImagesScored(subset: true));
        }
        var all = Data.DatasetCatalog.Describe(Digits.Dataset).EvalCount;
        using var whole = TrainingSession.Create(Digits with { EvalSubset = all });
        Assert.Equal(all, whole.Evaluator.ImagesScored(subset: true));
    }

    [Fact]
    public void Each_evaluation_reports_its_time_beside_the_training_time_since_the_previous_one()
    {
        var observer = new RecordingObserver();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var session = TrainingSession.Create(Digits with { Steps = 60 });
        session.Train(observer);
        var wall = clock.Elapsed.TotalSeconds;

        var training = observer.Series("raw", MetricKeys.TrainingSeconds).ToList();
        var evaluation = observer.Series("raw", MetricKeys.EvaluationSeconds).ToList();
        Assert.Equal([0L, 20, 40, 60], training.Select(m => m.Step));
        Assert.Equal([0L, 20, 40, 60], evaluation.Select(m => m.Step));
        Assert.Equal(0, training[0].Value); // nothing trained before step 0
        Assert.All(training.Skip(1), m => Assert.True(m.Value > 0, $"training seconds {m.Value} at step {m.Step}"));
        Assert.All(evaluation, m => Assert.True(m.Value > 0, $"evaluation seconds {m.Value} at step {m.Step}"));
        // Parts of the run's time: together they fit in it.
        Assert.True(training.Sum(m => m.Value) + evaluation.Sum(m => m.Value) <= wall, "the parts exceed the run's wall time");
        Assert.DoesNotContain(observer.Metrics, m => m.Key.StartsWith("system/", StringComparison.Ordinal) && m.Track != "raw");
    }

    [Fact]
    public void A_run_records_what_it_costs_under_mlflows_system_keys_and_its_own_process_figures()
    {
        var observer = new RecordingObserver();
        using var session = TrainingSession.Create(Digits with { Steps = 60 });
        session.SystemMetricsInterval = TimeSpan.FromMilliseconds(1);
        session.Train(observer);

        var system = observer.Metrics.Where(m => MetricKeys.IsSystem(m.Key)).ToList();
        Assert.All(system, m => Assert.Equal("raw", m.Track));
        var rate = observer.Series("raw", MetricKeys.StepsPerSecond).ToList();
        Assert.NotEmpty(rate);
        Assert.Equal(rate.Select(m => m.Step).Order(), rate.Select(m => m.Step)); // at the step it was sampled
        Assert.Contains(rate, m => m.Value > 0);
        Assert.All(observer.Series("raw", MetricKeys.ProcessMemoryMegabytes), m => Assert.InRange(m.Value, 10, 100_000));
        Assert.All(observer.Series("raw", MetricKeys.ProcessCpuPercent), m => Assert.InRange(m.Value, 0, 100.0 * 1.05));
        // This machine is Linux: the machine's own figures under MLflow's keys, as log_system_metrics names them.
        Assert.All(observer.Series("raw", MetricKeys.SystemMemoryPercent), m => Assert.InRange(m.Value, 0, 100));
        Assert.NotEmpty(observer.Series("raw", MetricKeys.SystemMemoryMegabytes));
        Assert.True(MetricKeys.IsWallClock(MetricKeys.StepsPerSecond));

        // Off: none at all.
        var quiet = new RecordingObserver();
        using var off = TrainingSession.Create(Digits with { Steps = 20 });
        off.SystemMetricsInterval = TimeSpan.Zero;
        off.Train(quiet);
        Assert.DoesNotContain(quiet.Metrics, m => MetricKeys.IsSystem(m.Key) && m.Key is not (MetricKeys.TrainingSeconds or MetricKeys.EvaluationSeconds));
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    [InlineData("resnet")]
    public void Forward_passes_in_chunks_score_exactly_what_one_pass_over_each_batch_scores(string model)
    {
        var spec = Digits with { Model = model, Channels = model == "mlp" ? null : [8, 16], Blocks = model == "resnet" ? 1 : null };
        using var session = TrainingSession.Create(spec);
        session.Train(new RecordingObserver(), stopAfterStep: 20); // trained weights and batch-norm statistics
        session.LoadTrack("raw");
        var chunked = session.Evaluator.Evaluate();

        // The evaluation as one forward pass per 512-image batch (the split is smaller than one batch: one pass).
        var model_ = (TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>)session.Evaluator.Model;
        var data = session.Data;
        using var _ = TorchSharp.torch.no_grad();
        using var x = TorchSharp.torch.tensor(data.Normalization.Apply(data.Eval.Pixels), [data.Eval.Count, 1, data.Height, data.Width]);
        using var y = TorchSharp.torch.tensor(data.Eval.Labels.Select(l => (long)l).ToArray(), TorchSharp.torch.ScalarType.Int64);
        using var logits = model_.forward(x);
        var loss = (double)TorchSharp.torch.nn.functional.cross_entropy(logits, y, reduction: TorchSharp.torch.nn.Reduction.Sum).item<float>() / data.Eval.Count;
        var accuracy = (double)logits.argmax(1).eq(y).sum().item<long>() / data.Eval.Count;
        Assert.True(data.Eval.Count > TrackEvaluator.ForwardChunk, "the split must need several chunks");
        Assert.Equal(new EvalResult(loss, accuracy), chunked);
    }

    [Fact]
    public void A_negative_subset_is_refused_by_field_and_one_larger_than_the_split_scores_all_of_it()
    {
        var problem = Assert.Single((Digits with { EvalSubset = -1 }).Problems());
        Assert.Equal("evalSubset", problem.Field);
        var all = Data.DatasetCatalog.Describe(Digits.Dataset).EvalCount;
        Assert.Empty((Digits with { EvalSubset = all + 1 }).Problems()); // "at most": one setting suits every dataset
        using var larger = new TrackEvaluator(Digits with { EvalSubset = 100_000 });
        Assert.Equal(all, larger.ImagesScored(subset: true));
    }
}
