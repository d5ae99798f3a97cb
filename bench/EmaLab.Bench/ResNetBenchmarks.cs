using System.Diagnostics;
using System.Globalization;
using EmaLab.TrainingEngine;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using static TorchSharp.torch;

/// <summary>
/// The built-in workload where EMA matters: a ResNet-20 on Fashion-MNIST. Its training step against the documentation's own
/// PyTorch class in Debian's PyTorch (bench/pytorch/resnet_step.py) on 1 and 2 threads, and against the engine without
/// its oneDNN ISA cap (each candidate in a fresh process: the cap is read when oneDNN starts; rounds alternate);
/// the EMA's share of a step; what an evaluation of every track costs on all 10,000 test images and on a subset;
/// the evaluation share of a real run; the memory of a run with 8 tracks.
/// </summary>
static class ResNetBenchmarks
{
    const string Dataset = "fashion-mnist";
    const int Steps = 40;

    static RunSpec Spec(int threads, double[]? decays = null) => new()
    {
        Dataset = Dataset, Model = ModelArchitecture.ResNet, BatchSize = 128, Steps = 1_000_000, EvalInterval = 1_000_000, Threads = threads,
        Optimizer = RunSpec.Adam, Ema = new EmaSettings { Decays = decays ?? [0.99, 0.999, 0.9999] },
    };

    public static void Run()
    {
        if (DatasetCatalog.MissingReason(Dataset) is { } missing)
        {
            Console.WriteLine($"== ResNet on Fashion-MNIST: not measured ({missing}) ==");
            return;
        }
        StepAgainstPyTorch();
        EmaShare();
        Evaluation();
        Memory();
    }

    /// <summary>The child process's side: <c>resnet-step threads steps</c> prints ms per step (median of 5 rounds).</summary>
    public static void ChildStep(int threads, int steps)
    {
        using var session = TrainingSession.Create(Spec(threads));
        var quiet = new QuietObserver();
        session.Train(quiet, stopAfterStep: 10); // warm-up (and the step-0 evaluation)
        var rounds = new List<double>();
        for (var r = 0; r < 5; r++)
        {
            var clock = Stopwatch.StartNew();
            session.Train(quiet, stopAfterStep: session.Step + steps / 5);
            rounds.Add(clock.Elapsed.TotalSeconds / (steps / 5) * 1e3);
        }
        Console.WriteLine(rounds.Order().ElementAt(2).ToString("F4", CultureInfo.InvariantCulture));
    }

    static void StepAgainstPyTorch()
    {
        Console.WriteLine($"== ResNet-20 training step on {Dataset} (batch 128, Adam, EMA of 3 decays over parameters and BN buffers) ==");
        Console.WriteLine("threads   engine (AVX2 cap)   engine (no cap)   PyTorch 1.13   engine/PyTorch   cap cost");
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var script = Path.Combine(AppContext.BaseDirectory, "pytorch", "resnet_step.py");
        var self = typeof(ResNetBenchmarks).Assembly.Location;
        var perThread = new Dictionary<int, double>();
        foreach (var threads in new[] { 1, 2 })
        {
            var (capped, uncapped, pytorch) = (new List<double>(), new List<double>(), new List<double>());
            for (var round = 0; round < 3; round++)
            {
                if (Child("dotnet", [self, "resnet-step", $"{threads}", $"{Steps}"], threads, null) is { } a) capped.Add(a);
                if (Child("dotnet", [self, "resnet-step", $"{threads}", $"{Steps}"], threads, "ALL") is { } b) uncapped.Add(b);
                if (Child(python, [script, $"{threads}", $"{Steps}"], threads, null) is { } c) pytorch.Add(c);
            }
            var e = Median(capped);
            perThread[threads] = e;
            var u = Median(uncapped);
            var p = Median(pytorch);
            Console.WriteLine($"{threads,7}   {e,13:F1} ms   {u,11:F1} ms   {(pytorch.Count == 0 ? "not measured" : $"{p,9:F1} ms")}   {(pytorch.Count == 0 ? "" : $"{e / p,14:F2}")}   {e / u,8:F2}");
            Console.WriteLine($"          rounds: engine {Join(capped)}; no cap {Join(uncapped)}; PyTorch {Join(pytorch)}");
        }
        Console.WriteLine($"steps/s: 1 thread {1e3 / perThread[1]:F2}, 2 threads {1e3 / perThread[2]:F2} (speed-up {perThread[1] / perThread[2]:F2}×)");
        Console.WriteLine();
    }

    internal static string Join(List<double> values) => string.Join(", ", values.Select(v => v.ToString("F1", CultureInfo.InvariantCulture)));

    internal static double Median(List<double> values) => values.Count == 0 ? double.NaN : values.Order().ElementAt(values.Count / 2);

    /// <summary>Runs a candidate in a fresh process with one thread count everywhere (torch, OpenMP, OpenBLAS); its ms per step.</summary>
    internal static double? Child(string file, string[] arguments, int threads, string? isa)
    {
        try
        {
            var start = new ProcessStartInfo(file, arguments)
            {
                RedirectStandardOutput = true, RedirectStandardError = true,
                Environment = { ["OMP_NUM_THREADS"] = $"{threads}", ["OPENBLAS_NUM_THREADS"] = $"{threads}" },
            };
            if (isa is not null) start.Environment["ONEDNN_MAX_CPU_ISA"] = isa;
            using var process = Process.Start(start)!;
            var output = process.StandardOutput.ReadToEnd();
            var errors = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode == 0 && double.TryParse(output.Trim().Split('\n')[^1], CultureInfo.InvariantCulture, out var ms)) return ms;
            Console.WriteLine($"  ({Path.GetFileName(arguments[0])} failed: {errors.Trim().Split('\n')[^1]})");
            return null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    /// <summary>The EMA update of 3 tracks (parameters and batch-norm buffers) against the whole step it ends, interleaved.</summary>
    static void EmaShare()
    {
        Console.WriteLine("== EMA share of a ResNet-20 step (3 tracks, parameters and BN buffers, 2 threads) ==");
        using var session = TrainingSession.Create(Spec(2));
        var quiet = new QuietObserver();
        session.Train(quiet, stopAfterStep: 5);
        var times = Timing.Interleaved([
            () => session.Train(quiet, stopAfterStep: session.Step + 1),
            () => session.Ema.Update(session.Step),
        ], secondsPerSample: 0.5, rounds: 5);
        Console.WriteLine($"step {Timing.Us(times[0])}, EMA update {Timing.Us(times[1])}: {times[1] / times[0]:P2} of the step");
        Console.WriteLine();
    }

    /// <summary>
    /// An evaluation of every track of a 3-track run on the 10,000 test images and on a subset; the same tracks scored
    /// batch by batch (every track on one batch before the next) instead of track by track; and a real run's share.
    /// </summary>
    static void Evaluation()
    {
        Console.WriteLine("== Evaluation of a ResNet-20 run on 2 threads (3 EMA tracks + raw) ==");
        const int subset = 2000;
        using var session = TrainingSession.Create(Spec(2) with { EvalSubset = subset });
        var quiet = new QuietObserver();
        session.Train(quiet, stopAfterStep: 20);
        set_num_threads(2);
        double Time(Action action)
        {
            var clock = Stopwatch.StartNew();
            action();
            return clock.Elapsed.TotalSeconds;
        }
        var whole = Time(() => { foreach (var track in session.Tracks) session.Evaluate(track); });
        var onSubset = Time(() => { foreach (var track in session.Tracks) { session.LoadTrack(track); session.Evaluator.Evaluate(subset: true); } });
        var step = Time(() => session.Train(quiet, stopAfterStep: session.Step + 10)) / 10;
        Console.WriteLine($"every track on all 10,000 images {whole:F2} s; on {subset:N0} {onSubset:F2} s; one training step {step * 1e3:F0} ms");
        Console.WriteLine($"an evaluation of all 4 tracks costs {whole / step:F0} steps ({onSubset / step:F0} on the subset)");

        // Track by track (one model loaded at a time, as the engine does) against batch by batch (a model per track, every
        // track scoring a batch before the next batch): the same forward passes in another order.
        var models = session.Tracks.Select(track =>
        {
            var model = ModelFactory.Build(session.Architecture);
            session.LoadTrack(track);
            using (no_grad()) foreach (var (name, tensor) in session.Evaluator.Model.state_dict()) model.state_dict()[name].copy_(tensor);
            model.eval();
            return model;
        }).ToList();
        using var chosenIndices = tensor(TrackEvaluator.SubsetOf(session.Data.Eval.Count, subset).Select(i => (long)i).ToArray());
        using var all = tensor(session.Data.Normalization.Apply(session.Data.Eval.Pixels), [session.Data.Eval.Count, 1, 28, 28]);
        using var labels = tensor(session.Data.Eval.Labels.Select(l => (long)l).ToArray(), ScalarType.Int64);
        using var x = all.index_select(0, chosenIndices);
        using var y = labels.index_select(0, chosenIndices);
        var times = Timing.Interleaved([
            () => { foreach (var model in models) session.Evaluator.Evaluate(model, subset: true); },
            () => BatchByBatch(models, x, y),
        ], secondsPerSample: 1, rounds: 3);
        Console.WriteLine($"on the subset: track by track {times[0]:F2} s, batch by batch {times[1]:F2} s (ratio {times[1] / times[0]:F2})");
        foreach (var model in models) model.Dispose();

        // A real run's split, from the times the engine reports with each evaluation.
        foreach (var (label, spec) in new[] { ("every evaluation on all images", Spec(2) with { Steps = 200, EvalInterval = 50 }),
                                              ($"intermediate ones on {subset:N0}", Spec(2) with { Steps = 200, EvalInterval = 50, EvalSubset = subset }) })
        {
            var recorder = new TimeRecorder();
            using var run = TrainingSession.Create(spec);
            run.Train(recorder);
            Console.WriteLine($"a 200-step run evaluated every 50 steps, {label}: training {recorder.Training:F1} s, evaluation {recorder.Evaluation:F1} s " +
                              $"({recorder.Evaluation / (recorder.Training + recorder.Evaluation):P0} of the run)");
        }
        Console.WriteLine();
    }

    /// <summary>Every model scores a batch (loss and correct answers, as the evaluator) before the next batch.</summary>
    static void BatchByBatch(List<nn.Module<Tensor, Tensor>> models, Tensor images, Tensor labels)
    {
        using var _ = no_grad();
        var count = images.shape[0];
        var sums = new double[models.Count];
        for (long start = 0; start < count; start += 512)
        {
            using var scope = NewDisposeScope();
            var length = Math.Min(512, count - start);
            var (x, y) = (images.narrow(0, start, length), labels.narrow(0, start, length));
            for (var m = 0; m < models.Count; m++)
            {
                var logits = models[m].forward(x);
                sums[m] += nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).item<float>();
                sums[m] += logits.argmax(1).eq(y).sum().item<long>();
            }
        }
    }

    sealed class TimeRecorder : ITrainingObserver
    {
        public double Training, Evaluation;
        public void OnMetric(in MetricPoint point)
        {
            if (point.Key == MetricKeys.TrainingSeconds) Training += point.Value;
            if (point.Key == MetricKeys.EvaluationSeconds) Evaluation += point.Value;
        }
        public void OnProgress(TrainingProgress progress) { }
        public void OnLog(TrainingLogLevel level, string message) { }
    }

    /// <summary>Resident memory of a run with 8 EMA tracks, step by step of its making, in a fresh process.</summary>
    static void Memory()
    {
        Console.WriteLine("== Memory of a ResNet-20 run with 8 EMA tracks on Fashion-MNIST (resident set, fresh process) ==");
        var self = typeof(ResNetBenchmarks).Assembly.Location;
        using var process = Process.Start(new ProcessStartInfo("dotnet", [self, "resnet-memory"]) { RedirectStandardOutput = true })!;
        Console.Write(process.StandardOutput.ReadToEnd());
        process.WaitForExit();
        Console.WriteLine();
    }

    public static void ChildMemory()
    {
        var decays = new[] { 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995 };
        using (var warm = tensor(new float[] { 1 })) { } // libtorch loaded
        var baseline = Timing.ResidentMegabytes();
        var data = DatasetCatalog.Load(Dataset);
        var loaded = Timing.ResidentMegabytes();
        using var session = TrainingSession.Create(Spec(2, decays));
        var created = Timing.ResidentMegabytes();
        session.Train(new QuietObserver(), stopAfterStep: 20);
        var trained = Timing.ResidentMegabytes();
        var parameters = ModelFactory.ParameterCount(session.LiveModel);
        var state = session.LiveModel.state_dict().Values.Where(t => t.is_floating_point()).Sum(t => t.numel());
        double Mb(long floats) => floats * 4 / 1048576.0;
        Console.WriteLine($"libtorch loaded                     {baseline,7:F0} MB");
        Console.WriteLine($"+ dataset read (bytes, managed)     {loaded - baseline,7:F0} MB   (pixels {(data.Train.Pixels.Length + data.Eval.Pixels.Length) / 1048576.0:F0} MB as bytes)");
        Console.WriteLine($"+ session built                     {created - loaded,7:F0} MB   (training and test images as float32 tensors {Mb((long)(data.Train.Count + data.Eval.Count) * 784):F0} MB; " +
                          $"8 shadows of {state:N0} floats {Mb(8 * state):F1} MB; model, eval model {Mb(2 * state):F1} MB)");
        Console.WriteLine($"+ 20 steps                          {trained - created,7:F0} MB   (Adam's 2 moments and gradients {Mb(3 * parameters):F1} MB; activations of a batch; allocator caches)");
        Console.WriteLine($"total resident                      {trained,7:F0} MB;   managed heap {GC.GetTotalMemory(forceFullCollection: true) / 1048576.0:F0} MB");
    }
}
