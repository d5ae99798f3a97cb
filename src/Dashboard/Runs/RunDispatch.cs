using Hangfire;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// How a queued run reaches a trainer: through this process's own queue (SQLite, one process), or as a Hangfire job in
/// the database that any worker process may take (PostgreSQL).
/// </summary>
public abstract class RunDispatch
{
    /// <summary>Whether the trainer may be another process (then stopping it goes through the database).</summary>
    public abstract bool AcrossProcesses { get; }

    /// <summary>
    /// Hands a queued run to the trainers. <paramref name="dispatchId"/> is the ticket just written on the run: only the
    /// job carrying it will train it.
    /// </summary>
    public abstract void Send(long runId, string dispatchId);

    /// <summary>Withdraws the run's job (a trainer running it is told to stop within seconds); nothing in one process.</summary>
    public abstract void Withdraw(string? jobId);
}

/// <summary>Runs are trained by this process's <see cref="RunWorker"/> threads.</summary>
public sealed class InProcessDispatch(RunQueue queue) : RunDispatch
{
    public override bool AcrossProcesses => false;
    public override void Send(long runId, string dispatchId) => queue.Enqueue(runId);
    public override void Withdraw(string? jobId) { }
}

/// <summary>
/// Each queued run is one Hangfire job in PostgreSQL; whichever worker process fetches it trains it (<see cref="RunJob"/>).
/// The runs table stays the record of truth: a job trains only the run whose ticket it carries.
/// </summary>
public sealed class HangfireDispatch(IBackgroundJobClient jobs, RunLifecycle lifecycle, ILogger<HangfireDispatch> logger) : RunDispatch
{
    public override bool AcrossProcesses => true;

    public override void Send(long runId, string dispatchId)
    {
        var jobId = jobs.Enqueue<RunJob>(job => job.Train(runId, dispatchId, null, CancellationToken.None));
        // Recorded so that a cancel can withdraw the job before any worker took it (a claim records it as well).
        lifecycle.RecordJob(runId, dispatchId, jobId);
        logger.LogDebug("Run {RunId} queued as job {JobId}", runId, jobId);
    }

    public override void Withdraw(string? jobId)
    {
        if (jobId is not null) jobs.Delete(jobId);
    }
}
