using System.Diagnostics;
using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Training;

/// <summary>
/// Trains the reference network whose penultimate features the diffusion workload's Fréchet distance is measured on (the
/// "FID for MNIST" idea: a network fitted to the data instead of Inception): the engine's ResNet-8 on Fashion-MNIST with
/// the spec below, exported (its EMA track, the better of the two at the end) to
/// src/TrainingEngine/Diffusion/Reference/, with the spec and the test accuracy beside it. Deterministic: the same spec
/// gives the same file.
///
///   dotnet run -c Release --project bench/EmaLab.Bench -- reference-features [output folder]
/// </summary>
static class ReferenceFeatures
{
    public static readonly RunSpec Spec = new()
    {
        Dataset = "fashion-mnist", Model = "resnet", Channels = [16, 32, 64], Blocks = 1, Optimizer = RunSpec.Adam, LearningRate = 0.003,
        LearningRateWarmup = 100, BatchSize = 128, Steps = 2400, EvalInterval = 2400, Seed = 1, Threads = 2,
        Ema = new EmaSettings { Decays = [0.995] },
    };

    public static void Run(string folder)
    {
        var clock = Stopwatch.StartNew();
        using var session = TrainingSession.Create(Spec, "reference-features");
        session.SystemMetricsInterval = TimeSpan.Zero;
        var result = session.Train(new QuietObserver());
        var (track, evaluation) = result.LastEvaluation.MaxBy(e => e.Value.Accuracy);
        Directory.CreateDirectory(folder);
        var weights = Path.Combine(folder, "fashion-mnist-resnet8.safetensors");
        CheckpointExport.Export(session, track, weights);
        File.WriteAllText(Path.Combine(folder, "fashion-mnist-resnet8.json"), JsonSerializer.Serialize(new
        {
            purpose = "Reference network of the diffusion workload's Fréchet distance: its penultimate features (global average pooling, 64 values).",
            reproduce = "dotnet run -c Release --project bench/EmaLab.Bench -- reference-features",
            track,
            testAccuracy = evaluation.Accuracy,
            testLoss = evaluation.Loss,
            spec = JsonSerializer.SerializeToElement(Spec, RunSpec.JsonOptions),
        }, new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        Console.WriteLine($"reference network: {track}, test accuracy {evaluation.Accuracy:P2}, loss {evaluation.Loss:F4}, trained in {clock.Elapsed.TotalSeconds:F0} s -> {weights}");
    }
}
