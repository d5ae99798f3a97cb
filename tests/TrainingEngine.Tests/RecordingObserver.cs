using EmaLab.TrainingEngine.Training;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>Keeps everything the engine reports; an optional callback sees each metric as it arrives.</summary>
sealed class RecordingObserver(Action<MetricPoint>? onMetric = null) : ITrainingObserver
{
    public List<MetricPoint> Metrics { get; } = [];
    public List<TrainingProgress> Progress { get; } = [];
    public List<(TrainingLogLevel Level, string Message)> Log { get; } = [];
    public List<TrainingImage> Images { get; } = [];

    public void OnMetric(in MetricPoint point)
    {
        Metrics.Add(point);
        onMetric?.Invoke(point);
    }

    public void OnProgress(TrainingProgress progress) => Progress.Add(progress);
    public void OnLog(TrainingLogLevel level, string message) => Log.Add((level, message));
    public void OnImage(TrainingImage image) => Images.Add(image);

    public IEnumerable<MetricPoint> Series(string track, string key) => Metrics.Where(m => m.Track == track && m.Key == key);
}

/// <summary>Training tests share libtorch's process-wide thread pool: run them one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TrainingCollection
{
    public const string Name = "training";
}
