using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace EmaLab.Dashboard.Tests;

/// <summary>A server with accounts: the admin <c>ana</c> from settings.</summary>
public sealed class AccountsFactory : EmaLabFactory
{
    public const string AdminPassword = "correct horse battery";

    public AccountsFactory() : this(postgres: false) { }

    AccountsFactory(bool postgres) : base(postgres)
    {
        Settings["EmaLab:Admin:UserName"] = "ana";
        Settings["EmaLab:Admin:Password"] = AdminPassword;
        Settings["EmaLab:Limits:EventStreamAccessCheckSeconds"] = "1"; // an open stream notices a revoked access within a second
    }

    public static AccountsFactory OnPostgres() => new(postgres: true);

    /// <summary>Every test user's password.</summary>
    public const string UserPassword = "a long enough passphrase";

    public HttpClient Admin() => As("ana", AdminPassword);

    /// <summary>A new user, named from <paramref name="prefix"/> and unique, created by the admin with MLflow's users/create; and
    /// a client that signs in as them.</summary>
    public async Task<(HttpClient Client, string Name)> NewUserAsync(string prefix = "u")
    {
        var name = $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 9)];
        await Api.OkAsync(await Admin().PostAsJsonAsync("/api/2.0/mlflow/users/create", new { username = name, password = UserPassword }));
        return (As(name, UserPassword), name);
    }

    /// <summary>A client that sends <paramref name="user"/>'s password as HTTP Basic (MLFLOW_TRACKING_USERNAME/PASSWORD).</summary>
    public HttpClient As(string user, string password)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        return client;
    }
}

/// <summary>The same server on the tests' PostgreSQL.</summary>
public sealed class PostgresAccountsFactory : IDisposable
{
    public AccountsFactory Factory { get; } = AccountsFactory.OnPostgres();
    public void Dispose() => Factory.Dispose();
}

public sealed class MlflowAuthApiTests(AccountsFactory factory) : MlflowAuthApiSuite(factory), IClassFixture<AccountsFactory>;

[Trait("Speed", "Postgres")]
public sealed class MlflowAuthApiOnPostgresTests(PostgresAccountsFactory fixture) : MlflowAuthApiSuite(fixture.Factory), IClassFixture<PostgresAccountsFactory>;

/// <summary>
/// MLflow's auth API as its <c>AuthServiceClient</c> calls it (mlflow/server/auth/client.py: users/create, get, current, list,
/// update-password, update-admin, delete; experiments/permissions/create, get, update, delete), with who may call each,
/// its answers and its error codes.
/// </summary>
public abstract class MlflowAuthApiSuite(AccountsFactory factory)
{
    const string Prefix = "/api/2.0/mlflow";

    [Fact]
    public async Task Users_are_created_read_changed_and_deleted_by_whom_mlflow_allows()
    {
        var admin = factory.Admin();
        var name = $"bob-{Guid.NewGuid():N}"[..12];
        var created = await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/users/create", new { username = name, password = AccountsFactory.UserPassword }));
        var user = created.GetProperty("user");
        Assert.Equal(name, user.GetProperty("username").GetString());
        Assert.False(user.GetProperty("is_admin").GetBoolean());
        Assert.Equal(0, user.GetProperty("experiment_permissions").GetArrayLength());

        await Refused(await admin.PostAsJsonAsync($"{Prefix}/users/create", new { username = name, password = AccountsFactory.UserPassword }),
            400, "RESOURCE_ALREADY_EXISTS", $"User (username={name}) already exists.");
        await Refused(await admin.PostAsJsonAsync($"{Prefix}/users/create", new { username = name + "x", password = "short" }),
            400, "INVALID_PARAMETER_VALUE", "Passwords must be at least 10 characters.");
        await Refused(await admin.PostAsJsonAsync($"{Prefix}/users/create", new { username = "", password = AccountsFactory.UserPassword }),
            400, "INVALID_PARAMETER_VALUE", "Username and password cannot be empty.");

        var bob = factory.As(name, AccountsFactory.UserPassword);
        var current = await Api.OkAsync(await bob.GetAsync($"{Prefix}/users/current"));
        Assert.Equal(name, current.GetProperty("user").GetProperty("username").GetString());
        await Api.OkAsync(await bob.GetAsync($"{Prefix}/users/get?username={name}"));
        await Refused(await bob.GetAsync($"{Prefix}/users/get?username=ana"), 403, "PERMISSION_DENIED", "Permission denied");
        await Refused(await bob.GetAsync($"{Prefix}/users/list"), 403, "PERMISSION_DENIED", "Permission denied");
        await Refused(await bob.PostAsJsonAsync($"{Prefix}/users/create", new { username = "eve-x", password = AccountsFactory.UserPassword }),
            403, "PERMISSION_DENIED", "Permission denied");

        // Their own password: the current one is asked for, as MLflow asks.
        await Refused(await Patch(bob, "users/update-password", new { username = name, password = AccountsFactory.UserPassword + "2" }),
            400, "INVALID_PARAMETER_VALUE", "Current password is required when changing your own password.");
        await Refused(await Patch(bob, "users/update-password", new { username = name, password = AccountsFactory.UserPassword + "2", current_password = "wrong" }),
            400, "INVALID_PARAMETER_VALUE", "Current password does not match.");
        await Api.OkAsync(await Patch(bob, "users/update-password", new { username = name, password = AccountsFactory.UserPassword + "2", current_password = AccountsFactory.UserPassword }));
        Assert.Equal(HttpStatusCode.Unauthorized, (await bob.GetAsync($"{Prefix}/users/current")).StatusCode);
        bob = factory.As(name, AccountsFactory.UserPassword + "2");

        await Refused(await Patch(bob, "users/update-admin", new { username = name, is_admin = true }), 403, "PERMISSION_DENIED", "Permission denied");
        await Api.OkAsync(await Patch(admin, "users/update-admin", new { username = name, is_admin = true }));
        var listed = await Api.OkAsync(await bob.GetAsync($"{Prefix}/users/list")); // an admin now
        Assert.Contains(listed.GetProperty("users").EnumerateArray(), u => u.GetProperty("username").GetString() == name && u.GetProperty("is_admin").GetBoolean());

        var delete = new HttpRequestMessage(HttpMethod.Delete, $"{Prefix}/users/delete") { Content = JsonContent.Create(new { username = name }) };
        await Api.OkAsync(await admin.SendAsync(delete));
        await Refused(await admin.GetAsync($"{Prefix}/users/get?username={name}"), 404, "RESOURCE_DOES_NOT_EXIST", $"User with username={name} not found");
    }

    [Fact]
    public async Task The_creator_of_an_experiment_manages_it_and_grants_permissions_on_it()
    {
        var admin = factory.Admin();
        var (owner, ownerName) = await factory.NewUserAsync();
        var (other, otherName) = await factory.NewUserAsync();
        var experiment = (await Api.OkAsync(await owner.PostAsJsonAsync($"{Prefix}/experiments/create", new { name = $"exp-{Guid.NewGuid():N}" })))
            .GetProperty("experiment_id").GetString()!;
        var own = (await Api.OkAsync(await owner.GetAsync($"{Prefix}/users/get?username={ownerName}"))).GetProperty("user").GetProperty("experiment_permissions");
        Assert.Equal($$"""[{"experiment_id":"{{experiment}}","user_id":"{{own[0].GetProperty("user_id").GetString()}}","permission":"MANAGE"}]""", own.GetRawText());

        var granted = await Api.OkAsync(await owner.PostAsJsonAsync($"{Prefix}/experiments/permissions/create",
            new { experiment_id = experiment, username = otherName, permission = "READ" }));
        Assert.Equal("READ", granted.GetProperty("experiment_permission").GetProperty("permission").GetString());
        Assert.Equal(experiment, granted.GetProperty("experiment_permission").GetProperty("experiment_id").GetString());
        await Refused(await owner.PostAsJsonAsync($"{Prefix}/experiments/permissions/create",
            new { experiment_id = experiment, username = otherName, permission = "READ" }), 400, "RESOURCE_ALREADY_EXISTS",
            $"Experiment permission (experiment_id={experiment}, username={otherName}) already exists.");
        await Refused(await owner.PostAsJsonAsync($"{Prefix}/experiments/permissions/create",
            new { experiment_id = experiment, username = "nobody-at-all", permission = "READ" }), 404, "RESOURCE_DOES_NOT_EXIST",
            "User with username=nobody-at-all not found");
        await Refused(await Patch(owner, "experiments/permissions/update", new { experiment_id = experiment, username = otherName, permission = "OWNER" }),
            400, "INVALID_PARAMETER_VALUE", "Invalid permission 'OWNER'. Valid permissions are: ('READ', 'USE', 'EDIT', 'MANAGE', 'NO_PERMISSIONS')");

        // Who only reads may not see or change the grants.
        await Refused(await other.GetAsync($"{Prefix}/experiments/permissions/get?experiment_id={experiment}&username={otherName}"),
            403, "PERMISSION_DENIED", "Permission denied");
        await Api.OkAsync(await Patch(owner, "experiments/permissions/update", new { experiment_id = experiment, username = otherName, permission = "EDIT" }));
        var edit = await Api.OkAsync(await owner.GetAsync($"{Prefix}/experiments/permissions/get?experiment_id={experiment}&username={otherName}"));
        Assert.Equal("EDIT", edit.GetProperty("experiment_permission").GetProperty("permission").GetString());

        var delete = new HttpRequestMessage(HttpMethod.Delete, $"{Prefix}/experiments/permissions/delete")
            { Content = JsonContent.Create(new { experiment_id = experiment, username = otherName }) };
        await Api.OkAsync(await owner.SendAsync(delete));
        await Refused(await owner.GetAsync($"{Prefix}/experiments/permissions/get?experiment_id={experiment}&username={otherName}"),
            404, "RESOURCE_DOES_NOT_EXIST", $"Experiment permission with experiment_id={experiment} and username={otherName} not found");
    }

    static Task<HttpResponseMessage> Patch(HttpClient client, string endpoint, object body) =>
        client.PatchAsync($"{Prefix}/{endpoint}", JsonContent.Create(body));

    static async Task Refused(HttpResponseMessage response, int status, string code, string message)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"{(int)response.StatusCode}: {text}");
        var body = JsonDocument.Parse(text).RootElement;
        Assert.Equal(code, body.GetProperty("error_code").GetString());
        Assert.Equal(message, body.GetProperty("message").GetString());
    }
}
