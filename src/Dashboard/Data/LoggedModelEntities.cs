namespace EmaLab.Dashboard.Data;

/// <summary>MLflow 3's <c>LoggedModelStatus</c> (service.proto), by its proto numbers.</summary>
public enum LoggedModelStatus
{
    Unspecified = 0,
    Pending = 1,
    Ready = 2,
    UploadFailed = 3,
}

/// <summary>
/// A model a client logged (MLflow 3's logged model: <c>mlflow.pytorch.log_model</c> creates one, uploads its files to
/// its own artifact location and finalizes it READY). Its files live under its source run's folder when it has one
/// (<c>runs/&lt;id&gt;/models/&lt;model_id&gt;/artifacts/</c>), else under <c>models/&lt;model_id&gt;/artifacts/</c>.
/// </summary>
public sealed class LoggedModel
{
    public const int MaxNameLength = 500;

    /// <summary><c>m-</c> and 32 hex digits, as MLflow makes them.</summary>
    public required string Id { get; set; }
    public long ExperimentId { get; set; }
    public required string Name { get; set; }
    /// <summary>The run that made it, when it is one of this server's (its files live in that run's folder).</summary>
    public long? SourceRunId { get; set; }
    /// <summary>MLflow's <c>source_run_id</c> as the client gave it: kept even when it names no run here (MLflow stores it
    /// unchecked) and after the run is deleted.</summary>
    public string? SourceRunUuid { get; set; }
    public string? ModelType { get; set; }
    public LoggedModelStatus Status { get; set; }
    public string? StatusMessage { get; set; }
    public long CreationTimeMs { get; set; }
    public long LastUpdatedTimeMs { get; set; }
    /// <summary>MLflow's lifecycle stage <c>deleted</c> (hidden unless asked for).</summary>
    public bool Deleted { get; set; }
    public List<LoggedModelTag> Tags { get; set; } = [];
    public List<LoggedModelParam> Params { get; set; } = [];
    public List<LoggedModelMetric> Metrics { get; set; } = [];

    public static string NewId() => "m-" + Guid.NewGuid().ToString("N");
}

public sealed class LoggedModelTag
{
    public required string ModelId { get; set; }
    public required string Key { get; set; }
    public required string Value { get; set; }
}

public sealed class LoggedModelParam
{
    public required string ModelId { get; set; }
    public required string Key { get; set; }
    public required string Value { get; set; }
}

/// <summary>A metric logged for a model (a metric with <c>model_id</c> in log-batch; <c>log_model</c> copies the run's
/// metrics of its step).</summary>
public sealed class LoggedModelMetric
{
    public long Id { get; set; }
    public required string ModelId { get; set; }
    public long? RunId { get; set; }
    public required string Key { get; set; }
    public long Step { get; set; }
    public long TimestampMs { get; set; }
    /// <summary>Null stands for NaN.</summary>
    public double? Value { get; set; }
    public string? DatasetName { get; set; }
    public string? DatasetDigest { get; set; }
}

/// <summary>What a run read (MLflow's run inputs): a dataset (<c>mlflow.log_input</c>) or a logged model.</summary>
public sealed class RunInput
{
    public long Id { get; set; }
    public long RunId { get; set; }
    /// <summary>Set for a model input; the dataset fields are set for a dataset input.</summary>
    public string? ModelId { get; set; }
    public string? DatasetName { get; set; }
    public string? DatasetDigest { get; set; }
    public string? SourceType { get; set; }
    public string? Source { get; set; }
    public string? Schema { get; set; }
    public string? Profile { get; set; }
    /// <summary>The input's tags (such as <c>mlflow.data.context</c>) as a JSON object.</summary>
    public string? TagsJson { get; set; }
    /// <summary>The tag <c>mlflow.data.context</c> (<c>training</c>, <c>eval</c>…) as a column of its own:
    /// <c>search_runs</c> filters on it.</summary>
    public string? Context { get; set; }
}

/// <summary>A model a run produced at a step (MLflow's run outputs; <c>log_model</c> records one).</summary>
public sealed class RunOutput
{
    public long RunId { get; set; }
    public required string ModelId { get; set; }
    public long Step { get; set; }
}
