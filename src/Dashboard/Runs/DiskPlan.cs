using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Formats;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// What a run will write to disk at most (checkpoints, two resume bundles at a time, post-hoc snapshots),
/// estimated from its spec, so that a run that cannot fit fails before it starts, with the figures.
/// </summary>
public static class DiskPlan
{
    /// <summary>Checkpoint files a run writes: every track at step 0, every <paramref name="checkpointEvery"/> steps
    /// and at the end (the end only without it).</summary>
    public static long CheckpointFiles(long steps, long? checkpointEvery, int tracks) =>
        (checkpointEvery is { } every ? steps / every + 2 : 1) * tracks;

    public static long EstimateBytes(RunSpec spec, long? checkpointEvery)
    {
        var data = DatasetCatalog.Load(spec.Dataset);
        // One float32 copy of the model (buffers are a rounding error next to the weights) plus a header allowance.
        var copy = spec.ArchitectureFor(data).ParameterCount() * sizeof(float) + 64 * 1024;
        var steps = spec.PlannedSteps();
        var tracks = 1 + spec.Ema.ShadowCount;
        var checkpoints = CheckpointFiles(steps, checkpointEvery, tracks);
        var optimizerCopies = spec.Optimizer == RunSpec.Sgd ? (spec.Momentum != 0 ? 1 : 0) : 2;
        var profiles = spec.PostHoc?.SigmaRels.Count ?? 0;
        var bundle = (tracks + optimizerCopies + profiles) * copy;
        var snapshots = spec.PostHoc is { } postHoc ? postHoc.SnapshotCount(steps) * profiles * copy : 0;
        return checkpoints * copy + 2 * bundle + snapshots;
    }

    /// <summary>Throws an <see cref="IOException"/> with the figures when the run's files and the reserve do not fit
    /// under <paramref name="directory"/>.</summary>
    public static void Require(RunSpec spec, long? checkpointEvery, string directory, long reserveBytes)
    {
        var need = EstimateBytes(spec, checkpointEvery);
        var free = DiskSpace.FreeBytes(directory);
        if (need + reserveBytes > free)
            throw new IOException($"Not enough free disk space for this run: its checkpoints, resume bundles and snapshots need up to {DiskSpace.Format(need)}, " +
                $"and {DiskSpace.Format(free)} are free under {directory} (EmaLab:DiskReserveMegabytes keeps {DiskSpace.Format(reserveBytes)} of it free).");
    }
}
