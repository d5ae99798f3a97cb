using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using EmaLab.Dashboard.Hosting;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

public sealed class PermissionTests(AccountsFactory factory) : PermissionSuite(factory), IClassFixture<AccountsFactory>
{
    [Fact]
    public void Every_api_endpoint_declares_who_may_call_it()
    {
        _ = Factory.CreateClient();
        var endpoints = Factory.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText?.StartsWith("/api", StringComparison.Ordinal) == true)
            .Where(e => !e.RoutePattern.RawText!.StartsWith("/api/docs", StringComparison.Ordinal)) // the reference page (Scalar): no data
            .ToList();
        Assert.True(endpoints.Count > 60, $"only {endpoints.Count} API endpoints found");
        var undeclared = endpoints.Where(e => !e.Metadata.OfType<ExperimentRule>().Any() && e.Metadata.GetMetadata<AnyCaller>() is null
                && e.Metadata.GetMetadata<AdminsOnly>() is null)
            .Select(e => $"{string.Join(",", e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? [])} {e.RoutePattern.RawText}");
        Assert.Empty(undeclared);
    }
}

[Trait("Speed", "Postgres")]
public sealed class PermissionOnPostgresTests(PostgresAccountsFactory fixture) : PermissionSuite(fixture.Factory), IClassFixture<PostgresAccountsFactory>;

/// <summary>
/// Grants decide what each user may do with an experiment's runs, engine and client runs alike: NO_PERMISSIONS hides them
/// (403 on each call, absent from every list), READ (the default) reads, EDIT logs and changes, MANAGE deletes.
/// </summary>
public abstract class PermissionSuite(AccountsFactory factory)
{
    protected AccountsFactory Factory => factory;
    const string Prefix = "/api/2.0/mlflow";

    [Fact]
    public async Task Grants_decide_who_reads_logs_and_deletes_an_experiments_runs()
    {
        var admin = factory.Admin();
        var (hidden, _) = await factory.NewUserAsync("hidden");
        var (editor, editorName) = await factory.NewUserAsync("editor");
        var (reader, _) = await factory.NewUserAsync("reader"); // no grant: the default, READ
        var hiddenName = (await Api.OkAsync(await hidden.GetAsync($"{Prefix}/users/current"))).GetProperty("user").GetProperty("username").GetString()!;

        var experiment = (await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/experiments/create", new { name = $"private-{Guid.NewGuid():N}" })))
            .GetProperty("experiment_id").GetString()!;
        await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/experiments/permissions/create",
            new { experiment_id = experiment, username = hiddenName, permission = "NO_PERMISSIONS" }));
        await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/experiments/permissions/create",
            new { experiment_id = experiment, username = editorName, permission = "EDIT" }));

        var runId = (await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/runs/create", new { experiment_id = experiment, run_name = "script" })))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        var number = (await Api.OkAsync(await admin.GetAsync($"/api/runs?trackingId={runId}"))).GetProperty("items")[0].GetProperty("id").GetInt64();
        var batch = new { run_id = runId, metrics = new[] { new { key = "loss", value = 0.5, timestamp = 1, step = 1 } } };

        // NO_PERMISSIONS: every call refused, nothing listed.
        await Denied(await hidden.GetAsync($"{Prefix}/runs/get?run_id={runId}"));
        await Denied(await hidden.PostAsJsonAsync($"{Prefix}/runs/log-batch", batch));
        Assert.Equal(HttpStatusCode.Forbidden, (await hidden.GetAsync($"/api/runs/{number}")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await hidden.GetAsync($"/api/runs/{number}/metrics.csv")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await hidden.GetAsync($"/api/runs/{number}/events")).StatusCode);
        Assert.DoesNotContain(runId, await hidden.GetStringAsync("/api/runs?pageSize=500"));
        var searched = await Api.OkAsync(await hidden.PostAsJsonAsync($"{Prefix}/runs/search", new { experiment_ids = new[] { experiment, "0" } }));
        Assert.DoesNotContain(runId, searched.GetRawText());
        var experiments = await Api.OkAsync(await hidden.GetAsync($"{Prefix}/experiments/search?max_results=1000"));
        Assert.DoesNotContain(experiments.GetProperty("experiments").EnumerateArray(), e => e.GetProperty("experiment_id").GetString() == experiment);
        Assert.Contains(experiments.GetProperty("experiments").EnumerateArray(), e => e.GetProperty("experiment_id").GetString() == "0");
        // Nor do the runs page's filters name its group or tags.
        var secret = $"secret-{Guid.NewGuid():N}";
        await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/runs/set-tag", new { run_id = runId, key = "emalab.group", value = secret }));
        await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/runs/set-tag", new { run_id = runId, key = secret, value = "x" }));
        var hiddenUser = (await factory.Services.GetRequiredService<Security.AccountService>().UsersAsync(Caller.Local)).Single(u => u.User.UserName == hiddenName).User;
        var hiddenAccess = await factory.Services.GetRequiredService<Security.Permissions>()
            .AccessOfAsync(Security.AccountService.CallerOf(hiddenUser, Hosting.CallerKind.Password));
        var facets = await factory.Services.GetRequiredService<Runs.RunQueries>().FilterChoicesAsync(hiddenAccess.Readable());
        Assert.DoesNotContain(secret, string.Join(" ", facets.Groups.Concat(facets.UserTags)));
        var adminFacets = await factory.Services.GetRequiredService<Runs.RunQueries>().FilterChoicesAsync(null);
        Assert.Contains(secret, adminFacets.Groups);

        // READ (the default): reads, changes nothing.
        await Api.OkAsync(await reader.GetAsync($"{Prefix}/runs/get?run_id={runId}"));
        Assert.Contains(runId, await reader.GetStringAsync("/api/runs?pageSize=500"));
        await Denied(await reader.PostAsJsonAsync($"{Prefix}/runs/log-batch", batch));
        Assert.Equal(HttpStatusCode.Forbidden, (await reader.PostAsync($"/api/runs/{number}/cancel", null)).StatusCode);

        // EDIT: logs, but does not delete.
        await Api.OkAsync(await editor.PostAsJsonAsync($"{Prefix}/runs/log-batch", batch));
        await Denied(await editor.PostAsJsonAsync($"{Prefix}/runs/delete", new { run_id = runId }));
        Assert.Equal(HttpStatusCode.Forbidden, (await editor.DeleteAsync($"/api/runs/{number}")).StatusCode);
        var engine = await editor.PostAsJsonAsync("/api/runs", new { name = "engine", dataset = "digits-8x8", model = "mlp", hidden = new[] { 16 },
            steps = 5, evalInterval = 5, ema = new { decays = new[] { 0.9 } }, experimentId = long.Parse(experiment) });
        Assert.Equal(HttpStatusCode.Created, engine.StatusCode);
        var engineId = (await engine.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetInt64();
        var refusedEngine = await reader.PostAsJsonAsync("/api/runs", new { dataset = "digits-8x8", model = "mlp", steps = 5,
            experimentId = long.Parse(experiment) });
        Assert.Equal(HttpStatusCode.Forbidden, refusedEngine.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await hidden.GetAsync($"/api/runs/{engineId}/checkpoints")).StatusCode);

        // MANAGE (the admin here): deletes.
        await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/runs/delete", new { run_id = runId }));
    }

    [Fact]
    public async Task The_default_experiment_takes_grants_like_any_other()
    {
        var admin = factory.Admin();
        var (user, name) = await factory.NewUserAsync("dora");
        await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/experiments/permissions/create", new { experiment_id = "0", username = name, permission = "NO_PERMISSIONS" }));
        await Denied(await user.GetAsync($"{Prefix}/experiments/get?experiment_id=0"));
        await Api.OkAsync(await admin.PatchAsync($"{Prefix}/experiments/permissions/update",
            JsonContent.Create(new { experiment_id = "0", username = name, permission = "EDIT" })));
        await Api.OkAsync(await user.GetAsync($"{Prefix}/experiments/get?experiment_id=0"));
        await Api.OkAsync(await admin.SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"{Prefix}/experiments/permissions/delete")
            { Content = JsonContent.Create(new { experiment_id = "0", username = name }) }));
    }

    [Fact]
    public async Task An_open_event_stream_ends_when_its_token_is_revoked_or_its_grant_removed()
    {
        var admin = factory.Admin();
        var (byPassword, name) = await factory.NewUserAsync("gina");
        var experiment = (await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/experiments/create", new { name = $"live-{Guid.NewGuid():N}" })))
            .GetProperty("experiment_id").GetString()!;
        var runId = (await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/runs/create", new { experiment_id = experiment })))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        var number = (await Api.OkAsync(await admin.GetAsync($"/api/runs?trackingId={runId}"))).GetProperty("items")[0].GetProperty("id").GetInt64();

        // A personal token's stream: open (its first event says where the run stands), then the token is revoked.
        var accounts = factory.Services.GetRequiredService<Security.AccountService>();
        var userId = (await accounts.UsersAsync(Caller.Local)).Single(u => u.User.UserName == name).User.Id;
        var (token, secret) = await accounts.CreateTokenAsync(userId, "stream", expiresAt: null);
        var byToken = factory.CreateClient();
        byToken.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", secret);
        await using (var stream = await OpenEventsAsync(byToken, number))
        {
            await accounts.RevokeTokenAsync(userId, token.Id);
            await EndsAsync(stream);
        }

        // A password's stream: the grant on the experiment is taken away.
        await using (var stream = await OpenEventsAsync(byPassword, number))
        {
            await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/experiments/permissions/create",
                new { experiment_id = experiment, username = name, permission = "NO_PERMISSIONS" }));
            await EndsAsync(stream);
        }
        Assert.Equal(HttpStatusCode.Forbidden, (await byPassword.GetAsync($"/api/runs/{number}/events", HttpCompletionOption.ResponseHeadersRead)).StatusCode);
    }

    static async Task<Stream> OpenEventsAsync(HttpClient client, long run)
    {
        var response = await client.GetAsync($"/api/runs/{run}/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var stream = await response.Content.ReadAsStreamAsync();
        var reader = new StreamReader(stream);
        Assert.StartsWith("event: status", await reader.ReadLineAsync());
        return stream;
    }

    /// <summary>The stream closes (end of data) within seconds, without an error.</summary>
    static async Task EndsAsync(Stream stream)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var buffer = new byte[4096];
        while (await stream.ReadAsync(buffer, timeout.Token) > 0) { }
    }

    static async Task Denied(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Forbidden, $"{(int)response.StatusCode}: {text}");
        Assert.Equal("PERMISSION_DENIED", JsonDocument.Parse(text).RootElement.GetProperty("error_code").GetString());
    }
}
