using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace EmaLab.Dashboard.Tests;

public sealed class RegistryPermissionTests(AccountsFactory factory) : RegistryPermissionSuite(factory), IClassFixture<AccountsFactory>;

[Trait("Speed", "Postgres")]
public sealed class RegistryPermissionOnPostgresTests(PostgresAccountsFactory fixture)
    : RegistryPermissionSuite(fixture.Factory), IClassFixture<PostgresAccountsFactory>;

/// <summary>
/// Permissions per registered model, as MLflow's auth app keeps them: whoever creates a model manages it, everyone else
/// has the server's default (READ) unless granted otherwise with <c>registered-models/permissions/*</c> (its shapes and
/// messages); searches list only what the caller may read; registering, alias moves and deletions are in the audit log.
/// </summary>
public abstract class RegistryPermissionSuite(AccountsFactory factory)
{
    const string Base = "/api/2.0/mlflow/";

    static async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpClient client, HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, Base + path) { Content = body is null ? null : JsonContent.Create(body) };
        using var response = await client.SendAsync(request);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
    }

    static async Task<JsonElement> OkAsync(HttpClient client, HttpMethod method, string path, object? body = null)
    {
        var (status, json) = await SendAsync(client, method, path, body);
        Assert.True(status == HttpStatusCode.OK, $"{path}: {(int)status} {json}");
        return json;
    }

    static async Task DeniedAsync(HttpClient client, HttpMethod method, string path, object? body = null)
    {
        var (status, json) = await SendAsync(client, method, path, body);
        Assert.True(status == HttpStatusCode.Forbidden, $"{path}: {(int)status} {json}");
        Assert.Equal("PERMISSION_DENIED", json.GetProperty("error_code").GetString());
    }

    [Fact]
    public async Task The_creator_manages_a_model_others_read_it_by_default_and_a_grant_changes_that()
    {
        var (owner, ownerName) = await factory.NewUserAsync("own");
        var (other, otherName) = await factory.NewUserAsync("oth");
        var name = $"perm-{Guid.NewGuid():N}"[..13];
        await OkAsync(owner, HttpMethod.Post, "registered-models/create", new { name });
        await OkAsync(owner, HttpMethod.Post, "model-versions/create", new { name, source = "s3://b/m" });
        await OkAsync(owner, HttpMethod.Post, "registered-models/alias", new { name, alias = "champion", version = "1" });

        // The creator's grant, as MLflow's auth app reports it.
        var grant = (await OkAsync(owner, HttpMethod.Get, $"registered-models/permissions/get?name={name}&username={ownerName}"))
            .GetProperty("registered_model_permission");
        Assert.Equal("MANAGE", grant.GetProperty("permission").GetString());
        Assert.Equal(name, grant.GetProperty("name").GetString());

        // The default (READ): reads, not changes.
        await OkAsync(other, HttpMethod.Get, $"registered-models/alias?name={name}&alias=champion");
        await DeniedAsync(other, HttpMethod.Post, "registered-models/alias", new { name, alias = "champion", version = "1" });
        await DeniedAsync(other, HttpMethod.Post, "model-versions/create", new { name, source = "s3://b/x" });
        await DeniedAsync(other, HttpMethod.Get, $"registered-models/permissions/get?name={name}&username={otherName}");

        // EDIT moves aliases and registers versions, but does not delete.
        await OkAsync(owner, HttpMethod.Post, "registered-models/permissions/create", new { name, username = otherName, permission = "EDIT" });
        var (status, again) = await SendAsync(owner, HttpMethod.Post, "registered-models/permissions/create", new { name, username = otherName, permission = "EDIT" });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("RESOURCE_ALREADY_EXISTS", again.GetProperty("error_code").GetString());
        await OkAsync(other, HttpMethod.Post, "model-versions/create", new { name, source = "s3://b/x" });
        await OkAsync(other, HttpMethod.Post, "registered-models/alias", new { name, alias = "champion", version = "2" });
        await DeniedAsync(other, HttpMethod.Delete, "model-versions/delete", new { name, version = "1" });
        await DeniedAsync(other, HttpMethod.Delete, "registered-models/delete", new { name });

        // NO_PERMISSIONS hides it: refused, and left out of both searches.
        await OkAsync(owner, HttpMethod.Patch, "registered-models/permissions/update", new { name, username = otherName, permission = "NO_PERMISSIONS" });
        await DeniedAsync(other, HttpMethod.Get, $"registered-models/get?name={name}");
        var listed = await OkAsync(other, HttpMethod.Get, $"registered-models/search?filter={Uri.EscapeDataString($"name = '{name}'")}");
        Assert.False(listed.TryGetProperty("registered_models", out _), listed.ToString());
        var versions = await OkAsync(other, HttpMethod.Get, $"model-versions/search?filter={Uri.EscapeDataString($"name = '{name}'")}");
        Assert.False(versions.TryGetProperty("model_versions", out _), versions.ToString());
        Assert.Single((await OkAsync(owner, HttpMethod.Get, $"registered-models/search?filter={Uri.EscapeDataString($"name = '{name}'")}"))
            .GetProperty("registered_models").EnumerateArray());

        // users/get lists the grants on registered models.
        var user = (await OkAsync(factory.Admin(), HttpMethod.Get, $"users/get?username={otherName}")).GetProperty("user");
        Assert.Equal("NO_PERMISSIONS", user.GetProperty("registered_model_permissions").EnumerateArray()
            .Single(p => p.GetProperty("name").GetString() == name).GetProperty("permission").GetString());

        await OkAsync(owner, HttpMethod.Delete, "registered-models/permissions/delete", new { name, username = otherName });
        var (missing, body) = await SendAsync(owner, HttpMethod.Get, $"registered-models/permissions/get?name={name}&username={otherName}");
        Assert.Equal(HttpStatusCode.NotFound, missing);
        Assert.Equal($"Registered model permission with workspace=default, name={name} and username={otherName} not found",
            body.GetProperty("message").GetString());

        // A rename keeps the grants (they belong to the model, not its name); the owner deletes it.
        await OkAsync(owner, HttpMethod.Post, "registered-models/rename", new { name, new_name = name + "-b" });
        await OkAsync(owner, HttpMethod.Delete, "registered-models/delete", new { name = name + "-b" });

        // What happened, in the audit log.
        var actions = (await Api.GetAsync(factory.Admin(), $"/api/audit?actor={ownerName}&pageSize=50")).GetProperty("items").EnumerateArray()
            .Select(e => $"{e.GetProperty("action").GetString()} {e.GetProperty("target").GetString()}").ToList();
        Assert.Contains($"registered-model.create registered model {name}", actions);
        Assert.Contains($"model-version.create registered model {name} version 1", actions);
        Assert.Contains($"alias.set registered model {name}", actions);
        Assert.Contains($"registered-model.rename registered model {name}", actions);
        Assert.Contains($"registered-model.delete registered model {name}-b", actions);
        var moved = (await Api.GetAsync(factory.Admin(), $"/api/audit?actor={otherName}&action=alias.set")).GetProperty("items")[0];
        Assert.Equal("alias=champion version=1→2", moved.GetProperty("detail").GetString());
    }
}
