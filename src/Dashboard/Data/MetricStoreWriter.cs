using System.Text;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// The metric store's writes (raw SQL beside <see cref="MetricQueries"/>): prepared statements on the metric
/// writer's own connection, reused for every batch. NaN is stored as NULL (SQLite has no NaN); infinities as themselves.
/// </summary>
public sealed class MetricStoreWriter : IDisposable
{
    readonly SqliteConnection _connection;
    readonly SqliteCommand _progress, _log, _bundle;

    // The metric insert runs once per point, so it is bound and stepped through SQLite's own API: through
    // Microsoft.Data.Sqlite each call also builds a data reader, looks parameters up by name and re-encodes the key
    // and track to UTF-8, which together cost about as much as the insert itself (bench `store`).
    readonly sqlite3 _db;
    readonly sqlite3_stmt _metric;
    // Keys and track names repeat on every row: each is encoded once (bounded: a run may log many distinct keys).
    readonly Dictionary<string, byte[]> _utf8 = new(StringComparer.Ordinal);
    const int MaxEncodedNames = 4096;

    public MetricStoreWriter(SqliteConnection connection)
    {
        _connection = connection;
        _db = connection.Handle ?? throw new InvalidOperationException("The metric writer needs an open connection.");
        var rc = raw.sqlite3_prepare_v2(_db, "INSERT OR REPLACE INTO Metrics (RunId, Key, Track, Step, Value, WallTimeMs) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", out _metric);
        SqliteException.ThrowExceptionForRC(rc, _db);
        _progress = Command("UPDATE Runs SET Step = $step, TotalSteps = $total WHERE Id = $run", "$run", "$step", "$total");
        _bundle = Command("UPDATE Runs SET BundleStep = $step WHERE Id = $run", "$run", "$step");
        _log = Command("INSERT INTO RunLog (RunId, WallTimeMs, Level, Message) VALUES ($run, $wall, $level, $message)", "$run", "$wall", "$level", "$message");
    }

    SqliteCommand Command(string sql, params string[] parameters)
    {
        var command = _connection.CreateCommand();
        command.CommandText = sql;
        foreach (var p in parameters) command.Parameters.Add(new SqliteParameter { ParameterName = p });
        return command;
    }

    /// <summary>Starts a transaction that the following writes join; commit it to keep them.</summary>
    public SqliteTransaction Begin()
    {
        var transaction = _connection.BeginTransaction();
        foreach (var c in new[] { _progress, _log, _bundle }) c.Transaction = transaction;
        return transaction;
    }

    public void Metric(long runId, string key, string track, long step, double value, long wallTimeMs)
    {
        var db = _db;
        Check(raw.sqlite3_bind_int64(_metric, 1, runId), db);
        Check(raw.sqlite3_bind_text(_metric, 2, Utf8(key)), db);
        Check(raw.sqlite3_bind_text(_metric, 3, Utf8(track)), db);
        Check(raw.sqlite3_bind_int64(_metric, 4, step), db);
        Check(double.IsNaN(value) ? raw.sqlite3_bind_null(_metric, 5) : raw.sqlite3_bind_double(_metric, 5, value), db);
        Check(raw.sqlite3_bind_int64(_metric, 6, wallTimeMs), db);
        var rc = raw.sqlite3_step(_metric);
        // Reset even after a failure so that the statement can run again (the pipeline retries a failed batch).
        raw.sqlite3_reset(_metric);
        if (rc != raw.SQLITE_DONE) SqliteException.ThrowExceptionForRC(rc, db);
    }

    byte[] Utf8(string text)
    {
        if (_utf8.TryGetValue(text, out var bytes)) return bytes;
        if (_utf8.Count >= MaxEncodedNames) _utf8.Clear();
        return _utf8[text] = Encoding.UTF8.GetBytes(text);
    }

    static void Check(int rc, sqlite3 db)
    {
        if (rc != raw.SQLITE_OK) SqliteException.ThrowExceptionForRC(rc, db);
    }

    public void Progress(long runId, long step, long totalSteps) => Run(_progress, runId, step, totalSteps);

    public void Log(long runId, long wallTimeMs, string level, string message) => Run(_log, runId, wallTimeMs, level, message);

    /// <summary>Records the run's latest resume bundle (in the transaction that commits the metrics before it).</summary>
    public void BundleStep(long runId, long step) => Run(_bundle, runId, step);

    public void Dispose() => _metric.Dispose();

    static void Run(SqliteCommand command, params object[] values)
    {
        for (var i = 0; i < values.Length; i++) command.Parameters[i].Value = values[i];
        command.ExecuteNonQuery();
    }
}
