using EmaLab.Dashboard.Data;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

using EmaLab.Dashboard.Runs;

namespace EmaLab.Dashboard.Trainers;

/// <summary>Runs are trained by this process's <see cref="RunWorker"/> threads, from its own queue.</summary>
public sealed class InProcessTrainers(
    RunQueue queue, ActiveRuns active, RunLifecycle lifecycle, DataPaths paths, IOptions<EmaLabOptions> options, ILogger<InProcessTrainers> logger)
        : ITrainerHost
{
    public string Description => $"in this process, {options.Value.Training.MaxConcurrentRuns} run(s) at a time";

    public void Offer(long runId, string ticket) => queue.Enqueue(runId);

    public void Withdraw(string? jobId) { }

    public Task<ActiveRuns.CancelResult> StopAsync(long runId, CancellationToken cancellationToken) =>
        active.CancelAsync(runId, ActiveRuns.StopTimeout);

    public Task WhenStoppedAsync(long runId) => active.WhenStoppedAsync(runId);

    /// <summary>
    /// This process was the only trainer: a run it left running is interrupted, resumable from its last bundle (one whose
    /// start was cut short is queued again once, then failed: <see cref="RunLifecycle.RecoverAsync"/>; the
    /// <see cref="RunWorker"/> queues every queued run when it starts), and half-written files are removed.
    /// </summary>
    public async Task RecoverAtStartAsync(CancellationToken cancellationToken)
    {
        var recovered = await lifecycle.RecoverAsync(cancellationToken);
        if (recovered.Count > 0) logger.LogWarning("{Count} run(s) were left running by an earlier process: {Outcomes}", recovered.Count,
            string.Join(", ", recovered.Select(r => $"run {r.RunId} {r.Status.ToApi()}")));
        var partial = paths.DeletePartialFiles(writtenBefore: DateTime.MaxValue);
        if (partial > 0) logger.LogWarning("Removed {Count} half-written file(s) left by an earlier process", partial);
    }
}
