using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Companion.Tests;

/// <summary>
/// The documentation's PyTorch lines (docs/training.md), run as they stand there, on checkpoints the engine exported: its model definitions
/// (every kind) load each file with <c>load_state_dict</c> and score the held-out split as the engine did.
/// </summary>
[Trait("Speed", "Process")]
public sealed class DocsPyTorchTests : IDisposable
{
    readonly string _folder = Directory.CreateTempSubdirectory("emalab-readme-").FullName;

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    [InlineData("resnet")]
    public async Task The_readmes_pytorch_lines_load_an_exported_checkpoint_and_score_it_as_the_engine_did(string model)
    {
        var spec = new RunSpec
        {
            Dataset = "mnist-10k", Model = model, Hidden = model == "mlp" ? [32] : null, Channels = model switch { "cnn" => [4, 8], "resnet" => [16, 16], _ => null },
            Blocks = model == "resnet" ? 1 : null, Steps = 60, EvalInterval = 60, BatchSize = 32, LearningRate = 0.003,
            Ema = new EmaSettings { Decays = [0.9] }, Threads = 2,
        };
        var checkpoint = Path.Combine(_folder, model + ".safetensors");
        using (var session = TrainingSession.Create(spec, "readme"))
        {
            Assert.Equal(TrainingOutcome.Completed, session.Train(new Silent()).Outcome);
            // The raw track after 60 steps (the EMA of a ResNet this young is still far behind): batch-norm statistics
            // included, so the PyTorch side must load buffers too.
            CheckpointExport.Export(session, "raw", checkpoint);
        }

        var readme = await File.ReadAllTextAsync(Path.Combine(Python.RepositoryRoot, "docs", "training.md"));
        var script = Path.Combine(_folder, model + ".py");
        await File.WriteAllTextAsync(script, DocsBlocks.PythonAfter(readme, "## Models (PyTorch equivalents)") + "\n" +
            DocsBlocks.PythonAfter(readme, "## Loading an exported checkpoint in PyTorch").Replace("\"checkpoint.safetensors\"", JsonSerializer.Serialize(checkpoint)));
        var (exitCode, output) = await Python.RunFromRootAsync(script);
        Assert.True(exitCode == 0, output);

        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var (accuracy, engineAccuracy) = DocsBlocks.TwoNumbers(lines[^2]);
        var (loss, engineLoss) = DocsBlocks.TwoNumbers(lines[^1]);
        Assert.Equal(engineAccuracy, accuracy);
        Assert.InRange(engineAccuracy, 0.3, 1.0); // trained, not a random model's 10 %
        Assert.Equal(engineLoss, loss, tolerance: 2e-5 * engineLoss);
    }

    sealed class Silent : ITrainingObserver
    {
        public void OnMetric(in MetricPoint point) { }
        public void OnProgress(TrainingProgress progress) { }
        public void OnLog(TrainingLogLevel level, string message) { }
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
