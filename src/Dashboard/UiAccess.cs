using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace EmaLab.Dashboard;

/// <summary>
/// When <see cref="EmaLabOptions.ApiToken"/> is set, the pages (and their circuits) need it too: a person
/// signs in once at <c>/login</c> with the token and gets an HttpOnly cookie holding its hash. Without a
/// token (the loopback-only default) nothing changes. The REST API keeps its own bearer check.
/// </summary>
public static class UiAccess
{
    const string Cookie = "emalab_access";
    const string LoginPath = "/login";

    static string Digest(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("emalab-ui:" + token)));

    static bool Open(PathString path) =>
        path.StartsWithSegments("/api") || path.StartsWithSegments("/health") || path.StartsWithSegments("/openapi") ||
        path.StartsWithSegments(LoginPath) || path.StartsWithSegments("/_framework") || path.StartsWithSegments("/_content") ||
        Path.HasExtension(path.Value) && !path.StartsWithSegments("/_blazor");

    public static void UseUiAccess(this WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            var token = context.RequestServices.GetRequiredService<IOptions<EmaLabOptions>>().Value.ApiToken;
            if (string.IsNullOrEmpty(token) || Open(context.Request.Path) ||
                context.Request.Cookies.TryGetValue(Cookie, out var cookie) && Matches(cookie, Digest(token)))
            {
                await next(context);
                return;
            }
            if (context.Request.Path.StartsWithSegments("/_blazor"))
            {
                // A body keeps the status-code pages from turning this into a redirect to a page.
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                await context.Response.WriteAsync("Sign in at /login first.");
                return;
            }
            context.Response.Redirect($"{LoginPath}?returnUrl={Uri.EscapeDataString(context.Request.Path + context.Request.QueryString)}");
        });

        app.MapGet(LoginPath, (string? returnUrl) => Page(returnUrl, failed: false)).ExcludeFromDescription();
        app.MapPost(LoginPath, async (HttpContext context, IOptions<EmaLabOptions> options) =>
        {
            var form = await context.Request.ReadFormAsync();
            var returnUrl = form["returnUrl"].ToString();
            var token = options.Value.ApiToken;
            if (string.IsNullOrEmpty(token) || !Matches(Digest(form["token"].ToString()), Digest(token)))
                return Page(returnUrl, failed: true);
            context.Response.Cookies.Append(Cookie, Digest(token), new CookieOptions
            {
                HttpOnly = true, SameSite = SameSiteMode.Strict, Secure = context.Request.IsHttps, MaxAge = TimeSpan.FromDays(30),
            });
            // Only local addresses: the form must not become an open redirect.
            return Results.LocalRedirect(returnUrl.StartsWith('/') && !returnUrl.StartsWith("//") ? returnUrl : "/");
        }).DisableAntiforgery().ExcludeFromDescription();
    }

    static bool Matches(string a, string b) => CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));

    static IResult Page(string? returnUrl, bool failed) => Results.Content($$"""
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Sign in · EMA Lab</title><link rel="stylesheet" href="/app.css"></head>
        <body><main style="max-width: 28rem">
        <h1>EMA Lab</h1>
        <form method="post" action="/login" class="card">
          <p>This server accepts other machines, so it asks for its API token (<code>EmaLab:ApiToken</code>).</p>
          <div class="field{{(failed ? " invalid" : "")}}"><label for="token">API token</label><input id="token" name="token" type="password" autofocus>
          {{(failed ? "<div class=\"field-error\">That is not the token.</div>" : "")}}</div>
          <input type="hidden" name="returnUrl" value="{{WebUtility.HtmlEncode(returnUrl ?? "/")}}">
          <p><button type="submit" class="primary">Sign in</button></p>
        </form></main></body></html>
        """, "text/html; charset=utf-8", statusCode: failed ? StatusCodes.Status401Unauthorized : StatusCodes.Status200OK);
}
