using System.Diagnostics;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Optimization;
using EmaLab.TrainingEngine.Training;
using static TorchSharp.torch;

/// <summary>
/// The engine's optimizer steps against TorchSharp's (the update alone, on the same gradients), and the
/// engine's whole training step against PyTorch's (bench/pytorch/step.py, run when python3 has torch).
/// </summary>
static class OptimizerBenchmarks
{
    public static void Run()
    {
        Console.WriteLine("== Optimizer update (all parameters, gradients fixed) ==");
        Console.WriteLine("model         params      threads  optimizer  TorchSharp   engine       engine/TorchSharp");
        var mnistMlp = new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [256, 256] };
        var large = new ModelArchitecture { Kind = "mlp", Height = 28, Width = 28, Classes = 10, Hidden = [4096, 4096, 4096, 4096] };
        foreach (var kind in new[] { "adam", "adamw", "sgd" }) Update("mlp-mnist", mnistMlp, kind, threads: 1);
        foreach (var kind in new[] { "adam", "sgd" }) Update("mlp-53M", large, kind, threads: 2);
        Console.WriteLine();

        Console.WriteLine("== Whole training step vs PyTorch (mnist-10k MLP 784-256-256-10, batch 128, Adam, EMA K=3, 1 thread) ==");
        WholeStep();
        Console.WriteLine();
    }

    static void Update(string name, ModelArchitecture architecture, string kind, int threads)
    {
        set_num_threads(threads);
        using var generator = new Generator(1);
        using var model = ModelFactory.Build(architecture, generator);
        using (var x = randn(64, 1, architecture.Height, architecture.Width))
        using (var y = randint(0, architecture.Classes, [64], ScalarType.Int64))
        using (var scope = NewDisposeScope())
            nn.functional.cross_entropy(model.forward(x), y).backward();

        using var torchSharp = kind switch
        {
            "sgd" => (TorchSharp.Modules.OptimizerHelper)optim.SGD(model.parameters(), 1e-4, momentum: 0.9),
            "adamw" => optim.AdamW(model.parameters(), 1e-4, weight_decay: 0.01),
            _ => optim.Adam(model.parameters(), 1e-4),
        };
        using var engine = kind switch
        {
            "sgd" => (Optimizer)new Sgd(model, 0.9, 0, threads),
            "adamw" => new Adam(model, 0.01, decoupled: true, threads),
            _ => new Adam(model, 0, decoupled: false, threads),
        };
        var times = Timing.Interleaved([
            () => { using var scope = NewDisposeScope(); torchSharp.step(); },
            () => engine.Step(1e-4),
        ]);
        var count = model.parameters().Sum(p => p.numel());
        Console.WriteLine($"{name,-12} {count,11:N0}  {threads,5}    {kind,-8} {Timing.Us(times[0])} {Timing.Us(times[1])}  {times[1] / times[0],8:F2}");
    }

    static void WholeStep()
    {
        var spec = new RunSpec
        {
            Dataset = "mnist-10k", Model = "mlp", Hidden = [256, 256], BatchSize = 128, Steps = 1_000_000, EvalInterval = 1_000_000, Threads = 1,
            Ema = new EmaSettings { Decays = [0.99, 0.999, 0.9999] },
        };
        using var session = TrainingSession.Create(spec);
        var quiet = new QuietObserver();
        session.Train(quiet, stopAfterStep: 50);
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var script = Path.Combine(AppContext.BaseDirectory, "pytorch", "step.py");
        var engine = new List<double>();
        var pytorch = new List<double>();
        for (var round = 0; round < 3; round++)
        {
            const int steps = 700;
            var clock = Stopwatch.StartNew();
            session.Train(quiet, stopAfterStep: session.Step + steps);
            engine.Add(clock.Elapsed.TotalSeconds / steps * 1e3);
            if (RunPython(python, script) is { } ms) pytorch.Add(ms);
        }
        var e = engine.Order().ElementAt(1);
        Console.WriteLine($"engine  {e:F3} ms/step   (rounds: {string.Join(", ", engine.Select(v => v.ToString("F3")))})");
        if (pytorch.Count == 0)
        {
            Console.WriteLine("PyTorch: not measured (python3 with torch not found; on Debian: apt-get install python3-torch)");
            return;
        }
        var p = pytorch.Order().ElementAt(pytorch.Count / 2);
        Console.WriteLine($"PyTorch {p:F3} ms/step   (rounds: {string.Join(", ", pytorch.Select(v => v.ToString("F3")))}; torch {PythonTorchVersion(python)}, BLAS: {BlasOf(python)})");
        Console.WriteLine($"engine/PyTorch {e / p:F2}");
    }

    static double? RunPython(string python, string script)
    {
        try
        {
            // One thread everywhere, as the engine's run: torch, OpenMP and OpenBLAS (Debian's torch uses the system BLAS;
            // with only the reference libblas3 installed it is ~25x slower: install libopenblas0 for a fair comparison).
            using var process = Process.Start(new ProcessStartInfo(python, [script, "1", "700"])
            {
                RedirectStandardOutput = true, RedirectStandardError = true,
                Environment = { ["OMP_NUM_THREADS"] = "1", ["OPENBLAS_NUM_THREADS"] = "1" },
            })!;
            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0 && double.TryParse(output.Trim(), System.Globalization.CultureInfo.InvariantCulture, out var ms) ? ms : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    static string BlasOf(string python)
    {
        var blas = "/usr/lib/x86_64-linux-gnu/libblas.so.3";
        return File.Exists(blas) ? Path.GetFileName(Path.GetDirectoryName(new FileInfo(blas).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? blas)!) : "unknown";
    }

    static string PythonTorchVersion(string python)
    {
        using var process = Process.Start(new ProcessStartInfo(python, ["-c", "import torch; print(torch.__version__)"]) { RedirectStandardOutput = true })!;
        var version = process.StandardOutput.ReadToEnd().Trim();
        process.WaitForExit();
        return version;
    }
}
