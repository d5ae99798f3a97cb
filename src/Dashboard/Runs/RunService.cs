using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;
using Microsoft.EntityFrameworkCore;
using EmaLab.TrainingEngine;

namespace EmaLab.Dashboard.Runs;

/// <summary>What pages and the REST API do to runs: create, cancel, resume, clone, delete.</summary>
public sealed class RunService(
    IDbContextFactory<EmaLabDbContext> dbFactory,
    RunQueue queue,
    MetricPipeline pipeline,
    RunEventHub hub,
    MetricVersions versions,
    DataPaths paths,
    ILogger<RunService> logger)
{
    static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Stores the run (with its tracks) in one transaction and queues it.</summary>
    public async Task<Run> CreateAsync(RunRequest request, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        if (!await db.Experiments.AnyAsync(e => e.Id == request.ExperimentId && !e.Deleted, cancellationToken))
            throw new RequestValidationException("experimentId", $"There is no active experiment {request.ExperimentId}.");
        var run = new Run
        {
            Name = request.Name,
            ExperimentId = request.ExperimentId,
            Uuid = Run.NewUuid(),
            SpecJson = request.Spec.ToJson(),
            CheckpointEvery = request.CheckpointEvery,
            Status = RunStatus.Queued,
            TotalSteps = request.Spec.PlannedSteps(),
            CreatedAt = DateTimeOffset.UtcNow,
            Tracks = [new EmaTrack { Name = MetricKeys.RawTrack }, .. request.Spec.Ema.Rules().Select(r => new EmaTrack { Name = r.Name, Decay = double.IsNaN(r.Decay) ? null : r.Decay })],
        };
        db.Runs.Add(run);
        await db.SaveChangesAsync(cancellationToken);
        queue.Enqueue(run.Id);
        hub.Publish(new RunEvent(RunEventType.Status, run.Id) { Status = RunStatus.Queued.ToApi() });
        return run;
    }

    public async Task<Run?> FindAsync(long id, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        return await db.Runs.AsNoTracking().Include(r => r.Tracks).SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
    }

    /// <summary>What became of a request: done, unknown run, refused, or accepted and finishing in the background.</summary>
    public enum Outcome { Done, NotFound, Conflict, Accepted }

    /// <summary>
    /// Cancels a queued run at once (one conditional update, so it cannot race the worker taking it), or stops a
    /// running one and waits up to <see cref="StopTimeout"/>; a step that takes longer leaves it stopping (Accepted).
    /// </summary>
    public async Task<(Outcome, string?)> CancelAsync(long id, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var cancelledWhileQueued = await db.Runs.Where(r => r.Id == id && r.Status == RunStatus.Queued && r.Origin == RunOrigin.Engine).ExecuteUpdateAsync(s => s
            .SetProperty(r => r.Status, RunStatus.Cancelled)
            .SetProperty(r => r.Error, "Cancelled before it started.")
            .SetProperty(r => r.FinishedAt, DateTimeOffset.UtcNow), cancellationToken);
        if (cancelledWhileQueued == 1)
        {
            hub.Publish(new RunEvent(RunEventType.Status, id) { Status = RunStatus.Cancelled.ToApi() });
            return (Outcome.Done, null);
        }
        switch (await queue.CancelAsync(id, StopTimeout))
        {
            case RunQueue.CancelResult.Stopped: return (Outcome.Done, null);
            case RunQueue.CancelResult.Stopping: return (Outcome.Accepted, $"Run {id} is stopping after its current step.");
        }
        var run = await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (run is null) return (Outcome.NotFound, null);
        if (run.Origin == RunOrigin.Client) return (Outcome.Conflict, ClientRunMessage(id));
        return (Outcome.Conflict, $"Run {id} is {run.Status.ToApi()}; only queued or running runs can be cancelled.");
    }

    /// <summary>Queues an interrupted or cancelled run to continue from its resume bundle (one conditional update: two resumes cannot both queue it).</summary>
    public async Task<(Outcome, string?)> ResumeAsync(long id, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var run = await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (run is null) return (Outcome.NotFound, null);
        if (run.Origin == RunOrigin.Client) return (Outcome.Conflict, ClientRunMessage(id));
        if (!run.Status.IsResumable())
            return (Outcome.Conflict, $"Run {id} is {run.Status.ToApi()}; only interrupted or cancelled runs can be resumed.");
        if (run.BundleStep is not { } step || !File.Exists(paths.BundlePath(id, step)))
            return (Outcome.Conflict, $"Run {id} has no resume bundle (none was saved before it stopped); clone it to start again.");
        var queued = await db.Runs.Where(r => r.Id == id && r.Status == run.Status && r.BundleStep == step).ExecuteUpdateAsync(s => s
            .SetProperty(r => r.Status, RunStatus.Queued)
            .SetProperty(r => r.ResumeRequested, true)
            .SetProperty(r => r.StartAttempts, 0)
            .SetProperty(r => r.Error, (string?)null), cancellationToken);
        if (queued == 0) return (Outcome.Conflict, $"Run {id} changed while resuming (resumed or cancelled by another request).");
        queue.Enqueue(id);
        hub.Publish(new RunEvent(RunEventType.Status, id) { Status = RunStatus.Queued.ToApi() });
        return (Outcome.Done, null);
    }

    static string ClientRunMessage(long id) =>
        $"Run {id} is logged by a client through the tracking API; it is started and ended there (runs/update), not here.";

    /// <summary>
    /// Stops the run if needed, then removes its rows and its folder. A run whose step outlasts <see cref="StopTimeout"/>
    /// is removed in the background once it has stopped (Accepted).
    /// </summary>
    public async Task<Outcome> DeleteAsync(long id, CancellationToken cancellationToken = default)
    {
        await using (var db = await dbFactory.CreateDbContextAsync(cancellationToken))
            if (!await db.Runs.AnyAsync(r => r.Id == id, cancellationToken)) return Outcome.NotFound;
        if (await queue.CancelAsync(id, StopTimeout) == RunQueue.CancelResult.Stopping)
        {
            _ = DeleteWhenStoppedAsync(id);
            return Outcome.Accepted;
        }
        return await DeleteStoppedAsync(id, cancellationToken) ? Outcome.Done : Outcome.NotFound;
    }

    async Task DeleteWhenStoppedAsync(long id)
    {
        try
        {
            await queue.WhenStoppedAsync(id);
            await DeleteStoppedAsync(id, CancellationToken.None);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Could not delete run {RunId} after it stopped", id);
        }
    }

    async Task<bool> DeleteStoppedAsync(long id, CancellationToken cancellationToken)
    {
        await pipeline.FlushAsync();
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        // Metrics are many: delete them in SQL rather than loading them for the cascade.
        await db.Metrics.Where(m => m.RunId == id).ExecuteDeleteAsync(cancellationToken);
        var deleted = await db.Runs.Where(r => r.Id == id).ExecuteDeleteAsync(cancellationToken);
        versions.Advance(id); // what readers cached of it is gone
        if (deleted == 0) return false;
        var folder = paths.RunDirectory(id);
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        hub.Publish(new RunEvent(RunEventType.Deleted, id));
        return true;
    }
}
