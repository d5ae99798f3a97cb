using Microsoft.Data.Sqlite;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// The metric store's writes (raw SQL beside <see cref="MetricQueries"/>): prepared statements on the metric
/// writer's own connection, reused for every batch. NaN is stored as NULL (SQLite has no NaN); infinities as themselves.
/// </summary>
public sealed class MetricStoreWriter
{
    readonly SqliteConnection _connection;
    readonly SqliteCommand _metric, _progress, _log, _bundle;

    public MetricStoreWriter(SqliteConnection connection)
    {
        _connection = connection;
        _metric = Command("INSERT OR REPLACE INTO Metrics (RunId, Key, Track, Step, Value, WallTimeMs) VALUES ($run, $key, $track, $step, $value, $wall)",
            "$run", "$key", "$track", "$step", "$value", "$wall");
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
        foreach (var c in new[] { _metric, _progress, _log, _bundle }) c.Transaction = transaction;
        return transaction;
    }

    public void Metric(long runId, string key, string track, long step, double value, long wallTimeMs) =>
        Run(_metric, runId, key, track, step, double.IsNaN(value) ? DBNull.Value : value, wallTimeMs);

    public void Progress(long runId, long step, long totalSteps) => Run(_progress, runId, step, totalSteps);

    public void Log(long runId, long wallTimeMs, string level, string message) => Run(_log, runId, wallTimeMs, level, message);

    /// <summary>Records the run's latest resume bundle (in the transaction that commits the metrics before it).</summary>
    public void BundleStep(long runId, long step) => Run(_bundle, runId, step);

    static void Run(SqliteCommand command, params object[] values)
    {
        for (var i = 0; i < values.Length; i++) command.Parameters[i].Value = values[i];
        command.ExecuteNonQuery();
    }
}
