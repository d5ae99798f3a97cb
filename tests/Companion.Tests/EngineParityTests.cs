using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.Companion.Tests;

/// <summary>
/// The companion's tracks against the engine's on one scripted trajectory: every preset and option, float32 and
/// low-precision shadows, read after every step, must be identical bit for bit. The engine's own preset tests hold it
/// to each library's update loop, so this holds the companion to them too.
/// </summary>
[Trait("Speed", "Process")]
public sealed class EngineParityTests : IDisposable
{
    const int Steps = 120;
    const int Size = 515; // not a multiple of the vector width: the tails run too

    /// <summary>Groups of at most eight tracks (a run's limit), as the engine's JSON writes them.</summary>
    static readonly string[][] Groups =
    [
        [
            """{"decay": 0.99}""", """{"decay": 0.9, "warmup": "tf"}""",
            """{"decay": 0.95, "warmup": "power", "invGamma": 2, "power": 0.75, "minDecay": 0.1}""", """{"decay": 0.9, "zeroDebias": true}""",
            """{"decay": 0.9, "every": 3, "adjustDecay": true, "startStep": 10}""", """{"decay": 0.9, "init": "first-update"}""",
            """{"decay": 0.99, "dtype": "bfloat16"}""", """{"decay": 0.99, "dtype": "float16"}""",
        ],
        [
            """{"preset": "tensorflow", "decay": 0.9, "warmup": "tf", "zeroDebias": true}""", """{"preset": "tensorflow", "decay": 0.99}""",
            """{"preset": "timm", "decay": 0.95}""", """{"preset": "timm", "decay": 0.95, "warmup": "power", "updateAfterStep": 5}""",
            """{"preset": "diffusers", "decay": 0.95, "warmup": "power"}""", """{"preset": "diffusers", "decay": 0.95, "updateAfterStep": 4}""",
            """{"preset": "ema-pytorch", "decay": 0.95, "updateAfterStep": 10, "every": 3}""", """{"preset": "keras", "decay": 0.9}""",
        ],
        [
            """{"preset": "averaged-model", "decay": 0.9}""", """{"preset": "lightning", "decay": 0.9, "startStep": 5, "every": 2}""",
            """{"preset": "swa", "startStep": 20, "every": 2}""", """{"preset": "swa", "dtype": "bfloat16"}""",
            """{"preset": "tensorflow", "decay": 0.999, "zeroDebias": true, "dtype": "bfloat16"}""", """{"preset": "timm", "decay": 0.9, "dtype": "float16"}""",
            """{"preset": "keras", "decay": 0.99, "dtype": "bfloat16"}""", """{"decay": 0.9, "warmup": "tf", "zeroDebias": true, "every": 2}""",
        ],
        [
            """{"preset": "trl-bema", "every": 6, "updateAfterStep": 10}""", """{"preset": "trl-bema", "every": 4, "minEmaMultiplier": 0.3, "lag": 2, "multiplier": 0.5}""",
            """{"preset": "bema", "every": 7, "updateAfterStep": 20, "multiplier": 0.8}""", """{"preset": "bema", "every": 5, "emaPower": 0, "biasPower": 0.3}""",
            """{"preset": "lawa", "checkpoints": 3, "every": 7}""", """{"preset": "lawa"}""",
            """{"preset": "edm", "halfLifeKimg": 0.5}""", """{"halfLifeSamples": 300, "warmup": "tf"}""",
        ],
        [
            """{"preset": "torchvision", "decay": 0.999, "every": 3}""", """{"preset": "torchvision", "decay": 0.9995, "every": 4, "warmupEpochs": 2}""",
            """{"preset": "torchvision"}""", """{"preset": "edm", "halfLifeKimg": 0.2, "rampupRatio": 0}""",
        ],
    ];

    /// <summary>The batch size and epoch length the rules counted in samples or epochs resolve with (LAWA's default: one epoch).</summary>
    static readonly EmaRunShape Shape = new(32, 11, Steps);

    readonly string _folder = Directory.CreateTempSubdirectory("emalab-parity-").FullName;

    sealed class Weights : nn.Module
    {
        public readonly TorchSharp.Modules.Parameter W;

        public Weights(Tensor initial) : base(nameof(Weights))
        {
            W = new TorchSharp.Modules.Parameter(initial.clone());
            register_parameter("w", W);
        }
    }

    [Fact]
    public async Task Every_preset_of_the_companion_holds_the_engines_shadows_bit_for_bit()
    {
        var trajectory = Trajectory(seed: 7);
        SafeTensors.Write(Path.Combine(_folder, "trajectory.safetensors"), trajectory.Select((w, t) => ($"w/{t}", w)));

        var read = new List<(string, Tensor)>();
        var names = new List<List<string>>();
        for (var g = 0; g < Groups.Length; g++)
        {
            var tracks = Groups[g].Select(json => JsonSerializer.Deserialize<EmaTrackSettings>(json, JsonSerializerOptions.Web)!).ToList();
            using var model = new Weights(trajectory[0]);
            using var reader = new Weights(zeros(Size));
            using var ema = new ExponentialMovingAverage(model, new EmaSettings { Tracks = tracks }, Shape);
            names.Add(ema.Shadows.Select(s => s.Track).ToList());
            for (var t = 1; t <= Steps; t++)
            {
                using (no_grad()) model.W.copy_(trajectory[t]);
                ema.Update(t);
                for (var k = 0; k < ema.Shadows.Count; k++)
                {
                    ema.WriteInto(k, reader);
                    read.Add(($"g{g}/{ema.Shadows[k].Track}/{t}", reader.W.detach().clone()));
                }
            }
        }
        SafeTensors.Write(Path.Combine(_folder, "engine.safetensors"), read, new Dictionary<string, string>
        {
            ["groups"] = JsonSerializer.Serialize(Groups.Select(g => g.Select(json => JsonDocument.Parse(json).RootElement))),
            ["names"] = JsonSerializer.Serialize(names),
            ["steps"] = Steps.ToString(),
            ["batchSize"] = Shape.BatchSize.ToString(),
            ["batchesPerEpoch"] = Shape.BatchesPerEpoch.ToString(),
            ["totalSteps"] = Shape.TotalSteps.ToString(),
        });

        var (code, output) = await Python.RunAsync("engine_parity.py", _folder);
        Assert.True(code == 0, output);
        Assert.Contains($"{Groups.Sum(g => g.Length)} tracks identical at all {Steps} steps", output);
    }

    /// <summary>A random walk with steps of very different sizes (list[t] the weights after step t).</summary>
    static List<Tensor> Trajectory(int seed)
    {
        using var generator = new Generator((ulong)seed);
        var list = new List<Tensor> { randn([Size], generator: generator) };
        for (var t = 1; t <= Steps; t++) list.Add(list[^1] + randn([Size], generator: generator) * (t % 7 == 0 ? 1.0 : 0.01));
        return list;
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
