using System.Globalization;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Training;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

[Collection(TrainingCollection.Name)]
public sealed class PostHocTests : IDisposable
{
    readonly string _snapshots = Directory.CreateTempSubdirectory("emalab-posthoc-").FullName;

    static readonly RunSpec Spec = new()
    {
        Model = "mlp", Hidden = [32], Steps = 300, EvalInterval = 300, Seed = 4,
        Ema = new EmaSettings { Decays = [0.99] },
        PostHoc = new PostHocSettings { SigmaRels = [0.05, 0.10], SnapshotEvery = 20 },
    };

    [Fact]
    public void Snapshots_are_written_and_a_tracked_profile_reconstructs_to_its_shadow()
    {
        using var session = TrainingSession.Create(Spec);
        session.SnapshotDirectory = _snapshots;
        session.Train(new RecordingObserver());

        Assert.Equal(Enumerable.Range(1, 15).Select(i => 20L * i), PostHocSnapshots.Steps(_snapshots));
        // 2 profiles × (64·32 + 32 + 32·10 + 10) floats per snapshot.
        Assert.InRange(PostHocSnapshots.SizeBytes(_snapshots), 15 * 2 * 2410 * 4, 15 * 2 * 2410 * 4 + 15 * 4096);

        // σ_rel 0.10 is tracked: its reconstruction at the last snapshot is the shadow itself (up to float32 rounding of the solve).
        var reconstructed = PostHocSnapshots.Reconstruct(_snapshots, Spec.PostHoc!.SigmaRels, 0.10);
        var shadow = session.PostHocEma!.StateTensors().Where(t => t.Key.StartsWith("pf-0.1/")).ToDictionary(t => t.Key["pf-0.1/".Length..], t => t.Tensor);
        Assert.Equal(shadow.Keys.Order(), reconstructed.Keys.Order());
        foreach (var (name, tensor) in shadow)
        {
            var difference = (reconstructed[name] - tensor).abs().max().item<float>();
            Assert.True(difference < 1e-4, $"{name} differs by {difference}");
        }
    }

    [Fact]
    public void A_reconstructed_profile_evaluates_and_exports_like_any_track_without_a_session()
    {
        using var session = TrainingSession.Create(Spec);
        session.SnapshotDirectory = _snapshots;
        session.Train(new RecordingObserver());

        // After training only the snapshots and the spec are needed: an evaluator, no live model or optimizer.
        using var evaluator = new TrackEvaluator(Spec);
        var state = PostHocSnapshots.Reconstruct(_snapshots, Spec.PostHoc!.SigmaRels, 0.075);
        evaluator.LoadAveraged(state, "posthoc-0.075");
        foreach (var t in state.Values) t.Dispose();
        var result = evaluator.Evaluate();
        Assert.True(result.Accuracy > 0.85, $"reconstructed σ_rel 0.075 scores {result.Accuracy}");
        // An average, not the raw weights.
        Assert.NotEqual(session.Evaluate("raw").Loss, result.Loss);

        using var file = new MemoryStream();
        CheckpointExport.Export(evaluator, new CheckpointLabel("r", "posthoc-0.075", session.Step, result), file);
        file.Position = 0;
        using var imported = CheckpointExport.Import(file);
        Assert.Equal("posthoc-0.075", imported.Metadata["track"]);
        Assert.Equal(session.Step.ToString(CultureInfo.InvariantCulture), imported.Metadata["step"]);
        Assert.Equal(result, session.Evaluator.Evaluate(imported.Model));
    }

    [Fact]
    public void Reconstructions_missing_a_weight_are_refused_by_name()
    {
        using var evaluator = new TrackEvaluator(Spec);
        var state = evaluator.Model.state_dict();
        var missing = state.Keys.Last();
        var partial = state.Where(p => p.Key != missing).ToDictionary(p => p.Key, p => p.Value);
        var error = Assert.Throws<ArgumentException>(() => evaluator.LoadAveraged(partial, "posthoc-0.1"));
        Assert.Contains("posthoc-0.1", error.Message);
        Assert.Contains(missing, error.Message);
    }

    [Fact]
    public void Post_hoc_state_resumes_exactly()
    {
        using var uninterrupted = TrainingSession.Create(Spec);
        uninterrupted.Train(new RecordingObserver());

        using var bundle = new MemoryStream();
        using (var first = TrainingSession.Create(Spec))
        {
            first.Train(new RecordingObserver(), stopAfterStep: 130);
            ResumeBundle.Save(first, bundle);
        }
        bundle.Position = 0;
        using var resumed = ResumeBundle.Resume(bundle);
        resumed.Train(new RecordingObserver());
        TensorAssert.Identical(uninterrupted.PostHocEma!.StateTensors(), resumed.PostHocEma!.StateTensors());
        Assert.Equal(uninterrupted.PostHocEma.Counters(), resumed.PostHocEma.Counters());
    }

    [Fact]
    public void Settings_are_validated_by_field()
    {
        Assert.Equal("postHoc.sigmaRels", Assert.Throws<InvalidSettingException>((Spec with { PostHoc = new PostHocSettings { SigmaRels = [0.5] } }).Validate).Field);
        Assert.Equal("postHoc.sigmaRels", Assert.Throws<InvalidSettingException>((Spec with { PostHoc = new PostHocSettings { SigmaRels = [] } }).Validate).Field);
        Assert.Equal("postHoc.snapshotEvery", Assert.Throws<InvalidSettingException>((Spec with { PostHoc = new PostHocSettings { SnapshotEvery = 0 } }).Validate).Field);
        Assert.Equal(10, new PostHocSettings().SnapshotInterval(300)); // about 30 snapshots by default
    }

    public void Dispose() => Directory.Delete(_snapshots, recursive: true);
}

public class PostHocLawaTests
{
    [Fact]
    public void The_kept_steps_say_which_k_and_spacing_are_possible()
    {
        // Checkpoints every 400 steps of a 1,200-step run, and the initial weights (never a LAWA copy).
        var kept = new long[] { 0, 400, 800, 1200 };
        Assert.Equal([new LawaChoice(400, 3), new LawaChoice(800, 2)], PostHocLawa.Choices(kept));
        Assert.Null(PostHocLawa.Problem(kept, 3, 400));
        var tooMany = PostHocLawa.Problem(kept, 4, 400)!;
        Assert.Equal(("checkpoints", "With every 400, at most 3 of the kept checkpoints are that far apart."), (tooMany.Field, tooMany.Reason));
        var offGrid = PostHocLawa.Problem(kept, 2, 300)!;
        Assert.Equal(("every", "No kept checkpoints are 300 steps apart from the last one; possible: every 400: k ≤ 3; every 800: k ≤ 2."), (offGrid.Field, offGrid.Reason));
        Assert.Equal([400L, 800, 1200], PostHocLawa.StepsOf(1200, 3, 400));
        // A last step off the grid (a run of 1,000 steps, checkpoints every 400) pairs only with what is there.
        Assert.Equal([new LawaChoice(200, 2), new LawaChoice(600, 2)], PostHocLawa.Choices([0, 400, 800, 1000]));
        Assert.Empty(PostHocLawa.Choices([0, 500]));
        // Three copies evenly spread over the run: σ_rel is their spread, √(2/3)/3.
        Assert.Equal(Math.Sqrt(2.0 / 3) / 3, PostHocLawa.SigmaRel([400, 800, 1200], 1200), 12);
    }

    [Fact]
    public void The_mean_folds_the_copies_as_lawa_py_and_keeps_the_latest_counters()
    {
        using var generator = new TorchSharp.torch.Generator(3);
        var copies = Enumerable.Range(0, 4).Select(_ => (IReadOnlyDictionary<string, TorchSharp.torch.Tensor>)new Dictionary<string, TorchSharp.torch.Tensor>
        {
            ["w"] = TorchSharp.torch.randn([37], generator: generator),
            ["bn.num_batches_tracked"] = TorchSharp.torch.tensor(7L),
        }).ToList();
        var expected = copies[0]["w"].clone();
        for (var n = 2; n <= 4; n++) expected = expected + (copies[n - 1]["w"] - expected) / n;
        var mean = PostHocLawa.Mean(copies);
        TensorAssert.Identical(expected, mean["w"], "the fold");
        Assert.Equal(7L, mean["bn.num_batches_tracked"].item<long>());
    }
}
