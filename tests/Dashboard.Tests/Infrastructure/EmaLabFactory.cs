using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Logging;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// The real app in process, with a fresh temporary data directory and a real database: a SQLite file there, or (the
/// PostgreSQL subclass) a database of its own on the tests' throwaway PostgreSQL server.
/// </summary>
public class EmaLabFactory : WebApplicationFactory<Program>
{
    public EmaLabFactory() : this(postgres: false) { }

    protected EmaLabFactory(bool postgres, string? sharedDatabase = null)
    {
        if (!postgres) return;
        _ownsDatabase = sharedDatabase is null;
        ConnectionString = sharedDatabase ?? PostgresCluster.Instance.CreateDatabase();
        Settings["EmaLab:Database"] = "postgres";
        Settings["ConnectionStrings:EmaLab"] = ConnectionString;
    }

    readonly bool _ownsDatabase;

    public string DataDirectory { get; } = Directory.CreateTempSubdirectory("emalab-test-").FullName;
    public Dictionary<string, string?> Settings { get; } = new();
    /// <summary>The PostgreSQL database's connection string; null on SQLite.</summary>
    public string? ConnectionString { get; }

    /// <summary>Another app on the same kind of database (a test that needs its own settings).</summary>
    public EmaLabFactory New() => ConnectionString is null ? new EmaLabFactory() : new PostgresEmaLabFactory();

    /// <summary>From now on the database refuses every metric row of the run with <paramref name="message"/> (as a corrupt page or a constraint would).</summary>
    public void RefuseMetricsOf(long runId, string message)
    {
        if (ConnectionString is null)
        {
            using var db = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(DataDirectory, "emalab.db")}");
            db.Open();
            using var trigger = db.CreateCommand();
            trigger.CommandText = $"CREATE TRIGGER refuse BEFORE INSERT ON Metrics WHEN NEW.RunId = {runId} BEGIN SELECT RAISE(ABORT, '{message}'); END;";
            trigger.ExecuteNonQuery();
        }
        else
        {
            using var db = new Npgsql.NpgsqlConnection(ConnectionString);
            db.Open();
            using var trigger = db.CreateCommand();
            trigger.CommandText = $"""
                CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{message}'; END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON "Metrics" FOR EACH ROW WHEN (NEW."RunId" = {runId}) EXECUTE FUNCTION refuse();
                """;
            trigger.ExecuteNonQuery();
        }
    }

    readonly AppLog _log = new();
    /// <summary>Which app each client talks to, so that a test waiting on a client can print that app's log when it times out.</summary>
    static readonly ConditionalWeakTable<HttpClient, EmaLabFactory> AppOfClient = new();

    protected override void ConfigureClient(HttpClient client)
    {
        base.ConfigureClient(client);
        AppOfClient.AddOrUpdate(client, this);
    }

    /// <summary>
    /// What the app behind <paramref name="client"/> logged at warning and above (Hangfire's lines whichever app they came
    /// from: its log provider is process-wide), and on PostgreSQL the server's last lines: the evidence a timeout prints.
    /// </summary>
    public static string EvidenceFor(HttpClient client)
    {
        if (!AppOfClient.TryGetValue(client, out var app)) return "";
        var evidence = new System.Text.StringBuilder();
        evidence.AppendLine().AppendLine("-- the app's log (warnings and errors, last lines):").AppendLine(app._log.Text());
        evidence.AppendLine("-- Hangfire's log (every app of this process):").AppendLine(AppLog.Hangfire.Text());
        if (app.ConnectionString is not null)
        {
            evidence.AppendLine("-- the job tables:").AppendLine(app.JobTables());
            evidence.AppendLine("-- PostgreSQL's log (last lines):").AppendLine(PostgresCluster.Instance.LogTail(40));
        }
        return evidence.ToString();
    }

    /// <summary>The runs, Hangfire's jobs with their states, its queue and its servers, as rows of text.</summary>
    string JobTables()
    {
        var text = new System.Text.StringBuilder();
        try
        {
            using var db = new Npgsql.NpgsqlConnection(ConnectionString);
            db.Open();
            foreach (var query in new[]
            {
                "SELECT \"Id\", \"Status\", \"Step\", \"DispatchId\", \"JobId\", \"Attempt\", \"StartAttempts\" FROM \"Runs\" ORDER BY \"Id\"",
                "SELECT j.id, j.statename, j.createdat, s.name, s.reason, s.createdat FROM hangfire.job j LEFT JOIN hangfire.state s ON s.jobid = j.id ORDER BY j.id, s.id",
                "SELECT id, jobid, queue, fetchedat FROM hangfire.jobqueue ORDER BY id",
                "SELECT id, lastheartbeat, data FROM hangfire.server",
                "SELECT now()",
            })
            {
                text.AppendLine(query);
                using var command = new Npgsql.NpgsqlCommand(query, db);
                using var reader = command.ExecuteReader();
                while (reader.Read())
                    text.AppendLine("  " + string.Join(" | ", Enumerable.Range(0, reader.FieldCount).Select(i => reader.IsDBNull(i) ? "null" : Convert.ToString(reader.GetValue(i), System.Globalization.CultureInfo.InvariantCulture))));
            }
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or InvalidOperationException)
        {
            text.AppendLine($"(could not read them: {e.Message})");
        }
        return text.ToString();
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.ConfigureLogging(logging => logging.AddProvider(_log));
        builder.UseSetting("EmaLab:DataDirectory", DataDirectory);
        builder.UseSetting("EmaLab:Training:BundleEvery", "50");
        foreach (var (key, value) in Settings) builder.UseSetting(key, value);
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (!disposing) return;
        DeleteFolder(DataDirectory);
        if (_ownsDatabase) PostgresCluster.Instance.DropDatabase(ConnectionString!);
    }

    /// <summary>
    /// The app's folder, once the host has stopped. A file closing as the folder goes (a run wound down by the stop) makes
    /// one pass fail with "Directory not empty" (seen once in a fresh-Debian run): it is tried again for up to five seconds,
    /// and a folder still being written after that fails the class, as a leaking writer should.
    /// </summary>
    static void DeleteFolder(string path)
    {
        for (var attempt = 1; Directory.Exists(path); attempt++)
        {
            try { Directory.Delete(path, recursive: true); }
            catch (IOException) when (attempt < 20) { Thread.Sleep(250); }
        }
    }
}

/// <summary>The last lines an app logged at warning and above (Hangfire's kept apart: its log provider is process-wide).</summary>
sealed class AppLog : ILoggerProvider, ILogger
{
    const int Kept = 200;
    public static readonly AppLog Hangfire = new();
    readonly ConcurrentQueue<string> _lines = new();

    public ILogger CreateLogger(string categoryName) => categoryName.StartsWith("Hangfire", StringComparison.Ordinal) ? Hangfire : this;
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        _lines.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel}: {formatter(state, exception)}{(exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message})")}");
        while (_lines.Count > Kept) _lines.TryDequeue(out _);
    }

    public string Text() => string.Join('\n', _lines);
    public void Dispose() { }
}

/// <summary>The app on PostgreSQL (<c>EmaLab:Database=postgres</c>): the API test classes run once on each database.</summary>
public sealed class PostgresEmaLabFactory : EmaLabFactory
{
    public PostgresEmaLabFactory() : base(postgres: true) { }

    PostgresEmaLabFactory(string database) : base(postgres: true, database) { }

    /// <summary>A second app on this app's database (another process of a deployment); the database stays this app's.</summary>
    public PostgresEmaLabFactory SharingDatabase() => new(ConnectionString!);
}

/// <summary>Small helpers over the REST API, used by several tests.</summary>
static class Api
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static JsonObject DigitsRun(int steps = 200, double[]? decays = null, int evalInterval = 50) => new()
    {
        ["name"] = "test",
        ["dataset"] = "digits-8x8",
        ["model"] = "mlp",
        ["hidden"] = new JsonArray(64),
        ["optimizer"] = "adam",
        ["learningRate"] = 0.001,
        ["batchSize"] = 64,
        ["steps"] = steps,
        ["seed"] = 1,
        ["evalInterval"] = evalInterval,
        ["ema"] = new JsonObject { ["decays"] = new JsonArray((decays ?? [0.9, 0.99]).Select(d => (JsonNode)d).ToArray()) },
    };

    /// <summary>A request body declared as JSON (the API and the tracking API refuse others).</summary>
    public static StringContent JsonBody(string json) => new(json, System.Text.Encoding.UTF8, "application/json");

    public static async Task<JsonElement> CreateAsync(HttpClient client, JsonObject body)
    {
        var response = await client.PostAsJsonAsync("/api/runs", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Created, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary>The answer's JSON, which must come with 200 (as every success of MLflow's API does).</summary>
    public static async Task<JsonElement> OkAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary>A call of the MLflow-compatible tracking API (a POST with a JSON body, as MLflow's client sends it) that must succeed.</summary>
    public static async Task<JsonElement> MlflowAsync(HttpClient client, string path, string body) =>
        await OkAsync(await client.PostAsync("/api/2.0/mlflow/" + path, JsonBody(body)));

    public static async Task<JsonElement> GetAsync(HttpClient client, string url)
    {
        var response = await client.GetAsync(url);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {url}: {(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary>Polls the run until its status satisfies <paramref name="done"/>.</summary>
    public static async Task<JsonElement> WaitForAsync(HttpClient client, long id, Func<JsonElement, bool> done, int seconds = 120)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var run = await GetAsync(client, $"/api/runs/{id}");
            if (done(run)) return run;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"run {id} still {run.GetProperty("status")} at step {run.GetProperty("step")}{EmaLabFactory.EvidenceFor(client)}");
            await Task.Delay(50);
        }
    }

    public static Task<JsonElement> WaitForFinishAsync(HttpClient client, long id) =>
        WaitForAsync(client, id, r => r.GetProperty("status").GetString() is not ("queued" or "running"));

    public static string Status(this JsonElement run) => run.GetProperty("status").GetString()!;
    public static long Id(this JsonElement run) => run.GetProperty("id").GetInt64();
}
