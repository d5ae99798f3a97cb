using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Security;

/// <summary>
/// Who may use the server, decided once at the edge with the framework's authentication and authorization.
/// Without <see cref="EmaLabOptions.ApiToken"/> (the loopback-only default) everyone on this machine may;
/// with it, every <c>/api</c> call needs <c>Authorization: Bearer &lt;token&gt;</c> or the pages' sign-in
/// cookie (a Data-Protection-protected ticket from <c>/login</c>), and the pages need the cookie. <c>/health</c>
/// and static files stay open. Failed token attempts are rate-limited per client address.
/// </summary>
public static class Access
{
    public const string Policy = "EmaLab";
    public const string LoginPath = "/login";
    public const string LogoutPath = "/logout";
    public const string LoginRateLimit = "login";
    const string SelectScheme = "EmaLab";

    public static void AddEmaLabAccess(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        // Keys next to the data, so sign-ins survive restarts (the default key folder may not be writable in a container).
        var dataDirectory = (builder.Configuration.GetSection(EmaLabOptions.Section).Get<EmaLabOptions>() ?? new EmaLabOptions())
            .ResolveDataDirectory(builder.Environment.ContentRootPath);
        services.AddDataProtection().SetApplicationName("EmaLab").PersistKeysToFileSystem(new DirectoryInfo(Path.Combine(dataDirectory, "keys")));

        services.AddSingleton<FailedSignIns>();
        services.AddAuthentication(SelectScheme)
            .AddPolicyScheme(SelectScheme, "Bearer token or sign-in cookie", scheme =>
                scheme.ForwardDefaultSelector = context =>
                    context.Request.Headers.Authorization.Count > 0 ? ApiTokenHandler.SchemeName : CookieAuthenticationDefaults.AuthenticationScheme)
            .AddScheme<AuthenticationSchemeOptions, ApiTokenHandler>(ApiTokenHandler.SchemeName, null)
            .AddCookie(cookie =>
            {
                cookie.Cookie.Name = "emalab_session";
                cookie.Cookie.HttpOnly = true;
                cookie.Cookie.SameSite = SameSiteMode.Strict;
                // Secure whenever the request is https, including behind a TLS proxy with forwarded headers on (README).
                cookie.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                cookie.ExpireTimeSpan = TimeSpan.FromDays(14);
                cookie.SlidingExpiration = true;
                cookie.LoginPath = LoginPath;
                cookie.LogoutPath = LogoutPath;
                cookie.ReturnUrlParameter = "returnUrl";
                cookie.Events.OnRedirectToLogin = context =>
                {
                    // Pages are sent to sign in; API and circuit calls get a 401 that names the scheme.
                    if (!context.Request.Path.StartsWithSegments("/api") && !context.Request.Path.StartsWithSegments("/_blazor"))
                    {
                        context.Response.Redirect(context.RedirectUri);
                        return Task.CompletedTask;
                    }
                    return ApiTokenHandler.WriteChallengeAsync(context.HttpContext, error: null);
                };
            });

        services.AddSingleton<IAuthorizationHandler, SignedInWhenTokenSetHandler>();
        services.AddAuthorizationBuilder().AddPolicy(Policy, policy => policy.AddRequirements(new SignedInWhenTokenSet()));

        services.AddRateLimiter(limiter =>
        {
            limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            limiter.AddPolicy(LoginRateLimit, context => RateLimitPartition.GetFixedWindowLimiter(
                context.Connection.RemoteIpAddress?.ToString() ?? "unknown",
                _ => new FixedWindowRateLimiterOptions { PermitLimit = 20, Window = TimeSpan.FromMinutes(1) }));
        });
    }

    /// <summary>Whether the server asks for the token at all (pages show a sign-out button then).</summary>
    public static bool TokenRequired(this IOptions<EmaLabOptions> options) => !string.IsNullOrEmpty(options.Value.ApiToken);

    internal static bool MatchesToken(string candidate, string token) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(candidate)), SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    /// <summary>The identity of a caller that proved it holds the token.</summary>
    internal static ClaimsPrincipal TokenHolder(string scheme) =>
        new(new ClaimsIdentity([new Claim(ClaimTypes.Name, "api-token")], scheme));
}

/// <summary>Signed in (bearer or cookie) whenever a token is configured; anyone otherwise.</summary>
sealed class SignedInWhenTokenSet : IAuthorizationRequirement;

sealed class SignedInWhenTokenSetHandler(IOptions<EmaLabOptions> options) : AuthorizationHandler<SignedInWhenTokenSet>
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, SignedInWhenTokenSet requirement)
    {
        if (!options.TokenRequired() || context.User.Identity?.IsAuthenticated == true) context.Succeed(requirement);
        return Task.CompletedTask;
    }
}

/// <summary>
/// Counts failed token attempts (bearer or sign-in form) per client address with the built-in rate limiter:
/// after 10 in a minute the address is refused with 429 until the window ends.
/// </summary>
public sealed class FailedSignIns : IDisposable
{
    readonly PartitionedRateLimiter<string> _failures = PartitionedRateLimiter.Create<string, string>(address =>
        RateLimitPartition.GetFixedWindowLimiter(address, _ =>
            new FixedWindowRateLimiterOptions { PermitLimit = 10, Window = TimeSpan.FromMinutes(1) }));

    static string AddressOf(HttpContext context) => context.Connection.RemoteIpAddress?.ToString() ?? "unknown";

    public bool IsBlocked(HttpContext context) => _failures.GetStatistics(AddressOf(context))?.CurrentAvailablePermits == 0;

    public void Record(HttpContext context) => _failures.AttemptAcquire(AddressOf(context)).Dispose();

    public void Dispose() => _failures.Dispose();
}

/// <summary><c>Authorization: Bearer &lt;EmaLab:ApiToken&gt;</c> (what <c>MLFLOW_TRACKING_TOKEN</c> and curl send).</summary>
sealed class ApiTokenHandler(IOptionsMonitor<AuthenticationSchemeOptions> schemeOptions, ILoggerFactory logger, UrlEncoder encoder,
    IOptions<EmaLabOptions> options, FailedSignIns failures) : AuthenticationHandler<AuthenticationSchemeOptions>(schemeOptions, logger, encoder)
{
    public const string SchemeName = "Bearer";
    bool _blocked;

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var token = options.Value.ApiToken;
        var header = Request.Headers.Authorization.ToString();
        if (string.IsNullOrEmpty(token) || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return Task.FromResult(AuthenticateResult.NoResult());
        if (failures.IsBlocked(Context))
        {
            _blocked = true;
            return Task.FromResult(AuthenticateResult.Fail("Too many failed attempts from this address."));
        }
        if (Access.MatchesToken(header["Bearer ".Length..].Trim(), token))
            return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(Access.TokenHolder(SchemeName), SchemeName)));
        failures.Record(Context);
        return Task.FromResult(AuthenticateResult.Fail("The bearer token is not the API token."));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        if (_blocked)
        {
            Response.StatusCode = StatusCodes.Status429TooManyRequests;
            Response.Headers.RetryAfter = "60";
            return Response.WriteAsJsonAsync(new { title = "Too many requests", status = 429,
                detail = "Too many failed token attempts from this address; wait a minute." },
                options: null, contentType: "application/problem+json");
        }
        var header = Request.Headers.Authorization.ToString();
        return WriteChallengeAsync(Context, header.Length > 0 ? "invalid_token" : null);
    }

    /// <summary>401 with <c>WWW-Authenticate: Bearer</c> and a problem-details body saying what to send.</summary>
    internal static Task WriteChallengeAsync(HttpContext context, string? error)
    {
        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        context.Response.Headers.WWWAuthenticate = error is null ? "Bearer realm=\"EmaLab\"" : $"Bearer realm=\"EmaLab\", error=\"{error}\"";
        const string detail = "This server needs 'Authorization: Bearer <EmaLab:ApiToken>' (or, in a browser, signing in at /login).";
        // MLflow's clients read the error code from the body: without one they report INTERNAL_ERROR.
        if (Tracking.MlflowEndpoints.IsMlflowPath(context.Request.Path))
            return context.Response.WriteAsJsonAsync(new { error_code = Tracking.MlflowException.Unauthenticated, message = detail });
        return context.Response.WriteAsJsonAsync(new { title = "Unauthorized", status = 401, detail }, options: null,
            contentType: "application/problem+json");
    }
}
