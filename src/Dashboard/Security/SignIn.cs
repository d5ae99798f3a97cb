using System.Net;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Security;

/// <summary>
/// <c>/login</c> and <c>/logout</c> for the pages when a token is set: a person types the API token once and
/// gets the sign-in cookie (14 days, renewed while used). Both forms carry an antiforgery token; failed
/// attempts count towards the per-address limit of <see cref="FailedSignIns"/>.
/// </summary>
public static class SignIn
{
    public static void MapSignIn(this IEndpointRouteBuilder app)
    {
        app.MapGet(Access.LoginPath, (HttpContext context, IAntiforgery antiforgery, string? returnUrl) =>
            Page(context, antiforgery, returnUrl, failed: false))
            .ExcludeFromDescription();

        app.MapPost(Access.LoginPath, async (HttpContext context, IAntiforgery antiforgery, IOptions<EmaLabOptions> options, FailedSignIns failures,
            [FromForm] string? token, [FromForm] string? returnUrl) =>
        {
            if (failures.IsBlocked(context))
                return Results.Problem("Too many failed sign-ins from this address; wait a minute.",
                    statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests");
            var expected = options.Value.ApiToken;
            if (string.IsNullOrEmpty(expected)) return Results.LocalRedirect(SafeReturn(returnUrl));
            if (!Access.MatchesToken(token ?? "", expected))
            {
                failures.Record(context);
                return Page(context, antiforgery, returnUrl, failed: true);
            }
            await context.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme,
                Access.TokenHolder(CookieAuthenticationDefaults.AuthenticationScheme),
                new AuthenticationProperties { IsPersistent = true });
            return Results.LocalRedirect(SafeReturn(returnUrl));
        }).RequireRateLimiting(Access.LoginRateLimit).ExcludeFromDescription();

        app.MapPost(Access.LogoutPath, async (HttpContext context) =>
        {
            await context.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
            return Results.LocalRedirect(Access.LoginPath);
        }).ExcludeFromDescription();
    }

    /// <summary>Only a path on this server (not <c>//host</c> or <c>/\host</c>, which browsers treat as another site):
    /// the form must not become an open redirect.</summary>
    static string SafeReturn(string? returnUrl) =>
        returnUrl is { Length: > 0 } url && url[0] == '/' && (url.Length == 1 || url[1] is not ('/' or '\\')) && !url.Any(char.IsControl) ? url : "/";

    static IResult Page(HttpContext context, IAntiforgery antiforgery, string? returnUrl, bool failed)
    {
        var tokens = antiforgery.GetAndStoreTokens(context);
        return Results.Content($$"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Sign in · EMA Lab</title><link rel="stylesheet" href="/app.css"></head>
            <body><main style="max-width: 28rem">
            <h1>EMA Lab</h1>
            <form method="post" action="{{Access.LoginPath}}" class="card">
              <p>This server asks for its API token (<code>EmaLab:ApiToken</code>).</p>
              <div class="field{{(failed ? " invalid" : "")}}"><label for="token">API token</label><input id="token" name="token" type="password" autofocus>
              {{(failed ? "<div class=\"field-error\">That is not the token.</div>" : "")}}</div>
              <input type="hidden" name="returnUrl" value="{{WebUtility.HtmlEncode(SafeReturn(returnUrl))}}">
              <input type="hidden" name="{{tokens.FormFieldName}}" value="{{WebUtility.HtmlEncode(tokens.RequestToken)}}">
              <p><button type="submit" class="primary">Sign in</button></p>
            </form></main></body></html>
            """, "text/html; charset=utf-8", statusCode: failed ? StatusCodes.Status401Unauthorized : StatusCodes.Status200OK);
    }
}
