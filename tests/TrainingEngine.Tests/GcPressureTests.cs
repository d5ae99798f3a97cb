using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>
/// TorchSharp frees a native object when its .NET wrapper is finalized; a wrapper nothing references
/// any more can be finalized while a native call still reads it (TorchSharp 0.107's optimizers fail
/// within seconds this way on a busy server: "Unknown scalar type", "toFloat"). These tests drive every
/// engine path while another thread collects garbage and runs finalizers non-stop, and require the
/// results to be bit-identical to the same work done without that pressure.
/// </summary>
[Collection(TrainingCollection.Name)]
public sealed class GcPressureTests : IDisposable
{
    readonly string _directory = Directory.CreateTempSubdirectory("emalab-gc-").FullName;

    public static TheoryData<string> Configurations => new(Specs.Keys);

    static readonly Dictionary<string, RunSpec> Specs = new()
    {
        ["sgd-momentum-step-fused-recalibrate"] = new RunSpec
        {
            Model = "cnn", Channels = [4, 8], Optimizer = RunSpec.Sgd, LearningRate = 0.05, Momentum = 0.9, WeightDecay = 1e-4,
            Schedule = RunSpec.StepSchedule, StepSize = 40, StepGamma = 0.5, BatchSize = 32, Steps = 120, EvalInterval = 40, Seed = 5,
            EmaApplication = EmaApplication.Fused,
            Ema = new EmaSettings { Decays = [0.9, 0.99], Warmup = true, BnPolicy = BatchNormPolicy.Recalibrate, RecalibrationBatches = 3 },
        },
        ["adam-cosine-hook-debias"] = new RunSpec
        {
            Model = "mlp", Hidden = [512, 512], Optimizer = RunSpec.Adam, LearningRate = 3e-3, WeightDecay = 1e-4,
            Schedule = RunSpec.Cosine, BatchSize = 32, Steps = 400, EvalInterval = 100, Seed = 6,
            Ema = new EmaSettings { Decays = [0.9, 0.99, 0.999], ZeroDebias = true, Every = 2, StartStep = 10 },
        },
        ["adamw-cnn-average-posthoc"] = new RunSpec
        {
            Model = "cnn", Channels = [4, 8], Optimizer = RunSpec.AdamW, LearningRate = 2e-3, WeightDecay = 0.05,
            BatchSize = 32, Steps = 120, EvalInterval = 60, Seed = 7,
            Ema = new EmaSettings { Decays = [0.95], BnPolicy = BatchNormPolicy.Average },
            PostHoc = new PostHocSettings { SigmaRels = [0.05, 0.10], SnapshotEvery = 20 },
        },
        ["sgd-mixed-presets-low-precision"] = new RunSpec
        {
            Model = "mlp", Hidden = [256], Optimizer = RunSpec.Sgd, LearningRate = 0.1, Momentum = 0.9,
            BatchSize = 32, Steps = 300, EvalInterval = 150, Seed = 10,
            Ema = new EmaSettings
            {
                Tracks =
                [
                    new EmaTrackSettings { Preset = EmaPresets.EmaPytorch, Decay = 0.99, UpdateAfterStep = 10, Every = 1 },
                    new EmaTrackSettings { Preset = EmaPresets.TensorFlow, Decay = 0.99, Warmup = EmaWarmup.Tf, ZeroDebias = true },
                    new EmaTrackSettings { Preset = EmaPresets.Keras },
                    new EmaTrackSettings { Preset = EmaPresets.Swa, StartStep = 100 },
                    new EmaTrackSettings { Decay = 0.99, Dtype = EmaDtype.Float16, Warmup = EmaWarmup.Power },
                ],
            },
        },
        ["sgd-plain-mlp-copy"] = new RunSpec
        {
            Model = "mlp", Hidden = [512, 256], Optimizer = RunSpec.Sgd, LearningRate = 0.1,
            BatchSize = 32, Steps = 400, EvalInterval = 200, Seed = 8,
            Ema = new EmaSettings { Decays = [0.99], BnPolicy = BatchNormPolicy.Copy },
        },
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Training_evaluation_export_and_reconstruction_survive_a_collector_running_non_stop(string configuration)
    {
        var spec = Specs[configuration];
        var calm = Exercise(spec, Path.Combine(_directory, "calm"));
        using var hammer = new FinalizerHammer();
        hammer.WaitUntilCollecting();
        var before = hammer.Collections;
        // On a loaded machine (other test projects run beside this one) a short exercise can see few collections: it is
        // repeated — each time identical to the calm one — until the collector ran often enough during the work.
        for (var round = 0; round == 0 || (hammer.Collections - before <= MinCollections && round < 10); round++)
        {
            var busy = Exercise(spec, Path.Combine(_directory, $"busy-{round}"));
            Assert.Equal(TrainingOutcome.Completed, busy.Result.Outcome);
            Assert.Equal(calm.Metrics, busy.Metrics);
            Assert.Equal(calm.Checkpoints.Count, busy.Checkpoints.Count);
            for (var i = 0; i < calm.Checkpoints.Count; i++) Assert.True(calm.Checkpoints[i].SequenceEqual(busy.Checkpoints[i]), $"checkpoint {i} differs");
        }
        Assert.True(hammer.Collections - before > MinCollections, $"only {hammer.Collections - before} collections ran during the exercises");
    }

    const int MinCollections = 10;

    sealed record Outcome(TrainingResult Result, List<(string, string, long, double)> Metrics, List<byte[]> Checkpoints);

    /// <summary>Trains, evaluates every track, exports each, and (with post-hoc EMA) reconstructs and exports a σ_rel.</summary>
    static Outcome Exercise(RunSpec spec, string directory)
    {
        Directory.CreateDirectory(directory);
        using var session = TrainingSession.Create(spec, "gc");
        if (spec.PostHoc is not null) session.SnapshotDirectory = directory;
        var observer = new RecordingObserver();
        var result = session.Train(observer);
        var checkpoints = new List<byte[]>();
        foreach (var track in session.Tracks) checkpoints.Add(Export(session, track));
        if (spec.PostHoc is { } postHoc)
        {
            using var evaluator = new TrackEvaluator(spec);
            var state = PostHocSnapshots.Reconstruct(directory, postHoc.SigmaRels, 0.07);
            evaluator.LoadAveraged(state, "posthoc-0.07");
            foreach (var t in state.Values) t.Dispose();
            var evaluation = evaluator.Evaluate();
            observer.OnMetric(new MetricPoint("gc", "posthoc-0.07", MetricKeys.EvalAccuracy, session.Step, evaluation.Accuracy));
            using var stream = new MemoryStream();
            CheckpointExport.Export(evaluator, new CheckpointLabel("gc", "posthoc-0.07", session.Step, evaluation), stream);
            checkpoints.Add(stream.ToArray());
        }
        var metrics = observer.Metrics.Where(m => !MetricKeys.IsWallClock(m.Key)).Select(m => (m.Track, m.Key, m.Step, m.Value)).ToList();
        return new Outcome(result, metrics, checkpoints);
    }

    static byte[] Export(TrainingSession session, string track)
    {
        using var stream = new MemoryStream();
        CheckpointExport.Export(session, track, stream);
        return stream.ToArray();
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}

/// <summary>Collects garbage and runs finalizers in a loop on its own thread until disposed.</summary>
sealed class FinalizerHammer : IDisposable
{
    readonly Thread _thread;
    volatile bool _stop;
    int _collections;

    public FinalizerHammer()
    {
        _thread = new Thread(() =>
        {
            while (!_stop)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Interlocked.Increment(ref _collections);
            }
        }) { IsBackground = true, Name = "finalizer hammer" };
        _thread.Start();
    }

    public int Collections => Volatile.Read(ref _collections);

    /// <summary>Returns once the collector has run once: the work after it is under pressure from its first step.</summary>
    public void WaitUntilCollecting()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (Collections == 0 && DateTime.UtcNow < deadline) Thread.Sleep(1);
    }

    public void Dispose()
    {
        _stop = true;
        _thread.Join();
    }
}
