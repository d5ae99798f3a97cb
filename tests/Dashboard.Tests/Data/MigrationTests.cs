using EmaLab.Dashboard.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// A database an earlier EMA Lab wrote upgrades with its data: the migrations that compute from what is stored (each
/// series' latest value; SQLite's times in their sortable form) are run against rows written as the old version wrote
/// them, on a real SQLite file and a real PostgreSQL database.
/// </summary>
public sealed class MigrationTests
{
    [Fact]
    public async Task A_sqlite_database_from_before_latest_values_upgrades_with_its_points_and_times()
    {
        var file = Path.Combine(Path.GetTempPath(), $"emalab-migration-{Guid.NewGuid():N}.db");
        try
        {
            await using var db = new EmaLabDbContext(new DbContextOptionsBuilder<EmaLabDbContext>().UseSqlite($"Data Source={file};Pooling=false").Options);
            // EF's default text for a time had as many fractional digits as it needed.
            await UpgradeAsync(db, createdAt: "2026-11-30 10:00:00.5+00:00", startedAt: "2026-11-30 10:00:01+00:00");
            var stored = await db.Database.SqlQueryRaw<string>("""SELECT "CreatedAt" || '|' || "StartedAt" AS "Value" FROM "Runs" """).SingleAsync();
            Assert.Equal("2026-11-30 10:00:00.5000000+00:00|2026-11-30 10:00:01.0000000+00:00", stored);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            File.Delete(file);
        }
    }

    [Fact, Trait("Speed", "Postgres")]
    public async Task A_postgres_database_from_before_latest_values_upgrades_with_its_points()
    {
        var cluster = PostgresCluster.Instance;
        var database = cluster.CreateDatabase();
        try
        {
            await using var db = new PostgresDbContext(PostgresDbContext.Options(database));
            await UpgradeAsync(db, createdAt: new DateTimeOffset(2026, 11, 30, 10, 0, 0, 500, TimeSpan.Zero), startedAt: new DateTimeOffset(2026, 11, 30, 10, 0, 1, TimeSpan.Zero));
        }
        finally
        {
            cluster.DropDatabase(database);
        }
    }

    /// <summary>
    /// Migrates to just before LatestMetrics, writes a run and its points as that version did; to just before DatasetContext,
    /// writes a dataset input as that version did; migrates to the end and reads them back.
    /// </summary>
    static async Task UpgradeAsync(EmaLabDbContext db, object createdAt, object startedAt)
    {
        var migrations = db.Database.GetMigrations().ToList();
        var before = migrations[migrations.FindIndex(m => m.EndsWith("_LatestMetrics", StringComparison.Ordinal)) - 1];
        await db.GetService<IMigrator>().MigrateAsync(before);

        await db.Database.ExecuteSqlRawAsync(
            """
            INSERT INTO "Runs" ("Name", "Status", "Origin", "ExperimentId", "Uuid", "Deleted", "Step", "TotalSteps", "CreatedAt", "StartedAt", "ResumeRequested", "StartAttempts", "CancelRequested")
            VALUES ('old', 'completed', 'client', 0, '0123456789abcdef0123456789abcdef', {0}, 0, 0, {1}, {2}, {0}, 0, {0})
            """, false, createdAt, startedAt);
        var runId = await db.Runs.Select(r => r.Id).SingleAsync();
        // Step 10 then step 5 (the latest is step 10's); many values at step 0 out of time order (the latest is the newest).
        (string Key, long Step, long Time, double Value)[] points = [("x", 10, 1000, 0.9), ("x", 5, 2000, 0.1), ("epoch", 0, 3000, 0.3), ("epoch", 0, 1000, 0.7), ("epoch", 0, 2000, 0.5)];
        foreach (var (key, step, time, value) in points)
            await db.Database.ExecuteSqlRawAsync(
                """INSERT INTO "Metrics" ("RunId", "Key", "Track", "Step", "WallTimeMs", "Value") VALUES ({0}, {1}, 'raw', {2}, {3}, {4})""", runId, key, step, time, value);

        // A dataset input logged before its context had a column of its own.
        await db.GetService<IMigrator>().MigrateAsync(migrations[migrations.FindIndex(m => m.EndsWith("_DatasetContext", StringComparison.Ordinal)) - 1]);
        await db.Database.ExecuteSqlRawAsync(
            """INSERT INTO "RunInputs" ("RunId", "DatasetName", "DatasetDigest", "SourceType", "Source", "TagsJson") VALUES ({0}, 'mnist', 'd1', 'local', '{{}}', {1})""",
            runId, """{"mlflow.data.context":"training","other":"x"}""");
        await db.Database.MigrateAsync();
        Assert.Equal("training", await db.RunInputs.Select(i => i.Context).SingleAsync());

        var latest = await db.LatestMetrics.AsNoTracking().Where(m => m.RunId == runId).OrderBy(m => m.Key).ToListAsync();
        Assert.Equal(["epoch", "x"], latest.Select(m => m.Key));
        Assert.Equal((0L, 3000L, 0.3), (latest[0].Step, latest[0].WallTimeMs, latest[0].Value!.Value));
        Assert.Equal((10L, 1000L, 0.9), (latest[1].Step, latest[1].WallTimeMs, latest[1].Value!.Value));
        var run = await db.Runs.AsNoTracking().SingleAsync();
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 10, 0, 0, 500, TimeSpan.Zero), run.CreatedAt);
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 10, 0, 1, TimeSpan.Zero), run.StartedAt);
        // Times order and compare in the database.
        var cut = new DateTimeOffset(2026, 11, 30, 10, 0, 0, 750, TimeSpan.Zero);
        Assert.Equal(1, await db.Runs.CountAsync(r => r.CreatedAt < cut && r.StartedAt > cut));
    }
}
