using System.Globalization;

namespace EmaLab.TrainingEngine;

/// <summary>The metric keys the engine reports (MLflow-style paths).</summary>
public static class MetricKeys
{
    public const string TrainLoss = "train/loss";
    public const string LearningRate = "train/lr";
    public const string EvalLoss = "eval/loss";
    public const string EvalAccuracy = "eval/accuracy";
    /// <summary>A low-precision shadow's relative distance ‖s − s_f32‖ / ‖s_f32‖ to its float32 twin, at each evaluation.</summary>
    public const string Float32Gap = "weights/float32_gap";
    /// <summary>Seconds spent in training steps since the previous evaluation (on the raw track, at each evaluation).</summary>
    public const string TrainingSeconds = "system/training_seconds";
    /// <summary>Seconds the evaluation of every track took (on the raw track, at each evaluation).</summary>
    public const string EvaluationSeconds = "system/evaluation_seconds";
    /// <summary>Wall-clock measurements: the only metrics that two runs of one spec do not repeat exactly.</summary>
    public static bool IsWallClock(string key) => key is TrainingSeconds or EvaluationSeconds;
    /// <summary>The live weights' track (same as <see cref="TrackNames.Raw"/>).</summary>
    public const string RawTrack = TrackNames.Raw;
}

/// <summary>Every track name in one place: the live weights, a classic EMA, a power-function profile, a post-hoc reconstruction.</summary>
public static class TrackNames
{
    public const string Raw = "raw";
    public const string EmaPrefix = "ema-";
    public const string PowerFunctionPrefix = "pf-";
    public const string PostHocPrefix = "posthoc-";

    /// <summary><c>ema-0.999</c>: the decay written exactly (round-trip format).</summary>
    public static string Ema(double decay) => EmaPrefix + decay.ToString("R", CultureInfo.InvariantCulture);

    /// <summary><c>pf-0.05</c>: a power-function EMA of post-hoc EMA, by its σ_rel.</summary>
    public static string PowerFunction(double sigmaRel) => PowerFunctionPrefix + sigmaRel.ToString("R", CultureInfo.InvariantCulture);

    /// <summary><c>posthoc-0.075</c>: a reconstruction, by its σ_rel to 4 significant digits (the same track when asked again).</summary>
    public static string PostHoc(double sigmaRel) => PostHocPrefix + sigmaRel.ToString("G4", CultureInfo.InvariantCulture);

    public const string PostHocLawaPrefix = PostHocPrefix + "lawa-";

    /// <summary><c>posthoc-lawa-k3-every400</c>: LAWA of stored checkpoints, by how many and how far apart.</summary>
    public static string PostHocLawa(int checkpoints, long every) =>
        string.Create(CultureInfo.InvariantCulture, $"{PostHocLawaPrefix}k{checkpoints}-every{every}");
}
