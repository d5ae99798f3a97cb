using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Formats;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using static TorchSharp.torch;

namespace EmaLab.Companion.Tests;

/// <summary>
/// docs/training.md's PyTorch U-Net and DDIM sampler, run as they stand there, against the engine: a seeded engine network's
/// weights load into the documented class by name, and for the same input and the same noise its predicted noise and its
/// DDIM samples are the engine's (float32 tolerance).
/// </summary>
[Trait("Speed", "Process")]
public sealed class DocsDiffusionTests : IDisposable
{
    readonly string _folder = Directory.CreateTempSubdirectory("emalab-diffusion-docs-").FullName;

    [Fact]
    public async Task The_documented_unet_and_ddim_reproduce_the_engines_noise_predictions_and_samples()
    {
        var weights = Path.Combine(_folder, "unet.safetensors");
        var data = Path.Combine(_folder, "data.safetensors");
        var schedule = NoiseSchedule.Linear();
        using (var net = new DiffusionUNet(new DiffusionUNet.Settings(1, [8, 16], BlocksPerLevel: 1, MiddleAttention: true)))
        using (var generator = new Generator(21))
        {
            ModelFactory.Initialise(net, generator);
            SafeTensors.Write(weights, net.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
            using var _ = no_grad();
            using var x = randn([2, 1, 8, 8], generator: generator);
            using var t = tensor(new long[] { 3, 700 });
            using var predicted = net.forward(x, t);
            using var noise = randn([2, 1, 8, 8], generator: generator);
            using var samples = Samplers.Ddim((input, step) => net.forward(input, full([input.shape[0]], step, ScalarType.Int64)), schedule, noise, steps: 10);
            SafeTensors.Write(data, [("x", x), ("t", t), ("predicted", predicted), ("noise", noise), ("samples", samples)]);
        }

        var docs = await File.ReadAllTextAsync(Path.Combine(Python.RepositoryRoot, "docs", "training.md"));
        var script = Path.Combine(_folder, "check.py");
        await File.WriteAllTextAsync(script,
            DocsPython(docs) +
            $$"""
            def load_plain(path):
                with open(path, "rb") as f:
                    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
                    body = f.read()
                header.pop("__metadata__", None)
                dtypes = {"F32": torch.float32, "I64": torch.int64}
                return {k: torch.frombuffer(bytearray(body[v["data_offsets"][0]:v["data_offsets"][1]]), dtype=dtypes[v["dtype"]]).reshape(v["shape"]) for k, v in header.items()}
            torch.set_num_threads(1)
            model = DiffusionUNet(in_channels=1, widths=(8, 16), blocks=1, attention=True)
            model.load_state_dict(load_plain({{JsonSerializer.Serialize(weights)}}))
            model.eval()
            d = load_plain({{JsonSerializer.Serialize(data)}})
            with torch.no_grad():
                print((model(d["x"], d["t"]) - d["predicted"]).abs().max().item(), d["predicted"].abs().max().item())
            print((ddim_sample(model, linear_alphas_cumprod(), d["noise"], 10) - d["samples"]).abs().max().item(), d["samples"].abs().max().item())
            """);
        var (exitCode, output) = await Python.RunFromRootAsync(script);
        Assert.True(exitCode == 0, output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var (predictionGap, predictionScale) = DocsBlocks.TwoNumbers(lines[^2]);
        var (sampleGap, sampleScale) = DocsBlocks.TwoNumbers(lines[^1]);
        Assert.True(predictionScale > 0.01 && predictionGap <= 1e-5 * Math.Max(1, predictionScale), $"ε: PyTorch differs by {predictionGap} (values up to {predictionScale})");
        Assert.True(sampleGap <= 1e-4 * Math.Max(1, sampleScale), $"DDIM samples: PyTorch differs by {sampleGap} (values up to {sampleScale})");
    }


    [Fact]
    public async Task An_exported_ema_checkpoint_of_a_diffusion_run_loads_in_pytorch_and_samples_as_the_engine()
    {
        var checkpoint = Path.Combine(_folder, "ema.safetensors");
        var data = Path.Combine(_folder, "data.safetensors");
        var spec = new RunSpec
        {
            Model = ModelArchitecture.UNet, Channels = [8, 16], Blocks = 1, Steps = 30, EvalInterval = 30, BatchSize = 32, LearningRate = 3e-3,
            Diffusion = new DiffusionSettings { SamplingSteps = 2, Samples = 100, FinalSamples = 100 }, Ema = new EmaSettings { Decays = [0.9] },
        };
        using (var session = TrainingSession.Create(spec, "docs"))
        {
            session.Train(new NoObserver());
            CheckpointExport.Export(session, "ema-0.9", checkpoint);
            var model = (DiffusionUNet)session.LoadTrack("ema-0.9");
            using var generator = new Generator(5);
            using var _ = no_grad();
            using var noise = randn([3, 1, 8, 8], generator: generator);
            using var samples = Samplers.Ddim((input, step) => model.forward(input, full([input.shape[0]], step, ScalarType.Int64)), NoiseSchedule.Linear(), noise, steps: 10);
            SafeTensors.Write(data, [("noise", noise), ("samples", samples)], new Dictionary<string, string> { ["what"] = "the noise and the engine's samples" });
        }

        var docs = await File.ReadAllTextAsync(Path.Combine(Python.RepositoryRoot, "docs", "training.md"));
        var script = Path.Combine(_folder, "exported.py");
        await File.WriteAllTextAsync(script,
            DocsPython(docs) +
            $$"""
            torch.set_num_threads(1)
            state, meta = load({{JsonSerializer.Serialize(checkpoint)}})
            model = build_unet(json.loads(meta["architecture"]))
            model.load_state_dict(state)          # strict: every name, no other
            model.eval()
            d, _ = load({{JsonSerializer.Serialize(data)}})
            print(meta["track"], meta["eval_loss"])
            print((ddim_sample(model, linear_alphas_cumprod(), d["noise"], 10) - d["samples"]).abs().max().item(), d["samples"].abs().max().item())
            """);
        var (exitCode, output) = await Python.RunFromRootAsync(script);
        Assert.True(exitCode == 0, output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.StartsWith("ema-0.9 ", lines[^2]);
        var (gap, scale) = DocsBlocks.TwoNumbers(lines[^1]);
        Assert.True(scale > 0.01 && gap <= 1e-4 * Math.Max(1, scale), $"DDIM samples of the exported EMA: PyTorch differs by {gap} (values up to {scale})");
    }

    /// <summary>The docs' checkpoint reader (its functions, not its example call), then the U-Net and DDIM block, as the docs give them.</summary>
    static string DocsPython(string docs) =>
        DocsBlocks.PythonAfter(docs, "## Loading an exported checkpoint in PyTorch").Split("state, meta = load(")[0] + "\n" +
        DocsBlocks.PythonAfter(docs, "## The diffusion U-Net and DDIM sampler in PyTorch") + "\n";

    sealed class NoObserver : ITrainingObserver
    {
        public void OnMetric(in MetricPoint point) { }
        public void OnProgress(TrainingProgress progress) { }
        public void OnLog(TrainingLogLevel level, string message) { }
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
