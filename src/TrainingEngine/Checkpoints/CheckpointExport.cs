using System.Globalization;
using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using TorchSharp.Modules;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.TrainingEngine.Checkpoints;

/// <summary>How a consumer must prepare inputs: <c>x = (pixel * scale − mean) / std</c>, shaped [N, channels, height, width].</summary>
public sealed record InputPreprocessing(double Scale, double Mean, double Std, int[] InputShape, string Layout = "NCHW", bool Flatten = false)
{
    public Normalization ToNormalization() => new(Scale, Mean, Std);
}

/// <summary>A model rebuilt from an exported checkpoint, with what its metadata says.</summary>
public sealed record ImportedCheckpoint(Sequential Model, ModelArchitecture Architecture, InputPreprocessing Preprocessing, IReadOnlyDictionary<string, string> Metadata) : IDisposable
{
    public void Dispose() => Model.Dispose();
}

/// <summary>
/// Exports one track (raw or one EMA) as a <c>.safetensors</c> file whose tensor names are the PyTorch
/// <c>nn.Sequential</c>'s state_dict keys and whose <c>__metadata__</c> (string → string, as the format
/// requires) holds the architecture, the preprocessing, the dataset, step, track and EMA settings.
/// </summary>
public static class CheckpointExport
{
    public const string Format = "emalab-checkpoint/1";

    public static class Keys
    {
        public const string Format = "format";
        public const string Architecture = "architecture";
        public const string Preprocessing = "preprocessing";
        public const string Dataset = "dataset";
        public const string Step = "step";
        public const string Track = "track";
        public const string Decay = "decay";
        public const string Ema = "ema";
        public const string RunId = "run_id";
        public const string EvalAccuracy = "eval_accuracy";
        public const string EvalLoss = "eval_loss";
    }

    static readonly JsonSerializerOptions Json = RunSpec.JsonOptions;

    public static void Export(TrainingSession session, string track, Stream stream)
    {
        var evaluation = session.Evaluate(track);
        var model = session.ModelForTrack(track);
        var shadow = session.Ema.Shadows.FirstOrDefault(s => s.Track == track);
        var n = session.Data.Normalization;
        var preprocessing = new InputPreprocessing(n.Scale, n.Mean, n.Std, [session.Architecture.InputChannels, session.Architecture.Height, session.Architecture.Width]);
        var metadata = new Dictionary<string, string>
        {
            [Keys.Format] = Format,
            [Keys.Architecture] = session.Architecture.ToJson(),
            [Keys.Preprocessing] = JsonSerializer.Serialize(preprocessing, Json),
            [Keys.Dataset] = session.Spec.Dataset,
            [Keys.Step] = session.Step.ToString(CultureInfo.InvariantCulture),
            [Keys.Track] = track,
            [Keys.Decay] = shadow is null ? "" : shadow.Decay.ToString("R", CultureInfo.InvariantCulture),
            [Keys.Ema] = JsonSerializer.Serialize(session.Spec.Ema, Json),
            [Keys.RunId] = session.RunId,
            [Keys.EvalAccuracy] = evaluation.Accuracy.ToString("R", CultureInfo.InvariantCulture),
            [Keys.EvalLoss] = evaluation.Loss.ToString("R", CultureInfo.InvariantCulture),
        };
        SafeTensors.Write(stream, model.state_dict().Select(p => (p.Key, p.Value)), metadata);
    }

    public static void Export(TrainingSession session, string track, string path)
    {
        using var stream = File.Create(path);
        Export(session, track, stream);
    }

    /// <summary>Rebuilds the model a checkpoint describes and loads its weights; every state_dict entry must be present with its shape.</summary>
    public static ImportedCheckpoint Import(Stream stream, string name = "checkpoint")
    {
        using var content = SafeTensors.Read(stream, name);
        if (!content.Metadata.TryGetValue(Keys.Format, out var format) || format != Format)
            throw new InvalidDataException($"{name}: not an EMA Lab checkpoint (metadata 'format' is '{format}', expected '{Format}').");
        var architecture = ModelArchitecture.FromJson(Required(content.Metadata, Keys.Architecture, name));
        var preprocessing = JsonSerializer.Deserialize<InputPreprocessing>(Required(content.Metadata, Keys.Preprocessing, name), Json)
            ?? throw new InvalidDataException($"{name}: empty preprocessing metadata.");
        var model = ModelFactory.Build(architecture);
        try
        {
            content.LoadInto(model, name);
            model.eval();
            return new ImportedCheckpoint(model, architecture, preprocessing, content.Metadata);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public static ImportedCheckpoint Import(string path)
    {
        using var stream = File.OpenRead(path);
        return Import(stream, path);
    }

    static string Required(IReadOnlyDictionary<string, string> metadata, string key, string name) =>
        metadata.TryGetValue(key, out var value) ? value : throw new InvalidDataException($"{name}: metadata has no '{key}'.");
}
