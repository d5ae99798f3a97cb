using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Data;

public static class DatabaseInitializer
{
    /// <summary>
    /// Applies migrations, prepares the store (SQLite: WAL, persistent; readers never block the writer), and marks
    /// runs left "running" by a crash as interrupted, resumable from their last bundle (a run whose start was cut
    /// short is queued again once, then failed), and removes files a crash left half-written.
    /// </summary>
    public static async Task InitializeDatabaseAsync(this IServiceProvider services)
    {
        var store = services.GetRequiredService<MetricStore>();
        await using var db = store.CreateContext();
        await db.Database.MigrateAsync();
        await store.PrepareAsync(db, CancellationToken.None);
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
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(DatabaseInitializer));
        if (crashed.Count > 0) logger.LogWarning("{Count} run(s) were left running by an earlier process: {Outcomes}", crashed.Count,
            string.Join(", ", crashed.Select(r => $"run {r.Id} {r.Status.ToApi()}")));
        var partial = services.GetRequiredService<DataPaths>().DeletePartialFiles();
        if (partial > 0) logger.LogWarning("Removed {Count} half-written file(s) left by an earlier process", partial);
    }
}
