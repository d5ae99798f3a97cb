using System.IO.Compression;
using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.TrainingEngine.Checkpoints;

/// <summary>
/// Everything needed to continue a run exactly as if it had not stopped, as a zip of inspectable parts:
/// <c>bundle.json</c> (spec, step, data position, every shadow's counters), <c>model.safetensors</c>
/// (live weights and buffers), <c>ema.safetensors</c> (every shadow) and <c>optimizer.bin</c> (TorchSharp's
/// optimizer state). The data order and the learning rate are functions of (seed, step) and no torch
/// random numbers are drawn after initialisation, so nothing else is needed.
/// </summary>
public static class ResumeBundle
{
    public const int FormatVersion = 1;
    const string ManifestEntry = "bundle.json";
    const string ModelEntry = "model.safetensors";
    const string EmaEntry = "ema.safetensors";
    const string OptimizerEntry = "optimizer.bin";
    const string PostHocEntry = "posthoc.safetensors";

    sealed record Manifest(int FormatVersion, string RunId, JsonElement Spec, long Step, long TotalSteps,
        long NextEpoch, int NextBatch, IReadOnlyList<EmaShadowCounters> Ema, IReadOnlyList<EmaShadowCounters>? PostHoc = null);

    public static void Save(TrainingSession session, Stream stream)
    {
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
        var batches = new BatchPosition(session);
        var manifest = new Manifest(FormatVersion, session.RunId, JsonSerializer.SerializeToElement(session.Spec, RunSpec.JsonOptions),
            session.Step, session.TotalSteps, batches.Epoch, batches.Batch, session.Ema.Counters(), session.PostHocEma?.Counters());
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
        using (var writer = new BinaryWriter(entry))
            session.Optimizer.save_state_dict(writer);
    }

    /// <summary>Writes the bundle next to <paramref name="path"/> and renames it into place, so a crash never leaves a half-written bundle.</summary>
    public static void SaveAtomically(TrainingSession session, string path)
    {
        var temporary = path + ".partial";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            Save(session, stream);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Rebuilds the session a bundle captured, ready to <see cref="TrainingSession.Train"/> on.</summary>
    public static TrainingSession Resume(Stream stream, string name = "resume bundle")
    {
        using var zip = OpenZip(stream, name);
        Manifest manifest;
        using (var entry = Open(zip, ManifestEntry, name))
            manifest = JsonSerializer.Deserialize<Manifest>(entry, RunSpec.JsonOptions) ?? throw new InvalidDataException($"{name}: empty {ManifestEntry}.");
        if (manifest.FormatVersion != FormatVersion)
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
            using (var entry = Open(zip, OptimizerEntry, name))
            using (var reader = new BinaryReader(entry))
                session.Optimizer.load_state_dict(reader);
            session.RestoreStep(manifest.Step);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
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
