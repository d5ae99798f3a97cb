using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.Companion.Tests;

/// <summary>
/// Post-hoc EMA from a script: the companion's power-function profiles and snapshot files against the engine's on one
/// trajectory (identical bit for bit, metadata included), and the engine's reconstruction of any σ_rel from the
/// companion's files equal to its reconstruction from its own.
/// </summary>
[Trait("Speed", "Process")]
public sealed class PostHocParityTests : IDisposable
{
    const int Steps = 90;
    const int Size = 133;
    const int SnapshotEvery = 20;
    static readonly double[] SigmaRels = [0.05, 0.1];

    readonly string _folder = Directory.CreateTempSubdirectory("emalab-posthoc-parity-").FullName;

    /// <summary>A weight and a float buffer that is not averaged (batch-norm statistics under the copy policy).</summary>
    sealed class Model : nn.Module
    {
        public readonly TorchSharp.Modules.Parameter W;
        public readonly Tensor Running;

        public Model(Tensor initial) : base(nameof(Model))
        {
            W = new TorchSharp.Modules.Parameter(initial.clone());
            Running = zeros(3);
            register_parameter("w", W);
            register_buffer("running", Running);
        }
    }

    [Fact]
    public async Task A_scripts_snapshots_equal_the_engines_and_reconstruct_the_same_weights()
    {
        using var generator = new Generator(11);
        var trajectory = new List<Tensor> { randn([Size], generator: generator) };
        for (var t = 1; t <= Steps; t++) trajectory.Add(trajectory[^1] + randn([Size], generator: generator) * 0.05);
        SafeTensors.Write(Path.Combine(_folder, "trajectory.safetensors"), trajectory.Select((w, t) => ($"w/{t}", w)),
            new Dictionary<string, string>
            {
                ["sigma_rels"] = JsonSerializer.Serialize(SigmaRels), ["snapshot_every"] = SnapshotEvery.ToString(), ["steps"] = Steps.ToString(),
            });

        var engineFolder = Path.Combine(_folder, "engine");
        using (var model = new Model(trajectory[0]))
        using (var profiles = ExponentialMovingAverage.PowerFunction(model, SigmaRels, BatchNormPolicy.Copy))
            for (var t = 1; t <= Steps; t++)
            {
                using (no_grad())
                {
                    model.W.copy_(trajectory[t]);
                    model.Running.fill_(t); // the live buffer a snapshot copies
                }
                profiles.Update(t);
                if (t % SnapshotEvery == 0 || t == Steps) PostHocSnapshots.Write(profiles, SigmaRels, engineFolder, t);
            }

        var (code, output) = await Python.RunAsync("posthoc_parity.py", _folder);
        Assert.True(code == 0, output);
        var companionFolder = Path.Combine(_folder, "companion");
        Assert.Equal(PostHocSnapshots.Steps(engineFolder), PostHocSnapshots.Steps(companionFolder));

        foreach (var target in new[] { 0.03, 0.07, 0.15 })
        {
            var fromEngine = PostHocSnapshots.Reconstruct(engineFolder, SigmaRels, target);
            var fromCompanion = PostHocSnapshots.Reconstruct(companionFolder, SigmaRels, target);
            Assert.Equal(fromEngine.Keys.Order(), fromCompanion.Keys.Order());
            foreach (var (name, tensor) in fromEngine)
                Assert.True(tensor.dtype == fromCompanion[name].dtype && tensor.eq(fromCompanion[name]).all().item<bool>(), $"σ_rel {target}: {name} differs");
        }
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
