using System.Text.Json;
using Microsoft.AspNetCore.Identity;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Tracking;

namespace EmaLab.Dashboard.Security;

/// <summary>
/// MLflow's auth API (<c>mlflow/server/auth</c>: its routes, parameters, answers and who may call each) so that its
/// <c>AuthServiceClient</c> manages EMA Lab's users and experiment permissions unchanged. Users: an admin creates, lists,
/// deletes and makes admins; a user reads and changes their own (the current password required, as MLflow asks).
/// Experiment permissions: whoever may MANAGE the experiment. A refusal is 403 <c>PERMISSION_DENIED</c>.
/// </summary>
public static class MlflowAuthEndpoints
{
    public static void MapMlflowAuthApi(this RouteGroupBuilder api)
    {
        var auth = api.MapGroup("/2.0/mlflow").WithTags("MLflow auth").AddEndpointFilter(MlflowEndpoints.MlflowErrors)
            .ForAnyCaller("each call checks who may make it, as MLflow's auth app does");

        auth.MapPost("/users/create", async (HttpContext http, AccountService accounts) =>
        {
            Admin(http);
            var body = await BodyAsync(http);
            if (Text(body, "username") is not { Length: > 0 } name || Text(body, "password") is not { Length: > 0 } password)
                throw MlflowException.Invalid("Username and password cannot be empty.");
            var (user, errors) = await accounts.CreateUserAsync(name, password, isAdmin: false, CallerOf(http));
            if (user is null) throw RefusedUser(name, errors);
            return MlflowJson.Ok(new { user = await UserJsonAsync(http, user) });
        });
        auth.MapGet("/users/get", async (HttpContext http) =>
        {
            var user = await UserAsync(http, Query(http, "username"));
            SelfOrAdmin(http, user);
            return MlflowJson.Ok(new { user = await UserJsonAsync(http, user) });
        });
        auth.MapGet("/users/current", (HttpContext http) =>
        {
            var caller = CallerOf(http);
            return MlflowJson.Ok(new { user = new { id = caller.UserId ?? "", username = caller.Name, is_admin = caller.IsAdmin } });
        });
        auth.MapGet("/users/list", (HttpContext http, UserManager<EmaLabUser> users) =>
        {
            Admin(http);
            return MlflowJson.Ok(new
            {
                users = users.Users.OrderBy(u => u.UserName).Select(u => new { id = u.Id, username = u.UserName, is_admin = u.IsAdmin }).ToList(),
            });
        });
        auth.MapMethods("/users/update-password", ["PATCH"], async (HttpContext http, UserManager<EmaLabUser> users) =>
        {
            var body = await BodyAsync(http);
            var user = await UserAsync(http, Text(body, "username"));
            SelfOrAdmin(http, user);
            var password = Text(body, "password") ?? throw MlflowException.Missing("password");
            if (CallerOf(http).UserId == user.Id)
            {
                // MLflow: a self-service change re-asserts the current password, so a hijacked session cannot rotate it.
                var current = Text(body, "current_password");
                if (string.IsNullOrEmpty(current)) throw MlflowException.Invalid("Current password is required when changing your own password.");
                if (!await users.CheckPasswordAsync(user, current)) throw MlflowException.Invalid("Current password does not match.");
            }
            var check = await Task.WhenAll(users.PasswordValidators.Select(v => v.ValidateAsync(users, user, password)));
            if (check.SelectMany(r => r.Errors).Select(e => e.Description).ToList() is { Count: > 0 } errors)
                throw MlflowException.Invalid(string.Join(" ", errors));
            await users.RemovePasswordAsync(user);
            var set = await users.AddPasswordAsync(user, password);
            if (!set.Succeeded) throw MlflowException.Invalid(string.Join(" ", set.Errors.Select(e => e.Description)));
            return MlflowJson.Empty();
        }).Audited("password.change", "user", "username");
        auth.MapMethods("/users/update-admin", ["PATCH"], async (HttpContext http, UserManager<EmaLabUser> users) =>
        {
            Admin(http);
            var body = await BodyAsync(http);
            var user = await UserAsync(http, Text(body, "username"));
            user.IsAdmin = Bool(body, "is_admin");
            await users.UpdateAsync(user);
            return MlflowJson.Empty();
        }).Audited("user.admin", "user", "username", "is_admin");
        auth.MapDelete("/users/delete", async (HttpContext http, UserManager<EmaLabUser> users) =>
        {
            Admin(http);
            var body = http.Request.HasJsonContentType() ? await BodyAsync(http) : [];
            var user = await UserAsync(http, Text(body, "username") ?? Query(http, "username"));
            await users.DeleteAsync(user);
            return MlflowJson.Empty();
        }).Audited("user.delete", "user", "username");

        auth.MapPost("/experiments/permissions/create", async (HttpContext http, Permissions permissions) =>
        {
            var body = await BodyAsync(http);
            return MlflowJson.Ok(new
            {
                experiment_permission = await permissions.CreateAsync(Text(body, "experiment_id"), Text(body, "username"),
                    Text(body, "permission"), CallerOf(http), http.RequestAborted),
            });
        });
        auth.MapGet("/experiments/permissions/get", async (HttpContext http, Permissions permissions) =>
        {
            return MlflowJson.Ok(new
            {
                experiment_permission = await permissions.GetAsync(Query(http, "experiment_id"), Query(http, "username"), CallerOf(http),
                    http.RequestAborted),
            });
        });
        auth.MapMethods("/experiments/permissions/update", ["PATCH"], async (HttpContext http, Permissions permissions) =>
        {
            var body = await BodyAsync(http);
            await permissions.UpdateAsync(Text(body, "experiment_id"), Text(body, "username"), Text(body, "permission"), CallerOf(http),
                http.RequestAborted);
            return MlflowJson.Empty();
        });
        auth.MapDelete("/experiments/permissions/delete", async (HttpContext http, Permissions permissions) =>
        {
            var body = http.Request.HasJsonContentType() ? await BodyAsync(http) : [];
            var experimentId = Text(body, "experiment_id") ?? Query(http, "experiment_id");
            await permissions.DeleteAsync(experimentId, Text(body, "username") ?? Query(http, "username"), CallerOf(http), http.RequestAborted);
            return MlflowJson.Empty();
        });
        MapRegisteredModelPermissions(auth);
    }

    /// <summary>MLflow's <c>registered-models/permissions/*</c>: whoever may MANAGE the registered model.</summary>
    static void MapRegisteredModelPermissions(RouteGroupBuilder auth)
    {
        auth.MapPost("/registered-models/permissions/create", async (HttpContext http, Permissions permissions) =>
        {
            var body = await BodyAsync(http);
            return MlflowJson.Ok(new
            {
                registered_model_permission = await permissions.CreateModelGrantAsync(Text(body, "name"), Text(body, "username"),
                    Text(body, "permission"), CallerOf(http), http.RequestAborted),
            });
        });
        auth.MapGet("/registered-models/permissions/get", async (HttpContext http, Permissions permissions) => MlflowJson.Ok(new
        {
            registered_model_permission = await permissions.GetModelGrantAsync(Query(http, "name"), Query(http, "username"), CallerOf(http),
                http.RequestAborted),
        }));
        auth.MapMethods("/registered-models/permissions/update", ["PATCH"], async (HttpContext http, Permissions permissions) =>
        {
            var body = await BodyAsync(http);
            await permissions.UpdateModelGrantAsync(Text(body, "name"), Text(body, "username"), Text(body, "permission"), CallerOf(http),
                http.RequestAborted);
            return MlflowJson.Empty();
        });
        auth.MapDelete("/registered-models/permissions/delete", async (HttpContext http, Permissions permissions) =>
        {
            var body = http.Request.HasJsonContentType() ? await BodyAsync(http) : [];
            await permissions.DeleteModelGrantAsync(Text(body, "name") ?? Query(http, "name"), Text(body, "username") ?? Query(http, "username"),
                CallerOf(http), http.RequestAborted);
            return MlflowJson.Empty();
        });
    }

    static MlflowException Denied() => new(MlflowException.PermissionDenied, "Permission denied");

    static Caller CallerOf(HttpContext http) =>
        CallerClaims.Of(http) ?? throw Denied();

    static void Admin(HttpContext http)
    {
        if (!CallerOf(http).IsAdmin) throw Denied();
    }

    static void SelfOrAdmin(HttpContext http, EmaLabUser user)
    {
        var caller = CallerOf(http);
        if (!caller.IsAdmin && caller.UserId != user.Id) throw Denied();
    }

    /// <summary>MLflow's <c>validate_can_manage_experiment</c>: the grant operations need MANAGE on the experiment.</summary>
    static async Task<EmaLabUser> UserAsync(HttpContext http, string? userName)
    {
        if (userName is null) throw MlflowException.Missing("username");
        return await http.RequestServices.GetRequiredService<UserManager<EmaLabUser>>().FindByNameAsync(userName)
            ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"User with username={userName} not found");
    }

    /// <summary>MLflow's <c>User.to_json()</c> (no scorers here: their list is empty).</summary>
    static async Task<object> UserJsonAsync(HttpContext http, EmaLabUser user) => new
    {
        id = user.Id,
        username = user.UserName,
        is_admin = user.IsAdmin,
        experiment_permissions = await http.RequestServices.GetRequiredService<Permissions>().OfUserAsync(user.Id, http.RequestAborted),
        registered_model_permissions = await http.RequestServices.GetRequiredService<Permissions>().ModelGrantsOfUserAsync(user.Id, http.RequestAborted),
        scorer_permissions = Array.Empty<object>(),
    };

    static MlflowException RefusedUser(string name, IReadOnlyList<string> errors) =>
        errors.Any(e => e.Contains("is already taken", StringComparison.Ordinal))
            ? new MlflowException(MlflowException.ResourceAlreadyExists, $"User (username={name}) already exists.")
            : MlflowException.Invalid(string.Join(" ", errors));

    static async Task<Dictionary<string, JsonElement>> BodyAsync(HttpContext http) =>
        await MlflowEndpoints.BodyAsync<Dictionary<string, JsonElement>>(http);

    static string? Query(HttpContext http, string name) => MlflowEndpoints.Query(http, name);

    /// <summary>A parameter as MLflow reads it: a JSON string, or a number written as one (experiment ids are strings in its protos).</summary>
    static string? Text(Dictionary<string, JsonElement> body, string name) => body.TryGetValue(name, out var value) ? value.ValueKind switch
    {
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Number => value.GetRawText(),
        JsonValueKind.Null => null,
        _ => throw MlflowException.Invalid($"Invalid value for parameter '{name}': a string is expected."),
    } : null;

    static bool Bool(Dictionary<string, JsonElement> body, string name) => body.TryGetValue(name, out var value) ? value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        // MLflow's store takes what the JSON holds; its client sends a JSON boolean, a form sends "true"/"false".
        JsonValueKind.String when bool.TryParse(value.GetString(), out var parsed) => parsed,
        _ => throw MlflowException.Invalid($"Invalid value for parameter '{name}': true or false is expected."),
    } : throw MlflowException.Missing(name);
}
