using System.ComponentModel.DataAnnotations;

namespace EmaLab.Dashboard.Hosting;

/// <summary>The <c>EmaLab</c> configuration section. Every default works with no configuration.</summary>
public sealed class EmaLabOptions : IValidatableObject
{
    public const string Section = "EmaLab";

    /// <summary>Folder of the SQLite file (<c>emalab.db</c>) and of the runs' files; relative paths are under the content root. Created if missing.</summary>
    [Required]
    public string DataDirectory { get; set; } = "data";

    /// <summary>
    /// The database: <c>sqlite</c> (the default: <c>emalab.db</c> in the data directory) or <c>postgres</c>, reached through
    /// the connection string <c>ConnectionStrings:EmaLab</c> (several machines share one server).
    /// </summary>
    public string Database { get; set; } = SqliteDatabase;
    public const string SqliteDatabase = "sqlite";
    public const string PostgresDatabase = "postgres";

    /// <summary>
    /// What this process does: <c>all</c> (the default: pages, API and training in one process), <c>web</c> (pages and API,
    /// no training) or <c>worker</c> (trains the runs the others queue; no pages). <c>web</c> and <c>worker</c> need
    /// <c>postgres</c>: the processes meet in its database and its job queue.
    /// </summary>
    public string Role { get; set; } = AllRole;
    public const string AllRole = "all";
    public const string WebRole = "web";
    public const string WorkerRole = "worker";

    /// <summary>This process trains runs (role <c>all</c> or <c>worker</c>).</summary>
    public bool Trains => Role != WebRole;
    /// <summary>This process serves pages and the API (role <c>all</c> or <c>web</c>).</summary>
    public bool Serves => Role != WorkerRole;
    /// <summary>
    /// Who trains the runs (<c>EmaLab:Trainer</c>): <c>InProcess</c>, this process's own threads (one process), or
    /// <c>Hangfire</c>, jobs in the PostgreSQL database that any worker process on it takes. Unset: <c>InProcess</c> on
    /// SQLite, <c>Hangfire</c> on PostgreSQL.
    /// </summary>
    [Microsoft.Extensions.Configuration.ConfigurationKeyName("Trainer")]
    public TrainerKind? TrainerSetting { get; set; }

    /// <summary>The trainer chosen: the setting, or the database's default.</summary>
    public TrainerKind Trainer => TrainerSetting ?? (Database == PostgresDatabase ? TrainerKind.Hangfire : TrainerKind.InProcess);

    /// <summary>
    /// Folder of the runs' files (<c>runs/{id}/</c>: resume bundles, checkpoints, post-hoc snapshots, artifacts); defaults to
    /// the data directory. With several machines it is a folder every one of them mounts at this path.
    /// </summary>
    public string? ArtifactDirectory { get; set; }

    /// <summary>
    /// How long a training job may go without its worker's heartbeat before another worker takes it over (seconds; jobs
    /// across processes only). The worker renews it every fifth of this while the job runs.
    /// </summary>
    [Range(5, 86_400)]
    public int JobInvisibilitySeconds { get; set; } = 300;

    /// <summary>The name this process's trainer goes by in run logs (default <c>host:pid</c>).</summary>
    public string? WorkerName { get; set; }

    /// <summary>Runs trained at the same time.</summary>
    [Range(1, 16)]
    public int MaxConcurrentRuns { get; set; } = 1;

    /// <summary>A resume bundle is written every this many steps (and when a run stops).</summary>
    [Range(1, 1_000_000)]
    public int BundleEvery { get; set; } = 200;

    /// <summary>How often the metric writer commits (milliseconds): the most a hard kill can lose.</summary>
    [Range(10, 10_000)]
    public int FlushIntervalMs { get; set; } = 250;

    /// <summary>The writer commits early when this many rows are waiting.</summary>
    [Range(1, 100_000)]
    public int FlushRows { get; set; } = 500;

    /// <summary>
    /// How long a database write waits for a lock held by another connection before it counts as failed
    /// (seconds). The metric writer then keeps the batch and retries it, holding back training meanwhile.
    /// </summary>
    [Range(1, 600)]
    public int StoreTimeoutSeconds { get; set; } = 30;

    /// <summary>
    /// How long the metric writer keeps retrying a batch after a transient store error (seconds) before it
    /// writes the batch run by run and fails the runs whose rows still cannot be stored.
    /// </summary>
    [Range(0, 86_400)]
    public int StoreRetrySeconds { get; set; } = 120;

    /// <summary>
    /// Largest size the metric writer lets the SQLite file grow to (megabytes; 0 = no limit besides the
    /// disk). A run whose metrics no longer fit fails with a reason instead of filling the disk.
    /// </summary>
    [Range(0, 10_000_000)]
    public int MaxDatabaseMegabytes { get; set; }

    /// <summary>Disk space (megabytes) a run must leave free under the data directory; a run that would not fails before it starts.</summary>
    [Range(0, 10_000_000)]
    public int DiskReserveMegabytes { get; set; } = 64;

    /// <summary>The largest artifact (a client's checkpoint) one upload through the tracking API may carry, in megabytes.</summary>
    [Range(1, 1_000_000)]
    public int MaxArtifactMegabytes { get; set; } = 4096;

    /// <summary>The largest dataset upload (all its files together), in megabytes; Fashion-MNIST's four gzip files take 31.</summary>
    [Range(1, 1_000_000)]
    public int MaxDatasetMegabytes { get; set; } = 512;

    /// <summary>Live event streams (<c>GET /api/runs/{id}/events</c>) one run may have at once; more are answered 429.</summary>
    [Range(1, 100_000)]
    public int MaxEventStreamsPerRun { get; set; } = 50;

    /// <summary>Live event streams the server keeps open at once, all runs together.</summary>
    [Range(1, 100_000)]
    public int MaxEventStreams { get; set; } = 200;

    /// <summary>Allow listening on non-loopback addresses. Requires <see cref="ApiToken"/>.</summary>
    public bool AllowRemote { get; set; }

    /// <summary>When set, mutating API calls need <c>Authorization: Bearer &lt;token&gt;</c>.</summary>
    public string? ApiToken { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Database is not (SqliteDatabase or PostgresDatabase))
            yield return new ValidationResult($"EmaLab:Database must be '{SqliteDatabase}' or '{PostgresDatabase}', not '{Database}'.", [nameof(Database)]);
        if (Role is not (AllRole or WebRole or WorkerRole))
            yield return new ValidationResult($"EmaLab:Role must be '{AllRole}', '{WebRole}' or '{WorkerRole}', not '{Role}'.", [nameof(Role)]);
        else if (Role != AllRole && Database != PostgresDatabase)
            yield return new ValidationResult($"EmaLab:Role={Role} needs EmaLab:Database={PostgresDatabase}: separate web and worker processes share its database and job queue.", [nameof(Role)]);
        else if (Role != AllRole && Trainer != TrainerKind.Hangfire)
            yield return new ValidationResult($"EmaLab:Role={Role} needs EmaLab:Trainer={TrainerKind.Hangfire}: a web process trains nothing and a worker takes its runs from the job queue.", ["Trainer"]);
        if (Trainer == TrainerKind.Hangfire && Database != PostgresDatabase)
            yield return new ValidationResult($"EmaLab:Trainer={TrainerKind.Hangfire} needs EmaLab:Database={PostgresDatabase}: its jobs are kept in that database.", ["Trainer"]);
        if (AllowRemote && string.IsNullOrWhiteSpace(ApiToken))
            yield return new ValidationResult("EmaLab:AllowRemote needs EmaLab:ApiToken: mutating API calls from other machines must be authenticated.", [nameof(ApiToken)]);
    }

    public string ResolveDataDirectory(string contentRoot) => Path.GetFullPath(DataDirectory, contentRoot);

    public string ResolveArtifactDirectory(string contentRoot) => Path.GetFullPath(ArtifactDirectory ?? DataDirectory, contentRoot);

    public string ResolveWorkerName() => string.IsNullOrWhiteSpace(WorkerName) ? $"{Environment.MachineName}:{Environment.ProcessId}" : WorkerName;
}

/// <summary>Who trains the runs (<see cref="EmaLabOptions.Trainer"/>).</summary>
public enum TrainerKind
{
    /// <summary>This process's own queue and threads; it must be the only process on its database.</summary>
    InProcess,
    /// <summary>Hangfire jobs in PostgreSQL, taken by any worker process on the database.</summary>
    Hangfire,
}
