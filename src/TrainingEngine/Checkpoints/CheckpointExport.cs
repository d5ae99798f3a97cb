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

/// <summary>What a checkpoint says about the weights it holds, besides the run's settings: whose, which track, when, and how they scored.</summary>
/// <param name="Rule">The track's averaging rule (its decay and every setting); null for raw weights and post-hoc reconstructions.</param>
public sealed record CheckpointLabel(string RunId, string Track, long Step, EvalResult Evaluation, EmaRule? Rule = null);

/// <summary>A model rebuilt from an exported checkpoint, with what its metadata says.</summary>
/// <param name="Model">The classifier (<c>nn.Module&lt;Tensor, Tensor&gt;</c>) or the diffusion U-Net (<see cref="DiffusionUNet"/>).</param>
public sealed record ImportedCheckpoint(TorchSharp.torch.nn.Module Model, ModelArchitecture Architecture, InputPreprocessing Preprocessing, IReadOnlyDictionary<string, string> Metadata) : IDisposable
{
    public void Dispose() => Model.Dispose();
}

/// <summary>
/// Exports one track (raw or one EMA) as a <c>.safetensors</c> file whose tensor names are the PyTorch
/// model's state_dict keys and whose <c>__metadata__</c> (string → string, as the format
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
        /// <summary>The track's complete averaging rule (preset and every setting), absent for raw weights and reconstructions.</summary>
        public const string EmaRule = "ema_rule";
        public const string RunId = "run_id";
        public const string EvalAccuracy = "eval_accuracy";
        public const string EvalLoss = "eval_loss";
        /// <summary>A diffusion track's Fréchet distance (absent for classifiers, and where the dataset has no reference network).</summary>
        public const string EvalFrechetDistance = "eval_fd";
        /// <summary>A diffusion model's noise schedule and sampling settings (<see cref="Diffusion.DiffusionSettings"/>), absent for classifiers.</summary>
        public const string Diffusion = "diffusion";
    }

    static readonly JsonSerializerOptions Json = RunSpec.JsonOptions;

    /// <summary>
    /// Exports <paramref name="track"/> of a session at its step, labelled with its evaluation on the whole held-out split:
    /// the one training just made (the last step's), else a new one — for a diffusion run between evaluations, its
    /// denoising loss only (its samples are scored at the evaluations, not again for every file).
    /// </summary>
    public static void Export(TrainingSession session, string track, Stream stream)
    {
        session.LoadTrack(track);
        var evaluation = session.FullEvaluationNow(track)
            ?? (session.Evaluator.Diffusion is null ? session.Evaluator.Evaluate() : session.Evaluator.EvaluateDenoiser(subset: false, samples: 0).Result);
        var rule = session.Ema.Shadows.FirstOrDefault(s => s.Track == track)?.Rule;
        Export(session.Evaluator, new CheckpointLabel(session.RunId, track, session.Step, evaluation, rule), stream);
    }

    public static void Export(TrainingSession session, string track, string path)
    {
        using var stream = File.Create(path);
        Export(session, track, stream);
    }

    /// <summary>Exports the weights loaded in <paramref name="evaluator"/>, described by <paramref name="label"/>.</summary>
    public static void Export(TrackEvaluator evaluator, CheckpointLabel label, Stream stream)
    {
        var architecture = evaluator.Architecture;
        var n = evaluator.Data.Normalization;
        var preprocessing = new InputPreprocessing(n.Scale, n.Mean, n.Std, [architecture.InputChannels, architecture.Height, architecture.Width]);
        var metadata = new Dictionary<string, string>
        {
            [Keys.Format] = Format,
            [Keys.Architecture] = architecture.ToJson(),
            [Keys.Preprocessing] = JsonSerializer.Serialize(preprocessing, Json),
            [Keys.Dataset] = evaluator.Spec.Dataset,
            [Keys.Step] = label.Step.ToString(CultureInfo.InvariantCulture),
            [Keys.Track] = label.Track,
            // SWA has no decay (NaN), like raw weights and reconstructions.
            [Keys.Decay] = label.Rule is { Decay: var decay } && !double.IsNaN(decay) ? decay.ToString("R", CultureInfo.InvariantCulture) : "",
            [Keys.Ema] = JsonSerializer.Serialize(evaluator.Spec.Ema, Json),
            [Keys.RunId] = label.RunId,
            [Keys.EvalAccuracy] = label.Evaluation.Accuracy.ToString("R", CultureInfo.InvariantCulture),
            [Keys.EvalLoss] = label.Evaluation.Loss.ToString("R", CultureInfo.InvariantCulture),
        };
        if (label.Rule is { } rule) metadata[Keys.EmaRule] = JsonSerializer.Serialize(rule, Json);
        if (evaluator.Diffusion is { } diffusion)
        {
            // A denoiser has no accuracy; its sample quality, where scored, is what it is judged by.
            metadata.Remove(Keys.EvalAccuracy);
            metadata[Keys.Diffusion] = JsonSerializer.Serialize(diffusion.Settings, Json);
            if (!double.IsNaN(label.Evaluation.FrechetDistance))
                metadata[Keys.EvalFrechetDistance] = label.Evaluation.FrechetDistance.ToString("R", CultureInfo.InvariantCulture);
        }
        SafeTensors.Write(stream, evaluator.Model.state_dict().Select(p => (p.Key, p.Value)), metadata);
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
        var model = ModelFactory.Create(architecture);
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
