using System.ComponentModel.DataAnnotations;

namespace EmaLab.Dashboard.Hosting;

/// <summary>
/// The <c>EmaLab</c> configuration section: where the data lives, the three modes (database, role, trainer) and access at
/// the top; the tuning of training, of the metric writer and the limits each in its own section. Every default works
/// with no configuration.
/// </summary>
public sealed class EmaLabOptions : IValidatableObject
{
    public const string Section = "EmaLab";

    /// <summary>Folder of the SQLite file (<c>emalab.db</c>) and of the runs' files; relative paths are under the
    /// content root. Created if missing.</summary>
    [Required]
    public string DataDirectory { get; set; } = "data";

    /// <summary>
    /// Folder of the runs' files (<c>runs/{id}/</c>: resume bundles, checkpoints, post-hoc snapshots, artifacts); defaults to
    /// the data directory. With several machines it is a folder every one of them mounts at this path.
    /// </summary>
    public string? ArtifactDirectory { get; set; }

    /// <summary>The database: <c>sqlite</c> (<c>emalab.db</c> in the data directory) or <c>postgres</c> (<c>ConnectionStrings:EmaLab</c>).</summary>
    public DatabaseKind Database { get; set; } = DatabaseKind.Sqlite;

    /// <summary>What this process does: pages, API and training (<c>all</c>), or one side of a deployment (<c>web</c>, <c>worker</c>).</summary>
    public ProcessRole Role { get; set; } = ProcessRole.All;

    /// <summary>This process trains runs (role <c>all</c> or <c>worker</c>).</summary>
    public bool Trains => Role != ProcessRole.Web;
    /// <summary>This process serves pages and the API (role <c>all</c> or <c>web</c>).</summary>
    public bool Serves => Role != ProcessRole.Worker;

    /// <summary>Who trains the runs (<c>EmaLab:Trainer</c>); unset: <c>inprocess</c> on SQLite, <c>hangfire</c> on PostgreSQL.</summary>
    [Microsoft.Extensions.Configuration.ConfigurationKeyName("Trainer")]
    public TrainerKind? TrainerSetting { get; set; }

    /// <summary>The trainer chosen: the setting, or the database's default.</summary>
    public TrainerKind Trainer => TrainerSetting ?? (Database == DatabaseKind.Postgres ? TrainerKind.Hangfire : TrainerKind.InProcess);

    /// <summary>Allow listening on non-loopback addresses: accounts are then always on.</summary>
    public bool AllowRemote { get; set; }

    /// <summary>A service token: <c>Authorization: Bearer &lt;token&gt;</c> acts as an admin (scripts, CI). Setting it turns
    /// accounts on.</summary>
    public string? ApiToken { get; set; }

    /// <summary>With accounts: what a user may do with an experiment nobody granted them anything on (MLflow's
    /// <c>default_permission</c>, READ by default): READ, USE, EDIT, MANAGE or NO_PERMISSIONS.</summary>
    public string DefaultPermission { get; set; } = PermissionNames.Of(ExperimentPermissionLevel.Read);

    /// <summary>The default permission as a level (validated at start).</summary>
    public ExperimentPermissionLevel DefaultLevel =>
        PermissionNames.TryParse(DefaultPermission, out var level) ? level : ExperimentPermissionLevel.NoPermissions;

    /// <summary><c>EmaLab:Admin</c>: the first admin account, created at start-up when it does not exist yet.</summary>
    public AdminOptions Admin { get; set; } = new();

    /// <summary>
    /// The settings ask for accounts (sign-in, tokens, permissions): a service token, remote access or an admin. Otherwise
    /// the one person on this machine is the admin and nothing asks for a password, until a database has accounts.
    /// </summary>
    public bool AccountsAsked => !string.IsNullOrEmpty(ApiToken) || AllowRemote || !string.IsNullOrWhiteSpace(Admin.UserName);

    /// <summary><c>EmaLab:Training</c>: how runs are trained.</summary>
    public TrainingOptions Training { get; set; } = new();

    /// <summary><c>EmaLab:Metrics</c>: how the metric writer commits.</summary>
    public MetricWriterOptions Metrics { get; set; } = new();

    /// <summary><c>EmaLab:Limits</c>: what one request, stream or run may take.</summary>
    public LimitOptions Limits { get; set; } = new();

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var postgres = $"EmaLab:Database={WireNames.Of(DatabaseKind.Postgres)}";
        if (Role != ProcessRole.All && Database != DatabaseKind.Postgres)
            yield return Refusal($"EmaLab:Role={WireNames.Of(Role)} needs {postgres}: separate web and worker processes share its database and job queue.", nameof(Role));
        else if (Role != ProcessRole.All && Trainer != TrainerKind.Hangfire)
            yield return Refusal($"EmaLab:Role={WireNames.Of(Role)} needs EmaLab:Trainer={WireNames.Of(TrainerKind.Hangfire)}: a web process trains nothing and a worker takes its runs from the job queue.", "Trainer");
        if (Trainer == TrainerKind.Hangfire && Database != DatabaseKind.Postgres)
            yield return Refusal($"EmaLab:Trainer={WireNames.Of(TrainerKind.Hangfire)} needs {postgres}: its jobs are kept in that database.",
                "Trainer");
        if (!PermissionNames.TryParse(DefaultPermission, out _))
            yield return Refusal($"EmaLab:DefaultPermission must be one of {string.Join(", ", PermissionNames.All)}, not '{DefaultPermission}'.",
                nameof(DefaultPermission));
        if (string.IsNullOrWhiteSpace(Admin.UserName) != string.IsNullOrEmpty(Admin.Password))
            yield return Refusal("EmaLab:Admin:UserName and EmaLab:Admin:Password go together (the admin created at start-up when missing).",
                "Admin");
        // DataAnnotations validates one object's properties: each section's ranges are checked here, named by their key.
        foreach (var (name, section) in Sections())
        {
            var results = new List<ValidationResult>();
            Validator.TryValidateObject(section, new ValidationContext(section), results, validateAllProperties: true);
            foreach (var result in results)
                yield return new ValidationResult($"EmaLab:{name}: {result.ErrorMessage}", result.MemberNames.Select(m => $"{name}:{m}"));
        }
    }

    static ValidationResult Refusal(string message, string member) => new(message, [member]);

    /// <summary>
    /// What cannot be bound from the section, said before binding: a mode that is not one of its names (the binder would
    /// only say it failed to convert) and a setting that moved into a section (it would be ignored).
    /// </summary>
    public static IEnumerable<string> Refusals(IConfigurationSection section)
    {
        if (Mode<DatabaseKind>(section, nameof(Database)) is { } database) yield return database;
        if (Mode<ProcessRole>(section, nameof(Role)) is { } role) yield return role;
        if (Mode<TrainerKind>(section, "Trainer") is { } trainer) yield return trainer;
        foreach (var (name, tuning) in new EmaLabOptions().Sections())
            foreach (var property in tuning.GetType().GetProperties())
                if (section[property.Name] is not null)
                    yield return $"EmaLab:{property.Name} is now EmaLab:{name}:{property.Name}.";
    }

    /// <summary>The tuning sections by their key: validated here, and their settings' old flat keys refused.</summary>
    IEnumerable<(string Name, object Section)> Sections() => [(nameof(Training), Training), (nameof(Metrics), Metrics), (nameof(Limits), Limits)];

    static string? Mode<T>(IConfigurationSection section, string key) where T : struct, Enum
    {
        var value = section[key];
        if (value is null || WireNames.TryParse<T>(value, out _)) return null;
        var names = Enum.GetValues<T>().Select(v => $"'{WireNames.Of(v)}'").ToList();
        return $"EmaLab:{key} must be {string.Join(", ", names[..^1])} or {names[^1]}, not '{value}'.";
    }

    public string ResolveDataDirectory(string contentRoot) => Path.GetFullPath(DataDirectory, contentRoot);

    public string ResolveArtifactDirectory(string contentRoot) => Path.GetFullPath(ArtifactDirectory ?? DataDirectory, contentRoot);
}

/// <summary><c>EmaLab:Admin</c>: an admin created at start-up when no user has this name (an existing one is made admin;
/// its password is never reset from here). Without it, a server with accounts and no admin prints a one-time setup link.</summary>
public sealed class AdminOptions
{
    public string? UserName { get; set; }
    public string? Password { get; set; }
}

/// <summary><c>EmaLab:Training</c>.</summary>
public sealed class TrainingOptions
{
    /// <summary>Runs trained at the same time.</summary>
    [Range(1, 16)]
    public int MaxConcurrentRuns { get; set; } = 1;

    /// <summary>A resume bundle is written every this many steps (and when a run stops).</summary>
    [Range(1, 1_000_000)]
    public int BundleEvery { get; set; } = 200;

    /// <summary>The name this process's trainer goes by in run logs (default <c>host:pid</c>).</summary>
    public string? WorkerName { get; set; }

    /// <summary>
    /// How long a training job may go without its worker's heartbeat before another worker takes it over (seconds; jobs
    /// across processes only). The worker renews it every fifth of this while the job runs.
    /// </summary>
    [Range(5, 86_400)]
    public int JobInvisibilitySeconds { get; set; } = 300;

    public string ResolveWorkerName() => string.IsNullOrWhiteSpace(WorkerName) ? $"{Environment.MachineName}:{Environment.ProcessId}" : WorkerName;
}

/// <summary><c>EmaLab:Metrics</c>: the metric writer and the database it writes.</summary>
public sealed class MetricWriterOptions
{
    /// <summary>How often the metric writer commits (milliseconds): the most a hard kill can lose.</summary>
    [Range(10, 10_000)]
    public int FlushIntervalMs { get; set; } = 250;

    /// <summary>The writer commits early when this many rows are waiting.</summary>
    [Range(1, 100_000)]
    public int FlushRows { get; set; } = 500;

    /// <summary>How long a database write waits for another connection's lock before it counts as failed (seconds; then retried).</summary>
    [Range(1, 600)]
    public int StoreTimeoutSeconds { get; set; } = 30;

    /// <summary>How long the writer retries a batch after a transient error (seconds) before it fails the runs it cannot store.</summary>
    [Range(0, 86_400)]
    public int StoreRetrySeconds { get; set; } = 120;

    /// <summary>Largest size of the SQLite file (megabytes; 0 = the disk): a run whose metrics no longer fit fails with a reason.</summary>
    [Range(0, 10_000_000)]
    public int MaxDatabaseMegabytes { get; set; }
}

/// <summary><c>EmaLab:Limits</c>.</summary>
public sealed class LimitOptions
{
    /// <summary>Disk space (megabytes) a run or an upload must leave free under the data directory; one that would not is refused.</summary>
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

    /// <summary>How often an open event stream checks that its caller may still read it (a revoked token, a new password, a
    /// deleted account or a removed grant end it within this many seconds).</summary>
    [Range(1, 3600)]
    public int EventStreamAccessCheckSeconds { get; set; } = 5;
}

/// <summary>The database (<see cref="EmaLabOptions.Database"/>).</summary>
public enum DatabaseKind
{
    /// <summary><c>emalab.db</c> in the data directory: one process.</summary>
    Sqlite,
    /// <summary>A PostgreSQL server that a web process and workers share.</summary>
    Postgres,
}

/// <summary>What a process does (<see cref="EmaLabOptions.Role"/>).</summary>
public enum ProcessRole
{
    /// <summary>Pages, API and training in one process.</summary>
    All,
    /// <summary>Pages and API; the runs are trained by workers (PostgreSQL and Hangfire).</summary>
    Web,
    /// <summary>Trains the runs the web process queues; serves no pages.</summary>
    Worker,
}

/// <summary>Who trains the runs (<see cref="EmaLabOptions.Trainer"/>).</summary>
public enum TrainerKind
{
    /// <summary>This process's own queue and threads; it must be the only process on its database.</summary>
    InProcess,
    /// <summary>Hangfire jobs in PostgreSQL, taken by any worker process on the database.</summary>
    Hangfire,
}
