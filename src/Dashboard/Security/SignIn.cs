using System.Net;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Security;

/// <summary>
/// <c>/login</c>, <c>/logout</c> and the one-time <c>/setup</c> of the first admin, for a server with accounts: a person
/// signs in with a user name and password and gets the sign-in cookie (14 days, renewed while used). Forms carry an
/// antiforgery token; failed attempts count towards the per-address limit of <see cref="FailedSignIns"/> and towards the
/// account's lock-out.
/// </summary>
public static class SignIn
{
    public const string SetupPath = "/setup";

    public static void MapSignIn(this IEndpointRouteBuilder app)
    {
        app.MapGet(Access.LoginPath, (HttpContext context, IAntiforgery antiforgery, string? returnUrl) =>
            LoginPage(context, antiforgery, returnUrl, userName: null, error: null))
            .ExcludeFromDescription();

        app.MapPost(Access.LoginPath, async (HttpContext context, IAntiforgery antiforgery, AccessMode mode, AccountService accounts,
            AuditLog audit, FailedSignIns failures, [FromForm] string? userName, [FromForm] string? password, [FromForm] string? returnUrl) =>
        {
            if (!mode.Accounts) return Results.LocalRedirect(SafeReturn(returnUrl));
            if (failures.IsBlocked(context))
                return Results.Problem("Too many failed sign-ins from this address; wait a minute.",
                    statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests");
            var (result, user, lockedUntil) = await accounts.CheckPasswordAsync(userName ?? "", password ?? "", "sign-in page", context);
            if (result != PasswordCheck.Accepted)
            {
                failures.Record(context);
                var error = result == PasswordCheck.LockedOut
                    ? $"This account is locked after too many wrong passwords; try again after {lockedUntil:HH:mm} UTC."
                    : "Wrong user name or password.";
                return LoginPage(context, antiforgery, returnUrl, userName, error);
            }
            await context.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme, Access.SessionOf(user!),
                new AuthenticationProperties { IsPersistent = true });
            await audit.RecordAsync(user!.UserName ?? "", "sign-in", $"user {user.UserName}", "sign-in page", context);
            return Results.LocalRedirect(SafeReturn(returnUrl));
        }).RequireRateLimiting(Access.LoginRateLimit).ExcludeFromDescription();

        app.MapPost(Access.LogoutPath, async (HttpContext context, AuditLog audit) =>
        {
            if (CallerClaims.Of(context) is { Account: { } account }) await audit.RecordAsync(account, "sign-out", $"user {account}", null, context);
            await context.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
            return Results.LocalRedirect(Access.LoginPath);
        }).ExcludeFromDescription();

        app.MapGet(SetupPath, (HttpContext context, IAntiforgery antiforgery, AccessMode mode, string? token) =>
            SetupOpen(mode, token) ? SetupPage(context, antiforgery, token!, userName: null, errors: [])
                : Results.Problem("This link is not valid: an admin exists already, or the link is not the one in the server's log.",
                    statusCode: StatusCodes.Status404NotFound, title: "No setup here"))
            .ExcludeFromDescription();

        app.MapPost(SetupPath, async (HttpContext context, IAntiforgery antiforgery, AccessMode mode, AccountService accounts,
            AuditLog audit, FailedSignIns failures, [FromForm] string? token, [FromForm] string? userName, [FromForm] string? password,
            [FromForm] string? confirmPassword) =>
        {
            if (failures.IsBlocked(context))
                return Results.Problem("Too many failed attempts from this address; wait a minute.",
                    statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests");
            if (!SetupOpen(mode, token))
            {
                failures.Record(context);
                return Results.Problem("This link is not valid: an admin exists already, or the link is not the one in the server's log.",
                    statusCode: StatusCodes.Status404NotFound, title: "No setup here");
            }
            if (string.IsNullOrWhiteSpace(userName))
                return SetupPage(context, antiforgery, token!, userName, ["Choose a user name."]);
            if (password != confirmPassword)
                return SetupPage(context, antiforgery, token!, userName, ["The two passwords differ."]);
            var (user, errors) = await accounts.CreateAccountAsync(userName, password ?? "", isAdmin: true);
            if (user is null) return SetupPage(context, antiforgery, token!, userName, errors);
            mode.SetupToken = null; // once
            await audit.RecordAsync(user.UserName ?? "", "user.create", $"user {user.UserName}", "the first admin, from the setup link", context);
            await context.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme, Access.SessionOf(user),
                new AuthenticationProperties { IsPersistent = true });
            return Results.LocalRedirect("/");
        }).RequireRateLimiting(Access.LoginRateLimit).ExcludeFromDescription();
    }

    static bool SetupOpen(AccessMode mode, string? token) => mode.SetupToken is { } expected && token is not null && Access.MatchesToken(token, expected);

    /// <summary>Only a path on this server (not <c>//host</c> or <c>/\host</c>, which browsers treat as another site):
    /// the form must not become an open redirect.</summary>
    static string SafeReturn(string? returnUrl) =>
        returnUrl is { Length: > 0 } url && url[0] == '/' && (url.Length == 1 || url[1] is not ('/' or '\\')) && !url.Any(char.IsControl) ? url : "/";

    static IResult LoginPage(HttpContext context, IAntiforgery antiforgery, string? returnUrl, string? userName, string? error) =>
        Form(context, antiforgery, "Sign in", $$"""
            <form method="post" action="{{Access.LoginPath}}" class="card">
              <div class="field"><label for="userName">User name</label>
                <input id="userName" name="userName" autocomplete="username" value="{{WebUtility.HtmlEncode(userName ?? "")}}" autofocus></div>
              <div class="field{{(error is null ? "" : " invalid")}}"><label for="password">Password</label>
                <input id="password" name="password" type="password" autocomplete="current-password">
                {{(error is null ? "" : $"<div class=\"field-error\">{WebUtility.HtmlEncode(error)}</div>")}}</div>
              <input type="hidden" name="returnUrl" value="{{WebUtility.HtmlEncode(SafeReturn(returnUrl))}}">
              {{"{ANTIFORGERY}"}}
              <p><button type="submit" class="primary">Sign in</button></p>
            </form>
            """, error is null ? StatusCodes.Status200OK : StatusCodes.Status401Unauthorized);

    static IResult SetupPage(HttpContext context, IAntiforgery antiforgery, string token, string? userName, IReadOnlyList<string> errors) =>
        Form(context, antiforgery, "Create the admin", $$"""
            <form method="post" action="{{SetupPath}}" class="card">
              <p>This server has no admin yet. The account made here is its first admin (this link works once).</p>
              <div class="field"><label for="userName">User name</label>
                <input id="userName" name="userName" autocomplete="username" value="{{WebUtility.HtmlEncode(userName ?? "")}}" autofocus></div>
              <div class="field{{(errors.Count == 0 ? "" : " invalid")}}"><label for="password">Password (at least 10 characters)</label>
                <input id="password" name="password" type="password" autocomplete="new-password">
                <label for="confirmPassword">Password again</label>
                <input id="confirmPassword" name="confirmPassword" type="password" autocomplete="new-password">
                {{string.Concat(errors.Select(e => $"<div class=\"field-error\">{WebUtility.HtmlEncode(e)}</div>"))}}</div>
              <input type="hidden" name="token" value="{{WebUtility.HtmlEncode(token)}}">
              {{"{ANTIFORGERY}"}}
              <p><button type="submit" class="primary">Create the admin</button></p>
            </form>
            """, errors.Count == 0 ? StatusCodes.Status200OK : StatusCodes.Status400BadRequest);

    static IResult Form(HttpContext context, IAntiforgery antiforgery, string title, string form, int status)
    {
        var tokens = antiforgery.GetAndStoreTokens(context);
        var field = $"<input type=\"hidden\" name=\"{tokens.FormFieldName}\" value=\"{WebUtility.HtmlEncode(tokens.RequestToken)}\">";
        return Results.Content($$"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{{title}} · EMA Lab</title><link rel="stylesheet" href="/app.css"></head>
            <body><main style="max-width: 28rem">
            <h1>EMA Lab</h1>
            {{form.Replace("{ANTIFORGERY}", field)}}
            </main></body></html>
            """, "text/html; charset=utf-8", statusCode: status);
    }
}
