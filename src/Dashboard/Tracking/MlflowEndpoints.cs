using System.Text.Json;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Tracking;

/// <summary>Told who created an experiment (with accounts, its creator manages it).</summary>
public interface IExperimentCreators
{
    Task CreatedAsync(long experimentId, System.Security.Claims.ClaimsPrincipal by, CancellationToken cancel);
}

/// <summary>
/// MLflow's tracking REST API 2.0 (paths and messages of mlflow/protos/service.proto), the part its clients use, so
/// <c>MLFLOW_TRACKING_URI=http://host:port</c> makes any MLflow client log here. Errors are MLflow's
/// <c>{"error_code", "message"}</c>; access is the API's (a Bearer token is what <c>MLFLOW_TRACKING_TOKEN</c> sends).
/// </summary>
public static partial class MlflowEndpoints
{
    const string TrackingPrefix = "/api/2.0/mlflow";

    /// <summary>A request to MLflow's API — tracking, artifacts, or any other path under its versions, which MLflow's
    /// server answers too (its UI routes are rewritten onto these: <see cref="MlflowUiRoutes"/>) — whose errors are
    /// MLflow's JSON, not problem details.</summary>
    public static bool IsMlflowPath(PathString path) => path.StartsWithSegments("/api/2.0") || path.StartsWithSegments("/api/3.0");

    public static void MapMlflowApi(this RouteGroupBuilder api)
    {
        var mlflow = api.MapGroup("/2.0/mlflow").WithTags("MLflow tracking").AddEndpointFilter(MlflowErrors)
            .RequireRateLimiting(Hosting.ApiLoad.TrackingPolicy);
        var artifacts = api.MapGroup("/2.0/mlflow-artifacts").WithTags("MLflow artifacts").AddEndpointFilter(MlflowErrors)
            .RequireRateLimiting(Hosting.ApiLoad.TrackingPolicy);
        MapArtifacts(artifacts,
            ((IEndpointRouteBuilder)api).ServiceProvider.GetRequiredService<Microsoft.Extensions.Options.IOptions<EmaLabOptions>>().Value);
        MapEndpointNotFound(artifacts);
        MapEndpointNotFound(mlflow);
        // The rest of MLflow's API (traces, prompts, scorers, the gateway…): answered as MLflow's server answers an
        // endpoint it does not have, so a client says what is missing instead of reporting an internal error.
        MapEndpointNotFound(api.MapGroup("/2.0").AddEndpointFilter(MlflowErrors));
        MapEndpointNotFound(api.MapGroup("/3.0").AddEndpointFilter(MlflowErrors));
        mlflow.MapMlflowUiRoutes();

        mlflow.MapPost("/experiments/create", async (HttpContext http, TrackingService store, IEnumerable<IExperimentCreators> creators) =>
        {
            var id = await store.CreateExperimentAsync(await BodyAsync<CreateExperimentRequest>(http), http.RequestAborted);
            foreach (var creator in creators) await creator.CreatedAsync(long.Parse(id, System.Globalization.CultureInfo.InvariantCulture), http.User,
                http.RequestAborted);
            return MlflowJson.Ok(new { experiment_id = id });
        }).ForAnyCaller("any user may create an experiment (and manages it)");
        mlflow.MapGet("/experiments/get", async (HttpContext http, TrackingService store) =>
            MlflowJson.Ok(new { experiment = await store.GetExperimentAsync(Query(http, "experiment_id"), http.RequestAborted) })).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Experiment, "experiment_id");
        mlflow.MapGet("/experiments/get-by-name", async (HttpContext http, TrackingService store) =>
            MlflowJson.Ok(new { experiment = await store.GetExperimentByNameAsync(Query(http, "experiment_name"), http.RequestAborted) })).Needs(ExperimentPermissionLevel.Read, ExperimentOf.ExperimentName, "experiment_name");
        mlflow.MapPost("/experiments/search", async (HttpContext http, TrackingService store) =>
            SearchExperiments(http, await store.SearchExperimentsAsync(await BodyAsync<SearchExperimentsRequest>(http), http.RequestAborted))).ForAnyCaller("lists the experiments the caller may read");
        mlflow.MapGet("/experiments/search", async (HttpContext http, TrackingService store) =>
            SearchExperiments(http, await store.SearchExperimentsAsync(new SearchExperimentsRequest(
                QueryLong(http, "max_results"), Query(http, "page_token"), Query(http, "filter"),
                    http.Request.Query["order_by"].OfType<string>().ToList(), Query(http, "view_type")),
                http.RequestAborted))).ForAnyCaller("lists the experiments the caller may read");
        // Removed from MLflow 2.0 but still sent by 1.x clients: every experiment of the view, in one page.
        mlflow.MapGet("/experiments/list", async (HttpContext http, TrackingService store) =>
            MlflowJson.Ok(new { experiments = Readable(http, (await store.SearchExperimentsAsync(new SearchExperimentsRequest(50_000, null, null,
                null, Query(http, "view_type")), http.RequestAborted)).Experiments) })).ForAnyCaller("lists the experiments the caller may read");
        mlflow.MapPost("/experiments/delete", async (HttpContext http, TrackingService store) =>
        {
            await store.DeleteExperimentAsync((await BodyAsync<ExperimentIdRequest>(http)).ExperimentId, deleted: true, http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Manage, ExperimentOf.Experiment, "experiment_id").Audited("experiment.delete", "experiment", "experiment_id");
        mlflow.MapPost("/experiments/restore", async (HttpContext http, TrackingService store) =>
        {
            await store.DeleteExperimentAsync((await BodyAsync<ExperimentIdRequest>(http)).ExperimentId, deleted: false, http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Manage, ExperimentOf.Experiment, "experiment_id").Audited("experiment.restore", "experiment", "experiment_id");
        mlflow.MapPost("/experiments/update", async (HttpContext http, TrackingService store) =>
        {
            await store.RenameExperimentAsync(await BodyAsync<UpdateExperimentRequest>(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experiment_id");
        mlflow.MapPost("/experiments/set-experiment-tag", async (HttpContext http, TrackingService store) =>
        {
            await store.SetExperimentTagAsync(await BodyAsync<SetExperimentTagRequest>(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experiment_id");

        mlflow.MapPost("/experiments/delete-experiment-tag", async (HttpContext http, TrackingService store) =>
        {
            await store.DeleteExperimentTagAsync(await BodyAsync<SetExperimentTagRequest>(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experiment_id");

        mlflow.MapPost("/runs/create", async (HttpContext http, TrackingService store) =>
            MlflowJson.Ok(new { run = await store.CreateRunAsync(await BodyAsync<CreateRunRequest>(http), CallerClaims.Of(http)!, http.RequestAborted) })).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experiment_id");
        mlflow.MapGet("/runs/get", async (HttpContext http, TrackingService store) =>
            MlflowJson.Ok(new { run = await store.GetRunAsync(Query(http, "run_id") ?? Query(http, "run_uuid"), http.RequestAborted) })).Needs(ExperimentPermissionLevel.Read, ExperimentOf.RunUuid, "run_id");
        mlflow.MapPost("/runs/update", async (HttpContext http, TrackingService store) =>
            MlflowJson.Ok(new { run_info = await store.UpdateRunAsync(await BodyAsync<UpdateRunRequest>(http), http.RequestAborted) })).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_id");
        mlflow.MapPost("/runs/delete", async (HttpContext http, TrackingService store) =>
        {
            await store.SetRunDeletedAsync((await BodyAsync<RunIdRequest>(http)).RunId, deleted: true, http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Manage, ExperimentOf.RunUuid, "run_id").Audited("run.delete", "run", "run_id");
        mlflow.MapPost("/runs/restore", async (HttpContext http, TrackingService store) =>
        {
            await store.SetRunDeletedAsync((await BodyAsync<RunIdRequest>(http)).RunId, deleted: false, http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Manage, ExperimentOf.RunUuid, "run_id").Audited("run.restore", "run", "run_id");
        mlflow.MapPost("/runs/search", async (HttpContext http, TrackingService store) =>
        {
            var request = await BodyAsync<SearchRunsRequest>(http);
            var (runs, next) = await store.SearchRunsAsync(request with { ExperimentIds = ReadableOnly(http, request.ExperimentIds) },
                http.RequestAborted);
            return MlflowJson.Ok(new { runs, next_page_token = next });
        }).ForAnyCaller("lists the runs the caller may read");
        mlflow.MapPost("/runs/log-metric", async (HttpContext http, TrackingService store) =>
        {
            var request = await BodyAsync<LogMetricRequest>(http);
            if (request.Key is null) throw MlflowException.Missing("key");
            if (request.Value is null) throw MlflowException.Missing("value");
            if (request.Timestamp is null) throw MlflowException.Missing("timestamp");
            await store.LogBatchAsync(request.RunId ?? request.RunUuid,
                [new MlflowMetric(request.Key, request.Value, request.Timestamp, request.Step, request.DatasetName, request.DatasetDigest, request.ModelId)],
                [], [], http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_id");
        mlflow.MapPost("/runs/log-parameter", async (HttpContext http, TrackingService store) =>
        {
            var request = await BodyAsync<LogParamRequest>(http);
            if (request.Key is null) throw MlflowException.Missing("key");
            if (request.Value is null) throw MlflowException.Missing("value");
            await store.LogBatchAsync(request.RunId ?? request.RunUuid, [], [new MlflowTag(request.Key, request.Value)], [], http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_id");
        mlflow.MapPost("/runs/set-tag", async (HttpContext http, TrackingService store) =>
        {
            var request = await BodyAsync<SetTagRequest>(http);
            if (request.Key is null) throw MlflowException.Missing("key");
            if (request.Value is null) throw MlflowException.Missing("value");
            await store.LogBatchAsync(request.RunId ?? request.RunUuid, [], [], [new MlflowTag(request.Key, request.Value)], http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_id");
        mlflow.MapPost("/runs/delete-tag", async (HttpContext http, TrackingService store) =>
        {
            await store.DeleteTagAsync(await BodyAsync<DeleteTagRequest>(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_id");
        mlflow.MapPost("/runs/log-batch", async (HttpContext http, TrackingService store) =>
        {
            var request = await BodyAsync<LogBatchRequest>(http, Data.MlflowLimits.MaxBatchRequestBytes);
            await store.LogBatchAsync(request.RunId, request.Metrics ?? [], request.Params ?? [], request.Tags ?? [], http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_id");
        mlflow.MapPost("/runs/log-inputs", async (HttpContext http, LoggedModelService models) =>
        {
            await models.LogInputsAsync(await BodyAsync<LogInputsRequest>(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_id");
        mlflow.MapPost("/runs/outputs", async (HttpContext http, LoggedModelService models) =>
        {
            await models.LogOutputsAsync(await BodyAsync<LogOutputsRequest>(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_id");
        MapLoggedModels(mlflow.MapGroup("/logged-models"));
        mlflow.MapModelRegistry();
        mlflow.MapGet("/artifacts/list", async (HttpContext http, TrackingService runs, ArtifactStore store) =>
        {
            var run = (await runs.GetRunAsync(Query(http, "run_id") ?? Query(http, "run_uuid"), http.RequestAborted)).Info;
            var root = $"{run.ExperimentId}/{run.RunId}/artifacts";
            var location = await store.ResolveAsync(Query(http, "path") is { Length: > 0 } sub ? $"{root}/{sub}" : root, http.RequestAborted);
            return MlflowJson.Ok(new { root_uri = run.ArtifactUri, files = store.List(location, fullPaths: true) });
        }).Needs(ExperimentPermissionLevel.Read, ExperimentOf.RunUuid, "run_id");
        mlflow.MapGet("/metrics/get-history-bulk-interval", async (HttpContext http, TrackingService store) =>
            MlflowJson.Ok(new
            {
                metrics = await store.GetMetricHistoryBulkIntervalAsync(http.Request.Query["run_ids"].OfType<string>().ToList(),
                    Query(http, "metric_key"),
                    QueryLong(http, "start_step"), QueryLong(http, "end_step"), QueryLong(http, "max_results"), http.RequestAborted),
            })).Needs(ExperimentPermissionLevel.Read, ExperimentOf.RunUuids, "run_ids");
        mlflow.MapGet("/metrics/get-history", async (HttpContext http, TrackingService store) =>
        {
            var (metrics, next) = await store.GetMetricHistoryAsync(Query(http, "run_id") ?? Query(http, "run_uuid"), Query(http, "metric_key"),
                (int?)QueryLong(http, "max_results"), Query(http, "page_token"), http.RequestAborted);
            return MlflowJson.Ok(new { metrics, next_page_token = next });
        }).Needs(ExperimentPermissionLevel.Read, ExperimentOf.RunUuid, "run_id");
    }

    /// <summary>MLflow 3's logged models (service.proto: CreateLoggedModel … ListLoggedModelArtifacts), at the paths
    /// and methods its client calls.</summary>
    static void MapLoggedModels(RouteGroupBuilder models)
    {
        models.MapPost("", async (HttpContext http, LoggedModelService service) =>
            MlflowJson.Ok(new { model = await service.CreateAsync(await BodyAsync<CreateLoggedModelRequest>(http), http.RequestAborted) })).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experiment_id");
        models.MapPost("/search", async (HttpContext http, LoggedModelService service) =>
        {
            var request = await BodyAsync<SearchLoggedModelsRequest>(http);
            var readable = ReadableOnly(http, request.ExperimentIds);
            if (readable is { Count: 0 } && request.ExperimentIds is { Count: > 0 })
                return MlflowJson.Ok(new { models = Array.Empty<object>() }); // none the caller may read
            var (found, next) = await service.SearchAsync(request with { ExperimentIds = readable }, http.RequestAborted);
            return MlflowJson.Ok(new { models = found, next_page_token = next });
        }).ForAnyCaller("lists the logged models the caller may read");
        models.MapGet("/{modelId}", async (string modelId, HttpContext http, LoggedModelService service) =>
            MlflowJson.Ok(new { model = await service.GetAsync(modelId,
                string.Equals(Query(http, "allow_deleted"), "true", StringComparison.OrdinalIgnoreCase), http.RequestAborted) })).Needs(ExperimentPermissionLevel.Read, ExperimentOf.LoggedModel, "modelId");
        models.MapMethods("/{modelId}", ["PATCH"], async (string modelId, HttpContext http, LoggedModelService service) =>
            MlflowJson.Ok(new { model = await service.FinalizeAsync(modelId, await BodyAsync<FinalizeLoggedModelRequest>(http),
                http.RequestAborted) })).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.LoggedModel, "modelId");
        models.MapDelete("/{modelId}", async (string modelId, HttpContext http, LoggedModelService service) =>
        {
            await service.DeleteAsync(modelId, http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Manage, ExperimentOf.LoggedModel, "modelId").Audited("model.delete", "model", "modelId");
        models.MapMethods("/{modelId}/tags", ["PATCH"], async (string modelId, HttpContext http, LoggedModelService service) =>
        {
            await service.SetTagsAsync(modelId, (await BodyAsync<LoggedModelTagsRequest>(http)).Tags, http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.LoggedModel, "modelId");
        models.MapDelete("/{modelId}/tags/{**tagKey}", async (string modelId, string tagKey, HttpContext http, LoggedModelService service) =>
        {
            await service.DeleteTagAsync(modelId, tagKey, http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.LoggedModel, "modelId");
        models.MapPost("/{modelId}/params", async (string modelId, HttpContext http, LoggedModelService service) =>
        {
            await service.LogParamsAsync(modelId, (await BodyAsync<LoggedModelParamsRequest>(http)).Params, http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.LoggedModel, "modelId");
        models.MapGet("/{modelId}/artifacts/directories", async (string modelId, HttpContext http, ArtifactStore store) =>
        {
            var location = await store.ResolveModelAsync(modelId, Query(http, "artifact_directory_path"), http.RequestAborted);
            return MlflowJson.Ok(new { root_uri = LoggedModelService.ArtifactUri(location.Model!), files = store.List(location, fullPaths: true) });
        }).Needs(ExperimentPermissionLevel.Read, ExperimentOf.LoggedModel, "modelId");
    }

    /// <summary>
    /// Any other path or method under the group: 404 <c>ENDPOINT_NOT_FOUND</c>, the code on which MLflow's client falls back
    /// to an older endpoint (a 405 would be reported as a failure).
    /// </summary>
    static void MapEndpointNotFound(RouteGroupBuilder group) =>
        group.Map("/{**rest}", (HttpContext http) => MlflowJson.Error(new MlflowException(MlflowException.EndpointNotFound,
            $"No endpoint {http.Request.Method} {MlflowUiRoutes.RequestedPath(http)} in this server's MLflow API.")))
            .ExcludeFromDescription().ForAnyCaller("answers ENDPOINT_NOT_FOUND");

    /// <summary>Every MLflow error the handlers raise becomes MLflow's error body with its status.</summary>
    public static async ValueTask<object?> MlflowErrors(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (MlflowException e)
        {
            return MlflowJson.Error(e);
        }
        catch (PermissionDeniedException)
        {
            return MlflowJson.Error(new MlflowException(MlflowException.PermissionDenied, "Permission denied"));
        }
    }

    /// <summary>The artifact proxy the client's <c>mlflow-artifacts:</c> URIs resolve to, and the tracking API's artifact list.</summary>
    static void MapArtifacts(RouteGroupBuilder artifacts, EmaLabOptions options)
    {
        artifacts.MapPut("/artifacts/{**path}", async (string path, HttpContext http, ArtifactStore store) =>
        {
            await store.UploadAsync(await store.ResolveAsync(path, http.RequestAborted), http.Request.Body, http.Request.ContentLength,
                http.RequestAborted);
            return MlflowJson.Empty();
        }).WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute((long)options.Limits.MaxArtifactMegabytes << 20))
          .WithSummary("Uploads an artifact; a .safetensors file is checked and listed as a checkpoint of its track.").Needs(ExperimentPermissionLevel.Edit, ExperimentOf.ArtifactPath, "path");
        artifacts.MapGet("/artifacts/{**path}", async (string path, HttpContext http, ArtifactStore store) =>
            ArtifactFile(store, await store.ResolveAsync(path, http.RequestAborted), path))
            .WithSummary("Downloads an artifact.").Needs(ExperimentPermissionLevel.Read, ExperimentOf.ArtifactPath, "path");
        artifacts.MapGet("/artifacts", async (HttpContext http, ArtifactStore store) =>
            MlflowJson.Ok(new { files = store.List(await store.ResolveAsync(Query(http, "path"), http.RequestAborted), fullPaths: false) }))
            .WithSummary("Lists a folder of artifacts (names relative to it).").Needs(ExperimentPermissionLevel.Read, ExperimentOf.ArtifactPath, "path");
    }

    /// <summary>An artifact's file as MLflow's <c>_send_artifact</c> sends it — an attachment, never shown inline on this
    /// origin —, or MLflow's error when there is none (the proxy's downloads and the UI routes alike).</summary>
    internal static IResult ArtifactFile(ArtifactStore store, ArtifactStore.Location location, string path) =>
        store.FileOf(location) is { } file
            ? Results.File(file, "application/octet-stream", Path.GetFileName(file), enableRangeProcessing: true)
            : throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Artifact '{path}' does not exist.");

    /// <summary>A page of experiments without those the caller may not read (the page may come out shorter, as MLflow's auth
    /// app filters its pages; the token still leads on).</summary>
    static IResult SearchExperiments(HttpContext http, (List<MlflowExperiment> Experiments, string? NextPageToken) result) =>
        MlflowJson.Ok(new { experiments = Readable(http, result.Experiments), next_page_token = result.NextPageToken });

    static List<MlflowExperiment> Readable(HttpContext http, List<MlflowExperiment> experiments) =>
        ReadableExperiments.Of(http) is { } readable
            ? experiments.Where(e => !long.TryParse(e.ExperimentId, System.Globalization.CultureInfo.InvariantCulture, out var id) || readable.CanRead(id)).ToList()
            : experiments;

    /// <summary>The experiment ids asked for that the caller may read (the others are left out: their runs are not listed).</summary>
    static IReadOnlyList<string>? ReadableOnly(HttpContext http, IReadOnlyList<string>? ids) =>
        ReadableExperiments.Of(http) is not { } readable || ids is null ? ids
            : ids.Where(id => !long.TryParse(id, System.Globalization.CultureInfo.InvariantCulture, out var n) || readable.CanRead(n)).ToList();

    /// <summary>A query parameter as MLflow's server reads it (absent: null).</summary>
    public static string? Query(HttpContext http, string name) => http.Request.Query.TryGetValue(name, out var values) ? values.ToString() : null;

    static long? QueryLong(HttpContext http, string name) =>
        Query(http, name) is not { } text ? null
            : long.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var value) ? value
            : throw MlflowException.Invalid($"Invalid value '{text}' for parameter '{name}': an integer is expected.");

    /// <summary>
    /// A POST body as MLflow's server reads it: JSON declared as such, unknown fields ignored, int64 as numbers or strings. Over
    /// <paramref name="maxBytes"/> (log-batch: 1 MB) it is refused with MLflow's message.
    /// </summary>
    public static async Task<T> BodyAsync<T>(HttpContext http, int maxBytes = 16 << 20) where T : class
    {
        // MLflow's _validate_content_type: a JSON body must say so (a cross-site page cannot send that without a
        // CORS preflight, which this server never grants), the content-type rule of the rest of the API.
        if (http.Request.ContentType is null)
            throw MlflowException.Invalid("Bad Request. Content-Type header is missing.");
        if (!http.Request.HasJsonContentType())
            throw MlflowException.Invalid("Bad Request. Content-Type must be one of ['application/json'].");
        // A pooled buffer: a log-batch body (up to 1 MB) would otherwise be a new large-object-heap array per call.
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(64 << 10);
        var length = 0;
        try
        {
            int read;
            while ((read = await http.Request.Body.ReadAsync(buffer.AsMemory(length), http.RequestAborted)) > 0)
            {
                length += read;
                if (length > maxBytes)
                    throw MlflowException.Invalid($"Batched logging API requests must be at most {maxBytes} bytes, got a request of size {http.Request.ContentLength?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? $"over {maxBytes}"}.");
                if (length == buffer.Length)
                {
                    var larger = System.Buffers.ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, length).CopyTo(larger);
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
            }
            if (length == 0) return JsonSerializer.Deserialize<T>("{}", MlflowJson.Options)!;
            return JsonSerializer.Deserialize<T>(buffer.AsSpan(0, length), MlflowJson.Options)
                ?? throw new MlflowException(MlflowException.BadRequest, "The request body must be a JSON object.");
        }
        catch (JsonException e)
        {
            throw TypeError(e, buffer.AsSpan(0, length));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// A field of the wrong JSON type, said as MLflow's <c>_validate_param_against_schema</c> says it (<c>Invalid value 123
    /// for parameter 'name' supplied:  Hint: Value was of type 'int'.</c>, the value as <c>json.dumps</c> writes it, the
    /// type by Python's name); JSON that does not parse, by where it broke. Never the serializer's words, which name the
    /// server's types.
    /// </summary>
    static MlflowException TypeError(JsonException e, ReadOnlySpan<byte> body)
    {
        const string SeeDocs = " See the API docs for more information about request parameters.";
        if (e.Path is { Length: > 2 } path)
            try
            {
                using var document = JsonDocument.Parse(body.ToArray());
                var value = document.RootElement;
                var parameter = "";
                foreach (System.Text.RegularExpressions.Match step in JsonPathStep().Matches(path))
                {
                    if (step.Groups["index"].Success)
                    {
                        value = value[int.Parse(step.Groups["index"].Value, System.Globalization.CultureInfo.InvariantCulture)];
                        parameter += $"[{step.Groups["index"].Value}]";
                    }
                    else
                    {
                        var name = step.Groups["name"].Success ? step.Groups["name"].Value : step.Groups["quoted"].Value;
                        value = value.GetProperty(name);
                        parameter += parameter.Length == 0 ? name : "." + name;
                    }
                }
                var type = value.ValueKind switch
                {
                    JsonValueKind.Number => value.GetRawText().IndexOfAny(['.', 'e', 'E']) >= 0 ? "float" : "int",
                    JsonValueKind.String => "str",
                    JsonValueKind.Array => "list",
                    JsonValueKind.Object => "dict",
                    JsonValueKind.True or JsonValueKind.False => "bool",
                    _ => "NoneType",
                };
                var shown = value.ValueKind is JsonValueKind.True or JsonValueKind.False ? (value.GetBoolean() ? "true" : "false")
                    : JsonSerializer.Serialize(value, MlflowJson.Options);
                return MlflowException.Invalid($"Invalid value {shown} for parameter '{parameter}' supplied:  Hint: Value was of type '{type}'.{SeeDocs}");
            }
            catch (Exception inner) when (inner is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException) { }
        return MlflowException.Invalid($"Invalid request body: the JSON does not parse (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}).");
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"\.(?<name>[^.\[]+)|\[(?<index>\d+)\]|\['(?<quoted>(?:[^']|'')*)'\]")]
    private static partial System.Text.RegularExpressions.Regex JsonPathStep();
}
