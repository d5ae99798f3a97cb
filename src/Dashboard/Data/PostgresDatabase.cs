using Microsoft.EntityFrameworkCore;
using Npgsql;
using NpgsqlTypes;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// PostgreSQL (<c>EmaLab:Database=postgres</c>): one server that the web role and every worker share. A batch of metric
/// rows goes in with binary COPY (a batch that meets an existing row is merged through a staging table instead); reads
/// pick per series on the server.
/// </summary>
public sealed class PostgresDatabase : EmaLabDatabase, IDisposable
{
    readonly NpgsqlDataSource _source;
    readonly DbContextOptions _contextOptions;

    public PostgresDatabase(string connectionString)
    {
        _source = NpgsqlDataSource.Create(connectionString);
        _contextOptions = PostgresDbContext.Options(connectionString);
    }

    public override EmaLabDbContext CreateContext() => new PostgresDbContext(_contextOptions);

    public override MetricTableWriter OpenWriter() => new Writer(_source);

    /// <summary>The session-level advisory lock that serialises schema changes between the processes on the database.</summary>
    const long SchemaLock = 0x656D616C6162; // "emalab"

    public override async Task<T> ExclusivelyAsync<T>(Func<Task<T>> action)
    {
        // Measured: three processes migrating a new database at once failed with a duplicate key in __EFMigrationsHistory.
        await using var connection = await _source.OpenConnectionAsync();
        await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({SchemaLock})", connection)) await take.ExecuteNonQueryAsync();
        try { return await action(); }
        finally
        {
            await using var release = new NpgsqlCommand($"SELECT pg_advisory_unlock({SchemaLock})", connection);
            await release.ExecuteNonQueryAsync();
        }
    }

    /// <summary>A connection of the store's pool (the live-event relay listens and notifies on its own).</summary>
    public ValueTask<NpgsqlConnection> OpenConnectionAsync(CancellationToken ct) => _source.OpenConnectionAsync(ct);

    /// <summary>What Npgsql calls transient (a lost connection, a timeout, a serialization failure), a full disk or
    /// memory, a server starting up.</summary>
    public override bool IsTransient(Exception e) =>
        e is NpgsqlException { IsTransient: true } || e is PostgresException { SqlState: "53100" or "53200" or "57P03" } || e is TimeoutException;

    public override bool IsUniqueViolation(DbUpdateException e) =>
        e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };

    /// <summary>A read, tried again on a transient error (a pooled connection that the server ended fails once).</summary>
    T Read<T>(Func<T> read)
    {
        for (var attempt = 1; ; attempt++)
        {
            try { return read(); }
            catch (Exception e) when (attempt < 3 && IsTransient(e)) { }
        }
    }

    public override List<SeriesInfo> ListSeries(long runId) => Read(() =>
    {
        using var command = _source.CreateCommand("""
            SELECT l."Track", l."Key", c."Count", l."Step", l."Value" FROM "LatestMetrics" AS l
            JOIN (SELECT "Key", "Track", COUNT(*) AS "Count" FROM "Metrics" WHERE "RunId" = $1 GROUP BY "Key", "Track") AS c ON c."Key" = l."Key" AND c."Track" = l."Track"
            WHERE l."RunId" = $1 ORDER BY l."Key", l."Track"
            """);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = runId });
        using var reader = command.ExecuteReader();
        var result = new List<SeriesInfo>();
        while (reader.Read())
            result.Add(new SeriesInfo(reader.GetString(0), reader.GetString(1), (int)reader.GetInt64(2), reader.GetInt64(3), ValueAt(reader, 4)));
        return result;
    });

    public override List<MetricValue> ReadPoints(long runId, string track, string key, SeriesPosition? after = null) => Read(() =>
    {
        using var command = _source.CreateCommand($"""
            SELECT "Step", "Value", "WallTimeMs" FROM "Metrics" WHERE "RunId" = $1 AND "Key" = $2 AND "Track" = $3
            {(after is null ? "" : """AND ("Step", "WallTimeMs") > ($4, $5)""")} ORDER BY "Step", "WallTimeMs"
            """);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = runId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = track });
        if (after is { } position)
        {
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = position.Step });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = position.WallTimeMs });
        }
        using var reader = command.ExecuteReader();
        var points = new List<MetricValue>(1024);
        while (reader.Read()) points.Add(new MetricValue(reader.GetInt64(0), ValueAt(reader, 1)) { WallTimeMs = reader.GetInt64(2) });
        return points;
    });

    public override List<TrackSummary> Summaries(IReadOnlyCollection<long> runIds, string key, bool lowerIsBetter) => Read(() =>
    {
        // The best row per run and track (a NaN, stored as NULL, never wins), the earliest step of a tie; and the latest value.
        using var command = _source.CreateCommand($"""
            SELECT b."RunId", b."Track", b."Value", b."Step", f."Value", f."Step" FROM
              (SELECT DISTINCT ON ("RunId", "Track") "RunId", "Track", "Value", "Step" FROM "Metrics"
                 WHERE "Key" = $1 AND "RunId" = ANY($2) ORDER BY "RunId", "Track", "Value" {(lowerIsBetter ? "ASC" : "DESC")} NULLS LAST, "Step") AS b
            JOIN "LatestMetrics" AS f ON f."Key" = $1 AND b."RunId" = f."RunId" AND b."Track" = f."Track"
            """);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = runIds.ToArray() });
        using var reader = command.ExecuteReader();
        var result = new List<TrackSummary>();
        while (reader.Read()) result.Add(SummaryAt(reader));
        return result;
    });

    public override IEnumerable<MetricRow> Rows(long runId)
    {
        using var command = _source.CreateCommand("""
            SELECT "Track", "Key", "Step", "Value", "WallTimeMs" FROM "Metrics" WHERE "RunId" = $1 ORDER BY "Key", "Track", "Step", "WallTimeMs"
            """);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = runId });
        using var reader = command.ExecuteReader();
        while (reader.Read())
            yield return new MetricRow(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), ValueAt(reader, 3), reader.GetInt64(4));
    }

    public void Dispose() => _source.Dispose();

    /// <summary>
    /// The pipeline's connection. Metric rows of a batch wait in memory until the commit, then go in with one COPY;
    /// progress, log lines and bundle steps are statements of the same transaction. A connection that broke (the
    /// server restarted) is opened again at the next batch, which the pipeline retries.
    /// </summary>
    sealed class Writer(NpgsqlDataSource source) : MetricTableWriter
    {
        readonly List<(long RunId, string Key, string Track, long Step, double Value, long WallTimeMs)> _rows = [];
        NpgsqlConnection? _connection;
        NpgsqlTransaction? _transaction;

        NpgsqlConnection Connection()
        {
            if (_connection is { State: System.Data.ConnectionState.Open }) return _connection;
            _connection?.Dispose();
            _connection = source.OpenConnection();
            // As SQLite's synchronous=NORMAL: a commit does not wait for its WAL flush, so a crash of the machine or of the
            // server (not of EMA Lab) may lose the last fraction of a second of metrics, and the database stays consistent.
            // Runs, checkpoints and everything else EF Core writes keep the server's setting.
            using var staging = new NpgsqlCommand("""
                SET synchronous_commit = off;
                CREATE TEMP TABLE IF NOT EXISTS metric_batch
                  ("Ord" bigint, "RunId" bigint, "Key" text, "Track" text, "Step" bigint, "Value" double precision, "WallTimeMs" bigint)
                """, _connection);
            staging.ExecuteNonQuery();
            return _connection;
        }

        protected override (Action Commit, Action Dispose) BeginTransaction()
        {
            _rows.Clear();
            _transaction = Connection().BeginTransaction();
            return (Commit, Rollback);
        }

        protected override void WriteMetric(long runId, string key, string track, long step, double value, long wallTimeMs) =>
            _rows.Add((runId, key, track, step, value, wallTimeMs));

        /// <summary>One statement for the batch's series; the same rule as LatestValues.Replaces.</summary>
        protected override void WriteLatest(IReadOnlyCollection<LatestMetric> latest)
        {
            using var command = new NpgsqlCommand("""
                INSERT INTO "LatestMetrics" ("RunId", "Key", "Track", "Step", "WallTimeMs", "Value")
                SELECT * FROM unnest($1, $2, $3, $4, $5, $6)
                ON CONFLICT ("RunId", "Key", "Track") DO UPDATE
                  SET "Step" = EXCLUDED."Step", "WallTimeMs" = EXCLUDED."WallTimeMs", "Value" = EXCLUDED."Value"
                  WHERE (EXCLUDED."Step", EXCLUDED."WallTimeMs") >= ("LatestMetrics"."Step", "LatestMetrics"."WallTimeMs")
                """, _connection, _transaction);
            command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = latest.Select(l => l.RunId).ToArray() });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = latest.Select(l => l.Key).ToArray() });
            command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = latest.Select(l => l.Track).ToArray() });
            command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = latest.Select(l => l.Step).ToArray() });
            command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = latest.Select(l => l.WallTimeMs).ToArray() });
            command.Parameters.Add(new NpgsqlParameter<double?[]> { TypedValue = latest.Select(l => l.Value).ToArray() });
            command.ExecuteNonQuery();
        }

        public override void Progress(long runId, long step, long totalSteps) =>
            Execute("""UPDATE "Runs" SET "Step" = $2, "TotalSteps" = $3 WHERE "Id" = $1""", runId, step, totalSteps);

        public override void Log(long runId, long wallTimeMs, string level, string message) =>
            Execute("""INSERT INTO "RunLog" ("RunId", "WallTimeMs", "Level", "Message") VALUES ($1, $2, $3, $4)""", runId, wallTimeMs, level,
                message);

        public override void BundleStep(long runId, long step) =>
            Execute("""UPDATE "Runs" SET "BundleStep" = $2 WHERE "Id" = $1""", runId, step);

        public override Dictionary<long, string?> Attempts(IReadOnlyCollection<long> runIds)
        {
            using var command = new NpgsqlCommand("""SELECT "Id", "Attempt" FROM "Runs" WHERE "Id" = ANY($1) FOR SHARE""", _connection, _transaction);
            command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = runIds.ToArray() });
            using var reader = command.ExecuteReader();
            var attempts = new Dictionary<long, string?>();
            while (reader.Read()) attempts[reader.GetInt64(0)] = reader.IsDBNull(1) ? null : reader.GetString(1);
            return attempts;
        }

        void Execute(string sql, params object[] values)
        {
            using var command = new NpgsqlCommand(sql, _connection, _transaction);
            foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
            command.ExecuteNonQuery();
        }

        void Commit()
        {
            if (_rows.Count > 0)
            {
                // Straight into the table: rows are new in all but rare cases. One that exists already (a client that
                // logs the same step and timestamp twice) makes COPY fail: back to the savepoint, and the batch goes
                // through the staging table and a merge in which the later value wins, as SQLite's INSERT OR REPLACE.
                _transaction!.Save("copy");
                try
                {
                    Copy("""COPY "Metrics" ("RunId", "Key", "Track", "Step", "Value", "WallTimeMs") FROM STDIN (FORMAT BINARY)""", ordinal: false);
                    _transaction.Release("copy");
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
                {
                    _transaction.Rollback("copy");
                    Copy("""COPY metric_batch ("Ord", "RunId", "Key", "Track", "Step", "Value", "WallTimeMs") FROM STDIN (FORMAT BINARY)""",
                        ordinal: true);
                    using var merge = new NpgsqlCommand("""
                        INSERT INTO "Metrics" ("RunId", "Key", "Track", "Step", "Value", "WallTimeMs")
                        SELECT DISTINCT ON ("RunId", "Key", "Track", "Step", "WallTimeMs") "RunId", "Key", "Track", "Step", "Value", "WallTimeMs"
                        FROM metric_batch ORDER BY "RunId", "Key", "Track", "Step", "WallTimeMs", "Ord" DESC
                        ON CONFLICT ("RunId", "Key", "Track", "Step", "WallTimeMs") DO UPDATE SET "Value" = EXCLUDED."Value";
                        DELETE FROM metric_batch;
                        """, _connection, _transaction);
                    merge.ExecuteNonQuery();
                }
            }
            _transaction!.Commit();
            _rows.Clear();
        }

        void Copy(string command, bool ordinal)
        {
            using var copy = _connection!.BeginBinaryImport(command);
            for (var i = 0; i < _rows.Count; i++)
            {
                var row = _rows[i];
                copy.StartRow();
                if (ordinal) copy.Write((long)i, NpgsqlDbType.Bigint);
                copy.Write(row.RunId, NpgsqlDbType.Bigint);
                copy.Write(row.Key, NpgsqlDbType.Text);
                copy.Write(row.Track, NpgsqlDbType.Text);
                copy.Write(row.Step, NpgsqlDbType.Bigint);
                if (double.IsNaN(row.Value)) copy.WriteNull();
                else copy.Write(row.Value, NpgsqlDbType.Double);
                copy.Write(row.WallTimeMs, NpgsqlDbType.Bigint);
            }
            copy.Complete();
        }

        void Rollback()
        {
            _rows.Clear();
            var transaction = _transaction;
            _transaction = null;
            if (transaction is null) return;
            try
            {
                transaction.Dispose(); // rolls back what was not committed
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                // The connection broke: the server dropped the transaction already, and the batch's own error is the one
                // to report (this runs while it propagates); the next batch opens a new connection.
            }
        }

        public override void Dispose()
        {
            Rollback();
            _connection?.Dispose();
        }
    }
}
