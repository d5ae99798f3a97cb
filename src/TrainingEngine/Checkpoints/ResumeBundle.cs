using System.IO.Compression;
using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.TrainingEngine.Checkpoints;

/// <summary>
/// Everything needed to continue a run exactly as if it had not stopped, as a zip of inspectable parts:
/// <c>bundle.json</c> (spec, step, data position, every shadow's counters), <c>model.safetensors</c>
/// (live weights and buffers), <c>ema.safetensors</c> (every shadow) and <c>optimizer.safetensors</c> (the
/// optimizer's moments or momentum buffers, named <c>&lt;parameter&gt;/&lt;state&gt;</c>). The data order and the learning rate are functions of (seed, step) and no torch
/// random numbers are drawn after initialisation, so nothing else is needed.
/// </summary>
public static class ResumeBundle
{
    /// <summary>2: the engine's own optimizer state (<c>optimizer.safetensors</c> + its step count); 1 held TorchSharp's <c>optimizer.bin</c>.</summary>
    public const int FormatVersion = 2;
    const string ManifestEntry = "bundle.json";
    const string ModelEntry = "model.safetensors";
    const string EmaEntry = "ema.safetensors";
    const string OptimizerEntry = "optimizer.safetensors";
    const string TorchSharpOptimizerEntry = "optimizer.bin";
    const string PostHocEntry = "posthoc.safetensors";

    sealed record Manifest(int FormatVersion, string RunId, JsonElement Spec, long Step, long TotalSteps,
        long NextEpoch, int NextBatch, IReadOnlyList<EmaShadowCounters> Ema, IReadOnlyList<EmaShadowCounters>? PostHoc = null, long OptimizerSteps = 0);

    public static void Save(TrainingSession session, Stream stream)
    {
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
        var batches = new BatchPosition(session);
        var manifest = new Manifest(FormatVersion, session.RunId, JsonSerializer.SerializeToElement(session.Spec, RunSpec.JsonOptions),
            session.Step, session.TotalSteps, batches.Epoch, batches.Batch, session.Ema.Counters(), session.PostHocEma?.Counters(), session.Optimizer.Steps);
        using (var entry = zip.CreateEntry(ManifestEntry, CompressionLevel.Fastest).Open())
            JsonSerializer.Serialize(entry, manifest, RunSpec.JsonOptions);
        using (var entry = zip.CreateEntry(ModelEntry, CompressionLevel.NoCompression).Open())
            SafeTensors.Write(entry, session.LiveModel.state_dict().Select(p => (p.Key, p.Value)));
        using (var entry = zip.CreateEntry(EmaEntry, CompressionLevel.NoCompression).Open())
            SafeTensors.Write(entry, session.Ema.StateTensors());
        if (session.PostHocEma is { } postHoc)
            using (var entry = zip.CreateEntry(PostHocEntry, CompressionLevel.NoCompression).Open())
                SafeTensors.Write(entry, postHoc.StateTensors());
        using (var entry = zip.CreateEntry(OptimizerEntry, CompressionLevel.NoCompression).Open())
            SafeTensors.Write(entry, session.Optimizer.StateTensors());
    }

    /// <summary>Writes the bundle next to <paramref name="path"/> and renames it into place, so a crash never leaves a half-written bundle.</summary>
    public static void SaveAtomically(TrainingSession session, string path) => AtomicFile.Write(path, ApproximateBytes(session), stream => Save(session, stream));

    /// <summary>About the size of a bundle of <paramref name="session"/>: its model, shadows, optimizer state and post-hoc profiles.</summary>
    public static long ApproximateBytes(TrainingSession session) =>
        SafeTensors.ApproximateBytes(session.LiveModel.state_dict().Select(p => (p.Key, p.Value))) + SafeTensors.ApproximateBytes(session.Ema.StateTensors()) +
        SafeTensors.ApproximateBytes(session.Optimizer.StateTensors()) + (session.PostHocEma is { } p ? SafeTensors.ApproximateBytes(p.StateTensors()) : 0);

    /// <summary>Rebuilds the session a bundle captured, ready to <see cref="TrainingSession.Train"/> on.</summary>
    public static TrainingSession Resume(Stream stream, string name = "resume bundle")
    {
        using var zip = OpenZip(stream, name);
        Manifest manifest;
        using (var entry = Open(zip, ManifestEntry, name))
            manifest = JsonSerializer.Deserialize<Manifest>(entry, RunSpec.JsonOptions) ?? throw new InvalidDataException($"{name}: empty {ManifestEntry}.");
        if (manifest.FormatVersion is not (1 or FormatVersion))
            throw new InvalidDataException($"{name}: format version {manifest.FormatVersion}; this engine reads version {FormatVersion}.");

        var spec = manifest.Spec.Deserialize<RunSpec>(RunSpec.JsonOptions) ?? throw new InvalidDataException($"{name}: no run specification.");
        var session = TrainingSession.Create(spec, manifest.RunId);
        try
        {
            using (var entry = Open(zip, ModelEntry, name))
            using (var model = SafeTensors.Read(entry, $"{name}/{ModelEntry}"))
                model.LoadInto(session.LiveModel, $"{name}/{ModelEntry}");
            using (var entry = Open(zip, EmaEntry, name))
            using (var ema = SafeTensors.Read(entry, $"{name}/{EmaEntry}"))
                session.Ema.LoadState(ema.Tensors, manifest.Ema);
            if (session.PostHocEma is { } postHoc)
            {
                using var entry = Open(zip, PostHocEntry, name);
                using var state = SafeTensors.Read(entry, $"{name}/{PostHocEntry}");
                postHoc.LoadState(state.Tensors, manifest.PostHoc ?? throw new InvalidDataException($"{name}: no post-hoc EMA counters."));
            }
            if (manifest.FormatVersion == 1)
            {
                using var entry = Open(zip, TorchSharpOptimizerEntry, name);
                LoadTorchSharpOptimizerState(session, entry, manifest.Step);
            }
            else
            {
                using var entry = Open(zip, OptimizerEntry, name);
                using var optimizer = SafeTensors.Read(entry, $"{name}/{OptimizerEntry}");
                session.Optimizer.LoadState(optimizer.Tensors, manifest.OptimizerSteps);
            }
            session.RestoreStep(manifest.Step);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Version 1 bundles hold TorchSharp's optimizer state: it is read through a TorchSharp optimizer of the
    /// run's kind and handed to the engine's, so runs interrupted before the engine had its own optimizers resume.
    /// </summary>
    static void LoadTorchSharpOptimizerState(TrainingSession session, Stream entry, long step)
    {
        var spec = session.Spec;
        var parameters = session.LiveModel.parameters();
        using var torchSharp = spec.Optimizer switch
        {
            RunSpec.Sgd => (OptimizerHelper)optim.SGD(parameters, spec.LearningRate, momentum: spec.Momentum, weight_decay: spec.WeightDecay),
            RunSpec.Adam => optim.Adam(parameters, spec.LearningRate, weight_decay: spec.WeightDecay),
            _ => optim.AdamW(parameters, spec.LearningRate, weight_decay: spec.WeightDecay),
        };
        using (var reader = new BinaryReader(entry)) torchSharp.load_state_dict(reader);
        var names = session.LiveModel.named_parameters().Select(p => p.name).ToArray();
        var states = torchSharp.state_dict().State;
        var tensors = new Dictionary<string, Tensor>();
        long steps = 0;
        for (var i = 0; i < names.Length; i++)
        {
            switch (states[i])
            {
                case TorchSharp.Modules.Adam.State a: (tensors[$"{names[i]}/exp_avg"], tensors[$"{names[i]}/exp_avg_sq"], steps) = (a.exp_avg, a.exp_avg_sq, a.step); break;
                case TorchSharp.Modules.AdamW.State a: (tensors[$"{names[i]}/exp_avg"], tensors[$"{names[i]}/exp_avg_sq"], steps) = (a.exp_avg, a.exp_avg_sq, a.step); break;
                case TorchSharp.Modules.SGD.State { momentum_buffer: { } buffer }: tensors[$"{names[i]}/momentum_buffer"] = buffer; break;
            }
        }
        if (spec.Optimizer == RunSpec.Sgd)
        {
            // TorchSharp's SGD counts no steps; its momentum buffers exist once it has stepped.
            if (spec.Momentum != 0 && tensors.Count == 0) return;
            steps = step;
        }
        session.Optimizer.LoadState(tensors, steps);
    }

    public static TrainingSession Resume(string path)
    {
        using var stream = File.OpenRead(path);
        return Resume(stream, path);
    }

    static ZipArchive OpenZip(Stream stream, string name)
    {
        try
        {
            return new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{name}: not a readable resume bundle ({e.Message})", e);
        }
    }

    static Stream Open(ZipArchive zip, string entry, string name) =>
        zip.GetEntry(entry)?.Open() ?? throw new InvalidDataException($"{name}: the bundle has no {entry}.");

    /// <summary>Where the data stream stands: the epoch and batch of the next step (recorded for inspection; derivable from the step).</summary>
    readonly record struct BatchPosition(long Epoch, int Batch)
    {
        public BatchPosition(TrainingSession s) : this((s.Step) / s.BatchesPerEpoch, (int)(s.Step % s.BatchesPerEpoch)) { }
    }
}
