using Microsoft.EntityFrameworkCore;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// A part of the schema that EF Core does not migrate (Hangfire's tables), registered by whoever needs it: installed
/// after the migrations, under the same lock, by the process that migrates.
/// </summary>
public sealed record SchemaPart(Action<IServiceProvider> Install);

public static class DatabaseInitializer
{
    /// <summary>
    /// Applies migrations (the web role, or the single process; a worker waits until the database is current) and prepares
    /// the store (SQLite: WAL, persistent; readers never block the writer). Runs are recovered after this, by the trainer
    /// host (<c>ITrainerHost.RecoverAtStartAsync</c>).
    /// </summary>
    public static async Task InitializeDatabaseAsync(this IServiceProvider services)
    {
        var database = services.GetRequiredService<EmaLabDatabase>();
        var options = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EmaLabOptions>>().Value;
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(DatabaseInitializer));
        await using var db = database.CreateContext();
        if (options.Serves) await database.ExclusivelyAsync(async () =>
        {
            await db.Database.MigrateAsync();
            foreach (var part in services.GetServices<SchemaPart>()) part.Install(services);
            return true;
        });
        else await WaitForSchemaAsync(database, db, logger);
        await database.PrepareAsync(db, CancellationToken.None);
    }

    /// <summary>A worker never changes the schema: it waits until the web role has applied every migration it knows.</summary>
    static async Task WaitForSchemaAsync(EmaLabDatabase database, EmaLabDbContext db, ILogger logger)
    {
        for (var waited = false; ; waited = true)
        {
            // Under the lock: seen current only once the web role has finished, Hangfire's tables included.
            var pending = await database.ExclusivelyAsync(async () => (await db.Database.GetPendingMigrationsAsync()).Count());
            if (pending == 0) return;
            if (!waited) logger.LogWarning("Waiting for the web role to apply {Count} database migration(s)", pending);
            await Task.Delay(TimeSpan.FromSeconds(1));
        }
    }
}
