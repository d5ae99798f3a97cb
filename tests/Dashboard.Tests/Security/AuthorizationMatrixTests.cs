using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using EmaLab.Dashboard.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

public sealed class AuthorizationMatrixTests(AccountsFactory factory) : AuthorizationMatrixSuite(factory), IClassFixture<AccountsFactory>;

[Trait("Speed", "Postgres")]
public sealed class AuthorizationMatrixOnPostgresTests(PostgresAccountsFactory fixture)
    : AuthorizationMatrixSuite(fixture.Factory), IClassFixture<PostgresAccountsFactory>;

/// <summary>
/// Every operation of the OpenAPI document × {anonymous, no permission, READ, EDIT, MANAGE, admin} × {engine run, client
/// run}: a caller is admitted exactly when the operation's declared rule allows them (401 without credentials, 403
/// <c>PERMISSION_DENIED</c> on MLflow's paths and a problem body elsewhere), and nothing answered to a caller without
/// permission names the experiment's runs. The operations come from the document, so an endpoint added without a rule, or
/// with a rule its parameters do not match, fails here.
/// </summary>
public abstract class AuthorizationMatrixSuite(AccountsFactory factory)
{

    enum Caller { Anonymous, NoPermission, Read, Edit, Manage, Admin }

    enum Kind { Engine, Client }

    /// <summary>What one operation is called on: an experiment the callers hold grants on, one engine and one client run in it.</summary>
    sealed record Targets(long Experiment, string ExperimentName, string Throwaway, string ModelId, string RegisteredModel,
        (long Number, string Uuid, long Checkpoint) Engine, (long Number, string Uuid, long Checkpoint) Client)
    {
        public (long Number, string Uuid, long Checkpoint) Of(Kind kind) => kind == Kind.Engine ? Engine : Client;
    }

    sealed record Operation(string Method, string Path, EndpointMetadataCollection Metadata);

    [Fact]
    public async Task Every_endpoint_admits_exactly_the_callers_its_rule_allows_for_engine_and_client_runs()
    {
        var admin = factory.Admin();
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var callers = new Dictionary<Caller, HttpClient> { [Caller.Anonymous] = factory.CreateClient(), [Caller.Admin] = admin };
        var targets = await TargetsAsync(admin, suffix, callers);
        var operations = await OperationsAsync(admin);
        Assert.True(operations.Count > 60, $"only {operations.Count} operations in the OpenAPI document");

        var failures = new List<string>();
        var requests = 0;
        foreach (var operation in operations)
        {
            var kinds = TouchesRuns(operation) ? new[] { Kind.Engine, Kind.Client } : [Kind.Engine];
            foreach (var kind in kinds)
                foreach (var caller in Enum.GetValues<Caller>()) // least to most privileged: whoever may delete comes after who may not
                {
                    var expected = Allowed(operation, caller);
                    using var request = Request(operation, targets, kind);
                    using var response = await callers[caller].SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                    requests++;
                    var what = $"{operation.Method} {operation.Path} ({kind} run) as {caller}";
                    var status = (int)response.StatusCode;
                    // An event stream stays open: its status says enough.
                    var body = response.Content.Headers.ContentType?.MediaType == "text/event-stream" ? "" : await response.Content.ReadAsStringAsync();
                    if (status >= 500) failures.Add($"{what}: {status} {Short(body)}");
                    else if (caller == Caller.Anonymous)
                    {
                        if (status != 401 || !response.Headers.WwwAuthenticate.Any()) failures.Add($"{what}: {status}, expected 401 with a challenge");
                    }
                    else if (expected && status is 401 or 403) failures.Add($"{what}: refused {status} {Short(body)}");
                    else if (!expected && status != 403) failures.Add($"{what}: {status}, expected 403 {Short(body)}");
                    else if (!expected && !RefusedAsDocumented(operation, body)) failures.Add($"{what}: 403 with an unexpected body {Short(body)}");
                    if (caller == Caller.NoPermission && new[] { targets.Engine.Uuid, targets.Client.Uuid, targets.ExperimentName }.FirstOrDefault(body.Contains) is { } leaked)
                        failures.Add($"{what}: the answer names {leaked}, which this caller may not read");
                }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {requests} calls went wrong:\n{string.Join("\n", failures)}");
    }

    [Fact]
    public async Task A_run_named_twice_is_checked_twice_so_an_allowed_one_cannot_carry_a_forbidden_one()
    {
        var admin = factory.Admin();
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var callers = new Dictionary<Caller, HttpClient> { [Caller.Admin] = admin };
        var targets = await TargetsAsync(admin, suffix, callers, engineRun: false);
        var open = await CreateRunAsync(admin, (await Mlflow(admin, HttpMethod.Post, "experiments/create", new { name = $"open-{suffix}" }))
            .GetProperty("experiment_id").GetString()!);
        var editor = callers[Caller.NoPermission];
        // The caller may log into `open` (the default, READ, is not enough: grant EDIT there) and may not even read the other.
        await Mlflow(admin, HttpMethod.Post, "experiments/permissions/create",
            new { experiment_id = open.Experiment, username = UserName(Caller.NoPermission, suffix), permission = "EDIT" });
        foreach (var smuggled in new[]
        {
            $"runs/log-metric?run_id={open.Uuid}", // the query names the allowed run, the body the other
            "runs/log-metric",
        })
        {
            var body = smuggled.Contains('?')
                ? new JsonObject { ["run_id"] = targets.Client.Uuid, ["key"] = "x", ["value"] = 1, ["timestamp"] = 1, ["step"] = 1 }
                : new JsonObject { ["run_id"] = open.Uuid, ["run_uuid"] = targets.Client.Uuid, ["key"] = "x", ["value"] = 1, ["timestamp"] = 1, ["step"] = 1 };
            var response = await editor.PostAsync($"/api/2.0/mlflow/{smuggled}", Api.JsonBody(body.ToJsonString()));
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        }
        var history = await Mlflow(admin, HttpMethod.Get, $"metrics/get-history?run_id={targets.Client.Uuid}&metric_key=x", null);
        Assert.False(history.TryGetProperty("metrics", out var metrics) && metrics.GetArrayLength() > 0, "a refused call logged a metric");
    }

    /// <summary>An experiment with grants for each kind of caller, an engine run with a checkpoint, and a script's run with an
    /// artifact, a checkpoint and a logged model.</summary>
    async Task<Targets> TargetsAsync(HttpClient admin, string suffix, Dictionary<Caller, HttpClient> callers, bool engineRun = true)
    {
        var name = $"matrix-{suffix}";
        var experiment = (await Mlflow(admin, HttpMethod.Post, "experiments/create", new { name })).GetProperty("experiment_id").GetString()!;
        foreach (var (caller, permission) in new[] { (Caller.NoPermission, "NO_PERMISSIONS"), (Caller.Read, "READ"), (Caller.Edit, "EDIT"), (Caller.Manage, "MANAGE") })
        {
            var user = UserName(caller, suffix);
            await Mlflow(admin, HttpMethod.Post, "users/create", new { username = user, password = AccountsFactory.UserPassword });
            await Mlflow(admin, HttpMethod.Post, "experiments/permissions/create", new { experiment_id = experiment, username = user, permission });
            callers[caller] = factory.As(user, AccountsFactory.UserPassword);
        }
        // A registered model with a version and an alias, on which each caller holds the same level as on the experiment.
        var registered = $"registered-{suffix}";
        await Mlflow(admin, HttpMethod.Post, "registered-models/create", new { name = registered });
        await Mlflow(admin, HttpMethod.Post, "model-versions/create", new { name = registered, source = "s3://bucket/model" });
        await Mlflow(admin, HttpMethod.Post, "registered-models/alias", new { name = registered, alias = "champion", version = "1" });
        foreach (var (caller, permission) in new[] { (Caller.NoPermission, "NO_PERMISSIONS"), (Caller.Read, "READ"), (Caller.Edit, "EDIT"), (Caller.Manage, "MANAGE") })
            await Mlflow(admin, HttpMethod.Post, "registered-models/permissions/create",
                new { name = registered, username = UserName(caller, suffix), permission });
        var throwaway = $"gone-{suffix}"; // the user the user-management calls act on
        await Mlflow(admin, HttpMethod.Post, "users/create", new { username = throwaway, password = AccountsFactory.UserPassword });

        var client = await CreateRunAsync(admin, experiment);
        var model = (await Mlflow(admin, HttpMethod.Post, "logged-models", new { experiment_id = experiment, source_run_id = client.Uuid, name = "model" }))
            .GetProperty("model").GetProperty("info").GetProperty("model_id").GetString()!;

        var engine = (0L, "", 0L);
        if (engineRun)
        {
            var run = Api.DigitsRun(steps: 5, evalInterval: 5);
            run["experimentId"] = long.Parse(experiment);
            var id = (await Api.CreateAsync(admin, run)).Id();
            await Api.WaitForFinishAsync(admin, id);
            var uuid = (await Api.GetAsync(admin, $"/api/runs/{id}")).GetProperty("trackingId").GetString()!;
            var checkpoint = (await Api.GetAsync(admin, $"/api/runs/{id}/checkpoints"))[0].GetProperty("id").GetInt64();
            engine = (id, uuid, checkpoint);
        }
        return new Targets(long.Parse(experiment), name, throwaway, model, registered, engine, (client.Number, client.Uuid, client.Checkpoint));
    }

    /// <summary>A script's run in the experiment: a metric, an artifact and a checkpoint (a safetensors artifact).</summary>
    static async Task<(string Experiment, long Number, string Uuid, long Checkpoint)> CreateRunAsync(HttpClient admin, string experiment)
    {
        var uuid = (await Mlflow(admin, HttpMethod.Post, "runs/create", new { experiment_id = experiment, run_name = "script" }))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        await Mlflow(admin, HttpMethod.Post, "runs/log-metric", new { run_id = uuid, key = "accuracy", value = 0.5, timestamp = 1, step = 1 });
        var root = $"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{uuid}/artifacts";
        Assert.Equal(HttpStatusCode.OK, (await admin.PutAsync($"{root}/notes.txt", new ByteArrayContent("notes"u8.ToArray()))).StatusCode);
        using (var stream = new MemoryStream())
        using (var weights = TorchSharp.torch.ones(2))
        {
            EmaLab.TrainingEngine.Formats.SafeTensors.Write(stream, [("w", weights)], null);
            Assert.Equal(HttpStatusCode.OK, (await admin.PutAsync($"{root}/raw.safetensors", new ByteArrayContent(stream.ToArray()))).StatusCode);
        }
        var number = (await Api.GetAsync(admin, $"/api/runs?trackingId={uuid}")).GetProperty("items")[0].GetProperty("id").GetInt64();
        var checkpoint = (await Api.GetAsync(admin, $"/api/runs/{number}/checkpoints"))[0].GetProperty("id").GetInt64();
        return (experiment, number, uuid, checkpoint);
    }

    /// <summary>The OpenAPI document's operations with their endpoints' metadata; those that delete come last (most specific
    /// path first, a run's own deletion at the very end), so the calls before them find every target in place.</summary>
    async Task<List<Operation>> OperationsAsync(HttpClient admin)
    {
        var document = JsonDocument.Parse(await admin.GetStringAsync("/openapi/v1.json")).RootElement;
        var endpoints = factory.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>().ToList();
        var operations = new List<Operation>();
        foreach (var path in document.GetProperty("paths").EnumerateObject())
            foreach (var method in path.Value.EnumerateObject())
            {
                var verb = method.Name.ToUpperInvariant();
                var endpoint = endpoints.SingleOrDefault(e => Template(e.RoutePattern.RawText) == path.Name
                    && e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods.Contains(verb) == true);
                Assert.True(endpoint is not null, $"{verb} {path.Name}: no endpoint");
                operations.Add(new Operation(verb, path.Name, endpoint.Metadata));
            }
        int Order(Operation o) => o.Method == "DELETE" ? (o.Path is "/api/runs/{id}" or "/api/2.0/mlflow/registered-models/delete" ? 3 : 2)
            : o.Path.EndsWith("/delete", StringComparison.Ordinal) ? 1 : 0;
        return operations.OrderBy(Order).ThenByDescending(o => Order(o) == 2 ? o.Path.Length : 0).ToList();
    }

    static string UserName(Caller caller, string suffix) => $"{caller.ToString().ToLowerInvariant()}-{suffix}";

    /// <summary><c>/api/runs/{id:long}</c> and <c>{**path}</c> as the OpenAPI document writes them.</summary>
    static string Template(string? raw) => Regex.Replace(raw ?? "", @"\{\*{0,2}([^:}=?]+)[^}]*\}", "{$1}").TrimEnd('/');

    static bool TouchesRuns(Operation operation) =>
        operation.Metadata.OfType<ExperimentRule>().Any(r => r.Of is ExperimentOf.Run or ExperimentOf.RunUuid or ExperimentOf.RunUuids
            or ExperimentOf.Checkpoint or ExperimentOf.ArtifactPath);

    /// <summary>
    /// Whether the caller is admitted, by the product's policy written out here independently of the rules the endpoints
    /// declare (so a rule loosened in the code fails): reading needs READ, changing EDIT (create runs, log, tag, cancel,
    /// resume, clone, reconstruct), deleting, restoring and granting MANAGE, as MLflow's auth app asks for its own calls;
    /// lists and catalogs are open to every signed-in caller (filtered); user management is the admins'.
    /// </summary>
    static bool Allowed(Operation operation, Caller caller)
    {
        if (caller == Caller.Anonymous) return false;
        if (caller == Caller.Admin) return true;
        var level = caller switch
        {
            Caller.Read => ExperimentPermissionLevel.Read,
            Caller.Edit => ExperimentPermissionLevel.Edit,
            Caller.Manage => ExperimentPermissionLevel.Manage,
            _ => ExperimentPermissionLevel.NoPermissions,
        };
        var (method, path) = (operation.Method, operation.Path);
        if (OpenToEveryone.Contains($"{method} {path}")) return true;
        // The registry: the caller's level on the registered model, as MLflow's auth app asks it of each call.
        if (RegistryNeeds.TryGetValue($"{method} {path}", out var onModel)) return level >= onModel;
        if (AdminsOnly.Contains($"{method} {path}") || path.StartsWith("/api/2.0/mlflow/users/", StringComparison.Ordinal)) return false;
        var needed = path.StartsWith("/api/2.0/mlflow/experiments/permissions/", StringComparison.Ordinal)
            || path.EndsWith("/delete", StringComparison.Ordinal) || path.EndsWith("/restore", StringComparison.Ordinal)
            || method == "DELETE" && !path.Contains("/tags/", StringComparison.Ordinal)
                ? ExperimentPermissionLevel.Manage
            : method == "GET" ? ExperimentPermissionLevel.Read
            : ExperimentPermissionLevel.Edit;
        return level >= needed;
    }

    /// <summary>Lists (each filtered to what the caller may read), catalogs, a new experiment (its creator manages it), the
    /// caller's own account, a dataset upload and a specification's validation.</summary>
    static readonly HashSet<string> OpenToEveryone =
    [
        "POST /api/2.0/mlflow/experiments/create", "POST /api/2.0/mlflow/experiments/search", "GET /api/2.0/mlflow/experiments/search",
        "GET /api/2.0/mlflow/experiments/list", "POST /api/2.0/mlflow/runs/search", "POST /api/2.0/mlflow/logged-models/search",
        "GET /api/2.0/mlflow/users/current", "GET /api/runs", "GET /api/groups", "POST /api/groups/preview", "GET /api/models",
        "GET /api/datasets", "POST /api/datasets",
        "DELETE /api/datasets/{name}", // its uploader or an admin: the handler knows who uploaded it (WhoDidWhatTests)
        "GET /api/account/tokens", "POST /api/account/tokens", "DELETE /api/account/tokens/{id}", // the caller's own
        // The registry: anyone may create a registered model (and manages it); its searches list what the caller may read.
        "POST /api/2.0/mlflow/registered-models/create", "GET /api/2.0/mlflow/registered-models/search",
        "GET /api/2.0/mlflow/model-versions/search",
    ];

    static readonly HashSet<string> AdminsOnly = ["GET /api/audit"];

    /// <summary>MLflow's auth app's table for the registry (mlflow/server/auth/__init__.py, BEFORE_REQUEST_VALIDATORS): reads
    /// need READ, changes EDIT, deletions MANAGE — except a registered model's tag, which EDIT deletes.</summary>
    static readonly Dictionary<string, ExperimentPermissionLevel> RegistryNeeds = new()
    {
        ["GET /api/2.0/mlflow/registered-models/get"] = ExperimentPermissionLevel.Read,
        ["POST /api/2.0/mlflow/registered-models/get-latest-versions"] = ExperimentPermissionLevel.Read,
        ["GET /api/2.0/mlflow/registered-models/get-latest-versions"] = ExperimentPermissionLevel.Read,
        ["GET /api/2.0/mlflow/registered-models/alias"] = ExperimentPermissionLevel.Read,
        ["GET /api/2.0/mlflow/model-versions/get"] = ExperimentPermissionLevel.Read,
        ["GET /api/2.0/mlflow/model-versions/get-download-uri"] = ExperimentPermissionLevel.Read,
        ["PATCH /api/2.0/mlflow/registered-models/update"] = ExperimentPermissionLevel.Edit,
        ["POST /api/2.0/mlflow/registered-models/rename"] = ExperimentPermissionLevel.Edit,
        ["POST /api/2.0/mlflow/registered-models/set-tag"] = ExperimentPermissionLevel.Edit,
        ["DELETE /api/2.0/mlflow/registered-models/delete-tag"] = ExperimentPermissionLevel.Edit,
        ["POST /api/2.0/mlflow/registered-models/alias"] = ExperimentPermissionLevel.Edit,
        ["POST /api/2.0/mlflow/model-versions/create"] = ExperimentPermissionLevel.Edit,
        ["PATCH /api/2.0/mlflow/model-versions/update"] = ExperimentPermissionLevel.Edit,
        ["POST /api/2.0/mlflow/model-versions/transition-stage"] = ExperimentPermissionLevel.Edit,
        ["POST /api/2.0/mlflow/model-versions/set-tag"] = ExperimentPermissionLevel.Edit,
        ["DELETE /api/2.0/mlflow/registered-models/delete"] = ExperimentPermissionLevel.Manage,
        ["DELETE /api/2.0/mlflow/registered-models/alias"] = ExperimentPermissionLevel.Manage,
        ["DELETE /api/2.0/mlflow/model-versions/delete"] = ExperimentPermissionLevel.Manage,
        ["DELETE /api/2.0/mlflow/model-versions/delete-tag"] = ExperimentPermissionLevel.Manage,
        ["POST /api/2.0/mlflow/registered-models/permissions/create"] = ExperimentPermissionLevel.Manage,
        ["GET /api/2.0/mlflow/registered-models/permissions/get"] = ExperimentPermissionLevel.Manage,
        ["PATCH /api/2.0/mlflow/registered-models/permissions/update"] = ExperimentPermissionLevel.Manage,
        ["DELETE /api/2.0/mlflow/registered-models/permissions/delete"] = ExperimentPermissionLevel.Manage,
    };

    /// <summary>A refusal answers as MLflow's auth app on its paths, as a problem elsewhere.</summary>
    static bool RefusedAsDocumented(Operation operation, string body)
    {
        try
        {
            var json = JsonDocument.Parse(body).RootElement;
            return operation.Path.StartsWith("/api/2.0/mlflow", StringComparison.Ordinal)
                ? json.GetProperty("error_code").GetString() == "PERMISSION_DENIED"
                : json.GetProperty("status").GetInt32() == 403 && json.TryGetProperty("title", out _);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// The operation called on the targets: route values from the rule's kind of target, and every parameter a rule might
    /// name in the query (GET) or the JSON body (other methods), where MLflow's clients put them.
    /// </summary>
    static HttpRequestMessage Request(Operation operation, Targets targets, Kind kind)
    {
        var run = targets.Of(kind);
        var rules = operation.Metadata.OfType<ExperimentRule>().ToList();
        var path = Regex.Replace(operation.Path, @"\{(\w+)\}", m => m.Groups[1].Value switch
        {
            "id" when rules.Any(r => r.Of == ExperimentOf.Checkpoint) => run.Checkpoint.ToString(),
            "id" => run.Number.ToString(),
            "modelId" => targets.ModelId,
            "path" => $"{targets.Experiment}/{run.Uuid}/artifacts/notes.txt",
            "name" => "matrix-group",
            _ => "matrix",
        });
        var fields = new Dictionary<string, object>
        {
            ["run_id"] = run.Uuid,
            ["experiment_id"] = targets.Experiment.ToString(),
            ["experimentId"] = targets.Experiment,
            ["experiment"] = targets.Experiment,
            ["experiment_name"] = targets.ExperimentName,
            ["username"] = targets.Throwaway,
            ["permission"] = "READ",
            ["key"] = "k",
            ["value"] = "v",
            // The registry's calls act on the registered model (a rename keeps its name, so the calls after it find it).
            ["name"] = targets.RegisteredModel,
            ["new_name"] = targets.RegisteredModel,
            ["version"] = "1",
            ["alias"] = "champion",
            ["source"] = "s3://bucket/model",
            ["stage"] = "Staging",
            ["archive_existing_versions"] = false,
        };
        if (rules.Any(r => r.Of == ExperimentOf.ArtifactPath)) fields["path"] = $"{targets.Experiment}/{run.Uuid}/artifacts";
        if (operation.Method == "GET")
        {
            var query = string.Join("&", fields.Select(f => $"{f.Key}={Uri.EscapeDataString(f.Value.ToString()!)}"))
                + (rules.Any(r => r.Of == ExperimentOf.RunUuids) ? $"&run_ids={run.Uuid}" : "");
            return new HttpRequestMessage(HttpMethod.Get, $"{path}?{query}");
        }
        var body = new JsonObject(fields.Select(f => KeyValuePair.Create(f.Key, JsonValue.Create(f.Value) as JsonNode)))
        {
            ["run_ids"] = new JsonArray(run.Uuid),
            ["experiment_ids"] = new JsonArray(targets.Experiment.ToString()),
        };
        return new HttpRequestMessage(new HttpMethod(operation.Method), path) { Content = Api.JsonBody(body.ToJsonString()) };
    }

    static async Task<JsonElement> Mlflow(HttpClient client, HttpMethod method, string path, object? body)
    {
        using var request = new HttpRequestMessage(method, $"/api/2.0/mlflow/{path}");
        if (body is not null) request.Content = JsonContent.Create(body);
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    static string Short(string body) => body.Length <= 300 ? body : body[..300] + "…";
}
