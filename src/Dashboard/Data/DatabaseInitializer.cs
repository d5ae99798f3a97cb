using Microsoft.EntityFrameworkCore;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Data;

public static class DatabaseInitializer
{
    /// <summary>
    /// Applies migrations (the web role, or the single process; a worker waits until the database is current) and prepares
    /// the store (SQLite: WAL, persistent; readers never block the writer). Runs are recovered after this, by the trainer
    /// host (<c>ITrainerHost.RecoverAtStartAsync</c>).
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
            if (options.Trainer == TrainerKind.Hangfire) services.GetRequiredService<Hangfire.JobStorage>();
            return true;
        });
        else await WaitForSchemaAsync(store, db, logger);
        await store.PrepareAsync(db, CancellationToken.None);
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
}
