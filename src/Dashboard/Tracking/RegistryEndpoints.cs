using EmaLab.Dashboard.Hosting;
using static EmaLab.Dashboard.Tracking.MlflowEndpoints;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// MLflow's model registry REST API (mlflow/protos/model_registry.proto, ModelRegistryService): its paths and methods, GET
/// parameters from the query string, the others from the JSON body (DELETE included, as its client sends them). Who may do
/// what is the registry's own check, per registered model (<see cref="ModelRegistry"/>), for the API and the pages alike.
/// </summary>
public static class RegistryEndpoints
{
    const string Checked = "the registry checks the caller's permission on the registered model";

    public static void MapModelRegistry(this RouteGroupBuilder mlflow)
    {
        var models = mlflow.MapGroup("/registered-models").WithTags("MLflow model registry");
        var versions = mlflow.MapGroup("/model-versions").WithTags("MLflow model registry");

        models.MapPost("/create", async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            registered_model = await registry.CreateRegisteredModelAsync(await BodyAsync<CreateRegisteredModelRequest>(http), By(http), http.RequestAborted),
        })).ForAnyCaller("any user may create a registered model (and manages it)");
        models.MapGet("/get", async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            registered_model = await registry.GetRegisteredModelAsync(Required(http, "name"), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);
        models.MapMethods("/update", ["PATCH"], async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            registered_model = await registry.UpdateRegisteredModelAsync(await BodyAsync<UpdateRegisteredModelRequest>(http), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);
        models.MapPost("/rename", async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            registered_model = await registry.RenameRegisteredModelAsync(await BodyAsync<RenameRegisteredModelRequest>(http), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);
        models.MapDelete("/delete", async (HttpContext http, ModelRegistry registry) =>
        {
            var request = await BodyOrQueryAsync(http, q => new RegisteredModelNameRequest(q("name")));
            await registry.DeleteRegisteredModelAsync(request.Name ?? throw MlflowException.Missing("name"), By(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).ForAnyCaller(Checked);
        models.MapGet("/search", async (HttpContext http, ModelRegistry registry) =>
        {
            var (found, next) = await registry.SearchRegisteredModelsAsync(SearchOf(http), By(http), http.RequestAborted);
            return MlflowJson.Ok(new { registered_models = found.Count > 0 ? found : null, next_page_token = next });
        }).ForAnyCaller("lists the registered models the caller may read");
        models.MapPost("/get-latest-versions", async (HttpContext http, ModelRegistry registry) => LatestVersions(
            await registry.GetLatestVersionsAsync(await BodyAsync<GetLatestVersionsRequest>(http), By(http), http.RequestAborted))).ForAnyCaller(Checked);
        models.MapGet("/get-latest-versions", async (HttpContext http, ModelRegistry registry) => LatestVersions(
            await registry.GetLatestVersionsAsync(new GetLatestVersionsRequest(Query(http, "name"), Repeated(http, "stages")), By(http),
                http.RequestAborted))).ForAnyCaller(Checked);
        models.MapPost("/set-tag", async (HttpContext http, ModelRegistry registry) =>
        {
            await registry.SetRegisteredModelTagAsync(await BodyAsync<RegisteredModelTagRequest>(http), By(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).ForAnyCaller(Checked);
        models.MapDelete("/delete-tag", async (HttpContext http, ModelRegistry registry) =>
        {
            var request = await BodyOrQueryAsync(http, q => new RegisteredModelTagRequest(q("name"), q("key"), null));
            await registry.DeleteRegisteredModelTagAsync(request, By(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).ForAnyCaller(Checked);
        models.MapPost("/alias", async (HttpContext http, ModelRegistry registry) =>
        {
            await registry.SetAliasAsync(await BodyAsync<AliasRequest>(http), By(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).ForAnyCaller(Checked);
        models.MapDelete("/alias", async (HttpContext http, ModelRegistry registry) =>
        {
            await registry.DeleteAliasAsync(await BodyOrQueryAsync(http, q => new AliasRequest(q("name"), q("alias"), null)), By(http),
                http.RequestAborted);
            return MlflowJson.Empty();
        }).ForAnyCaller(Checked);
        models.MapGet("/alias", async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            model_version = await registry.GetByAliasAsync(Required(http, "name"), Required(http, "alias"), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);

        versions.MapPost("/create", async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            model_version = await registry.CreateModelVersionAsync(await BodyAsync<CreateModelVersionRequest>(http), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);
        versions.MapGet("/get", async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            model_version = await registry.GetModelVersionAsync(Required(http, "name"), Required(http, "version"), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);
        versions.MapMethods("/update", ["PATCH"], async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            model_version = await registry.UpdateModelVersionAsync(await BodyAsync<UpdateModelVersionRequest>(http), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);
        versions.MapPost("/transition-stage", async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            model_version = await registry.TransitionStageAsync(await BodyAsync<TransitionStageRequest>(http), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);
        versions.MapDelete("/delete", async (HttpContext http, ModelRegistry registry) =>
        {
            var request = await BodyOrQueryAsync(http, q => new ModelVersionRequest(q("name"), q("version")));
            await registry.DeleteModelVersionAsync(request.Name ?? throw MlflowException.Missing("name"),
                request.Version ?? throw MlflowException.Missing("version"), By(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).ForAnyCaller(Checked);
        versions.MapGet("/get-download-uri", async (HttpContext http, ModelRegistry registry) => MlflowJson.Ok(new
        {
            artifact_uri = await registry.GetDownloadUriAsync(Required(http, "name"), Required(http, "version"), By(http), http.RequestAborted),
        })).ForAnyCaller(Checked);
        versions.MapGet("/search", async (HttpContext http, ModelRegistry registry) =>
        {
            var (found, next) = await registry.SearchModelVersionsAsync(SearchOf(http), By(http), http.RequestAborted);
            return MlflowJson.Ok(new { model_versions = found.Count > 0 ? found : null, next_page_token = next });
        }).ForAnyCaller("lists the versions of the registered models the caller may read");
        versions.MapPost("/set-tag", async (HttpContext http, ModelRegistry registry) =>
        {
            await registry.SetModelVersionTagAsync(await BodyAsync<ModelVersionTagRequest>(http), By(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).ForAnyCaller(Checked);
        versions.MapDelete("/delete-tag", async (HttpContext http, ModelRegistry registry) =>
        {
            var request = await BodyOrQueryAsync(http, q => new ModelVersionTagRequest(q("name"), q("version"), q("key"), null));
            await registry.DeleteModelVersionTagAsync(request, By(http), http.RequestAborted);
            return MlflowJson.Empty();
        }).ForAnyCaller(Checked);
    }

    /// <summary>EMA Lab's own routes for what a run page registers: a track's checkpoint, or a script's logged model.</summary>
    public static void MapRegistrationApi(this RouteGroupBuilder api)
    {
        api.MapPost("/checkpoints/{id:long}/register", async (long id, RegisterRequest request, CheckpointRegistration registration, HttpContext http) =>
            TypedResults.Ok(await registration.RegisterCheckpointAsync(id, request.Name ?? throw new RequestValidationException("name", "Name the registered model."),
                request.Alias, By(http), http.RequestAborted)))
            .Needs(ExperimentPermissionLevel.Read, ExperimentOf.Checkpoint, "id").WithTags("Model registry")
            .WithSummary("Registers a track's checkpoint as a new version of a registered model (created if new), optionally under an alias; the registry checks EDIT on the registered model.");
        api.MapPost("/logged-models/{modelId}/register", async (string modelId, RegisterRequest request, CheckpointRegistration registration, HttpContext http) =>
            TypedResults.Ok(await registration.RegisterLoggedModelAsync(modelId, request.Name ?? throw new RequestValidationException("name", "Name the registered model."),
                request.Alias, By(http), http.RequestAborted)))
            .Needs(ExperimentPermissionLevel.Read, ExperimentOf.LoggedModel, "modelId").WithTags("Model registry")
            .WithSummary("Registers a run's logged model as a new version of a registered model, optionally under an alias.");
    }

    /// <summary>What to register under: the registered model's name and, optionally, an alias to point at the new version.</summary>
    public sealed record RegisterRequest(string? Name, string? Alias);

    internal static Caller By(HttpContext http) => CallerClaims.Of(http) ?? throw new PermissionDeniedException("Sign in first.");

    static IResult LatestVersions(List<MlflowModelVersion> versions) => MlflowJson.Ok(new { model_versions = versions.Count > 0 ? versions : null });

    /// <summary>A GET parameter MLflow's schema marks required: absent is its "Missing value" error.</summary>
    static string Required(HttpContext http, string name) => Query(http, name) ?? throw MlflowException.Missing(name);

    static List<string>? Repeated(HttpContext http, string name) =>
        http.Request.Query.TryGetValue(name, out var values) ? values.OfType<string>().ToList() : null;

    static RegistrySearchRequest SearchOf(HttpContext http)
    {
        long? max = null;
        if (Query(http, "max_results") is { } text)
            max = long.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var value)
                ? value : throw MlflowException.Invalid($"Invalid value \"{text}\" for parameter 'max_results' supplied: an integer is expected.");
        return new RegistrySearchRequest(Query(http, "filter"), max, Repeated(http, "order_by"), Query(http, "page_token"));
    }

    /// <summary>A DELETE's parameters: MLflow's client sends them as a JSON body; a query string (curl) is read too.</summary>
    static async Task<T> BodyOrQueryAsync<T>(HttpContext http, Func<Func<string, string?>, T> fromQuery) where T : class =>
        http.Request.ContentLength is > 0 || http.Request.HasJsonContentType() ? await BodyAsync<T>(http) : fromQuery(name => Query(http, name));
}
