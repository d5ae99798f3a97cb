using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;
using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Runs;

/// <summary>What pages and the REST API do to runs: create, cancel, resume, clone, delete.</summary>
public sealed class RunService(
    IDbContextFactory<EmaLabDbContext> dbFactory,
    RunQueue queue,
    MetricPipeline pipeline,
    RunEventHub hub,
    MetricVersions versions,
    DataPaths paths)
{
    static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Stores the run (with its tracks) in one transaction and queues it.</summary>
    public async Task<Run> CreateAsync(RunRequest request, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var run = new Run
        {
            Name = request.Name,
            SpecJson = request.Spec.ToJson(),
            CheckpointEvery = request.CheckpointEvery,
            Status = RunStatus.Queued,
            TotalSteps = request.Spec.PlannedSteps(),
            CreatedAt = DateTimeOffset.UtcNow,
            Tracks = [new EmaTrack { Name = MetricKeys.RawTrack }, .. request.Spec.Ema.Decays.Select(d => new EmaTrack { Name = EmaSettings.TrackName(d), Decay = d })],
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

    public enum Outcome { Done, NotFound, Conflict }

    /// <summary>Cancels a queued run at once, or stops a running one (within a step) and waits for it.</summary>
    public async Task<(Outcome, string?)> CancelAsync(long id, CancellationToken cancellationToken = default)
    {
        if (await queue.CancelAsync(id, StopTimeout)) return (Outcome.Done, null);
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var run = await db.Runs.SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (run is null) return (Outcome.NotFound, null);
        if (run.Status != RunStatus.Queued) return (Outcome.Conflict, $"Run {id} is {run.Status.ToApi()}; only queued or running runs can be cancelled.");
        run.Status = RunStatus.Cancelled;
        run.Error = "Cancelled before it started.";
        run.FinishedAt = DateTimeOffset.UtcNow;
        await db.SaveChangesAsync(cancellationToken);
        hub.Publish(new RunEvent(RunEventType.Status, id) { Status = RunStatus.Cancelled.ToApi() });
        return (Outcome.Done, null);
    }

    /// <summary>Queues an interrupted or cancelled run to continue from its resume bundle.</summary>
    public async Task<(Outcome, string?)> ResumeAsync(long id, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var run = await db.Runs.SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (run is null) return (Outcome.NotFound, null);
        if (run.Status is not (RunStatus.Interrupted or RunStatus.Cancelled))
            return (Outcome.Conflict, $"Run {id} is {run.Status.ToApi()}; only interrupted or cancelled runs can be resumed.");
        if (run.BundleStep is not { } step || !File.Exists(paths.BundlePath(id, step)))
            return (Outcome.Conflict, $"Run {id} has no resume bundle (none was saved before it stopped); clone it to start again.");
        run.Status = RunStatus.Queued;
        run.ResumeRequested = true;
        run.Error = null;
        await db.SaveChangesAsync(cancellationToken);
        queue.Enqueue(id);
        hub.Publish(new RunEvent(RunEventType.Status, id) { Status = RunStatus.Queued.ToApi() });
        return (Outcome.Done, null);
    }

    /// <summary>Stops the run if needed, then removes its rows and its folder.</summary>
    public async Task<Outcome> DeleteAsync(long id, CancellationToken cancellationToken = default)
    {
        await queue.CancelAsync(id, StopTimeout);
        await pipeline.FlushAsync();
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        // Metrics are many: delete them in SQL rather than loading them for the cascade.
        await db.Metrics.Where(m => m.RunId == id).ExecuteDeleteAsync(cancellationToken);
        var deleted = await db.Runs.Where(r => r.Id == id).ExecuteDeleteAsync(cancellationToken);
        versions.Advance(id); // what readers cached of it is gone
        if (deleted == 0) return Outcome.NotFound;
        var folder = paths.RunDirectory(id);
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        hub.Publish(new RunEvent(RunEventType.Deleted, id));
        return Outcome.Done;
    }
}
