using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Data;

public static class DatabaseInitializer
{
    /// <summary>
    /// Applies migrations, switches the file to WAL (persistent; readers never block the writer), and marks
    /// runs left "running" by a crash as interrupted, resumable from their last bundle, and removes files a
    /// crash left half-written.
    /// </summary>
    public static async Task InitializeDatabaseAsync(this IServiceProvider services)
    {
        await using var db = await services.GetRequiredService<IDbContextFactory<EmaLabDbContext>>().CreateDbContextAsync();
        await db.Database.MigrateAsync();
        await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;");
        var crashed = await db.Runs.Where(r => r.Status == RunStatus.Running).ToListAsync();
        foreach (var run in crashed)
        {
            run.Status = RunStatus.Interrupted;
            run.FinishedAt = DateTimeOffset.UtcNow;
            run.Error = run.BundleStep is { } step
                ? $"The server stopped while this run was at step {run.Step:N0}; resume continues from step {step:N0}."
                : $"The server stopped while this run was at step {run.Step:N0}, before its first resume bundle; clone it to start again.";
        }
        await db.SaveChangesAsync();
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(DatabaseInitializer));
        if (crashed.Count > 0) logger.LogWarning("Marked {Count} run(s) left running by an earlier process as interrupted", crashed.Count);
        var partial = services.GetRequiredService<Runs.DataPaths>().DeletePartialFiles();
        if (partial > 0) logger.LogWarning("Removed {Count} half-written file(s) left by an earlier process", partial);
    }
}
