using EmaLab.Dashboard.Metrics;
using EmaLab.TrainingEngine.Training;

using EmaLab.Dashboard.Runs;

namespace EmaLab.Dashboard.Trainers;

/// <summary>Connects the engine's reports for one run to the metric pipeline (the only way metrics reach storage).</summary>
sealed class RunObserver(long runId, string attempt, MetricPipeline pipeline, ActiveRuns.ActiveRun active) : ITrainingObserver
{
    public void OnMetric(in MetricPoint point)
    {
        // The writer gave up on this run's rows (e.g. the database is full): stop training with its reason.
        if (pipeline.StoreFailureOf(runId) is { } reason) throw new IOException(reason);
        pipeline.WriteMetric(runId, point, attempt);
    }

    public void OnProgress(TrainingProgress progress)
    {
        active.Progress = new ActiveRuns.LiveProgress(progress, DateTimeOffset.UtcNow);
        pipeline.WriteProgress(runId, progress, attempt);
    }

    public void OnLog(TrainingLogLevel level, string message) => pipeline.WriteLog(runId, level, message, attempt);
}
