using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Data;
using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// <b>Who may change a run's status.</b> The only writer of a run's status and the columns that coordinate its trainers
/// (<c>Status</c>, <c>Attempt</c>, <c>DispatchId</c>, <c>JobId</c>, <c>StartAttempts</c>, <c>CancelRequested</c>,
/// <c>ResumeRequested</c>, <c>Error</c>, <c>StartedAt</c>, <c>FinishedAt</c>). Each transition is one guarded update — it
/// changes nothing when the run has moved on meanwhile, so two workers, or a worker and a cancel, never both win — and,
/// when it changed the run, one event. Tested as a transition table in <c>RunLifecycleTests</c>.
/// </summary>
public sealed class RunLifecycle(IDbContextFactory<EmaLabDbContext> dbFactory, RunEventHub hub)
{
    /// <summary>A run whose trainer stopped this many times while building it is not started again.</summary>
    public const int MaxStartAttempts = 2;

    static string GaveUpStarting(int attempts, string who) =>
        $"{who} stopped {attempts} times while starting this run (building its model or loading its data or bundle); it is not started again.";

    static DateTimeOffset Now => DateTimeOffset.UtcNow;

    // ------------------------------------------------------------------ create

    /// <summary>
    /// Stores new runs in one transaction — all or none: an engine run queued under a new dispatch ticket (only the job
    /// carrying it trains it), a client's run running (its script is training it).
    /// </summary>
    public async Task CreateAsync(EmaLabDbContext db, IReadOnlyList<Run> runs, CancellationToken cancellationToken)
    {
        foreach (var run in runs)
        {
            run.Status = run.Origin == RunOrigin.Engine ? RunStatus.Queued : RunStatus.Running;
            run.DispatchId = run.Origin == RunOrigin.Engine ? Run.NewUuid() : null;
        }
        db.Runs.AddRange(runs);
        await db.SaveChangesAsync(cancellationToken);
        foreach (var run in runs) Changed(run.Id, run.Status);
    }

    /// <summary>Records the Hangfire job that carries the run's ticket, so a cancel can withdraw it before any worker took it.</summary>
    public void RecordJob(long runId, string dispatchId, string jobId)
    {
        using var db = dbFactory.CreateDbContext();
        db.Runs.Where(r => r.Id == runId && r.DispatchId == dispatchId && r.JobId == null).ExecuteUpdate(s => s.SetProperty(r => r.JobId, jobId));
    }

    // ------------------------------------------------------------------ a trainer's transitions

    /// <summary>A run a trainer took: the row after the claim, whether it took over from a trainer that died, and the step it was at.</summary>
    public sealed record Claimed(Run Run, bool Takeover, long StepSeen);

    /// <summary>
    /// Takes the run for one trainer (a new attempt id, one more start attempt). Without a job only a queued run is
    /// taken; a job takes the run its ticket names, queued, or running under a trainer that died (a takeover: it resumes
    /// from the last bundle). A run cancelled while no worker trained it, or whose trainer stopped
    /// <see cref="MaxStartAttempts"/> times while starting it, is ended instead. Null when there is nothing to train.
    /// </summary>
    public Claimed? Claim(long runId, JobTicket? job)
    {
        using var db = dbFactory.CreateDbContext();
        var seen = db.Runs.AsNoTracking().SingleOrDefault(r => r.Id == runId);
        if (seen is null || (job is not null && seen.DispatchId != job.DispatchId)) return null;
        var takeover = job is not null && seen.Status == RunStatus.Running;
        if (seen.Status != RunStatus.Queued && !takeover) return null;
        // A cancel of a queued run ends it at once; this flag is a cancel asked while its worker was gone or stopping.
        if (seen.CancelRequested)
        {
            EndUnclaimed(db, seen, RunStatus.Cancelled, $"Cancelled at step {seen.Step:N0} while no worker trained it.");
            return null;
        }
        if (takeover && seen.StartAttempts >= MaxStartAttempts)
        {
            EndUnclaimed(db, seen, RunStatus.Failed, GaveUpStarting(seen.StartAttempts, "A worker"));
            return null;
        }
        var attempt = Run.NewUuid();
        var jobId = job?.JobId;
        var asSeen = db.Runs.Where(r => r.Id == runId && r.Status == seen.Status && r.Attempt == seen.Attempt && r.DispatchId == seen.DispatchId);
        var claimed = asSeen.ExecuteUpdate(s => s
            .SetProperty(r => r.Status, RunStatus.Running)
            .SetProperty(r => r.Attempt, attempt)
            .SetProperty(r => r.StartAttempts, r => r.StartAttempts + 1)
            .SetProperty(r => r.ResumeRequested, r => r.ResumeRequested || (takeover && r.BundleStep != null))
            .SetProperty(r => r.JobId, r => jobId ?? r.JobId)
            .SetProperty(r => r.Error, (string?)null)
            .SetProperty(r => r.FinishedAt, (DateTimeOffset?)null));
        if (claimed == 0) return null;
        var run = db.Runs.AsNoTracking().Single(r => r.Id == runId);
        Changed(runId, RunStatus.Running, run.Step, run.TotalSteps);
        return new Claimed(run, takeover, seen.Step);
    }

    /// <summary>Ends a run that is not claimed (no trainer writes for it), unless it changed meanwhile.</summary>
    void EndUnclaimed(EmaLabDbContext db, Run seen, RunStatus status, string reason)
    {
        var ended = db.Runs.Where(r => r.Id == seen.Id && r.Status == seen.Status && r.Attempt == seen.Attempt).ExecuteUpdate(s => s
            .SetProperty(r => r.Status, status)
            .SetProperty(r => r.Error, reason)
            .SetProperty(r => r.FinishedAt, Now));
        if (ended == 1) Changed(seen.Id, status, seen.Step, message: reason);
    }

    /// <summary>The attempt's session is built (the start succeeded): its start attempts reset, the step it starts from.</summary>
    public void Start(long runId, string attempt, long step, long totalSteps)
    {
        using var db = dbFactory.CreateDbContext();
        var now = Now;
        var started = db.Runs.Where(r => r.Id == runId && r.Attempt == attempt && r.Status == RunStatus.Running).ExecuteUpdate(s => s
            .SetProperty(r => r.StartedAt, r => r.StartedAt ?? now)
            .SetProperty(r => r.ResumeRequested, false)
            .SetProperty(r => r.StartAttempts, 0)
            .SetProperty(r => r.Step, step)
            .SetProperty(r => r.TotalSteps, totalSteps));
        if (started == 1) Changed(runId, RunStatus.Running, step, totalSteps);
    }

    /// <summary>Records the end of an attempt; false when another start has taken the run over meanwhile.</summary>
    public bool Finish(long runId, string attempt, RunStatus status, string? error, long step)
    {
        using var db = dbFactory.CreateDbContext();
        var recorded = db.Runs.Where(r => r.Id == runId && r.Attempt == attempt).ExecuteUpdate(s => s
            .SetProperty(r => r.Status, status)
            .SetProperty(r => r.Error, error)
            .SetProperty(r => r.Step, step)
            .SetProperty(r => r.FinishedAt, Now));
        if (recorded == 1) Changed(runId, status, step, message: error);
        return recorded == 1;
    }

    /// <summary>
    /// Queues the run again under a new ticket for another worker: after <paramref name="attempt"/> trained it (it
    /// continues from its bundle), or unstarted (a job fetched while its worker stops). Returns the new ticket; null when
    /// the run changed meanwhile.
    /// </summary>
    public string? Requeue(long runId, string dispatchId, string? attempt)
    {
        using var db = dbFactory.CreateDbContext();
        var next = Run.NewUuid();
        var trained = attempt is not null;
        var runs = db.Runs.Where(r => r.Id == runId && r.DispatchId == dispatchId && (r.Status == RunStatus.Queued || r.Status == RunStatus.Running));
        if (trained) runs = runs.Where(r => r.Attempt == attempt);
        var requeued = runs.ExecuteUpdate(s => s
            .SetProperty(r => r.Status, r => trained ? RunStatus.Queued : r.Status)
            .SetProperty(r => r.ResumeRequested, r => r.ResumeRequested || (trained && r.BundleStep != null))
            .SetProperty(r => r.StartAttempts, r => trained ? 0 : r.StartAttempts)
            .SetProperty(r => r.DispatchId, next)
            .SetProperty(r => r.JobId, (string?)null));
        if (requeued == 0) return null;
        if (trained) Changed(runId, RunStatus.Queued);
        return next;
    }

    // ------------------------------------------------------------------ a user's transitions

    /// <summary>Cancels an engine run that is still queued (no trainer has it); the job to withdraw, or null when it was not queued.</summary>
    public async Task<(bool Cancelled, string? JobId)> CancelQueuedAsync(long runId, CancellationToken cancellationToken)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var queued = db.Runs.Where(r => r.Id == runId && r.Status == RunStatus.Queued && r.Origin == RunOrigin.Engine);
        var cancelled = await queued.ExecuteUpdateAsync(s => s
            .SetProperty(r => r.Status, RunStatus.Cancelled)
            .SetProperty(r => r.Error, "Cancelled before it started.")
            .SetProperty(r => r.FinishedAt, Now), cancellationToken);
        if (cancelled == 0) return (false, null);
        Changed(runId, RunStatus.Cancelled);
        return (true, await db.Runs.Where(r => r.Id == runId).Select(r => r.JobId).SingleAsync(cancellationToken));
    }

    /// <summary>The attempt and job of a running engine run whose trainer was asked to stop; null when it is not running.</summary>
    public sealed record StopAsked(string? Attempt, string? JobId);

    /// <summary>
    /// Asks a running engine run to stop, durably: a worker that takes it over later (its trainer died) ends it as cancelled
    /// instead of training it. Null when the run is not running.
    /// </summary>
    public async Task<StopAsked?> RequestStopAsync(long runId, CancellationToken cancellationToken)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var running = await db.Runs.AsNoTracking().Where(r => r.Id == runId && r.Status == RunStatus.Running && r.Origin == RunOrigin.Engine)
            .Select(r => new StopAsked(r.Attempt, r.JobId)).SingleOrDefaultAsync(cancellationToken);
        if (running is null) return null;
        await db.Runs.Where(r => r.Id == runId && r.Attempt == running.Attempt)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.CancelRequested, true), cancellationToken);
        return running;
    }

    /// <summary>Ends as cancelled a run whose trainer did not answer its stop (it died while training), unless it moved on meanwhile.</summary>
    public async Task<bool> EndUnansweredAsync(long runId, string? attempt)
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        const string reason = "Cancelled; its worker did not answer (it stopped while training the run).";
        var ended = await db.Runs.Where(r => r.Id == runId && r.Status == RunStatus.Running && r.Attempt == attempt).ExecuteUpdateAsync(s => s
            .SetProperty(r => r.Status, RunStatus.Cancelled)
            .SetProperty(r => r.Error, reason)
            .SetProperty(r => r.FinishedAt, Now));
        if (ended == 1) Changed(runId, RunStatus.Cancelled, message: reason);
        return ended == 1;
    }

    /// <summary>
    /// Queues an interrupted or cancelled run (as it was seen: <paramref name="status"/>, <paramref name="bundleStep"/>) to
    /// continue from its bundle, under a new ticket; null when it changed meanwhile (two resumes cannot both queue it).
    /// </summary>
    public async Task<string?> ResumeAsync(long runId, RunStatus status, long bundleStep, CancellationToken cancellationToken)
    {
        if (!status.IsResumable()) return null;
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var ticket = Run.NewUuid();
        var asSeen = db.Runs.Where(r => r.Id == runId && r.Status == status && r.BundleStep == bundleStep && r.Origin == RunOrigin.Engine);
        var queued = await asSeen.ExecuteUpdateAsync(s => s
            .SetProperty(r => r.Status, RunStatus.Queued)
            .SetProperty(r => r.DispatchId, ticket)
            .SetProperty(r => r.JobId, (string?)null)
            .SetProperty(r => r.CancelRequested, false)
            .SetProperty(r => r.ResumeRequested, true)
            .SetProperty(r => r.StartAttempts, 0)
            .SetProperty(r => r.Error, (string?)null), cancellationToken);
        if (queued == 0) return null;
        Changed(runId, RunStatus.Queued);
        return ticket;
    }

    // ------------------------------------------------------------------ a client's transition

    /// <summary>
    /// MLflow's <c>runs/update</c> status of a client's run (the script says how its run stands), with its end time when it
    /// ended. Written on <paramref name="run"/> (tracked by <paramref name="db"/>) and saved by the caller with the rest of
    /// the update; the event once saved (<see cref="Changed"/>).
    /// </summary>
    public static void SetClientStatus(Run run, RunStatus status, DateTimeOffset? endTime)
    {
        if (run.Origin != RunOrigin.Client)
            throw new InvalidOperationException($"Run {run.Id} is trained by the engine: its status is not a client's to set.");
        run.Status = status;
        run.FinishedAt = status.IsFinished() ? endTime ?? Now : null;
    }

    /// <summary>A client's run's end time, without a status (MLflow's <c>runs/update</c> with <c>end_time</c> alone).</summary>
    public static void SetClientEndTime(Run run, DateTimeOffset endTime)
    {
        if (run.Origin != RunOrigin.Client)
            throw new InvalidOperationException($"Run {run.Id} is trained by the engine: its end time is the engine's.");
        run.FinishedAt = endTime;
    }

    // ------------------------------------------------------------------ recovery at start

    /// <summary>
    /// After a crash of the one process that trains: each engine run left running is interrupted (resumable from its last
    /// bundle), or, when the process ended while building it, queued once more, then failed. Returns the runs and what
    /// became of them. A client's run is trained elsewhere: the server stopping says nothing about it.
    /// </summary>
    public async Task<IReadOnlyList<(long RunId, RunStatus Status)>> RecoverAsync(CancellationToken cancellationToken)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var crashed = await db.Runs.AsNoTracking().Where(r => r.Status == RunStatus.Running && r.Origin == RunOrigin.Engine)
            .ToListAsync(cancellationToken);
        var outcomes = new List<(long, RunStatus)>();
        foreach (var run in crashed)
        {
            var (status, error) = run.StartAttempts switch
            {
                0 => (RunStatus.Interrupted, run.BundleStep is { } step
                    ? $"The server stopped while this run was at step {run.Step:N0}; resume continues from step {step:N0}."
                    : $"The server stopped while this run was at step {run.Step:N0}, before its first resume bundle; clone it to start again."),
                // The process ended while this run was being built: maybe not its fault; one more try.
                < MaxStartAttempts => (RunStatus.Queued, (string?)null),
                // A run that takes the process down every time it is built must not do so at every start.
                _ => (RunStatus.Failed, GaveUpStarting(run.StartAttempts, "The server")),
            };
            var left = db.Runs.Where(r => r.Id == run.Id && r.Status == RunStatus.Running && r.Attempt == run.Attempt);
            var recovered = status == RunStatus.Queued
                ? await left.ExecuteUpdateAsync(s => s.SetProperty(r => r.Status, status), cancellationToken)
                : await left.ExecuteUpdateAsync(s => s
                    .SetProperty(r => r.Status, status)
                    .SetProperty(r => r.Error, error)
                    .SetProperty(r => r.FinishedAt, Now), cancellationToken);
            if (recovered == 0) continue;
            outcomes.Add((run.Id, status));
            Changed(run.Id, status, run.Step, message: error);
        }
        return outcomes;
    }

    /// <summary>
    /// Queued engine runs whose job was never sent (the process stopped between storing a run and sending it), each with a
    /// new ticket, so that a job sent meanwhile under the old one trains nothing.
    /// </summary>
    public async Task<IReadOnlyList<(long RunId, string Ticket)>> ReissueUnsentAsync(CancellationToken cancellationToken)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var unsent = await db.Runs.AsNoTracking().Where(r => r.Status == RunStatus.Queued && r.Origin == RunOrigin.Engine && r.JobId == null)
            .Select(r => new { r.Id, r.DispatchId }).ToListAsync(cancellationToken);
        var reissued = new List<(long, string)>();
        foreach (var run in unsent)
        {
            var ticket = Run.NewUuid();
            if (await db.Runs.Where(r => r.Id == run.Id && r.Status == RunStatus.Queued && r.DispatchId == run.DispatchId && r.JobId == null)
                    .ExecuteUpdateAsync(s => s.SetProperty(r => r.DispatchId, ticket), cancellationToken) == 1)
                reissued.Add((run.Id, ticket));
        }
        return reissued;
    }

    /// <summary>
    /// The one status event, for pages, lists and event streams: after a transition, or when something else of the run
    /// that they show changed (its name, tags, files).
    /// </summary>
    public void Changed(long runId, RunStatus status, long? step = null, long? totalSteps = null, string? message = null) =>
        hub.Publish(new RunEvent(RunEventType.Status, runId) { Status = status.ToApi(), Step = step, TotalSteps = totalSteps, Message = message });
}
