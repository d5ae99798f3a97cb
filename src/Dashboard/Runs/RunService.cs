using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;
using Microsoft.EntityFrameworkCore;
using EmaLab.TrainingEngine;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// What pages and the REST API do to runs: create, rename and annotate, cancel, resume, clone, delete. Every change takes
/// its caller and checks the caller's permission on the run's experiment here (EDIT; MANAGE to delete), so a page cannot
/// forget what the API's access filter also checks at its edge; a deletion writes its audit line here too.
/// </summary>
public sealed class RunService(
    IDbContextFactory<EmaLabDbContext> dbFactory,
    ITrainerHost trainers,
    RunLifecycle lifecycle,
    MetricPipeline pipeline,
    RunEventHub hub,
    MetricVersions versions,
    DataPaths paths,
    IExperimentPermissions permissions,
    IAuditTrail audit,
    ILogger<RunService> logger)
{
    /// <summary>Stores the run (with its tracks) in one transaction and queues it.</summary>
    public async Task<Run> CreateAsync(RunRequest request, Caller creator, CancellationToken cancellationToken = default) =>
        (await CreateManyAsync([request], creator, cancellationToken))[0];

    /// <summary>
    /// Stores the runs (a group's, say) with their tracks and group tags in one transaction — all or none — then queues them.
    /// Each records the account that created it (<c>mlflow.user</c>, as a script's run records its user).
    /// </summary>
    public async Task<IReadOnlyList<Run>> CreateManyAsync(IReadOnlyList<RunRequest> requests, Caller creator,
        CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        foreach (var experimentId in requests.Select(r => r.ExperimentId).Distinct())
        {
            if (!await db.Experiments.AnyAsync(e => e.Id == experimentId && !e.Deleted, cancellationToken))
                throw new RequestValidationException("experimentId", $"There is no active experiment {experimentId}.");
            await permissions.RequireAsync(creator, experimentId, ExperimentPermissionLevel.Edit, cancellationToken);
        }
        var runs = requests.Select(request => new Run
        {
            Name = request.Name,
            ExperimentId = request.ExperimentId,
            Uuid = Run.NewUuid(),
            SpecJson = request.Spec.ToJson(),
            CheckpointEvery = request.CheckpointEvery,
            TotalSteps = request.Spec.PlannedSteps(),
            CreatedAt = DateTimeOffset.UtcNow,
            Tracks = [new EmaTrack { Name = MetricKeys.RawTrack },
                .. request.Spec.EmaRules().Select(r => new EmaTrack { Name = r.Name, Decay = double.IsNaN(r.Decay) ? null : r.Decay })],
            Tags = [.. request.Group is { } group ? [new RunTag { Key = TagNames.Group, Value = group }] : Array.Empty<RunTag>(),
                .. creator.Account is { } account ? [new RunTag { Key = TagNames.User, Value = account }] : Array.Empty<RunTag>()],
        }).ToList();
        await lifecycle.CreateAsync(db, runs, cancellationToken);
        // The audit log keeps who created each run where nobody can change it (a run's tags can be).
        foreach (var run in runs) await audit.RecordAsync(creator, "run.create", $"run {run.Id}", run.Name);
        foreach (var run in runs) trainers.Offer(run.Id, run.DispatchId!);
        return runs;
    }

    /// <summary>
    /// The run, once the caller is known to have <paramref name="level"/> on its experiment (null when there is no such run;
    /// <see cref="PermissionDeniedException"/> when they do not).
    /// </summary>
    async Task<Run?> RunForAsync(long id, Caller caller, ExperimentPermissionLevel level, CancellationToken cancellationToken)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var run = await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (run is not null) await permissions.RequireAsync(caller, run.ExperimentId, level, cancellationToken);
        return run;
    }

    /// <summary>Renames the run and sets its notes and user tags (each only when given); null when there is no such run.</summary>
    public async Task<Run?> UpdateAsync(long id, RunUpdate update, Caller caller, CancellationToken cancellationToken = default)
    {
        update.Validate();
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var run = await db.Runs.Include(r => r.Tags).SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (run is null) return null;
        await permissions.RequireAsync(caller, run.ExperimentId, ExperimentPermissionLevel.Edit, cancellationToken);
        void Set(string key, string? value)
        {
            var tag = run.Tags.FirstOrDefault(t => t.Key == key);
            if (value is null) { if (tag is not null) run.Tags.Remove(tag); }
            else if (tag is null) run.Tags.Add(new RunTag { Key = key, Value = value });
            else tag.Value = value;
        }
        if (update.Name is { } name)
        {
            run.Name = name.Trim();
            // MLflow keeps the name in a tag too: a client reading the run sees the new one.
            if (run.Tags.Any(t => t.Key == TagNames.RunName)) Set(TagNames.RunName, run.Name);
        }
        if (update.Notes is { } notes) Set(TagNames.Notes, notes.Length == 0 ? null : notes);
        if (update.Tags is { } tags)
        {
            foreach (var old in run.Tags.Where(t => TagNames.IsUser(t.Key) && !tags.ContainsKey(t.Key)).ToList()) run.Tags.Remove(old);
            foreach (var (key, value) in tags) Set(key, value);
        }
        await db.SaveChangesAsync(cancellationToken);
        lifecycle.Changed(id, run.Status); // lists showing it reload
        return run;
    }

    /// <summary>What became of a request: done, unknown run, refused, or accepted and finishing in the background.</summary>
    public enum Outcome { Done, NotFound, Conflict, Accepted }

    /// <summary>
    /// Cancels a queued run at once (one conditional update, so it cannot race the worker taking it), or stops a
    /// running one and waits up to <see cref="ActiveRuns.StopTimeout"/>; a step that takes longer leaves it stopping (Accepted).
    /// </summary>
    public async Task<(Outcome, string?)> CancelAsync(long id, Caller caller, CancellationToken cancellationToken = default)
    {
        if (await RunForAsync(id, caller, ExperimentPermissionLevel.Edit, cancellationToken) is null) return (Outcome.NotFound, null);
        if (await lifecycle.CancelQueuedAsync(id, cancellationToken) is (true, var jobId))
        {
            trainers.Withdraw(jobId);
            return (Outcome.Done, null);
        }
        switch (await trainers.StopAsync(id, cancellationToken))
        {
            case ActiveRuns.CancelResult.Stopped: return (Outcome.Done, null);
            case ActiveRuns.CancelResult.Stopping: return (Outcome.Accepted, $"Run {id} is stopping after its current step.");
        }
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var run = await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
        if (run is null) return (Outcome.NotFound, null);
        if (run.Origin == RunOrigin.Client) return (Outcome.Conflict, ClientRunMessage(id));
        return (Outcome.Conflict, $"Run {id} is {run.Status.ToApi()}; only queued or running runs can be cancelled.");
    }

    /// <summary>Queues an interrupted or cancelled run to continue from its resume bundle (one conditional update: two
    /// resumes cannot both queue it).</summary>
    public async Task<(Outcome, string?)> ResumeAsync(long id, Caller caller, CancellationToken cancellationToken = default)
    {
        var run = await RunForAsync(id, caller, ExperimentPermissionLevel.Edit, cancellationToken);
        if (run is null) return (Outcome.NotFound, null);
        if (run.Origin == RunOrigin.Client) return (Outcome.Conflict, ClientRunMessage(id));
        if (!run.Status.IsResumable())
            return (Outcome.Conflict, $"Run {id} is {run.Status.ToApi()}; only interrupted or cancelled runs can be resumed.");
        if (run.BundleStep is not { } step || !File.Exists(paths.BundlePath(id, step)))
            return (Outcome.Conflict, $"Run {id} has no resume bundle (none was saved before it stopped); clone it to start again.");
        if (await lifecycle.ResumeAsync(id, run.Status, step, cancellationToken) is not { } ticket)
            return (Outcome.Conflict, $"Run {id} changed while resuming (resumed or cancelled by another request).");
        trainers.Offer(id, ticket);
        return (Outcome.Done, null);
    }

    static string ClientRunMessage(long id) =>
        $"Run {id} is logged by a client through the tracking API; it is started and ended there (runs/update), not here.";

    /// <summary>
    /// Stops the run if needed, then removes its rows and its folder. A run whose step outlasts <see cref="ActiveRuns.StopTimeout"/>
    /// is removed in the background once it has stopped (Accepted). Needs MANAGE; the audit log keeps who asked.
    /// </summary>
    public async Task<Outcome> DeleteAsync(long id, Caller caller, CancellationToken cancellationToken = default)
    {
        if (await RunForAsync(id, caller, ExperimentPermissionLevel.Manage, cancellationToken) is null) return Outcome.NotFound;
        Outcome outcome;
        if (await trainers.StopAsync(id, cancellationToken) == ActiveRuns.CancelResult.Stopping)
        {
            _ = DeleteWhenStoppedAsync(id);
            outcome = Outcome.Accepted;
        }
        else outcome = await DeleteStoppedAsync(id, cancellationToken) ? Outcome.Done : Outcome.NotFound;
        if (outcome != Outcome.NotFound) await audit.RecordAsync(caller, "run.delete", $"run {id}");
        return outcome;
    }

    async Task DeleteWhenStoppedAsync(long id)
    {
        try
        {
            await trainers.WhenStoppedAsync(id);
            await DeleteStoppedAsync(id, CancellationToken.None);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Could not delete run {RunId} after it stopped", id);
        }
    }

    /// <summary>
    /// A registered version keeps its files when its run goes: each logged model of the run that a version promotes leaves
    /// the run's folder for <c>models/</c> (files first, so a crash between the two loses nothing) and stops naming the run.
    /// </summary>
    async Task KeepRegisteredModelsAsync(EmaLabDbContext db, long runId, CancellationToken cancellationToken)
    {
        var registered = await db.LoggedModels.AsNoTracking()
            .Where(m => m.SourceRunId == runId && db.ModelVersions.Any(v => v.ModelId == m.Id && v.CurrentStage != ModelVersion.DeletedStage))
            .ToListAsync(cancellationToken);
        foreach (var model in registered)
        {
            var from = paths.LoggedModelDirectory(model);
            var to = paths.RegisteredModelDirectory(model.Id);
            if (Directory.Exists(from) && !Directory.Exists(to))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                Directory.Move(from, to);
            }
            await db.LoggedModels.Where(m => m.Id == model.Id).ExecuteUpdateAsync(set => set.SetProperty(m => m.SourceRunId, (long?)null),
                cancellationToken);
        }
    }

    async Task<bool> DeleteStoppedAsync(long id, CancellationToken cancellationToken)
    {
        await pipeline.FlushAsync();
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        // Metrics are many: delete them in SQL rather than loading them for the cascade.
        await db.Metrics.Where(m => m.RunId == id).ExecuteDeleteAsync(cancellationToken);
        await db.LatestMetrics.Where(m => m.RunId == id).ExecuteDeleteAsync(cancellationToken);
        await KeepRegisteredModelsAsync(db, id, cancellationToken);
        var deleted = await db.Runs.Where(r => r.Id == id).ExecuteDeleteAsync(cancellationToken);
        versions.Advance(id); // what readers cached of it is gone
        if (deleted == 0) return false;
        var folder = paths.RunDirectory(id);
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        hub.Publish(new RunEvent(RunEventType.Deleted, id));
        return true;
    }
}
