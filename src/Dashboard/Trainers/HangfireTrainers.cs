using EmaLab.Dashboard.Data;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

using EmaLab.Dashboard.Runs;

namespace EmaLab.Dashboard.Trainers;

/// <summary>
/// Each queued run is one Hangfire job in PostgreSQL; whichever worker process fetches it trains it (<see cref="RunJob"/>).
/// The runs table stays the record of truth: a job trains only the run whose ticket it carries. A trainer may be another
/// process, so stopping one goes through the database (a durable flag, the job's deletion) and waits for its answer.
/// </summary>
public sealed class HangfireTrainers(
    IBackgroundJobClient jobs,
    RunLifecycle lifecycle,
    ActiveRuns active,
    IDbContextFactory<EmaLabDbContext> dbFactory,
    DataPaths paths,
    IOptions<EmaLabOptions> options,
    ILogger<HangfireTrainers> logger) : ITrainerHost
{
    static readonly TimeSpan StopPollInterval = TimeSpan.FromMilliseconds(200);
    /// <summary>How long a trainer elsewhere may take to answer a stop before it is presumed gone (its job's heartbeat has lapsed by then).</summary>
    readonly TimeSpan _trainerGoneAfter = TimeSpan.FromSeconds(options.Value.Training.JobInvisibilitySeconds) + ActiveRuns.StopTimeout;

    public string Description => options.Value.Trains
        ? $"by Hangfire jobs in PostgreSQL: this process ({options.Value.Training.MaxConcurrentRuns} run(s) at a time) and any other worker on it"
        : "by Hangfire jobs in PostgreSQL: the worker processes on the database (this web process trains none)";

    public void Offer(long runId, string ticket)
    {
        var jobId = jobs.Enqueue<RunJob>(job => job.Train(runId, ticket, null, CancellationToken.None));
        // Recorded so that a cancel can withdraw the job before any worker took it (a claim records it as well).
        lifecycle.RecordJob(runId, ticket, jobId);
        logger.LogDebug("Run {RunId} queued as job {JobId}", runId, jobId);
    }

    public void Withdraw(string? jobId)
    {
        if (jobId is not null) jobs.Delete(jobId);
    }

    /// <summary>
    /// A durable stop (a worker that takes the run over later ends it as cancelled), the cancellation of a trainer in this
    /// process, else the deletion of its job, whose token Hangfire fires within seconds on the machine training it.
    /// </summary>
    public async Task<ActiveRuns.CancelResult> StopAsync(long runId, CancellationToken cancellationToken)
    {
        if (await lifecycle.RequestStopAsync(runId, cancellationToken) is not { } running) return ActiveRuns.CancelResult.NotActive;
        var local = await active.CancelAsync(runId, ActiveRuns.StopTimeout);
        if (local != ActiveRuns.CancelResult.NotActive) return local;
        Withdraw(running.JobId);
        if (await StoppedWithinAsync(runId, ActiveRuns.StopTimeout)) return ActiveRuns.CancelResult.Stopped;
        // Its job is deleted, so no worker will take the run over: if its trainer does not answer, it is gone, and the run ends here.
        _ = EndIfTrainerGoneAsync(runId, running.Attempt);
        return ActiveRuns.CancelResult.Stopping;
    }

    /// <summary>Stopped here, then stopped on any machine, or presumed gone (see <see cref="EndIfTrainerGoneAsync"/>).</summary>
    public async Task WhenStoppedAsync(long runId)
    {
        await active.WhenStoppedAsync(runId);
        await StoppedWithinAsync(runId, _trainerGoneAfter);
    }

    /// <summary>
    /// A run left running is not touched: its job goes to another worker when its own stops renewing it. The web role sends
    /// a job for queued runs that have none (the process stopped between storing a run and sending its job).
    /// </summary>
    public async Task RecoverAtStartAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.Serves) return;
        var unsent = await lifecycle.ReissueUnsentAsync(cancellationToken);
        foreach (var (runId, ticket) in unsent) Offer(runId, ticket);
        if (unsent.Count > 0) logger.LogWarning("Sent the job of {Count} queued run(s) that had none", unsent.Count);
        // Other processes may be writing files into the shared folder right now: only long-abandoned partial files go.
        var partial = paths.DeletePartialFiles(writtenBefore: DateTime.UtcNow.AddHours(-1));
        if (partial > 0) logger.LogWarning("Removed {Count} half-written file(s) abandoned over an hour ago", partial);
    }

    /// <summary>Whether the run stops training (in any process) within <paramref name="timeout"/>.</summary>
    async Task<bool> StoppedWithinAsync(long runId, TimeSpan timeout)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            await using (var db = await dbFactory.CreateDbContextAsync())
                if (!await db.Runs.AnyAsync(r => r.Id == runId && r.Status == RunStatus.Running)) return true;
            if (waited.Elapsed >= timeout) return false;
            await Task.Delay(StopPollInterval);
        }
    }

    async Task EndIfTrainerGoneAsync(long runId, string? attempt)
    {
        try
        {
            if (!await StoppedWithinAsync(runId, _trainerGoneAfter)) await lifecycle.EndUnansweredAsync(runId, attempt);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Could not end run {RunId} after its cancel", runId);
        }
    }
}
