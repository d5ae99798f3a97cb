using EmaLab.Dashboard.Hosting;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EmaLab.Dashboard.Security;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

public sealed class WhoDidWhatTests(AccountsFactory factory) : WhoDidWhatSuite(factory), IClassFixture<AccountsFactory>;

[Trait("Speed", "Postgres")]
public sealed class WhoDidWhatOnPostgresTests(PostgresAccountsFactory fixture) : WhoDidWhatSuite(fixture.Factory), IClassFixture<PostgresAccountsFactory>;

/// <summary>
/// Who did what: a run records the account that created it (engine, clone and script runs: a script's <c>mlflow.user</c>
/// is the account, not the machine's user), and the audit log holds sign-in failures and lock-outs, token creation and
/// use, permission changes and deletions — what was refused is not there — for admins only, filtered and paged.
/// </summary>
public abstract class WhoDidWhatSuite(AccountsFactory factory)
{
    const string Prefix = "/api/2.0/mlflow";

    [Fact]
    public async Task A_run_records_the_account_that_created_it()
    {
        var admin = factory.Admin();
        var (carol, name) = await factory.NewUserAsync("carol");
        var experiment = await NewExperimentAsync(admin, name, "EDIT");

        var engine = Api.DigitsRun(steps: 5, evalInterval: 5);
        engine["experimentId"] = experiment;
        var created = await Api.CreateAsync(carol, engine);
        Assert.Equal(name, created.GetProperty("createdBy").GetString());
        await Api.WaitForFinishAsync(carol, created.Id());
        var clone = await carol.PostAsync($"/api/runs/{created.Id()}/clone", null);
        Assert.Equal(HttpStatusCode.Created, clone.StatusCode);
        var cloneId = (await clone.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetInt64();
        Assert.Equal(name, (await Api.GetAsync(carol, $"/api/runs/{cloneId}")).GetProperty("createdBy").GetString());

        // A script's client says who runs it on its machine; the server knows which account sent it.
        var script = await Api.OkAsync(await carol.PostAsJsonAsync($"{Prefix}/runs/create", new
        {
            experiment_id = experiment.ToString(), user_id = "root", tags = new[] { new { key = "mlflow.user", value = "root" } },
        }));
        var runId = script.GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var info = (await Api.OkAsync(await admin.GetAsync($"{Prefix}/runs/get?run_id={runId}"))).GetProperty("run");
        Assert.Equal(name, info.GetProperty("info").GetProperty("user_id").GetString());
        Assert.Contains(info.GetProperty("data").GetProperty("tags").EnumerateArray(),
            t => t.GetProperty("key").GetString() == "mlflow.user" && t.GetProperty("value").GetString() == name);

        // The audit log keeps it where a tag cannot be rewritten: the three runs, created by the account.
        var logged = (await Api.GetAsync(admin, $"/api/audit?actor={name}&action=run.create")).GetProperty("items").EnumerateArray()
            .Select(e => e.GetProperty("target").GetString()).ToList();
        Assert.Equal(3, logged.Count);
        Assert.Contains($"run {created.Id()}", logged);
    }

    [Fact]
    public async Task The_audit_log_holds_failed_sign_ins_token_use_permission_changes_and_deletions_for_admins()
    {
        var admin = factory.Admin();
        var (dave, name) = await factory.NewUserAsync("dave");
        var experiment = await NewExperimentAsync(admin, name, "EDIT");

        // A wrong password, then enough of them to lock the account.
        Assert.Equal(HttpStatusCode.Unauthorized, (await factory.As(name, "not the password at all").GetAsync("/api/runs")).StatusCode);
        for (var i = 0; i < 5; i++) await factory.As(name, "not the password at all").GetAsync("/api/runs");

        // A token: created, used twice within a minute (one line), refused once revoked.
        var accounts = factory.Services.GetRequiredService<AccountService>();
        var userId = (await accounts.UsersAsync(Caller.Local)).Single(u => u.User.UserName == name).User.Id;
        await accounts.UnlockAsync(userId, Caller.Local);
        var (token, secret) = await accounts.CreateTokenAsync(userId, "ci", expiresAt: null);
        var bearer = factory.CreateClient();
        bearer.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        Assert.Equal(HttpStatusCode.OK, (await bearer.GetAsync("/api/runs")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await bearer.GetAsync("/api/runs")).StatusCode);

        // A script's run: dave may not delete it (EDIT), the admin may; a permission changes.
        var runId = (await Api.OkAsync(await bearer.PostAsJsonAsync($"{Prefix}/runs/create", new { experiment_id = experiment.ToString() })))
            .GetProperty("run").GetProperty("info").GetProperty("run_id").GetString()!;
        var number = (await Api.GetAsync(admin, $"/api/runs?trackingId={runId}")).GetProperty("items")[0].Id();
        Assert.Equal(HttpStatusCode.Forbidden, (await bearer.DeleteAsync($"/api/runs/{number}")).StatusCode);
        await Api.OkAsync(await admin.SendAsync(new HttpRequestMessage(HttpMethod.Patch, $"{Prefix}/experiments/permissions/update")
            { Content = JsonContent.Create(new { experiment_id = experiment.ToString(), username = name, permission = "READ" }) }));
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/runs/{number}")).StatusCode);

        // Only admins read it.
        Assert.Equal(HttpStatusCode.Forbidden, (await bearer.GetAsync("/api/audit")).StatusCode);
        var mine = (await Api.GetAsync(admin, $"/api/audit?actor={name}")).GetProperty("items").EnumerateArray().ToList();
        var actions = mine.Select(e => e.GetProperty("action").GetString()).ToList();
        // Six wrong passwords: the fifth locks the account, the sixth is refused while it is locked.
        Assert.Equal(["sign-in.failed", "sign-in.failed", "sign-in.failed", "sign-in.failed", "sign-in.locked-out", "sign-in.failed",
            "token.create", "token.use", "run.create"], Enumerable.Reverse(actions));
        Assert.EndsWith("; locked", mine[3].GetProperty("detail").GetString());
        Assert.Equal($"run {number}", mine[0].GetProperty("target").GetString());
        var failed = mine[^1];
        Assert.Equal($"user {name}", failed.GetProperty("target").GetString());
        Assert.Equal("HTTP Basic", failed.GetProperty("detail").GetString());
        Assert.Equal($"token ci ({token.Prefix}…)", mine[1].GetProperty("target").GetString());

        var byAdmin = (await Api.GetAsync(admin, "/api/audit?actor=ana&pageSize=50")).GetProperty("items").EnumerateArray().ToList();
        Assert.Contains(byAdmin, e => e.GetProperty("action").GetString() == "run.delete" && e.GetProperty("target").GetString() == $"run {number}");
        Assert.DoesNotContain(byAdmin, e => e.GetProperty("action").GetString() == "run.delete" && e.GetProperty("actor").GetString() != "ana");
        var change = byAdmin.First(e => e.GetProperty("action").GetString() == "permission.update" && e.GetProperty("target").GetString() == $"experiment {experiment}");
        Assert.Equal($"username={name} permission=READ", change.GetProperty("detail").GetString());

        // Filtered by a prefix, and paged.
        var tokens = (await Api.GetAsync(admin, $"/api/audit?actor={name}&action=token")).GetProperty("items").EnumerateArray()
            .Select(e => e.GetProperty("action").GetString()).ToList();
        Assert.Equal(["token.use", "token.create"], tokens);
        var first = await Api.GetAsync(admin, $"/api/audit?actor={name}&pageSize=3");
        Assert.Equal(3, first.GetProperty("items").GetArrayLength());
        var next = await Api.GetAsync(admin, $"/api/audit?actor={name}&pageSize=10&before={first.GetProperty("before").GetInt64()}");
        Assert.Equal(6, next.GetProperty("items").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, next.GetProperty("before").ValueKind);
    }

    [Fact]
    public async Task An_uploaded_dataset_is_everyones_to_see_and_its_uploaders_or_an_admins_to_delete()
    {
        var admin = factory.Admin();
        var (erin, erinName) = await factory.NewUserAsync("erin");
        var (frank, _) = await factory.NewUserAsync("frank");
        var name = $"tiny-{Guid.NewGuid():N}"[..13];
        var rows = string.Join("\n", Enumerable.Range(0, 20).Select(i => $"{i * 10 % 256},{i * 7 % 256},{i * 3 % 256},{i % 256},{i % 2}"));
        var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new ByteArrayContent(System.Text.Encoding.ASCII.GetBytes(rows)), "train", "tiny.csv" } };
        var uploaded = await erin.PostAsync("/api/datasets", form);
        Assert.Equal(HttpStatusCode.Created, uploaded.StatusCode);
        Assert.Equal(erinName, (await uploaded.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("uploadedBy").GetString());

        // Listed for everyone, with its uploader; another user may not delete it (and is told who may).
        var listed = (await Api.GetAsync(frank, "/api/datasets")).EnumerateArray().Single(d => d.GetProperty("name").GetString() == name);
        Assert.Equal(erinName, listed.GetProperty("uploadedBy").GetString());
        var refused = await frank.DeleteAsync($"/api/datasets/{name}");
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Contains($"Only its uploader ({erinName}) or an admin", await refused.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.NoContent, (await erin.DeleteAsync($"/api/datasets/{name}")).StatusCode);

        var log = (await Api.GetAsync(admin, $"/api/audit?actor={erinName}&action=dataset")).GetProperty("items").EnumerateArray()
            .Select(e => (e.GetProperty("action").GetString(), e.GetProperty("target").GetString())).ToList();
        Assert.Equal([("dataset.delete", $"dataset {name}"), ("dataset.upload", $"dataset {name}")], log);
    }

    static async Task<long> NewExperimentAsync(HttpClient admin, string user, string permission)
    {
        var id = (await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/experiments/create", new { name = $"team-{Guid.NewGuid():N}" })))
            .GetProperty("experiment_id").GetString()!;
        await Api.OkAsync(await admin.PostAsJsonAsync($"{Prefix}/experiments/permissions/create", new { experiment_id = id, username = user, permission }));
        return long.Parse(id);
    }

}
