using System.Globalization;

namespace EmaLab.TrainingEngine;

/// <summary>The metric keys the engine reports (MLflow-style paths).</summary>
public static class MetricKeys
{
    public const string TrainLoss = "train/loss";
    public const string LearningRate = "train/lr";
    public const string EvalLoss = "eval/loss";
    public const string EvalAccuracy = "eval/accuracy";
    /// <summary>A diffusion track's sample quality: the Fréchet distance of its samples to the held-out images (lower is better).</summary>
    public const string EvalFrechetDistance = "eval/fd";
    /// <summary>A low-precision shadow's relative distance ‖s − s_f32‖ / ‖s_f32‖ to its float32 twin, at each evaluation.</summary>
    public const string Float32Gap = "weights/float32_gap";
    /// <summary>Seconds spent in training steps since the previous evaluation (on the raw track, at each evaluation).</summary>
    public const string TrainingSeconds = "system/training_seconds";
    /// <summary>Seconds the evaluation of every track took (on the raw track, at each evaluation).</summary>
    public const string EvaluationSeconds = "system/evaluation_seconds";
    /// <summary>MLflow's prefix of system metrics (<c>log_system_metrics</c>): what a run costs, never a track's result.</summary>
    public const string SystemPrefix = "system/";
    /// <summary>Steps per second since the previous sample (the engine's, every <see cref="Training.TrainingSession.SystemMetricsInterval"/>).</summary>
    public const string StepsPerSecond = "system/steps_per_second";
    /// <summary>The training process's CPU time over the wall time since the previous sample, in % of all the machine's cores.</summary>
    public const string ProcessCpuPercent = "system/process_cpu_utilization_percentage";
    /// <summary>The training process's resident memory (RSS), in MB.</summary>
    public const string ProcessMemoryMegabytes = "system/process_memory_rss_megabytes";
    /// <summary>MLflow's key: the machine's CPU use since the previous sample, in %.</summary>
    public const string CpuPercent = "system/cpu_utilization_percentage";
    /// <summary>MLflow's key: the machine's memory in use, in MB.</summary>
    public const string SystemMemoryMegabytes = "system/system_memory_usage_megabytes";
    /// <summary>MLflow's key: the machine's memory in use, in %.</summary>
    public const string SystemMemoryPercent = "system/system_memory_usage_percentage";
    /// <summary>A system metric (a script's <c>log_system_metrics</c> or the engine's own): in its own section, never a track's result.</summary>
    public static bool IsSystem(string key) => key.StartsWith(SystemPrefix, StringComparison.Ordinal);
    /// <summary>Wall-clock measurements (every system metric): the only metrics that two runs of one spec do not repeat exactly.</summary>
    public static bool IsWallClock(string key) => IsSystem(key);
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
