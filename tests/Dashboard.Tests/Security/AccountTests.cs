using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.RegularExpressions;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Security;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>Accounts: the admin from settings, sign-in with lock-out, MLflow's Basic and token credentials, personal
/// tokens that stop working on the request after they are revoked, and the one-time setup of a first admin.</summary>
public sealed class AccountTests : IDisposable
{
    const string Password = "correct horse battery";
    readonly EmaLabFactory _factory = new() { Settings = { ["EmaLab:Admin:UserName"] = "ana", ["EmaLab:Admin:Password"] = Password } };

    [Fact]
    public async Task Pages_ask_to_sign_in_the_cookie_opens_the_api_and_sign_out_ends_it()
    {
        var client = _factory.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        var page = await client.GetAsync("/runs/new");
        Assert.Equal(HttpStatusCode.Redirect, page.StatusCode);
        Assert.Equal("/login?returnUrl=%2Fruns%2Fnew", page.Headers.Location!.PathAndQuery);
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/_blazor/negotiate")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/api/runs")).StatusCode);

        // The form carries an antiforgery token; a post without one is refused.
        Assert.Equal(HttpStatusCode.BadRequest,
            (await client.PostAsync("/login", Form(("userName", "ana"), ("password", Password), ("returnUrl", "/")))).StatusCode);

        var wrong = await SignInAsync(client, "ana", "not the password", "/runs/new");
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Contains("Wrong user name or password.", await wrong.Content.ReadAsStringAsync());
        var nobody = await SignInAsync(client, "bob", Password, "/runs/new");
        Assert.Contains("Wrong user name or password.", await nobody.Content.ReadAsStringAsync()); // the same words: no name is confirmed

        // Neither an absolute address nor a /\host one is followed (no open redirect, no 500).
        foreach (var evil in new[] { "https://evil.example/", "/\\evil.com", "//evil.com" })
        {
            var right = await SignInAsync(client, "ana", Password, evil);
            Assert.Equal(HttpStatusCode.Redirect, right.StatusCode);
            Assert.Equal("/", right.Headers.Location!.OriginalString);
        }
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/runs/new")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/runs")).StatusCode);

        var logout = await client.PostAsync("/logout", Form(AntiforgeryField(await client.GetStringAsync("/login"))));
        Assert.Equal(HttpStatusCode.Redirect, logout.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/api/runs")).StatusCode);

        // The audit log: the failures (a name that does not exist too), the sign-ins and the sign-out.
        var audit = _factory.Services.GetRequiredService<AuditLog>();
        var ana = (await audit.ListAsync("ana", null, null, 50)).Items;
        Assert.Equal(["sign-in.failed", "sign-in", "sign-in", "sign-in", "sign-out"], ana.Select(e => e.Action).Reverse());
        Assert.All(ana, e => Assert.Equal("user ana", e.Target));
        Assert.Equal("sign-in page", ana[^1].Detail);
        Assert.Equal("sign-in.failed", Assert.Single((await audit.ListAsync("bob", null, null, 50)).Items).Action);
    }

    [Fact]
    public async Task A_session_follows_the_accounts_admin_flag_from_its_next_request()
    {
        var accounts = _factory.Services.GetRequiredService<AccountService>();
        var (bob, _) = await accounts.CreateUserAsync("bob", Password, isAdmin: true, Caller.Local);
        var browser = _factory.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        Assert.Equal(HttpStatusCode.Redirect, (await SignInAsync(browser, "bob", Password, "/")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/api/2.0/mlflow/users/list")).StatusCode);
        Assert.Null(await accounts.SetAdminAsync(bob!.Id, isAdmin: false, Caller.Local));
        Assert.Equal(HttpStatusCode.Forbidden, (await browser.GetAsync("/api/2.0/mlflow/users/list")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/api/runs")).StatusCode); // still signed in, as a user
    }

    [Fact]
    public async Task Five_wrong_passwords_lock_the_account_and_then_even_the_right_one_is_refused()
    {
        var client = _factory.CreateClient();
        for (var i = 0; i < 5; i++)
            Assert.Equal(HttpStatusCode.Unauthorized, (await Basic(client, "ana", $"wrong {i}").GetAsync(Experiment0)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await Basic(client, "ana", Password).GetAsync(Experiment0)).StatusCode);

        var browser = _factory.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        var locked = await SignInAsync(browser, "ana", Password, "/");
        Assert.Equal(HttpStatusCode.Unauthorized, locked.StatusCode);
        Assert.Contains("This account is locked after too many wrong passwords", await locked.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task An_mlflow_client_signs_in_with_basic_or_a_personal_token_and_a_revoked_token_is_refused_on_its_next_request()
    {
        var client = _factory.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await Basic(client, "ana", Password).GetAsync(Experiment0)).StatusCode);

        var accounts = _factory.Services.GetRequiredService<AccountService>();
        var ana = (await accounts.CheckPasswordAsync("ana", Password, "test")).User!;
        var (token, secret) = await accounts.CreateTokenAsync(ana.Id, "laptop", expiresAt: null);
        Assert.StartsWith("emalab_pat_", secret);
        Assert.Equal(secret[..15], token.Prefix);
        Assert.DoesNotContain(secret, token.Hash); // only the hash is kept

        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(Experiment0)).StatusCode);
        var used = Assert.Single(await accounts.TokensOfAsync(ana.Id));
        Assert.NotNull(used.LastUsedAt);

        Assert.True(await accounts.RevokeTokenAsync(ana.Id, token.Id));
        var refused = await client.GetAsync(Experiment0);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal("UNAUTHENTICATED", (await refused.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("error_code").GetString());

        var (_, expired) = await accounts.CreateTokenAsync(ana.Id, "old", DateTimeOffset.UtcNow.AddSeconds(-1));
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", expired);
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync(Experiment0)).StatusCode);
        Assert.False(await accounts.RevokeTokenAsync("someone-else", token.Id), "a token is revoked by its owner only");
    }

    [Fact]
    public async Task A_password_the_rules_refuse_stops_the_start_with_the_reason()
    {
        using var weak = new EmaLabFactory { Settings = { ["EmaLab:Admin:UserName"] = "ana", ["EmaLab:Admin:Password"] = "short" } };
        var e = Assert.ThrowsAny<Exception>(() => weak.CreateClient());
        Assert.Contains("EmaLab:Admin: the admin 'ana' cannot be created: Passwords must be at least 10 characters.", e.ToString());
        await Task.CompletedTask;
    }

    [Fact]
    public async Task Without_an_admin_a_one_time_setup_link_creates_the_first_one()
    {
        using var server = new EmaLabFactory { Settings = { ["EmaLab:ApiToken"] = "service-s3cret" } };
        var client = server.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        var mode = server.Services.GetRequiredService<AccessMode>();
        Assert.True(mode.Accounts);
        var link = Assert.IsType<string>(mode.SetupToken);

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/setup?token=guess")).StatusCode);
        var form = await client.GetStringAsync($"/setup?token={link}");
        var mismatch = await client.PostAsync("/setup", Form(("token", link), ("userName", "root"), ("password", Password),
            ("confirmPassword", "something else"), AntiforgeryField(form)));
        Assert.Equal(HttpStatusCode.BadRequest, mismatch.StatusCode);
        Assert.Contains("The two passwords differ.", await mismatch.Content.ReadAsStringAsync());

        var created = await client.PostAsync("/setup", Form(("token", link), ("userName", "root"), ("password", Password),
            ("confirmPassword", Password), AntiforgeryField(form)));
        Assert.Equal(HttpStatusCode.Redirect, created.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/runs")).StatusCode); // signed in as the new admin
        Assert.Null(mode.SetupToken);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/setup?token={link}")).StatusCode); // once
        var root = (await server.Services.GetRequiredService<AccountService>().CheckPasswordAsync("root", Password, "test")).User;
        Assert.True(root?.IsAdmin);
    }

    [Fact]
    public async Task An_admin_unlocks_and_deletes_accounts_but_the_last_admin_stays()
    {
        var accounts = _factory.Services.GetRequiredService<AccountService>();
        var ana = (await accounts.CheckPasswordAsync("ana", Password, "test")).User!;
        Assert.Equal("The last admin stays an admin.", await accounts.SetAdminAsync(ana.Id, isAdmin: false, Caller.Local));
        Assert.Equal("The last admin cannot be deleted.", await accounts.DeleteUserAsync(ana.Id, Caller.Local));

        var (bob, errors) = await accounts.CreateUserAsync("bob", Password, isAdmin: false, Caller.Local);
        Assert.Empty(errors);
        for (var i = 0; i < 5; i++) await accounts.CheckPasswordAsync("bob", "wrong password", "test");
        Assert.Equal(PasswordCheck.LockedOut, (await accounts.CheckPasswordAsync("bob", Password, "test")).Result);
        Assert.Contains(await accounts.UsersAsync(Caller.Local), u => u.User.UserName == "bob" && u.LockedOut);
        await accounts.UnlockAsync(bob!.Id, Caller.Local);
        Assert.Equal(PasswordCheck.Accepted, (await accounts.CheckPasswordAsync("bob", Password, "test")).Result);

        Assert.Null(await accounts.SetAdminAsync(bob.Id, isAdmin: true, Caller.Local));
        Assert.Null(await accounts.SetAdminAsync(ana.Id, isAdmin: false, Caller.Local)); // not the last one any more
        var (_, secret) = await accounts.CreateTokenAsync(ana.Id, "laptop", null);
        Assert.Null(await accounts.DeleteUserAsync(ana.Id, Caller.Local));
        Assert.Null(await accounts.UserOfTokenAsync(secret)); // its tokens went with it
        Assert.Equal(["bob"], (await accounts.UsersAsync(Caller.Local)).Select(u => u.User.UserName));
    }

    const string Experiment0 = "/api/2.0/mlflow/experiments/get?experiment_id=0";

    [Fact]
    public async Task A_password_sent_with_every_call_stops_working_at_once_when_it_changes_or_the_account_goes()
    {
        // HTTP Basic remembers a pair that passed (Identity's hash costs tens of ms per call), never past the account's state.
        var accounts = _factory.Services.GetRequiredService<AccountService>();
        var (carl, _) = await accounts.CreateUserAsync("carl", Password, isAdmin: false, Caller.Local);
        var old = Basic(_factory.CreateClient(), "carl", Password);
        Assert.Equal(HttpStatusCode.OK, (await old.GetAsync(Experiment0)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await old.GetAsync(Experiment0)).StatusCode);
        Assert.Empty(await accounts.ChangePasswordAsync(AccountService.CallerOf(carl!, CallerKind.Password), Password, Password + " two"));
        Assert.Equal(HttpStatusCode.Unauthorized, (await old.GetAsync(Experiment0)).StatusCode);
        var renewed = Basic(_factory.CreateClient(), "carl", Password + " two");
        Assert.Equal(HttpStatusCode.OK, (await renewed.GetAsync(Experiment0)).StatusCode);
        Assert.Null(await accounts.DeleteUserAsync(carl!.Id, Caller.Local));
        Assert.Equal(HttpStatusCode.Unauthorized, (await renewed.GetAsync(Experiment0)).StatusCode);
    }

    [Fact]
    public async Task A_script_makes_lists_and_revokes_its_own_tokens_through_the_api()
    {
        var ana = Basic(_factory.CreateClient(), "ana", Password);
        var made = await ana.PostAsync("/api/account/tokens", Api.JsonBody("""{"name": "ci", "expiresInDays": 30}"""));
        Assert.Equal(HttpStatusCode.Created, made.StatusCode);
        var created = await made.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>();
        var secret = created.GetProperty("secret").GetString()!;
        Assert.StartsWith(AccountService.TokenPrefix, secret);
        var id = created.GetProperty("token").GetProperty("id").GetInt64();
        var expires = created.GetProperty("token").GetProperty("expiresAt").GetDateTimeOffset();
        Assert.InRange(expires - DateTimeOffset.UtcNow, TimeSpan.FromDays(29.9), TimeSpan.FromDays(30));

        var bearer = _factory.CreateClient();
        bearer.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        var listed = await bearer.GetStringAsync("/api/account/tokens");
        Assert.Contains("\"name\":\"ci\"", listed);
        Assert.DoesNotContain(secret, listed); // a secret is shown once

        foreach (var (body, field) in new[] { ("""{"name": ""}""", "name"), ("""{"name": "x", "expiresInDays": 0}""", "expiresInDays"),
                     ("""{"name": "x", "expiresInDays": "soon"}""", "expiresInDays"), ("[]", "$") })
        {
            var refused = await ana.PostAsync("/api/account/tokens", Api.JsonBody(body));
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.True((await refused.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("errors").TryGetProperty(field, out _), body);
        }
        var (bob, _) = await _factory.Services.GetRequiredService<AccountService>().CreateUserAsync("bob", Password, isAdmin: false, Caller.Local);
        var (bobs, _) = await _factory.Services.GetRequiredService<AccountService>().CreateTokenAsync(bob!.Id, "bob's", null);
        Assert.Equal(HttpStatusCode.NotFound, (await ana.DeleteAsync($"/api/account/tokens/{bobs.Id}")).StatusCode); // only one's own

        Assert.Equal(HttpStatusCode.NoContent, (await bearer.DeleteAsync($"/api/account/tokens/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await bearer.GetAsync("/api/account/tokens")).StatusCode);
    }

    static HttpClient Basic(HttpClient client, string user, string password)
    {
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        return client;
    }

    static async Task<HttpResponseMessage> SignInAsync(HttpClient client, string userName, string password, string returnUrl)
    {
        var field = AntiforgeryField(await client.GetStringAsync("/login"));
        return await client.PostAsync("/login", Form(("userName", userName), ("password", password), ("returnUrl", returnUrl), field));
    }

    static (string Name, string Value) AntiforgeryField(string html)
    {
        var match = Regex.Match(html, "name=\"(__RequestVerificationToken[^\"]*)\"[^>]*value=\"([^\"]+)\"");
        Assert.True(match.Success, "no antiforgery field in the page");
        return (match.Groups[1].Value, WebUtility.HtmlDecode(match.Groups[2].Value));
    }

    static FormUrlEncodedContent Form(params (string Name, string Value)[] fields) =>
        new(fields.Select(f => KeyValuePair.Create(f.Name, f.Value)));

    public void Dispose() => _factory.Dispose();
}
