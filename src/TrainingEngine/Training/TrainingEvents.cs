namespace EmaLab.TrainingEngine.Training;

/// <summary>One metric value: <c>track</c> is <c>raw</c> or <c>ema-&lt;decay&gt;</c>; keys are e.g. <c>train/loss</c>, <c>eval/accuracy</c>.</summary>
public readonly record struct MetricPoint(string RunId, string Track, string Key, long Step, double Value);

public sealed record TrainingProgress(string RunId, long Step, long TotalSteps, double StepsPerSecond, TimeSpan? EstimatedRemaining);

public enum TrainingLogLevel { Info, Warning, Error }

/// <summary>An image the engine logs by step for a track (a confusion matrix at the last evaluation): a PNG.</summary>
public sealed record TrainingImage(string RunId, string Track, string Key, long Step, byte[] Png);

/// <summary>
/// How the engine reports: metrics, progress and log lines go to the observer, never to storage
/// directly. Calls come on the training thread; an implementation may block to apply back-pressure.
/// </summary>
public interface ITrainingObserver
{
    void OnMetric(in MetricPoint point);
    void OnProgress(TrainingProgress progress);
    void OnLog(TrainingLogLevel level, string message);
    /// <summary>An image to keep with the run (a host that shows none may ignore it).</summary>
    void OnImage(TrainingImage image) { }
}

public enum TrainingOutcome
{
    Completed,
    /// <summary>The loss became NaN or infinite.</summary>
    Diverged,
    Cancelled,
    /// <summary>Stopped at the step the caller asked for (to save a bundle, for instance).</summary>
    Paused,
}

/// <summary>
/// One track's scores at an evaluation: a classifier's held-out loss and accuracy; a diffusion model's held-out denoising
/// loss (accuracy NaN) and, where its samples were scored, their Fréchet distance (NaN otherwise).
/// </summary>
public sealed record EvalResult(double Loss, double Accuracy, double FrechetDistance = double.NaN);

public sealed record TrainingResult(TrainingOutcome Outcome, long Step, string? Message, IReadOnlyDictionary<string, EvalResult> LastEvaluation);
