using EmaLab.Dashboard.Metrics;
using EmaLab.TrainingEngine.Training;

using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Trainers;

/// <summary>
/// Connects the engine's reports for one run to the metric pipeline (the only way metrics reach storage); its images go to
/// the run's artifact folder under the names MLflow's client gives logged images (<see cref="ImageFileNames"/>), so the run
/// page's gallery and MLflow's <c>list_artifacts</c> read them as a script's.
/// </summary>
sealed class RunObserver(long runId, string attempt, MetricPipeline pipeline, ActiveRuns.ActiveRun active, string artifactsDirectory) : ITrainingObserver
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

    public void OnImage(TrainingImage image)
    {
        var path = Path.Combine(artifactsDirectory, ImageFileNames.For($"{image.Track}/{image.Key}", image.Step,
            DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Guid.NewGuid()));
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        // Whole or not at all: a page listing the folder meanwhile never shows half an image.
        EmaLab.TrainingEngine.Formats.AtomicFile.Write(path, image.Png.Length, stream => stream.Write(image.Png));
    }
}
