using System.Diagnostics;
using System.Globalization;
using EmaLab.TrainingEngine;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using static TorchSharp.torch;

/// <summary>
/// The diffusion workload on Fashion-MNIST: the U-Net's training step against the documentation's own PyTorch class in
/// Debian's PyTorch (bench/pytorch/unet_step.py) on 1 and 2 threads, each candidate in a fresh process, rounds
/// alternating; DDIM sampling in images per second; what one sample-quality evaluation of a track costs (sampling,
/// features, the distance); the EMA update's share of a step; the memory of a run with 8 tracks.
/// <c>diffusion [widths] [blocks] [attention] [batch]</c> measures another shape (default: the default run's).
/// </summary>
static class DiffusionBenchmarks
{
    const string Dataset = "fashion-mnist";
    const int Steps = 20;

    public sealed record Shape(int[] Widths, int Blocks, bool Attention, int Batch)
    {
        public static Shape Default { get; } = new(ModelArchitecture.DefaultUNetChannels, ModelArchitecture.DefaultUNetBlocks, true, 64);

        public static Shape Parse(IReadOnlyList<string> args) => new(
            args.Count > 0 ? args[0].Split(',').Select(int.Parse).ToArray() : Default.Widths,
            args.Count > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : Default.Blocks,
            args.Count > 2 ? args[2] != "0" : Default.Attention,
            args.Count > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : Default.Batch);

        public string[] Arguments => [string.Join(",", Widths), $"{Blocks}", Attention ? "1" : "0", $"{Batch}"];

        public override string ToString() => $"widths {string.Join(", ", Widths)}, {Blocks} block(s) a level, attention {(Attention ? "on" : "off")}, batch {Batch}";
    }

    static RunSpec Spec(Shape shape, int threads, double[]? decays = null, DiffusionSettings? diffusion = null) => new()
    {
        Dataset = Dataset, Model = ModelArchitecture.UNet, Channels = shape.Widths, Blocks = shape.Blocks, Attention = shape.Attention,
        // The step-0 evaluation (denoising loss only) on a small subset: the warm-up, not what is measured.
        BatchSize = shape.Batch, Steps = 1_000_000, EvalInterval = 1_000_000, EvalSubset = 500, Threads = threads, Optimizer = RunSpec.Adam,
        Ema = new EmaSettings { Decays = decays ?? [0.99, 0.999, 0.9999] }, Diffusion = diffusion,
    };

    public static void Run(IReadOnlyList<string> args)
    {
        if (DatasetCatalog.MissingReason(Dataset) is { } missing)
        {
            Console.WriteLine($"== Diffusion on Fashion-MNIST: not measured ({missing}) ==");
            return;
        }
        var shape = Shape.Parse(args);
        StepAgainstPyTorch(shape);
        Sampling(shape);
        EmaShare(shape);
        Memory(shape);
    }

    /// <summary>The child process's side: <c>diffusion-step threads steps widths blocks attention batch</c> prints ms per step (median of 5 rounds).</summary>
    public static void ChildStep(int threads, int steps, IReadOnlyList<string> shape)
    {
        using var session = TrainingSession.Create(Spec(Shape.Parse(shape), threads));
        session.SystemMetricsInterval = TimeSpan.Zero;
        var quiet = new QuietObserver();
        session.Train(quiet, stopAfterStep: 3); // warm-up (and the step-0 evaluation)
        var rounds = new List<double>();
        for (var r = 0; r < 5; r++)
        {
            var clock = Stopwatch.StartNew();
            session.Train(quiet, stopAfterStep: session.Step + steps / 5);
            rounds.Add(clock.Elapsed.TotalSeconds / (steps / 5) * 1e3);
        }
        Console.WriteLine(rounds.Order().ElementAt(2).ToString("F4", CultureInfo.InvariantCulture));
    }

    static void StepAgainstPyTorch(Shape shape)
    {
        Console.WriteLine($"== U-Net training step on {Dataset} ({shape}; Adam, EMA of 3 decays) ==");
        Console.WriteLine("threads   engine        PyTorch       engine/PyTorch   steps/s (engine)");
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var script = Path.Combine(AppContext.BaseDirectory, "pytorch", "unet_step.py");
        var self = typeof(DiffusionBenchmarks).Assembly.Location;
        foreach (var threads in new[] { 1, 2 })
        {
            var (engine, pytorch) = (new List<double>(), new List<double>());
            for (var round = 0; round < 3; round++)
            {
                if (ResNetBenchmarks.Child("dotnet", [self, "diffusion-step", $"{threads}", $"{Steps}", .. shape.Arguments], threads, null) is { } a) engine.Add(a);
                if (ResNetBenchmarks.Child(python, [script, $"{threads}", $"{Steps}", .. shape.Arguments], threads, null) is { } b) pytorch.Add(b);
            }
            var (e, p) = (ResNetBenchmarks.Median(engine), ResNetBenchmarks.Median(pytorch));
            Console.WriteLine($"{threads,7}   {e,8:F1} ms   {(pytorch.Count == 0 ? "not measured" : $"{p,8:F1} ms")}   {(pytorch.Count == 0 ? "" : $"{e / p,14:F2}")}   {1e3 / e,10:F2}");
            Console.WriteLine($"          rounds: engine {ResNetBenchmarks.Join(engine)}; PyTorch {ResNetBenchmarks.Join(pytorch)}");
        }
        Console.WriteLine();
    }

    /// <summary>DDIM sampling speed, and one track's sample-quality evaluation split into its parts, on 2 threads.</summary>
    static void Sampling(Shape shape)
    {
        const int count = 500;
        var settings = new DiffusionSettings { Samples = count, FinalSamples = count };
        Console.WriteLine($"== Sampling and one track's sample-quality evaluation ({count} samples, DDIM {settings.SamplingSteps} steps, 2 threads) ==");
        using var session = TrainingSession.Create(Spec(shape, 2, diffusion: settings) with { EvalSubset = 2000 });
        session.SystemMetricsInterval = TimeSpan.Zero;
        session.Train(new QuietObserver(), stopAfterStep: 1);
        set_num_threads(2);
        var scorer = session.Evaluator.Diffusion!;
        var model = (DiffusionUNet)session.LoadTrack(MetricKeys.RawTrack);
        Tensor? samples = null;
        var sampling = Time(() => { samples?.Dispose(); samples = scorer.Sample(model, count, CancellationToken.None); });
        var distance = Time(() => scorer.FrechetDistanceOf(samples!));
        var grid = Time(() => scorer.Grid(samples!));
        var loss = Time(() => scorer.DenoisingLoss(model, subset: true, CancellationToken.None));
        samples!.Dispose();
        Console.WriteLine($"DDIM sampling: {sampling:F2} s for {count} ({count / sampling:F0} images/s, {count * settings.SamplingSteps / sampling:F0} U-Net image passes/s)");
        Console.WriteLine($"features + Fréchet distance: {distance * 1e3:F0} ms; grid PNG: {grid * 1e3:F0} ms; denoising loss on 2,000 held-out images: {loss:F2} s");
        Console.WriteLine($"one track's evaluation with sample quality: {sampling + distance + grid + loss:F2} s (an 8-track run: {8 * (sampling + distance + grid + loss):F1} s an evaluation)");
        Console.WriteLine();
    }

    static double Time(Action action)
    {
        action();
        var runs = new List<double>();
        for (var i = 0; i < 3; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            runs.Add(clock.Elapsed.TotalSeconds);
        }
        return runs.Order().ElementAt(1);
    }

    static void EmaShare(Shape shape)
    {
        Console.WriteLine("== EMA share of a U-Net step (3 tracks, 2 threads) ==");
        using var session = TrainingSession.Create(Spec(shape, 2));
        session.SystemMetricsInterval = TimeSpan.Zero;
        var quiet = new QuietObserver();
        session.Train(quiet, stopAfterStep: 3);
        var times = Timing.Interleaved([
            () => session.Train(quiet, stopAfterStep: session.Step + 1),
            () => session.Ema.Update(session.Step),
        ], secondsPerSample: 0.5, rounds: 5);
        Console.WriteLine($"step {Timing.Us(times[0])}, EMA update {Timing.Us(times[1])}: {times[1] / times[0]:P2} of the step " +
                          $"({ModelFactory.ParameterCount(session.LiveModel):N0} parameters)");
        Console.WriteLine();
    }

    static void Memory(Shape shape)
    {
        Console.WriteLine("== Memory of a U-Net run with 8 EMA tracks on Fashion-MNIST (resident set, fresh process) ==");
        var self = typeof(DiffusionBenchmarks).Assembly.Location;
        using var process = Process.Start(new ProcessStartInfo("dotnet", [self, "diffusion-memory", .. shape.Arguments]) { RedirectStandardOutput = true })!;
        Console.Write(process.StandardOutput.ReadToEnd());
        process.WaitForExit();
        Console.WriteLine();
    }

    public static void ChildMemory(IReadOnlyList<string> shape)
    {
        var decays = new[] { 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995 };
        using (var warm = tensor(new float[] { 1 })) { } // libtorch loaded
        var baseline = Timing.ResidentMegabytes();
        var settings = new DiffusionSettings { Samples = 500, FinalSamples = 2000 };
        using var session = TrainingSession.Create(Spec(Shape.Parse(shape), 2, decays, settings) with { EvalSubset = 2000 });
        session.SystemMetricsInterval = TimeSpan.Zero;
        var created = Timing.ResidentMegabytes();
        session.Train(new QuietObserver(), stopAfterStep: 10);
        var trained = Timing.ResidentMegabytes();
        var scorer = session.Evaluator.Diffusion!;
        using (var samples = scorer.Sample((DiffusionUNet)session.LoadTrack(MetricKeys.RawTrack), 500, CancellationToken.None)) scorer.FrechetDistanceOf(samples);
        var evaluated = Timing.ResidentMegabytes();
        var state = session.LiveModel.state_dict().Values.Where(t => t.is_floating_point()).Sum(t => t.numel());
        double Mb(long floats) => floats * 4 / 1048576.0;
        Console.WriteLine($"libtorch loaded                     {baseline,7:F0} MB");
        Console.WriteLine($"+ session built                     {created - baseline,7:F0} MB   (images as float32 {Mb(70_000L * 784):F0} MB, held-out noise {Mb(10_000L * 784):F0} MB, " +
                          $"2,000 samples' noise {Mb(2_000L * 784):F0} MB; 8 shadows of {state:N0} floats {Mb(8 * state):F1} MB)");
        Console.WriteLine($"+ 10 steps                          {trained - created,7:F0} MB   (Adam's moments and gradients {Mb(3 * state):F1} MB; a batch's activations; allocator caches)");
        Console.WriteLine($"+ 500 samples scored                {evaluated - trained,7:F0} MB");
        Console.WriteLine($"total resident                      {evaluated,7:F0} MB");
    }
}
