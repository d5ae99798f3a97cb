using System.Diagnostics;
using System.Globalization;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using static TorchSharp.torch;

// A small timing harness (not BenchmarkDotNet): every figure is a median of repeated batches measured
// in the same process, and the interesting numbers are ratios between them, which are steadier on a
// shared 2-core machine than absolute times.
//
//   dotnet run -c Release --project bench/EmaLab.Bench -- [ema] [tracks] [rules] [optimizer] [steps] [store] [posthoc] [load] [tracking] [reads] [workers] [access] [resnet] [pages]
//   dotnet run -c Release --project bench/EmaLab.Bench -- diffusion [widths] [blocks] [attention 0|1] [batch]
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
// The ResNet benchmark's candidates, each in a fresh process (oneDNN reads its ISA cap once, when it starts).
if (args is ["resnet-step", var threads, var steps]) { ResNetBenchmarks.ChildStep(int.Parse(threads), int.Parse(steps)); return; }
if (args is ["resnet-memory"]) { ResNetBenchmarks.ChildMemory(); return; }
if (args is ["diffusion-step", var unetThreads, var unetSteps, .. var unetShape]) { DiffusionBenchmarks.ChildStep(int.Parse(unetThreads), int.Parse(unetSteps), unetShape); return; }
if (args is ["diffusion-memory", .. var memoryShape]) { DiffusionBenchmarks.ChildMemory(memoryShape); return; }
if (args is ["diffusion", .. var diffusionShape]) { DiffusionBenchmarks.Run(diffusionShape); return; }
if (args is ["reference-features", ..]) { ReferenceFeatures.Run(args.Length > 1 ? args[1] : Path.Combine(FindRepository(), "src/TrainingEngine/Diffusion/Reference")); return; }
var what = args.Length == 0 ? ["ema", "tracks", "rules", "optimizer", "steps", "store", "posthoc", "load", "tracking", "reads", "workers", "access", "resnet"] : args;
if (what.Contains("ema")) EmaBenchmarks.Run();
if (what.Contains("tracks")) EmaBenchmarks.RunMixed();
if (what.Contains("rules")) EmaBenchmarks.RunRules();
if (what.Contains("optimizer")) OptimizerBenchmarks.Run();
if (what.Contains("steps")) StepBenchmarks.Run();
if (what.Contains("store")) await StoreBenchmarks.RunAsync();
if (what.Contains("posthoc")) PostHocBenchmarks.Run();
if (what.Contains("load")) await LoadBenchmarks.RunAsync();
if (what.Contains("tracking")) await TrackingBenchmarks.RunAsync();
if (what.Contains("reads")) await ReadBenchmarks.RunAsync();
if (what.Contains("workers")) await WorkerBenchmarks.RunAsync();
if (what.Contains("access")) await AccessBenchmarks.RunAsync();
if (what.Contains("resnet")) ResNetBenchmarks.Run();
if (what.Contains("pages")) await PageBenchmarks.RunAsync();

static class Timing
{
    /// <summary>
    /// Median seconds per call of each action. The actions are timed in interleaved rounds (A B C A B C ...)
    /// so that drift on a shared machine (turbo, neighbours) affects them alike and their ratios stay fair.
    /// </summary>
    public static double[] Interleaved(IReadOnlyList<Action> actions, double secondsPerSample = 0.1, int rounds = 9)
    {
        var perSample = new int[actions.Count];
        var clock = new Stopwatch();
        for (var a = 0; a < actions.Count; a++)
        {
            actions[a]();
            clock.Restart();
            var calls = 0;
            while (clock.Elapsed.TotalSeconds < 0.03 || calls < 2) { actions[a](); calls++; }
            perSample[a] = Math.Max(1, (int)(secondsPerSample / (clock.Elapsed.TotalSeconds / calls)));
        }
        var samples = actions.Select(_ => new List<double>()).ToArray();
        for (var r = 0; r < rounds; r++)
            for (var a = 0; a < actions.Count; a++)
            {
                clock.Restart();
                for (var i = 0; i < perSample[a]; i++) actions[a]();
                samples[a].Add(clock.Elapsed.TotalSeconds / perSample[a]);
            }
        return samples.Select(list => list.Order().ElementAt(list.Count / 2)).ToArray();
    }

    /// <summary>This process's resident set (VmRSS), in MB.</summary>
    public static double ResidentMegabytes() =>
        long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;

    public static string Us(double seconds) => seconds < 1e-3 ? $"{seconds * 1e6,9:F1} µs" : $"{seconds * 1e3,9:F2} ms";
}

static class EmaBenchmarks
{
    static readonly double[] ThreeDecays = [0.99, 0.999, 0.9999];

    public static void Run()
    {
        Console.WriteLine("== EMA update cost (per update of all parameters) ==");
        Console.WriteLine("model         params      threads  copy_       lerp_ K=1   fused K=1   fused K=3   lerp_ K=3   K1/copy  K3/(3xK1)  lerp K3/(3xK1)  K3/step");
        Measure("mlp-mnist", new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [256, 256] }, threads: 1, stepBatch: 128);
        Measure("cnn-mnist", new ModelArchitecture { Kind = "cnn", Height = 28, Width = 28, Classes = 10, Channels = [16, 32] }, threads: 1, stepBatch: 128);
        Measure("mlp-53M", new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [4096, 4096, 4096, 4096] }, threads: 2, stepBatch: null);
        Measure("mlp-53M", new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [4096, 4096, 4096, 4096] }, threads: 1, stepBatch: null);
        Console.WriteLine("copy_ = shadow.copy_(w) per tensor (reads 1, writes 1 word); the bandwidth ideal for an EMA (reads 2, writes 1) is 1.5x copy_.");
        Console.WriteLine("K3/(3xK1) = one fused pass for 3 decays over three single-decay passes; the ideal is 7/9 = 0.78.");
        Console.WriteLine();
    }

    public static void RunMixed()
    {
        Console.WriteLine("== 8 mixed tracks (emalab x2, tensorflow, timm warm-up, diffusers, keras, averaged-model, swa), per step past the warm-ups ==");
        Console.WriteLine("model         params      threads  copy_       8 decays    float32     bfloat16    float16     f32/copy  f32/8dec  bf16/f32  f16/f32  f32/step  bf16/step");
        MeasureMixed("mlp-mnist", new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [256, 256] }, threads: 1, stepBatch: 128);
        MeasureMixed("mlp-5.8M", new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [2048, 2048] }, threads: 1, stepBatch: 128);
        MeasureMixed("mlp-5.8M", new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [2048, 2048] }, threads: 2, stepBatch: 128);
        Console.WriteLine("8 decays: eight plain EMA Lab decays (one rule) in the fused pass, the reference for the mixed float32 tracks.");
        Console.WriteLine("float32: the shadows of the same update cadence share one fused pass; bfloat16/float16: each shadow is widened to a float32");
        Console.WriteLine("scratch, updated by the same pass and rounded once (torch ops), so the low-precision shadows cost more time, not less.");
        Console.WriteLine("x/step = share of one Adam step (forward, backward, update) of that model with batch 128.");
        Console.WriteLine();

        // The decay lens and the σ_rel axis walk each rule's schedule over every planned step: how long for the longest run allowed?
        Console.WriteLine($"== Walking a rule's schedule over {RunSpec.MaxSteps:N0} steps (decay lens, σ_rel of a track) ==");
        var rules = MixedTracks(EmaDtype.Float32).Rules(null).Append(new EmaTrackSettings { Preset = EmaPresets.EmaPytorch }.Resolve(new EmaSettings(), "t", null));
        foreach (var rule in rules)
        {
            var clock = Stopwatch.StartNew();
            var sigma = EmaMath.SigmaRel(rule, RunSpec.MaxSteps);
            Console.WriteLine($"{rule.Name,-28} {clock.Elapsed.TotalMilliseconds,8:F1} ms   (σ_rel {sigma:G3})");
        }
        Console.WriteLine();
    }

    /// <summary>
    /// One update of each rule adopted since the classic ones, against <c>copy_</c> of the weights and a plain EMA, each
    /// set to update at every call (their own cadence — every 400 steps for TRL's BEMA, every epoch for LAWA — divides
    /// the cost per training step).
    /// </summary>
    public static void RunRules()
    {
        Console.WriteLine("== One update of each newer rule (every call updates), against copy_ of the weights ==");
        var architecture = new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [2048, 2048] };
        foreach (var threads in new[] { 1, 2 })
        {
            using var bench = new BenchModel(architecture, threads);
            var shape = new EmaRunShape(128, 468, 4680);
            (string Name, EmaTrackSettings Track)[] rules =
            [
                ("emalab 0.999", new EmaTrackSettings { Decay = 0.999 }),
                ("edm (half-life)", new EmaTrackSettings { Preset = EmaPresets.Edm, HalfLifeKimg = 50 }),
                ("torchvision", new EmaTrackSettings { Preset = EmaPresets.Torchvision, Every = 1 }),
                ("trl-bema", new EmaTrackSettings { Preset = EmaPresets.TrlBema, Every = 1 }),
                ("bema (authors)", new EmaTrackSettings { Preset = EmaPresets.Bema, Every = 1 }),
                ("lawa k=5", new EmaTrackSettings { Preset = EmaPresets.Lawa, Checkpoints = 5, Every = 1 }),
                ("lawa k=10", new EmaTrackSettings { Preset = EmaPresets.Lawa, Checkpoints = 10, Every = 1 }),
            ];
            var emas = rules.Select(r => new ExponentialMovingAverage(bench.Model, new EmaSettings { Tracks = [r.Track] }, shape, threads)).ToArray();
            var steps = new long[emas.Length];
            for (var i = 0; i < emas.Length; i++)
                for (steps[i] = 1; steps[i] <= 20; steps[i]++) emas[i].Update(steps[i]); // past first copies; LAWA's ring full
            var times = Timing.Interleaved([bench.CopyAll, .. emas.Select((e, i) => (Action)(() => e.Update(steps[i]++)))]);
            Console.WriteLine($"mlp-5.8M ({bench.Count:N0} parameters), {threads} thread(s): copy_ {Timing.Us(times[0]).Trim()}");
            for (var i = 0; i < rules.Length; i++)
                Console.WriteLine($"  {rules[i].Name,-16} {Timing.Us(times[i + 1])}  {times[i + 1] / times[0],6:F2} x copy_  {times[i + 1] / times[1],6:F2} x emalab");
            foreach (var ema in emas) ema.Dispose();
        }
        Console.WriteLine("BEMA: the EMA (mul then fused add) and the weights read (θ_t − θ₀, × α, + EMA): ~2 passes; LAWA: a copy and the mean");
        Console.WriteLine("of the k copies taken afresh (k − 1 folds), so its cost grows with k but is paid once per ν steps.");
        Console.WriteLine();
    }

    /// <summary>Eight tracks of different libraries as one run would carry them, in float32 and in the two half precisions.</summary>
    static EmaSettings MixedTracks(string dtype) => new()
    {
        Tracks =
        [
            new EmaTrackSettings { Decay = 0.99, Dtype = dtype },
            new EmaTrackSettings { Decay = 0.999, Dtype = dtype },
            new EmaTrackSettings { Preset = EmaPresets.TensorFlow, Decay = 0.999, Warmup = EmaWarmup.Tf, Dtype = dtype },
            new EmaTrackSettings { Preset = EmaPresets.Timm, Warmup = EmaWarmup.Power, Dtype = dtype },
            new EmaTrackSettings { Preset = EmaPresets.Diffusers, Dtype = dtype },
            new EmaTrackSettings { Preset = EmaPresets.Keras, Dtype = dtype },
            new EmaTrackSettings { Preset = EmaPresets.AveragedModel, Dtype = dtype },
            new EmaTrackSettings { Preset = EmaPresets.Swa, Dtype = dtype },
        ],
    };

    static void MeasureMixed(string name, ModelArchitecture architecture, int threads, int stepBatch)
    {
        using var bench = new BenchModel(architecture, threads);
        var (model, count) = (bench.Model, bench.Count);
        // The reference: eight plain EMA Lab decays in one fused pass (one rule, one update form).
        var plain = new EmaSettings { Decays = [0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995] };
        var emas = new[] { MixedTracks(EmaDtype.Float32), MixedTracks(EmaDtype.BFloat16), MixedTracks(EmaDtype.Float16), plain }
            .Select(settings => new ExponentialMovingAverage(model, settings, null, threads)).ToArray();
        var step = new long[emas.Length];
        foreach (var (ema, i) in emas.Select((e, i) => (e, i)))
            for (step[i] = 1; step[i] <= 200; step[i]++) ema.Update(step[i]); // past the copies and the warm-ups' first steps
        var times = Timing.Interleaved([
            bench.CopyAll,
            () => emas[0].Update(step[0]++),
            () => emas[1].Update(step[1]++),
            () => emas[2].Update(step[2]++),
            () => emas[3].Update(step[3]++),
        ]);
        var (copy, f32, bf16, f16, eight) = (times[0], times[1], times[2], times[3], times[4]);
        var train = TrainStep(model, architecture, stepBatch);
        Console.WriteLine($"{name,-12} {count,11:N0}  {threads,5}  {Timing.Us(copy)} {Timing.Us(eight)} {Timing.Us(f32)} {Timing.Us(bf16)} {Timing.Us(f16)}  {f32 / copy,7:F2}  {f32 / eight,8:F2}  {bf16 / f32,8:F2}  {f16 / f32,7:F2}  {f32 / train * 100,6:F1} %  {bf16 / train * 100,6:F1} %   (step {Timing.Us(train).Trim()})");
        foreach (var ema in emas) ema.Dispose();
    }

    static void Measure(string name, ModelArchitecture architecture, int threads, int? stepBatch)
    {
        using var bench = new BenchModel(architecture, threads);
        var (model, count) = (bench.Model, bench.Count);

        var one = new EmaSettings { Decays = [0.999] };
        var three = new EmaSettings { Decays = ThreeDecays };
        using var lerpOne = new ExponentialMovingAverage(model, one, null, threads, EmaKernel.Lerp);
        using var fusedOne = new ExponentialMovingAverage(model, one, null, threads, EmaKernel.Fused);
        using var fusedThree = new ExponentialMovingAverage(model, three, null, threads, EmaKernel.Fused);
        using var lerpThree = new ExponentialMovingAverage(model, three, null, threads, EmaKernel.Lerp);
        long n = 0;
        var times = Timing.Interleaved([
            bench.CopyAll,
            () => lerpOne.Update(++n),
            () => fusedOne.Update(++n),
            () => fusedThree.Update(++n),
            () => lerpThree.Update(++n),
        ]);
        var (copy, lerp1, fused1, fused3, lerp3) = (times[0], times[1], times[2], times[3], times[4]);
        var step = stepBatch is { } b ? TrainStep(model, architecture, b) : double.NaN;
        Console.WriteLine($"{name,-12} {count,11:N0}  {threads,5}  {Timing.Us(copy)} {Timing.Us(lerp1)} {Timing.Us(fused1)} {Timing.Us(fused3)} {Timing.Us(lerp3)}  {fused1 / copy,6:F2}  {fused3 / (3 * fused1),9:F2}  {lerp3 / (3 * lerp1),14:F2}  " +
            (double.IsNaN(step) ? "    -" : $"{fused3 / step * 100,5:F2} % of a {Timing.Us(step).Trim()} Adam step (batch {stepBatch})"));
    }

    /// <summary>One Adam step of the engine's (forward, backward, update) on random inputs of the model's shape.</summary>
    static double TrainStep(nn.Module<Tensor, Tensor> model, ModelArchitecture a, int batch)
    {
        using var x = randn(batch, 1, a.Height, a.Width);
        using var y = randint(0, a.Classes, [batch], ScalarType.Int64);
        using var optimizer = new EmaLab.TrainingEngine.Optimization.Adam(model, weightDecay: 0, decoupled: false);
        model.train();
        return Timing.Interleaved([() =>
        {
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            nn.functional.cross_entropy(model.forward(x), y).backward();
            optimizer.Step(1e-3);
        }])[0];
    }
}

/// <summary>A freshly initialised model on the given threads, with a copy of its parameters for the copy_ baseline.</summary>
sealed class BenchModel : IDisposable
{
    readonly Generator _generator = new(1);
    readonly Tensor[] _parameters;
    readonly Tensor[] _copies;

    public BenchModel(ModelArchitecture architecture, int threads)
    {
        set_num_threads(threads);
        Model = ModelFactory.Build(architecture, _generator);
        _parameters = Model.parameters().Select(p => (Tensor)p).ToArray();
        _copies = _parameters.Select(p => p.detach().clone()).ToArray();
        Count = _parameters.Sum(p => p.numel());
    }

    public nn.Module<Tensor, Tensor> Model { get; }
    public long Count { get; }

    /// <summary><c>copy_</c> of every parameter: one word read and one written per element, the bandwidth yardstick.</summary>
    public void CopyAll()
    {
        for (var i = 0; i < _parameters.Length; i++) _copies[i].copy_(_parameters[i]);
    }

    public void Dispose()
    {
        foreach (var copy in _copies) copy.Dispose();
        Model.Dispose();
        _generator.Dispose();
    }
}

static class StepBenchmarks
{
    public static void Run()
    {
        Console.WriteLine("== Training throughput on mnist-10k (batch 128, Adam, EMA with 3 decays, no evaluation) ==");
        Console.WriteLine("model   threads   steps/s   ms/step");
        foreach (var model in new[] { "mlp", "cnn" })
        foreach (var threads in new[] { 1, 2 })
        {
            var spec = new RunSpec
            {
                Dataset = "mnist-10k", Model = model, BatchSize = 128, Steps = 100_000, EvalInterval = 100_000, Threads = threads,
                Ema = new EmaSettings { Decays = [0.99, 0.999, 0.9999] },
            };
            using var session = TrainingSession.Create(spec);
            var quiet = new QuietObserver();
            session.Train(quiet, stopAfterStep: 20); // warm-up (includes the step-0 evaluation)
            var steps = model == "mlp" ? 400 : 100;
            var clock = Stopwatch.StartNew();
            session.Train(quiet, stopAfterStep: session.Step + steps);
            var seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine($"{model,-6} {threads,7}   {steps / seconds,7:F1}   {seconds / steps * 1e3,7:F2}");
        }
        Console.WriteLine();
    }

}

sealed class QuietObserver : ITrainingObserver
{
    public void OnMetric(in MetricPoint point) { }
    public void OnProgress(TrainingProgress progress) { }
    public void OnLog(TrainingLogLevel level, string message) { }
}

static partial class Program
{
    /// <summary>The repository root (the folder holding Dashboard.sln) above the bench's output folder.</summary>
    static string FindRepository()
    {
        var folder = new DirectoryInfo(AppContext.BaseDirectory);
        while (folder is not null && !File.Exists(Path.Combine(folder.FullName, "Dashboard.sln"))) folder = folder.Parent;
        return folder?.FullName ?? throw new InvalidOperationException("Run from inside the repository, or give the output folder.");
    }
}
