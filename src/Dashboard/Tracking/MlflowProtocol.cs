using System.Text.Json;
using System.Text.Json.Serialization;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// An MLflow REST error: <c>{"error_code": …, "message": …}</c> with the HTTP status MLflow gives the code
/// (mlflow/exceptions.py, <c>ERROR_CODE_TO_HTTP_STATUS</c>).
/// </summary>
public sealed class MlflowException(string errorCode, string message) : Exception(message)
{
    public const string InvalidParameterValue = "INVALID_PARAMETER_VALUE";
    public const string ResourceDoesNotExist = "RESOURCE_DOES_NOT_EXIST";
    public const string ResourceAlreadyExists = "RESOURCE_ALREADY_EXISTS";
    public const string Unauthenticated = "UNAUTHENTICATED";
    public const string PermissionDenied = "PERMISSION_DENIED";
    public const string BadRequest = "BAD_REQUEST";
    public const string EndpointNotFound = "ENDPOINT_NOT_FOUND";
    public const string ResourceExhausted = "RESOURCE_EXHAUSTED";
    public const string InternalError = "INTERNAL_ERROR";

    public string ErrorCode { get; } = errorCode;

    public int HttpStatus => ErrorCode switch
    {
        InvalidParameterValue or ResourceAlreadyExists or BadRequest => StatusCodes.Status400BadRequest,
        ResourceDoesNotExist or EndpointNotFound => StatusCodes.Status404NotFound,
        ResourceExhausted => StatusCodes.Status429TooManyRequests,
        Unauthenticated => StatusCodes.Status401Unauthorized,
        PermissionDenied => StatusCodes.Status403Forbidden,
        // MLflow answers INVALID_STATE with 500 too, for client mistakes such as logging into a deleted run; its client
        // retries every 5xx for minutes, so EMA Lab keeps 500 for its own failures and answers mistakes with 400.
        _ => StatusCodes.Status500InternalServerError,
    };

    public static MlflowException Invalid(string message) => new(InvalidParameterValue, message);
    public static MlflowException Missing(string parameter) =>
        Invalid($"Missing value for required parameter '{parameter}'. See the API docs for more information about request parameters.");
}

/// <summary>MLflow's JSON: snake_case fields, enums by name, int64 as numbers (as its server writes them), unset fields left out.</summary>
public static class MlflowJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        // Protobuf's JSON writes int64 as strings and NaN as "NaN": its clients send both.
        NumberHandling = JsonNumberHandling.AllowReadingFromString | JsonNumberHandling.AllowNamedFloatingPointLiterals,
        // Quotes in values written as they are (as Python's json does), not as \u0022.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static IResult Ok(object response) => Results.Json(response, Options);
    public static IResult Empty() => Results.Json(new { }, Options);

    public static IResult Error(MlflowException e) =>
        Results.Json(new { error_code = e.ErrorCode, message = e.Message }, Options, statusCode: e.HttpStatus);
}

// The messages of mlflow/protos/service.proto that EMA Lab serves (fields by their proto names).

public sealed record MlflowTag(string? Key, string? Value);

/// <summary>A metric as the client sends and reads it; <see cref="ModelId"/> and the dataset fields tie it to a logged model (MLflow 3).</summary>
public sealed record MlflowMetric(string? Key, double? Value, long? Timestamp, long? Step,
    string? DatasetName = null, string? DatasetDigest = null, string? ModelId = null, string? RunId = null);

public sealed record MlflowMetricWithRunId(string Key, double Value, long Timestamp, long Step, string RunId);

public sealed record MlflowExperiment(
    string ExperimentId, string Name, string ArtifactLocation, string LifecycleStage, long LastUpdateTime, long CreationTime,
        IReadOnlyList<MlflowTag> Tags);

public sealed record MlflowRunInfo(
    string RunId, string RunUuid, string RunName, string ExperimentId, string UserId, string Status, long StartTime, long? EndTime,
    string ArtifactUri, string LifecycleStage);

public sealed record MlflowRunData(IReadOnlyList<MlflowMetric> Metrics, IReadOnlyList<MlflowTag> Params, IReadOnlyList<MlflowTag> Tags);

public sealed record MlflowRun(MlflowRunInfo Info, MlflowRunData Data, MlflowRunInputs Inputs, MlflowRunOutputs Outputs);

public sealed record MlflowRunInputs(IReadOnlyList<MlflowDatasetInput>? DatasetInputs, IReadOnlyList<MlflowModelInput>? ModelInputs);
public sealed record MlflowRunOutputs(IReadOnlyList<MlflowModelOutput>? ModelOutputs);
public sealed record MlflowDatasetInput(IReadOnlyList<MlflowTag>? Tags, MlflowDataset? Dataset);
public sealed record MlflowDataset(string? Name, string? Digest, string? SourceType, string? Source, string? Schema, string? Profile);
public sealed record MlflowModelInput(string? ModelId);
/// <summary>A dataset an experiment's runs read, as MLflow's UI lists them (<c>experiments/search-datasets</c>).</summary>
public sealed record MlflowDatasetSummary(string ExperimentId, string Name, string? Digest, string? Context);
public sealed record MlflowModelOutput(string? ModelId, long? Step);

// MLflow 3's logged models (service.proto: LoggedModel, LoggedModelInfo, LoggedModelData).
public sealed record MlflowLoggedModel(MlflowLoggedModelInfo Info, MlflowLoggedModelData Data);
public sealed record MlflowLoggedModelInfo(
    string ModelId, string ExperimentId, string Name, long CreationTimestampMs, long LastUpdatedTimestampMs, string ArtifactUri,
    string Status, string? ModelType, string? SourceRunId, string? StatusMessage, IReadOnlyList<MlflowTag> Tags);
public sealed record MlflowLoggedModelData(IReadOnlyList<MlflowTag> Params, IReadOnlyList<MlflowMetric> Metrics);

// Requests (POST bodies; GET requests bind the same names from the query string).

public sealed record CreateExperimentRequest(string? Name, string? ArtifactLocation, IReadOnlyList<MlflowTag>? Tags);
public sealed record ExperimentIdRequest(string? ExperimentId);
public sealed record UpdateExperimentRequest(string? ExperimentId, string? NewName);
public sealed record SetExperimentTagRequest(string? ExperimentId, string? Key, string? Value);
public sealed record SearchExperimentsRequest(long? MaxResults, string? PageToken, string? Filter, IReadOnlyList<string>? OrderBy, string? ViewType);
public sealed record CreateRunRequest(string? ExperimentId, string? UserId, string? RunName, long? StartTime, IReadOnlyList<MlflowTag>? Tags);
public sealed record UpdateRunRequest(string? RunId, string? RunUuid, string? Status, long? EndTime, string? RunName);
public sealed record RunIdRequest(string? RunId);
/// <summary>MLflow 3's log-metric also names the logged model and the dataset a metric was evaluated on.</summary>
public sealed record LogMetricRequest(string? RunId, string? RunUuid, string? Key, double? Value, long? Timestamp, long? Step,
    string? ModelId = null, string? DatasetName = null, string? DatasetDigest = null);
public sealed record LogParamRequest(string? RunId, string? RunUuid, string? Key, string? Value);
public sealed record SetTagRequest(string? RunId, string? RunUuid, string? Key, string? Value);
public sealed record DeleteTagRequest(string? RunId, string? Key);
public sealed record LogBatchRequest(string? RunId, IReadOnlyList<MlflowMetric>? Metrics, IReadOnlyList<MlflowTag>? Params,
    IReadOnlyList<MlflowTag>? Tags);
public sealed record LogInputsRequest(string? RunId, IReadOnlyList<MlflowDatasetInput>? Datasets, IReadOnlyList<MlflowModelInput>? Models);
public sealed record LogOutputsRequest(string? RunId, IReadOnlyList<MlflowModelOutput>? Models);
public sealed record CreateLoggedModelRequest(string? ExperimentId, string? Name, string? ModelType, string? SourceRunId,
    IReadOnlyList<MlflowTag>? Params, IReadOnlyList<MlflowTag>? Tags);
/// <summary>The status as protobuf JSON writes an enum (its name) or as its number.</summary>
public sealed record FinalizeLoggedModelRequest(string? ModelId, JsonElement? Status);
public sealed record LoggedModelTagsRequest(string? ModelId, IReadOnlyList<MlflowTag>? Tags);
public sealed record LoggedModelParamsRequest(string? ModelId, IReadOnlyList<MlflowTag>? Params);
public sealed record SearchLoggedModelsRequest(IReadOnlyList<string>? ExperimentIds, string? Filter, int? MaxResults,
    IReadOnlyList<LoggedModelOrderBy>? OrderBy, string? PageToken, IReadOnlyList<LoggedModelDatasetFilter>? Datasets = null);
/// <summary>A dataset the metrics clauses of a logged-model search look at (its digest optional).</summary>
public sealed record LoggedModelDatasetFilter(string? DatasetName, string? DatasetDigest);
public sealed record LoggedModelOrderBy(string? FieldName, bool? Ascending);
public sealed record SearchRunsRequest(IReadOnlyList<string>? ExperimentIds, string? Filter, string? RunViewType, int? MaxResults,
    IReadOnlyList<string>? OrderBy, string? PageToken);
