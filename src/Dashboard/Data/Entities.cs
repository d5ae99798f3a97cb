using EmaLab.Dashboard.Hosting;
namespace EmaLab.Dashboard.Data;

/// <summary>Lifecycle of a run. Stored as lower-case text, as the API shows it.</summary>
public enum RunStatus
{
    Queued,
    Running,
    Completed,
    /// <summary>Threw: <see cref="Run.Error"/> holds the message.</summary>
    Failed,
    /// <summary>The loss became NaN or infinite: <see cref="Run.Error"/> names the step.</summary>
    Diverged,
    Cancelled,
    /// <summary>The server stopped while the run was in progress; resumable from its last bundle.</summary>
    Interrupted,
}

/// <summary>The status rules, in one place (pages, API and service ask here).</summary>
public static class RunStatuses
{
    /// <summary>Stopped for now or for good: not queued and not running.</summary>
    public static bool IsFinished(this RunStatus s) =>
        s is RunStatus.Completed or RunStatus.Failed or RunStatus.Diverged or RunStatus.Cancelled or RunStatus.Interrupted;
    /// <summary>A queued or running run can be cancelled.</summary>
    public static bool CanCancel(this RunStatus s) => !s.IsFinished();
    /// <summary>An interrupted or cancelled run continues from its bundle (when it has one).</summary>
    public static bool IsResumable(this RunStatus s) => s is RunStatus.Interrupted or RunStatus.Cancelled;
    public static string ToApi(this RunStatus s) => WireNames.Of(s);
}

/// <summary>Who trains a run: EMA Lab's engine, or a client script that logs to the tracking API.</summary>
public enum RunOrigin
{
    Engine,
    /// <summary>Created through the MLflow-compatible tracking API; its metrics, params and tags come from the client.</summary>
    Client,
}

/// <summary>A group of runs (MLflow's experiment). Experiment 0, <c>Default</c>, always exists.</summary>
public sealed class Experiment
{
    public const long DefaultId = 0;
    public const string DefaultName = "Default";
    public const int MaxNameLength = 500;

    /// <summary>An experiment id as MLflow's clients send it (a string of digits): no sign, no spaces, no exponent.</summary>
    public static bool TryParseId(string? text, out long id) =>
        long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out id);

    public long Id { get; set; }
    public required string Name { get; set; }
    public string? ArtifactLocation { get; set; }
    /// <summary>MLflow's lifecycle stage <c>deleted</c>: hidden, restorable.</summary>
    public bool Deleted { get; set; }
    public long CreationTimeMs { get; set; }
    public long LastUpdateTimeMs { get; set; }
    public List<ExperimentTag> Tags { get; set; } = [];
}

public sealed class ExperimentTag
{
    public long ExperimentId { get; set; }
    public required string Key { get; set; }
    public required string Value { get; set; }
}

/// <summary>A run's parameter (MLflow: written once; the same value again is fine).</summary>
public sealed class RunParam
{
    public long RunId { get; set; }
    public required string Key { get; set; }
    public required string Value { get; set; }
}

/// <summary>A run's tag (MLflow: overwritable). <c>mlflow.*</c> tags carry the client's source, user and so on.</summary>
public sealed class RunTag
{
    public long RunId { get; set; }
    public required string Key { get; set; }
    public required string Value { get; set; }
}

/// <summary>
/// How a metric key a client logged is stored: the track and metric name it maps to (fixed when the key is first
/// logged, so the history of a key never moves between tracks).
/// </summary>
public sealed class ClientMetricKey
{
    public long RunId { get; set; }
    public required string LoggedKey { get; set; }
    public required string Track { get; set; }
    public required string Key { get; set; }
}

public sealed class Run
{
    public long Id { get; set; }
    public required string Name { get; set; }
    public RunStatus Status { get; set; }
    /// <summary>The engine's <c>RunSpec</c> as JSON (camelCase); null for a client's run.</summary>
    public string? SpecJson { get; set; }
    public RunOrigin Origin { get; set; }
    public long ExperimentId { get; set; } = Experiment.DefaultId;
    /// <summary>The run's id in the tracking API (32 hex digits, as MLflow's): every run has one, the engine's too.</summary>
    public required string Uuid { get; set; }
    /// <summary>MLflow's lifecycle stage <c>deleted</c> (soft delete through the tracking API: restorable).</summary>
    public bool Deleted { get; set; }
    /// <summary>Save raw and EMA checkpoints at step 0 and every this many steps (the final ones always).</summary>
    public long? CheckpointEvery { get; set; }
    public long Step { get; set; }
    public long TotalSteps { get; set; }
    public string? Error { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    /// <summary>Step of the last resume bundle (its file is <c>runs/{id}/resume.zip</c>), if any.</summary>
    public long? BundleStep { get; set; }
    /// <summary>Set when the run was queued again to continue from its bundle.</summary>
    public bool ResumeRequested { get; set; }
    /// <summary>
    /// Starts (building the model, loading data or a bundle) begun and not yet finished. A start that crashes the
    /// whole process leaves it above zero: the next process tries once more, and a second crash fails the run.
    /// </summary>
    public int StartAttempts { get; set; }
    /// <summary>
    /// Which start of the run is training it (a new id at each claim). The metric writer stores a report only while its
    /// attempt is the run's current one, and an attempt's end is recorded only if it still is: a trainer that was
    /// presumed gone and replaced writes nothing over its successor.
    /// </summary>
    public string? Attempt { get; set; }
    /// <summary>
    /// With jobs across processes (PostgreSQL): the ticket of the job that may train the run (a new one each time the run
    /// is queued). A job whose ticket is not the run's own finds nothing to do, so a job sent twice trains nothing twice.
    /// </summary>
    public string? DispatchId { get; set; }
    /// <summary>The Hangfire job carrying <see cref="DispatchId"/> (deleted to stop the run on whichever machine trains it).</summary>
    public string? JobId { get; set; }
    /// <summary>A cancel was asked for while the run trained, perhaps on another machine: its trainer ends it as cancelled.</summary>
    public bool CancelRequested { get; set; }

    public List<EmaTrack> Tracks { get; set; } = [];
    /// <summary>Loaded only where asked for (<c>Include</c>); the tracking API reads and writes tags through their own set.</summary>
    public List<RunTag> Tags { get; set; } = [];

    /// <summary>The engine's spec of the run; a client's run has none (it cannot be trained, cloned or resumed here).</summary>
    public TrainingEngine.Training.RunSpec EngineSpec() => TrainingEngine.Training.RunSpec.FromJson(
        SpecJson ?? throw new InvalidOperationException($"Run {Id} was logged by a client: it has no engine spec."));

    /// <summary>
    /// What this run's curves are of when it trained with Switch EMA (its raw weights were replaced by a track's every N
    /// steps): shown wherever its curves are, since its "raw" is not plain training. Null for other runs.
    /// </summary>
    public string? SwitchEmaNote()
    {
        if (SpecJson is null) return null;
        return EngineSpec().SwitchEma?.Describe(
            Tracks.Where(t => t.SigmaRel is null && t.Name != TrainingEngine.TrackNames.Raw).OrderBy(t => t.Id).Select(t => t.Name).ToList());
    }

    /// <summary>A new tracking id: 32 lower-case hex digits, as MLflow makes them.</summary>
    public static string NewUuid() => Guid.NewGuid().ToString("N");

    /// <summary>Whether resuming can be asked for: a resumable status and a bundle recorded.</summary>
    public bool CanResume => Status.IsResumable() && BundleStep is not null;
}

/// <summary>A series of weights evaluated during a run: <c>raw</c> or one EMA (<c>ema-0.999</c>).</summary>
public sealed class EmaTrack
{
    public long Id { get; set; }
    public long RunId { get; set; }
    public required string Name { get; set; }
    /// <summary>Null for <c>raw</c>; for a post-hoc track, the classic decay with the same width at its step.</summary>
    public double? Decay { get; set; }
    /// <summary>Set for a post-hoc track (<c>posthoc-&lt;σ_rel&gt;</c>): the power-function profile it reconstructs.</summary>
    public double? SigmaRel { get; set; }

    /// <summary>The order tracks are shown in everywhere: raw, the run's tracks as its spec lists them, then post-hoc ones by width.</summary>
    public static IEnumerable<EmaTrack> InDisplayOrder(IEnumerable<EmaTrack> tracks) =>
        tracks.OrderBy(t => t.SigmaRel is not null ? 2 : t.Name == TrainingEngine.TrackNames.Raw ? 0 : 1).ThenBy(t => t.SigmaRel ?? 0)
            .ThenBy(t => t.Id);
}

/// <summary>
/// One metric value, keyed by (run, key, track, step, time) as MLflow keeps them: values are appended, never
/// overwritten, so a client that logs many values at one step (MLflow's default step is 0) keeps them all; the same
/// value at the same time again is stored once. A resumed engine run first drops what it will replay.
/// </summary>
public sealed class Metric
{
    public long RunId { get; set; }
    public required string Track { get; set; }
    public required string Key { get; set; }
    public long Step { get; set; }
    /// <summary>Null stands for NaN (SQLite has no NaN); ±infinity is stored as itself.</summary>
    public double? Value { get; set; }
    /// <summary>Unix milliseconds when the engine produced the value (a client's own timestamp for its runs).</summary>
    public long WallTimeMs { get; set; }
}

/// <summary>
/// The latest value of each series of a run, kept by the metric writer in the transaction that stores the points (as
/// MLflow's <c>latest_metrics</c>): the row with the highest step, then the latest time — what the tracking API's
/// <c>run.data.metrics</c>, its searches and every "final" value in the dashboard read, without scanning the series.
/// </summary>
public sealed class LatestMetric
{
    public long RunId { get; set; }
    public required string Track { get; set; }
    public required string Key { get; set; }
    public long Step { get; set; }
    public long WallTimeMs { get; set; }
    /// <summary>Null stands for NaN, as in <see cref="Metric"/>.</summary>
    public double? Value { get; set; }
}

public sealed class Checkpoint
{
    public long Id { get; set; }
    public long RunId { get; set; }
    public required string Track { get; set; }
    public long Step { get; set; }
    /// <summary>Relative to the data directory.</summary>
    public required string RelativePath { get; set; }
    public long SizeBytes { get; set; }
    public required string Sha256 { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

public sealed class RunLogEntry
{
    public long Id { get; set; }
    public long RunId { get; set; }
    public long WallTimeMs { get; set; }
    public required string Level { get; set; }
    public required string Message { get; set; }
}
