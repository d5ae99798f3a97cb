using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// The database behind EMA Lab (<see cref="EmaLabOptions.Database"/>): its EF Core contexts, the lock for schema changes,
/// the kinds of its errors, and the metric table — the hot path, one row per point — in its own SQL, which only
/// <see cref="MetricQueries"/> and the metric pipeline use. NaN is stored as NULL (MIN/MAX skip it); infinities as themselves.
/// </summary>
public abstract class EmaLabDatabase
{
    /// <summary>Options for a new context of this database (a PostgreSQL context carries its own migrations).</summary>
    public abstract EmaLabDbContext CreateContext();

    /// <summary>Run once at start-up after the migrations (SQLite: WAL journal).</summary>
    public virtual Task PrepareAsync(EmaLabDbContext db, CancellationToken ct) => Task.CompletedTask;

    /// <summary>
    /// Runs <paramref name="action"/> while no other process on the database runs one (schema changes: processes starting
    /// together on a new database would each create the same tables). One process on SQLite has no one to exclude.
    /// </summary>
    public virtual Task<T> ExclusivelyAsync<T>(Func<Task<T>> action) => action();

    /// <summary>The metric writer's own connection, open, with its statements prepared.</summary>
    public abstract MetricTableWriter OpenWriter();

    /// <summary>An error that may pass (a lock held too long, a full disk, a lost connection): the writer keeps the batch and retries.</summary>
    public abstract bool IsTransient(Exception e);

    /// <summary>A save refused because a unique key exists already (two requests raced to add the same row).</summary>
    public abstract bool IsUniqueViolation(DbUpdateException e);

    /// <summary>Which (track, key) series a run has, with their point counts and last values.</summary>
    public abstract List<SeriesInfo> ListSeries(long runId);

    /// <summary>
    /// One series in step order (rows at one step in time order); with <paramref name="after"/>, only the rows after that
    /// (step, time), the order of the table's key.
    /// </summary>
    public abstract List<MetricValue> ReadPoints(long runId, string track, string key, SeriesPosition? after = null);

    /// <summary>Best (highest, or lowest when <paramref name="lowerIsBetter"/>) and final value per run and track of one metric.</summary>
    public abstract List<TrackSummary> Summaries(IReadOnlyCollection<long> runIds, string key, bool lowerIsBetter);

    /// <summary>A value column as the metric table stores it: NULL is NaN.</summary>
    protected static double ValueAt(DbDataReader reader, int column) => reader.IsDBNull(column) ? double.NaN : reader.GetDouble(column);

    /// <summary>A row of the summaries' query, the same in both databases: run, track, best value and step, final value and step.</summary>
    protected static TrackSummary SummaryAt(DbDataReader reader) =>
        new(reader.GetInt64(0), reader.GetString(1), ValueAt(reader, 2), reader.GetInt64(3), ValueAt(reader, 4), reader.GetInt64(5));

    /// <summary>Every row of a run by key, track and step, read lazily (a long run has millions).</summary>
    public abstract IEnumerable<MetricRow> Rows(long runId);
}

/// <summary>
/// The metric pipeline's writes on its own connection, one transaction per batch: <c>using var t = writer.Begin();</c>,
/// the writes, <c>t.Commit()</c>; a transaction disposed without a commit leaves nothing. The latest value of each
/// series the batch touched (<see cref="LatestValues"/>) is written in the same transaction, once per series.
/// </summary>
public abstract class MetricTableWriter : IDisposable
{
    readonly Dictionary<(long RunId, string Key, string Track), LatestMetric> _latest = [];

    public Transaction Begin()
    {
        _latest.Clear();
        var (commit, dispose) = BeginTransaction();
        return new Transaction(() =>
        {
            if (_latest.Count > 0) WriteLatest(_latest.Values);
            commit();
            _latest.Clear();
        }, () =>
        {
            _latest.Clear();
            dispose();
        });
    }

    public void Metric(long runId, string key, string track, long step, double value, long wallTimeMs)
    {
        WriteMetric(runId, key, track, step, value, wallTimeMs);
        if (_latest.TryGetValue((runId, key, track), out var latest) && !LatestValues.Replaces(step, wallTimeMs, latest.Step, latest.WallTimeMs))
            return;
        _latest[(runId, key, track)] = new LatestMetric
        {
            RunId = runId, Key = key, Track = track, Step = step, WallTimeMs = wallTimeMs, Value = double.IsNaN(value) ? null : value,
        };
    }

    /// <summary>Opens the transaction: what commits it and what rolls it back (a dispose without commit).</summary>
    protected abstract (Action Commit, Action Dispose) BeginTransaction();
    protected abstract void WriteMetric(long runId, string key, string track, long step, double value, long wallTimeMs);
    /// <summary>Upserts each series' latest row where the stored one is not later (<see cref="LatestValues.Replaces"/>).</summary>
    protected abstract void WriteLatest(IReadOnlyCollection<LatestMetric> latest);
    public abstract void Progress(long runId, long step, long totalSteps);
    public abstract void Log(long runId, long wallTimeMs, string level, string message);
    /// <summary>Records the run's latest resume bundle (in the transaction that commits the metrics before it).</summary>
    public abstract void BundleStep(long runId, long step);
    /// <summary>
    /// The runs' current attempts, read in the open transaction (on PostgreSQL with a share lock, so that no other start
    /// can take a run over between this read and the commit).
    /// </summary>
    public abstract Dictionary<long, string?> Attempts(IReadOnlyCollection<long> runIds);
    public abstract void Dispose();

    public sealed class Transaction(Action commit, Action dispose) : IDisposable
    {
        public void Commit() => commit();
        public void Dispose() => dispose();
    }
}

/// <summary>Contexts of the configured database, for everything that uses EF Core.</summary>
public sealed class DatabaseContextFactory(EmaLabDatabase database) : IDbContextFactory<EmaLabDbContext>
{
    public EmaLabDbContext CreateDbContext() => database.CreateContext();
}

public static class DatabaseRegistration
{
    public const string ConnectionStringName = "EmaLab";

    /// <summary>The configured database (<see cref="EmaLabOptions.Database"/>) as the store, EF Core's context factory
    /// and a scoped context, and the metric reads with their versions.</summary>
    public static IServiceCollection AddEmaLabDatabase(this IServiceCollection services)
    {
        services.AddSingleton<EmaLabDatabase>(provider =>
        {
            var options = provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<EmaLabOptions>>().Value;
            if (options.Database == DatabaseKind.Sqlite) return new SqliteDatabase(provider.GetRequiredService<DataPaths>(), options);
            var connectionString = provider.GetRequiredService<IConfiguration>().GetConnectionString(ConnectionStringName);
            if (string.IsNullOrWhiteSpace(connectionString))
                throw new InvalidOperationException($"EmaLab:Database is '{WireNames.Of(DatabaseKind.Postgres)}' but ConnectionStrings:{ConnectionStringName} is not set (e.g. \"Host=db;Username=emalab;Password=…;Database=emalab\").");
            return new PostgresDatabase(connectionString);
        });
        services.AddSingleton<IDbContextFactory<EmaLabDbContext>, DatabaseContextFactory>();
        services.AddScoped(provider => provider.GetRequiredService<IDbContextFactory<EmaLabDbContext>>().CreateDbContext());
        services.AddSingleton<MetricVersions>();
        services.AddSingleton<MetricQueries>();
        return services;
    }
}
