using System.Diagnostics;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;

/// <summary>Post-hoc EMA on the MNIST MLP: snapshot storage per run, and the time to reconstruct and evaluate one σ_rel.</summary>
static class PostHocBenchmarks
{
    public static void Run()
    {
        Console.WriteLine("== Post-hoc EMA (MLP 784-256-256-10 on mnist-10k, 1,500 steps, σ_rel 0.05 and 0.10, ~30 snapshots) ==");
        var folder = Directory.CreateTempSubdirectory("emalab-posthoc-bench-").FullName;
        try
        {
            var spec = new RunSpec
            {
                Dataset = "mnist-10k", Model = "mlp", BatchSize = 128, Steps = 1500, EvalInterval = 1500, Threads = 2,
                Ema = new EmaSettings { Decays = [0.999] }, PostHoc = new PostHocSettings(),
            };
            var clock = Stopwatch.StartNew();
            using (var session = TrainingSession.Create(spec))
            {
                session.SnapshotDirectory = folder;
                session.Train(new Quiet());
            }
            var training = clock.Elapsed.TotalSeconds;
            var snapshots = PostHocSnapshots.Steps(folder);
            Console.WriteLine($"training with tracking and snapshots: {training:F1} s; {snapshots.Count} snapshots, {PostHocSnapshots.SizeBytes(folder) / 1e6:F1} MB");

            var reconstruct = new List<double>();
            var evaluate = new List<double>();
            EvalResult? result = null;
            for (var i = 0; i < 5; i++)
            {
                clock.Restart();
                var state = PostHocSnapshots.Reconstruct(folder, spec.PostHoc!.SigmaRels, 0.075);
                reconstruct.Add(clock.Elapsed.TotalMilliseconds);
                clock.Restart();
                using var evaluator = new TrackEvaluator(spec);
                evaluator.LoadAveraged(state, "posthoc-0.075");
                result = evaluator.Evaluate();
                evaluate.Add(clock.Elapsed.TotalMilliseconds);
                foreach (var t in state.Values) t.Dispose();
            }
            reconstruct.Sort();
            evaluate.Sort();
            Console.WriteLine($"reconstruct σ_rel 0.075 from {snapshots.Count * 2} profiles: {reconstruct[2]:F0} ms; evaluate on 2,000 images (incl. loading the data): {evaluate[2]:F0} ms (medians of 5); accuracy {result!.Accuracy:P2}");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
        Console.WriteLine();
    }

    sealed class Quiet : ITrainingObserver
    {
        public void OnMetric(in MetricPoint point) { }
        public void OnProgress(TrainingProgress progress) { }
        public void OnLog(TrainingLogLevel level, string message) { }
    }
}
