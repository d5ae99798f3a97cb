using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using SQLitePCL;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// The default store: <c>emalab.db</c> under the data directory, WAL journal (readers never block the writer).
/// The primary key (run, key, track, step, time) of the WITHOUT ROWID metric table serves every query in step order.
/// </summary>
public sealed class SqliteDatabase(DataPaths paths, EmaLabOptions options) : EmaLabDatabase
{
    readonly DbContextOptions<EmaLabDbContext> _contextOptions =
        new DbContextOptionsBuilder<EmaLabDbContext>().UseSqlite(paths.ConnectionString).Options;

    public override EmaLabDbContext CreateContext() => new(_contextOptions);

    public override Task PrepareAsync(EmaLabDbContext db, CancellationToken ct) => db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;", ct);

    public override MetricTableWriter OpenWriter()
    {
        var connection = new SqliteConnection(paths.ConnectionString);
        connection.Open();
        using (var pragma = connection.CreateCommand())
        {
            // WAL + NORMAL: a committed transaction survives a process kill; only an OS crash could lose the last one.
            pragma.CommandText = "PRAGMA synchronous=NORMAL;";
            if (options.Metrics.MaxDatabaseMegabytes > 0)
                pragma.CommandText += $"PRAGMA max_page_count={(long)options.Metrics.MaxDatabaseMegabytes * 1024 * 1024 / 4096};";
            pragma.ExecuteNonQuery();
        }
        return new Writer(connection);
    }

    /// <summary>A lock held past the timeout, a full disk or database, an I/O error.</summary>
    public override bool IsTransient(Exception e) =>
        e is SqliteException { SqliteErrorCode: raw.SQLITE_BUSY or raw.SQLITE_LOCKED or raw.SQLITE_FULL or raw.SQLITE_IOERR };

    public override bool IsUniqueViolation(DbUpdateException e) => e.InnerException is SqliteException { SqliteErrorCode: raw.SQLITE_CONSTRAINT };

    SqliteConnection Open()
    {
        var connection = new SqliteConnection(paths.ConnectionString);
        connection.Open();
        return connection;
    }

    public override List<SeriesInfo> ListSeries(long runId)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT l.Track, l.Key, c.Count, l.Step, l.Value FROM LatestMetrics AS l
            JOIN (SELECT Key, Track, COUNT(*) AS Count FROM Metrics WHERE RunId = $run GROUP BY Key, Track) AS c ON c.Key = l.Key AND c.Track = l.Track
            WHERE l.RunId = $run ORDER BY l.Key, l.Track
            """;
        command.Parameters.AddWithValue("$run", runId);
        using var reader = command.ExecuteReader();
        var result = new List<SeriesInfo>();
        while (reader.Read())
            result.Add(new SeriesInfo(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.GetInt64(3), ValueAt(reader, 4)));
        return result;
    }

    /// <summary>
    /// Reads a series through SQLite's C API rather than ADO.NET: the per-row cost of a data reader was
    /// a third of the time for a million points (bench/: 310 ms with a data reader, 205 ms this way).
    /// </summary>
    public override List<MetricValue> ReadPoints(long runId, string track, string key, SeriesPosition? after = null)
    {
        using var connection = Open();
        var db = connection.Handle!;
        var sql = "SELECT Step, Value, WallTimeMs FROM Metrics WHERE RunId = ?1 AND Key = ?2 AND Track = ?3"
            + (after is null ? "" : " AND (Step, WallTimeMs) > (?4, ?5)") + " ORDER BY Step, WallTimeMs";
        Check(db, raw.sqlite3_prepare_v2(db, sql, out var statement));
        using (statement)
        {
            Check(db, raw.sqlite3_bind_int64(statement, 1, runId));
            Check(db, raw.sqlite3_bind_text(statement, 2, key));
            Check(db, raw.sqlite3_bind_text(statement, 3, track));
            if (after is { } position)
            {
                Check(db, raw.sqlite3_bind_int64(statement, 4, position.Step));
                Check(db, raw.sqlite3_bind_int64(statement, 5, position.WallTimeMs));
            }
            var points = new List<MetricValue>(1024);
            int result;
            while ((result = raw.sqlite3_step(statement)) == raw.SQLITE_ROW)
                points.Add(new MetricValue(raw.sqlite3_column_int64(statement, 0),
                    raw.sqlite3_column_type(statement, 1) == raw.SQLITE_NULL ? double.NaN : raw.sqlite3_column_double(statement, 1))
                { WallTimeMs = raw.sqlite3_column_int64(statement, 2) });
            if (result != raw.SQLITE_DONE) Check(db, result);
            return points;
        }
    }

    public override List<TrackSummary> Summaries(IReadOnlyCollection<long> runIds, string key, bool lowerIsBetter)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        var ids = IdList(runIds);
        // SQLite returns the bare column (Step, Value) of the row that holds the MIN/MAX.
        command.CommandText = $"""
            SELECT b.RunId, b.Track, b.BestValue, b.BestStep, f.Value, f.Step FROM
              (SELECT RunId, Track, {(lowerIsBetter ? "MIN" : "MAX")}(Value) AS BestValue, Step AS BestStep
                 FROM Metrics WHERE Key = $key AND RunId IN ({ids}) GROUP BY RunId, Track) AS b
            JOIN LatestMetrics AS f ON f.Key = $key AND b.RunId = f.RunId AND b.Track = f.Track
            """;
        command.Parameters.AddWithValue("$key", key);
        using var reader = command.ExecuteReader();
        var result = new List<TrackSummary>();
        while (reader.Read()) result.Add(SummaryAt(reader));
        return result;
    }

    public override IEnumerable<MetricRow> Rows(long runId)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT Track, Key, Step, Value, WallTimeMs FROM Metrics WHERE RunId = $run ORDER BY Key, Track, Step";
        command.Parameters.AddWithValue("$run", runId);
        using var reader = command.ExecuteReader();
        while (reader.Read())
            yield return new MetricRow(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), ValueAt(reader, 3), reader.GetInt64(4));
    }

    /// <summary>Run ids as an SQL list (integers: nothing to escape).</summary>
    static string IdList(IEnumerable<long> runIds) =>
        string.Join(",", runIds.Select(id => id.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>A stored metric value: NULL is how NaN is stored.</summary>
    static void Check(sqlite3 db, int result)
    {
        if (result != raw.SQLITE_OK) SqliteException.ThrowExceptionForRC(result, db);
    }

    /// <summary>Prepared statements on the writer's own connection, reused for every batch.</summary>
    sealed class Writer : MetricTableWriter
    {
        readonly SqliteConnection _connection;
        readonly SqliteCommand _progress, _log, _bundle;

        // The metric insert runs once per point, so it is bound and stepped through SQLite's own API: through
        // Microsoft.Data.Sqlite each call also builds a data reader, looks parameters up by name and re-encodes the key
        // and track to UTF-8, which made the tracking API's ingestion ~30 % slower (bench `tracking`).
        readonly sqlite3 _db;
        readonly sqlite3_stmt _metric, _latest;
        // Keys and track names repeat on every row: each is encoded once (bounded: a run may log many distinct keys).
        readonly Dictionary<string, byte[]> _utf8 = new(StringComparer.Ordinal);
        const int MaxEncodedNames = 4096;

        public Writer(SqliteConnection connection)
        {
            _connection = connection;
            _db = connection.Handle ?? throw new InvalidOperationException("The metric writer needs an open connection.");
            Check(_db, raw.sqlite3_prepare_v2(_db,
                "INSERT OR REPLACE INTO Metrics (RunId, Key, Track, Step, Value, WallTimeMs) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", out _metric));
            // The same rule as LatestValues.Replaces: a later step, or the same step at the same or a later time.
            Check(_db, raw.sqlite3_prepare_v2(_db, """
                INSERT INTO LatestMetrics (RunId, Key, Track, Step, Value, WallTimeMs) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                ON CONFLICT (RunId, Key, Track) DO UPDATE SET Step = excluded.Step, Value = excluded.Value, WallTimeMs = excluded.WallTimeMs
                WHERE (excluded.Step, excluded.WallTimeMs) >= (LatestMetrics.Step, LatestMetrics.WallTimeMs)
                """, out _latest));
            _progress = Command("UPDATE Runs SET Step = $step, TotalSteps = $total WHERE Id = $run", "$run", "$step", "$total");
            _bundle = Command("UPDATE Runs SET BundleStep = $step WHERE Id = $run", "$run", "$step");
            _log = Command("INSERT INTO RunLog (RunId, WallTimeMs, Level, Message) VALUES ($run, $wall, $level, $message)", "$run", "$wall",
                "$level", "$message");
        }

        SqliteCommand Command(string sql, params string[] parameters)
        {
            var command = _connection.CreateCommand();
            command.CommandText = sql;
            foreach (var p in parameters) command.Parameters.Add(new SqliteParameter { ParameterName = p });
            return command;
        }

        protected override (Action Commit, Action Dispose) BeginTransaction()
        {
            var transaction = _connection.BeginTransaction();
            foreach (var c in new[] { _progress, _log, _bundle }) c.Transaction = transaction;
            return (transaction.Commit, transaction.Dispose);
        }

        protected override void WriteMetric(long runId, string key, string track, long step, double value, long wallTimeMs) =>
            Step(_metric, runId, key, track, step, value, wallTimeMs);

        protected override void WriteLatest(IReadOnlyCollection<LatestMetric> latest)
        {
            foreach (var row in latest) Step(_latest, row.RunId, row.Key, row.Track, row.Step, row.Value ?? double.NaN, row.WallTimeMs);
        }

        /// <summary>Binds (run, key, track, step, value, time) to a prepared statement and runs it.</summary>
        void Step(sqlite3_stmt statement, long runId, string key, string track, long step, double value, long wallTimeMs)
        {
            Check(_db, raw.sqlite3_bind_int64(statement, 1, runId));
            Check(_db, raw.sqlite3_bind_text(statement, 2, Utf8(key)));
            Check(_db, raw.sqlite3_bind_text(statement, 3, Utf8(track)));
            Check(_db, raw.sqlite3_bind_int64(statement, 4, step));
            Check(_db, double.IsNaN(value) ? raw.sqlite3_bind_null(statement, 5) : raw.sqlite3_bind_double(statement, 5, value));
            Check(_db, raw.sqlite3_bind_int64(statement, 6, wallTimeMs));
            var rc = raw.sqlite3_step(statement);
            // Reset even after a failure so that the statement can run again (the pipeline retries a failed batch).
            raw.sqlite3_reset(statement);
            if (rc != raw.SQLITE_DONE) SqliteException.ThrowExceptionForRC(rc, _db);
        }

        byte[] Utf8(string text)
        {
            if (_utf8.TryGetValue(text, out var bytes)) return bytes;
            if (_utf8.Count >= MaxEncodedNames) _utf8.Clear();
            return _utf8[text] = Encoding.UTF8.GetBytes(text);
        }

        public override void Progress(long runId, long step, long totalSteps) => Run(_progress, runId, step, totalSteps);

        public override void Log(long runId, long wallTimeMs, string level, string message) => Run(_log, runId, wallTimeMs, level, message);

        public override void BundleStep(long runId, long step) => Run(_bundle, runId, step);

        public override Dictionary<long, string?> Attempts(IReadOnlyCollection<long> runIds)
        {
            using var command = _connection.CreateCommand();
            command.Transaction = _progress.Transaction;
            command.CommandText = $"SELECT Id, Attempt FROM Runs WHERE Id IN ({IdList(runIds)})";
            using var reader = command.ExecuteReader();
            var attempts = new Dictionary<long, string?>();
            while (reader.Read()) attempts[reader.GetInt64(0)] = reader.IsDBNull(1) ? null : reader.GetString(1);
            return attempts;
        }

        public override void Dispose()
        {
            _metric.Dispose();
            _latest.Dispose();
            _connection.Dispose();
        }

        static void Run(SqliteCommand command, params object[] values)
        {
            for (var i = 0; i < values.Length; i++) command.Parameters[i].Value = values[i];
            command.ExecuteNonQuery();
        }
    }
}
