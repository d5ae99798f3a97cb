using System.Globalization;
using EmaLab.Dashboard.Hosting;
using static EmaLab.Dashboard.Tracking.MlflowEndpoints;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// MLflow's UI routes (mlflow/server/__init__.py): its whole REST API again under <c>/ajax-api/{2.0,3.0}/…</c>, the routes
/// that exist only there (<c>metrics/get-history-bulk</c>, <c>experiments/search-datasets</c>, <c>upload-artifact</c>,
/// <c>logged-models/{id}/artifacts/files</c>), and <c>/get-artifact</c> and <c>/model-versions/get-artifact</c> at the root.
/// A UI route is rewritten to the REST path before routing — so the same endpoint, access rule and error shape answer it —
/// and marked; the routes MLflow serves only under its UI prefix answer ENDPOINT_NOT_FOUND on the REST path, as MLflow's do.
/// </summary>
public static class MlflowUiRoutes
{
    static readonly object UiRoute = new();

    /// <summary>The path the client asked for (a UI route's, before it was rewritten), for messages.</summary>
    public static string RequestedPath(HttpContext http) => http.Items[UiRoute] as string ?? http.Request.Path.Value ?? "";
    const int MaxUploadBytes = 10 * 1024 * 1024;
    const int MaxExperimentsPerDatasetSearch = 20;

    /// <summary>The rewrite, before routing: <c>/ajax-api/X</c> → <c>/api/X</c>; the two root artifact routes into the MLflow API.</summary>
    public static Task RewriteAsync(HttpContext http, Func<Task> next)
    {
        // Flask merges repeated slashes (MLflow's own test calls //model-versions/get-artifact).
        var path = "/" + (http.Request.Path.Value ?? "").TrimStart('/');
        string? rewritten = path.StartsWith("/ajax-api/", StringComparison.Ordinal) ? "/api/" + path["/ajax-api/".Length..]
            : path is "/get-artifact" or "/model-versions/get-artifact" ? "/api/2.0/mlflow" + path
            : null;
        if (rewritten is not null)
        {
            http.Items[UiRoute] = http.Request.Path.Value;
            http.Request.Path = rewritten;
        }
        return next();
    }

    /// <summary>The routes MLflow serves only as UI routes: found through <see cref="RewriteAsync"/>, not on the REST path.</summary>
    static async ValueTask<object?> UiOnly(EndpointFilterInvocationContext context, EndpointFilterDelegate next) =>
        context.HttpContext.Items.ContainsKey(UiRoute) ? await next(context)
            : MlflowJson.Error(new MlflowException(MlflowException.EndpointNotFound,
                $"No endpoint {context.HttpContext.Request.Method} {RequestedPath(context.HttpContext)} in this server's MLflow API."));

    public static void MapMlflowUiRoutes(this RouteGroupBuilder mlflow)
    {
        var ui = mlflow.MapGroup("").AddEndpointFilter(UiOnly).ExcludeFromDescription();
        ui.MapGet("/metrics/get-history-bulk", async (HttpContext http, TrackingService store) =>
        {
            int? max = Query(http, "max_results") is { } text
                ? int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var parsed) ? parsed
                    : throw MlflowException.Invalid($"Invalid value '{text}' for parameter 'max_results': an integer is expected.")
                : null;
            return MlflowJson.Ok(new
            {
                metrics = await store.GetMetricHistoryBulkAsync(http.Request.Query["run_id"].OfType<string>().ToList(), Query(http, "metric_key"), max,
                    http.RequestAborted),
            });
        }).Needs(ExperimentPermissionLevel.Read, ExperimentOf.RunUuids, "run_id");
        ui.MapPost("/experiments/search-datasets", async (HttpContext http, LoggedModelService models) =>
        {
            var ids = (await BodyAsync<SearchDatasetsRequest>(http)).ExperimentIds ?? [];
            if (ids.Count == 0) throw MlflowException.Invalid("SearchDatasets request must specify at least one experiment_id.");
            if (ids.Count > MaxExperimentsPerDatasetSearch)
                throw MlflowException.Invalid($"SearchDatasets request cannot specify more than {MaxExperimentsPerDatasetSearch} experiment_ids. Received {ids.Count} experiment_ids.");
            var readable = ReadableExperiments.Of(http);
            var experiments = ids.Select(TrackingService.ParseExperimentId).Where(id => readable?.CanRead(id) ?? true).ToList();
            return MlflowJson.Ok(new { dataset_summaries = await models.DatasetSummariesAsync(experiments, http.RequestAborted) });
        }).ForAnyCaller("summarises the datasets of the experiments the caller may read");
        ui.MapPost("/upload-artifact", async (HttpContext http, TrackingService runs, ArtifactStore store) =>
        {
            var runUuid = Query(http, "run_uuid");
            if (string.IsNullOrEmpty(runUuid)) throw MlflowException.Invalid("Request must specify run_uuid.");
            var path = Query(http, "path");
            if (string.IsNullOrEmpty(path)) throw MlflowException.Invalid("Request must specify path.");
            ArtifactStore.SafePath(path);
            if (http.Request.ContentLength > MaxUploadBytes) throw MlflowException.Invalid("Artifact size is too large. Max size is 10MB.");
            using var data = new MemoryStream();
            await http.Request.Body.CopyToAsync(data, http.RequestAborted);
            if (data.Length == 0) throw MlflowException.Invalid("Request must specify data.");
            if (data.Length > MaxUploadBytes) throw MlflowException.Invalid("Artifact size is too large. Max size is 10MB.");
            var run = (await runs.GetRunAsync(runUuid, http.RequestAborted)).Info;
            data.Position = 0;
            await store.UploadAsync(await store.ResolveAsync($"{run.ExperimentId}/{run.RunId}/artifacts/{path}", http.RequestAborted), data, data.Length,
                http.RequestAborted);
            return MlflowJson.Empty();
        }).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.RunUuid, "run_uuid");
        ui.MapGet("/logged-models/{modelId}/artifacts/files", async (string modelId, HttpContext http, ArtifactStore store) =>
        {
            var path = Query(http, "artifact_file_path");
            if (string.IsNullOrEmpty(path))
                throw new MlflowException(MlflowException.BadRequest, "Request must include the \"artifact_file_path\" query parameter.");
            return ArtifactFile(store, await store.ResolveModelAsync(modelId, path, http.RequestAborted), path);
        }).Needs(ExperimentPermissionLevel.Read, ExperimentOf.LoggedModel, "modelId");
        ui.MapGet("/get-artifact", async (HttpContext http, TrackingService runs, ArtifactStore store) =>
        {
            var path = Query(http, "path") ?? throw MlflowException.Missing("path");
            ArtifactStore.SafePath(path);
            var run = (await runs.GetRunAsync(Query(http, "run_id") ?? Query(http, "run_uuid"), http.RequestAborted)).Info;
            return ArtifactFile(store, await store.ResolveAsync($"{run.ExperimentId}/{run.RunId}/artifacts/{path}", http.RequestAborted), path);
        }).Needs(ExperimentPermissionLevel.Read, ExperimentOf.RunUuid, "run_id");
        ui.MapGet("/model-versions/get-artifact", async (HttpContext http, ModelRegistry registry, ArtifactStore store) =>
        {
            var path = Query(http, "path") ?? throw MlflowException.Missing("path");
            ArtifactStore.SafePath(path);
            var uri = await registry.GetDownloadUriAsync(Query(http, "name"), Query(http, "version"), RegistryEndpoints.By(http), http.RequestAborted);
            const string proxied = "mlflow-artifacts:/";
            if (!uri.StartsWith(proxied, StringComparison.Ordinal))
                throw new MlflowException(MlflowException.ResourceDoesNotExist, $"The version's files are at {uri}, which this server does not hold.");
            return ArtifactFile(store, await store.ResolveAsync($"{uri[proxied.Length..].TrimEnd('/')}/{path}", http.RequestAborted), path);
        }).ForAnyCaller("the registry checks READ on the registered model");
    }
}

public sealed record SearchDatasetsRequest(IReadOnlyList<string>? ExperimentIds);
