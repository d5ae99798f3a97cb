using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Training;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Trainers;

/// <summary>
/// Trains one run on the calling (dedicated) thread: status changes, resume bundles every
/// <see cref="TrainingOptions.BundleEvery"/> steps, checkpoints at step 0, every <c>checkpointEvery</c> steps
/// and at the end, and a final status with a readable reason. Never throws: a failing run ends as failed.
/// </summary>
public sealed class RunExecutor(
    IDbContextFactory<EmaLabDbContext> dbFactory,
    MetricPipeline pipeline,
    ActiveRuns activeRuns,
    RunLifecycle lifecycle,
    ITrainerHost trainers,
    DataPaths paths,
    CheckpointStore checkpoints,
    IOptions<EmaLabOptions> options,
    ILogger<RunExecutor> logger)
{
    readonly int _bundleEvery = options.Value.Training.BundleEvery;
    readonly int _diskReserveMegabytes = options.Value.Limits.DiskReserveMegabytes;

    /// <summary>
    /// Trains the run if it is still queued, or, for a <paramref name="job"/> whose ticket the run still carries, if its
    /// previous trainer died with it running (Hangfire fetched the job again): then it resumes from the last bundle.
    /// </summary>
    public void Execute(long runId, CancellationToken stopping, JobTicket? job = null)
    {
        // Active before claimed: a cancel that sees the run running always finds its cancellation.
        if (activeRuns.Activate(runId, stopping, job?.Withdrawn ?? default) is not { } active) return; // another worker is training it
        // A job fetched while this process begins to stop goes back to the queue for another worker, unstarted.
        if (job is not null && stopping.IsCancellationRequested)
        {
            Redispatch(runId, job.DispatchId, attempt: null, "the worker is stopping");
            activeRuns.Deactivate(runId);
            return;
        }
        var run = Claim(runId, job);
        // Cancelled, deleted or taken by another worker while it waited in the queue.
        if (run is null)
        {
            activeRuns.Deactivate(runId);
            return;
        }
        pipeline.ClearStoreFailure(runId);
        var attempt = run.Attempt!;
        var outcome = RunStatus.Failed;
        string? error = null;
        long step = run.Step;
        TrainingSession? session = null;
        try
        {
            DiskPlan.Require(run.EngineSpec(), run.CheckpointEvery, paths.Root, (long)_diskReserveMegabytes << 20);
            session = OpenSession(run);
            session.SnapshotDirectory = paths.PostHocDirectory(runId);
            step = session.Step;
            MarkStarted(run, session);
            var observer = new RunObserver(runId, attempt, pipeline, active, paths.ClientArtifactsDirectory(runId));
            var result = Train(run, session, observer, active.Cancellation.Token);
            step = result.Step;
            (outcome, error) = result.Outcome switch
            {
                TrainingOutcome.Completed => (RunStatus.Completed, (string?)null),
                TrainingOutcome.Diverged => (RunStatus.Diverged, result.Message),
                // Not the process stopping, so a cancel: here, or on another machine (its job was deleted).
                _ when active.UserCancelled || !stopping.IsCancellationRequested => (RunStatus.Cancelled, result.Message),
                _ => (RunStatus.Interrupted, $"The server stopped at step {result.Step:N0}; resume to continue."),
            };
            if (outcome == RunStatus.Completed) checkpoints.Save(runId, session, session.Tracks);
            // A stopped run keeps a bundle at the step it reached, so resuming it loses nothing.
            if (outcome is RunStatus.Cancelled or RunStatus.Interrupted) SaveBundle(runId, attempt, session);
            if (outcome == RunStatus.Completed) paths.DeleteBundles(runId);
        }
        catch (Exception e)
        {
            // A run that fails keeps the step it reached (the last one completed).
            if (session is not null) step = session.Step;
            logger.LogError(e, "Run {RunId} failed", runId);
            error = e.Message;
            pipeline.WriteLog(runId, TrainingLogLevel.Error, e.ToString(), attempt);
        }
        finally
        {
            session?.Dispose();
            // With jobs across processes, a run its worker stopped goes on with another worker instead of waiting for a resume.
            if (outcome == RunStatus.Interrupted && job is not null)
                Redispatch(runId, job.DispatchId, attempt, $"worker {job.WorkerName} stopped at step {step:N0}");
            else Finish(runId, attempt, outcome, error, step);
            activeRuns.Deactivate(runId);
        }
    }

    TrainingSession OpenSession(Run run)
    {
        if (!run.ResumeRequested || run.BundleStep is not { } step)
            return TrainingSession.Create(run.EngineSpec(), run.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var bundle = paths.BundlePath(run.Id, step);
        if (!File.Exists(bundle))
            throw new FileNotFoundException($"The resume bundle of step {step:N0} is not at {bundle}: is EmaLab:ArtifactDirectory the same shared folder on every machine?");
        return ResumeBundle.Resume(bundle);
    }

    TrainingResult Train(Run run, TrainingSession session, RunObserver observer, CancellationToken cancellation)
    {
        if (session.Step == 0 && run.CheckpointEvery is not null) checkpoints.Save(run.Id, session, session.Tracks);
        while (true)
        {
            var result = session.Train(observer, cancellation, stopAfterStep: NextStop(session.Step, run.CheckpointEvery));
            if (result.Outcome != TrainingOutcome.Paused) return result;
            if (session.Step % _bundleEvery == 0) SaveBundle(run.Id, run.Attempt!, session);
            if (run.CheckpointEvery is { } every && session.Step % every == 0) checkpoints.Save(run.Id, session, session.Tracks);
        }
    }

    long NextStop(long step, long? checkpointEvery)
    {
        var next = (step / _bundleEvery + 1) * _bundleEvery;
        if (checkpointEvery is { } every) next = Math.Min(next, (step / every + 1) * every);
        return next;
    }

    /// <summary>Takes the run (<see cref="RunLifecycle.Claim"/>) and says in its log which worker started it, and from where.</summary>
    Run? Claim(long runId, JobTicket? job)
    {
        if (lifecycle.Claim(runId, job) is not { } claimed) return null;
        var run = claimed.Run;
        if (job is not null)
            pipeline.WriteLog(runId, TrainingLogLevel.Info, claimed.Takeover
                ? $"Worker {job.WorkerName} took the run over at step {claimed.StepSeen:N0}: the worker training it stopped responding. " +
                  (run.BundleStep is { } step ? $"It continues from the bundle of step {step:N0}."
                      : "It had saved no bundle yet: training starts again.")
                : $"Worker {job.WorkerName} started the run{(run.ResumeRequested ? $" from the bundle of step {run.BundleStep:N0}" : "")}.",
                    run.Attempt);
        return run;
    }

    /// <summary>
    /// Queues the run again under a new ticket and sends the job, so that another worker continues it (from the bundle
    /// just saved, when <paramref name="attempt"/> trained it). Nothing happens if the run changed meanwhile.
    /// </summary>
    void Redispatch(long runId, string dispatchId, string? attempt, string why)
    {
        try
        {
            pipeline.FlushAsync().GetAwaiter().GetResult();
            if (lifecycle.Requeue(runId, dispatchId, attempt) is not { } next) return;
            logger.LogInformation("Run {RunId} is queued again for another worker: {Why}", runId, why);
            if (attempt is not null)
            {
                // Committed before the job is sent, so the log reads in order: this line, then the next worker's start.
                pipeline.WriteLog(runId, TrainingLogLevel.Info, $"Queued again for another worker: {why}.", attempt: null);
                pipeline.FlushAsync().GetAwaiter().GetResult();
            }
            trainers.Offer(runId, next);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Could not queue run {RunId} again", runId);
        }
    }

    /// <summary>The session is built: the start attempt succeeded.</summary>
    void MarkStarted(Run run, TrainingSession session)
    {
        // Metrics are appended, never overwritten (a client's many values at one step all count), so what this start
        // will log again goes first: everything after the bundle it resumes from, or everything on a fresh start.
        // The queue is flushed before, so no row of an earlier attempt lands after the delete.
        pipeline.FlushAsync().GetAwaiter().GetResult();
        using var db = dbFactory.CreateDbContext();
        var replayedFrom = session.Step > 0 ? session.Step + 1 : 0;
        if (db.Metrics.Where(m => m.RunId == run.Id && m.Step >= replayedFrom).ExecuteDelete() > 0) LatestValues.Rebuild(db, run.Id);
        lifecycle.Start(run.Id, run.Attempt!, session.Step, session.TotalSteps);
    }

    /// <summary>
    /// Writes the bundle file, then lets the metric writer record it: the run's bundle step advances in
    /// the same transaction as the metrics before it, so after a crash the recorded bundle never skips
    /// metrics that were still queued (a resume replays only the steps after it).
    /// </summary>
    void SaveBundle(long runId, string attempt, TrainingSession session)
    {
        Directory.CreateDirectory(paths.RunDirectory(runId));
        ResumeBundle.SaveAtomically(session, paths.BundlePath(runId, session.Step));
        pipeline.WriteBundleSaved(runId, session.Step, attempt);
    }

    /// <summary>Records the end of this attempt once everything the run reported is committed, unless another start has
    /// taken the run over meanwhile.</summary>
    void Finish(long runId, string attempt, RunStatus status, string? error, long step)
    {
        try
        {
            pipeline.FlushAsync().GetAwaiter().GetResult();
            if (!lifecycle.Finish(runId, attempt, status, error, step))
                logger.LogWarning("Run {RunId}: the end of attempt {Attempt} ({Status}) is not recorded: another start has taken the run over",
                    runId, attempt, status.ToApi());
        }
        catch (Exception e)
        {
            logger.LogError(e, "Could not record the end of run {RunId}", runId);
        }
    }
}
