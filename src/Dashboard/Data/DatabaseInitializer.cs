using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Data;

public static class DatabaseInitializer
{
    /// <summary>
    /// Applies migrations (the web role, or the single process; a worker waits until the database is current), prepares the
    /// store (SQLite: WAL, persistent; readers never block the writer), then recovers from a crash as the role may:
    /// in one process, runs left "running" are marked interrupted, resumable from their last bundle (a run whose start
    /// was cut short is queued again once, then failed), and half-written files are removed. With jobs across processes
    /// a running run is left alone (its job goes to another worker when its own stops renewing it); the web role sends
    /// a job for queued runs that have none (the process stopped between storing a run and sending its job).
    /// </summary>
    public static async Task InitializeDatabaseAsync(this IServiceProvider services)
    {
        var store = services.GetRequiredService<MetricStore>();
        var options = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EmaLabOptions>>().Value;
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(DatabaseInitializer));
        await using var db = store.CreateContext();
        if (options.Serves) await store.ExclusivelyAsync(async () =>
        {
            await db.Database.MigrateAsync();
            // Hangfire's tables too: built with the storage, which only the web role lets install them.
            if (options.JobsAcrossProcesses) services.GetRequiredService<Hangfire.JobStorage>();
            return true;
        });
        else await WaitForSchemaAsync(store, db, logger);
        await store.PrepareAsync(db, CancellationToken.None);
        if (!options.JobsAcrossProcesses) await RecoverSingleProcessAsync(db, services.GetRequiredService<DataPaths>(), logger);
        else if (options.Serves) await SendMissingJobsAsync(db, services.GetRequiredService<Runs.RunDispatch>(), services.GetRequiredService<DataPaths>(), logger);
    }

    /// <summary>A worker never changes the schema: it waits until the web role has applied every migration it knows.</summary>
    static async Task WaitForSchemaAsync(MetricStore store, EmaLabDbContext db, ILogger logger)
    {
        for (var waited = false; ; waited = true)
        {
            // Under the lock: seen current only once the web role has finished, Hangfire's tables included.
            var pending = await store.ExclusivelyAsync(async () => (await db.Database.GetPendingMigrationsAsync()).Count());
            if (pending == 0) return;
            if (!waited) logger.LogWarning("Waiting for the web role to apply {Count} database migration(s)", pending);
            await Task.Delay(TimeSpan.FromSeconds(1));
        }
    }

    static async Task RecoverSingleProcessAsync(EmaLabDbContext db, DataPaths paths, ILogger logger)
    {
        // A client's run is trained elsewhere: the server stopping says nothing about it.
        var crashed = await db.Runs.Where(r => r.Status == RunStatus.Running && r.Origin == RunOrigin.Engine).ToListAsync();
        foreach (var run in crashed)
        {
            switch (run.StartAttempts)
            {
                case 0:
                    run.Status = RunStatus.Interrupted;
                    run.FinishedAt = DateTimeOffset.UtcNow;
                    run.Error = run.BundleStep is { } step
                        ? $"The server stopped while this run was at step {run.Step:N0}; resume continues from step {step:N0}."
                        : $"The server stopped while this run was at step {run.Step:N0}, before its first resume bundle; clone it to start again.";
                    break;
                case 1:
                    // The process ended while this run was being built: maybe not its fault; one more try.
                    run.Status = RunStatus.Queued;
                    break;
                default:
                    // A run that takes the process down every time it is built must not do so at every start.
                    run.Status = RunStatus.Failed;
                    run.FinishedAt = DateTimeOffset.UtcNow;
                    run.Error = $"The server stopped {run.StartAttempts} times while starting this run (building its model or loading its data or bundle); it is not started again.";
                    break;
            }
        }
        await db.SaveChangesAsync();
        if (crashed.Count > 0) logger.LogWarning("{Count} run(s) were left running by an earlier process: {Outcomes}", crashed.Count,
            string.Join(", ", crashed.Select(r => $"run {r.Id} {r.Status.ToApi()}")));
        var partial = paths.DeletePartialFiles(writtenBefore: DateTime.MaxValue);
        if (partial > 0) logger.LogWarning("Removed {Count} half-written file(s) left by an earlier process", partial);
    }

    static async Task SendMissingJobsAsync(EmaLabDbContext db, Runs.RunDispatch dispatch, DataPaths paths, ILogger logger)
    {
        var unsent = await db.Runs.AsNoTracking().Where(r => r.Status == RunStatus.Queued && r.Origin == RunOrigin.Engine && r.JobId == null)
            .Select(r => new { r.Id, r.DispatchId }).ToListAsync();
        foreach (var run in unsent)
        {
            // A new ticket, so that a job sent meanwhile under the old one trains nothing.
            var ticket = Run.NewUuid();
            if (await db.Runs.Where(r => r.Id == run.Id && r.Status == RunStatus.Queued && r.DispatchId == run.DispatchId && r.JobId == null)
                    .ExecuteUpdateAsync(s => s.SetProperty(r => r.DispatchId, ticket)) == 1)
                dispatch.Send(run.Id, ticket);
        }
        if (unsent.Count > 0) logger.LogWarning("Sent the job of {Count} queued run(s) that had none", unsent.Count);
        // Other processes may be writing files into the shared folder right now: only long-abandoned partial files go.
        var partial = paths.DeletePartialFiles(writtenBefore: DateTime.UtcNow.AddHours(-1));
        if (partial > 0) logger.LogWarning("Removed {Count} half-written file(s) abandoned over an hour ago", partial);
    }
}
