using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Security;

/// <summary>
/// Who may use the server, decided once at the edge with the framework's authentication and authorization.
/// Without accounts (<see cref="AccessMode"/>: the loopback default) everyone on this machine is its admin; with them,
/// every <c>/api</c> call needs credentials — <c>Authorization: Bearer</c> with a personal access token or the service
/// token (<see cref="EmaLabOptions.ApiToken"/>), <c>Basic</c> with a user name and password (what MLflow's clients send
/// for <c>MLFLOW_TRACKING_USERNAME</c>/<c>PASSWORD</c>), or the pages' sign-in cookie — and the pages need the cookie.
/// <c>/health</c> and static files stay open. Failed attempts are rate-limited per client address, and an account is
/// locked out after repeated wrong passwords.
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

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<AccessMode>();
        services.AddSingleton<AccountService>();
        services.AddHttpContextAccessor();
        services.AddSingleton<Permissions>();
        services.AddSingleton<IExperimentPermissions>(provider => provider.GetRequiredService<Permissions>());
        services.AddSingleton<IRegisteredModelPermissions>(provider => provider.GetRequiredService<Permissions>());
        services.AddSingleton<AuditLog>();
        services.AddSingleton<IAuditTrail>(provider => provider.GetRequiredService<AuditLog>());
        services.AddSingleton<IStreamAccess, StreamAccess>();
        services.AddScoped<PageAccess>();
        services.AddSingleton<Tracking.IExperimentCreators, CreatorManages>();
        services.AddIdentityCore<EmaLabUser>(identity =>
            {
                // Length over composition (NIST SP 800-63B): at least 10 characters, no forced symbol mix.
                identity.Password.RequiredLength = 10;
                identity.Password.RequiredUniqueChars = 4;
                identity.Password.RequireDigit = false;
                identity.Password.RequireLowercase = false;
                identity.Password.RequireUppercase = false;
                identity.Password.RequireNonAlphanumeric = false;
                identity.Lockout.MaxFailedAccessAttempts = 5;
                identity.Lockout.DefaultLockoutTimeSpan = TimeSpan.FromMinutes(15);
                identity.Lockout.AllowedForNewUsers = true;
                identity.User.AllowedUserNameCharacters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._@+";
            })
            .AddEntityFrameworkStores<EmaLabDbContext>();

        services.AddSingleton<FailedSignIns>();
        services.AddAuthentication(SelectScheme)
            .AddPolicyScheme(SelectScheme, "Credentials or sign-in cookie", scheme =>
                scheme.ForwardDefaultSelector = context =>
                    context.Request.Headers.Authorization.Count > 0 ? CredentialsHandler.SchemeName : CookieAuthenticationDefaults.AuthenticationScheme)
            .AddScheme<AuthenticationSchemeOptions, CredentialsHandler>(CredentialsHandler.SchemeName, null)
            .AddCookie(cookie =>
            {
                cookie.Cookie.Name = "emalab_session";
                cookie.Cookie.HttpOnly = true;
                cookie.Cookie.SameSite = SameSiteMode.Strict;
                // Secure whenever the request is https, including behind a TLS proxy with forwarded headers on (docs/security.md).
                cookie.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                cookie.ExpireTimeSpan = TimeSpan.FromDays(14);
                cookie.SlidingExpiration = true;
                cookie.LoginPath = LoginPath;
                cookie.LogoutPath = LogoutPath;
                cookie.ReturnUrlParameter = "returnUrl";
                cookie.Events.OnValidatePrincipal = ValidateSessionAsync;
                cookie.Events.OnRedirectToLogin = context =>
                {
                    // Pages are sent to sign in; API and circuit calls get a 401 that names the schemes.
                    if (!context.Request.Path.StartsWithSegments("/api") && !context.Request.Path.StartsWithSegments("/_blazor"))
                    {
                        context.Response.Redirect(context.RedirectUri);
                        return Task.CompletedTask;
                    }
                    return CredentialsHandler.WriteChallengeAsync(context.HttpContext, error: null);
                };
            });

        services.AddSingleton<IAuthorizationHandler, SignedInWhenAccountsHandler>();
        services.AddAuthorizationBuilder().AddPolicy(Policy, policy => policy.AddRequirements(new SignedInWhenAccounts()));

        services.AddRateLimiter(limiter =>
        {
            limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            limiter.AddPolicy(LoginRateLimit, context => RateLimitPartition.GetFixedWindowLimiter(
                context.Connection.RemoteIpAddress?.ToString() ?? "unknown",
                _ => new FixedWindowRateLimiterOptions { PermitLimit = 20, Window = TimeSpan.FromMinutes(1) }));
        });
    }

    /// <summary>A session ends when its account is deleted or its password changed (the security stamp moves); it follows
    /// the account's admin flag from the next request on (an admin made a user again is one at once).</summary>
    static async Task ValidateSessionAsync(CookieValidatePrincipalContext context)
    {
        if (context.Principal?.FindFirstValue(ClaimTypes.NameIdentifier) is not { } userId) return;
        var accounts = context.HttpContext.RequestServices.GetRequiredService<AccountService>();
        var user = await accounts.StillValidAsync(userId, context.Principal.FindFirstValue(CallerClaims.Stamp));
        if (user is null)
        {
            context.RejectPrincipal();
            await context.HttpContext.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
            return;
        }
        if (user.IsAdmin == context.Principal.HasClaim(CallerClaims.Admin, "true")) return;
        context.ReplacePrincipal(SessionOf(user));
        context.ShouldRenew = true;
    }

    /// <summary>The sign-in cookie's principal for a user who gave the right password.</summary>
    public static ClaimsPrincipal SessionOf(EmaLabUser user) =>
        CallerClaims.Principal(AccountService.CallerOf(user, CallerKind.Password), CookieAuthenticationDefaults.AuthenticationScheme, user.SecurityStamp);

    internal static bool MatchesToken(string candidate, string token) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(candidate)), SHA256.HashData(Encoding.UTF8.GetBytes(token)));
}

/// <summary>Signed in (credentials or cookie) whenever the server has accounts; anyone otherwise.</summary>
sealed class SignedInWhenAccounts : IAuthorizationRequirement;

sealed class SignedInWhenAccountsHandler(AccessMode mode) : AuthorizationHandler<SignedInWhenAccounts>
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, SignedInWhenAccounts requirement)
    {
        if (!mode.Accounts || context.User.Identity?.IsAuthenticated == true) context.Succeed(requirement);
        return Task.CompletedTask;
    }
}

/// <summary>
/// Counts failed attempts (token, password, sign-in form) per client address with the built-in rate limiter:
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

/// <summary>
/// <c>Authorization: Bearer &lt;token&gt;</c> (a personal access token, or the service token <c>EmaLab:ApiToken</c>: what
/// <c>MLFLOW_TRACKING_TOKEN</c> and curl send) and <c>Basic</c> (user name and password: <c>MLFLOW_TRACKING_USERNAME</c>
/// and <c>MLFLOW_TRACKING_PASSWORD</c>). Each request is checked against the database, so a revoked token or a locked
/// account is refused on its next request.
/// </summary>
sealed class CredentialsHandler(IOptionsMonitor<AuthenticationSchemeOptions> schemeOptions, ILoggerFactory logger, UrlEncoder encoder,
    IOptions<EmaLabOptions> options, AccessMode mode, AccountService accounts, FailedSignIns failures)
    : AuthenticationHandler<AuthenticationSchemeOptions>(schemeOptions, logger, encoder)
{
    public const string SchemeName = "Credentials";
    bool _blocked;

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        var bearer = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase);
        var basic = header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase);
        if (!mode.Accounts || !(bearer || basic)) return AuthenticateResult.NoResult();
        if (failures.IsBlocked(Context))
        {
            _blocked = true;
            return AuthenticateResult.Fail("Too many failed attempts from this address.");
        }
        var secret = header[(bearer ? "Bearer ".Length : "Basic ".Length)..].Trim();
        var caller = bearer ? await BearerAsync(secret) : await BasicAsync(secret);
        if (caller is not null) return AuthenticateResult.Success(new AuthenticationTicket(CallerClaims.Principal(caller, SchemeName), SchemeName));
        failures.Record(Context);
        return AuthenticateResult.Fail(bearer ? "The bearer token is not a valid token." : "Wrong user name or password.");
    }

    async Task<Caller?> BearerAsync(string secret)
    {
        if (options.Value.ApiToken is { Length: > 0 } service && Access.MatchesToken(secret, service))
            return new Caller(null, "service", IsAdmin: true, CallerKind.Service);
        return await accounts.UserOfTokenAsync(secret, Context) is { } user ? AccountService.CallerOf(user, CallerKind.PersonalToken) : null;
    }

    async Task<Caller?> BasicAsync(string encoded)
    {
        string decoded;
        try { decoded = Encoding.UTF8.GetString(Convert.FromBase64String(encoded)); }
        catch (FormatException) { return null; }
        var colon = decoded.IndexOf(':');
        if (colon <= 0) return null;
        return await accounts.CheckBasicAsync(decoded[..colon], decoded[(colon + 1)..], Context) is { } user
            ? AccountService.CallerOf(user, CallerKind.Password) : null;
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        if (_blocked)
        {
            Response.StatusCode = StatusCodes.Status429TooManyRequests;
            Response.Headers.RetryAfter = "60";
            return Response.WriteAsJsonAsync(new { title = "Too many requests", status = 429,
                detail = "Too many failed sign-in attempts from this address; wait a minute." },
                options: null, contentType: "application/problem+json");
        }
        var header = Request.Headers.Authorization.ToString();
        return WriteChallengeAsync(Context, header.Length > 0 ? "invalid_token" : null);
    }

    /// <summary>401 with <c>WWW-Authenticate</c> for both schemes and a body saying what to send.</summary>
    internal static Task WriteChallengeAsync(HttpContext context, string? error)
    {
        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        context.Response.Headers.WWWAuthenticate = new Microsoft.Extensions.Primitives.StringValues(
            [error is null ? "Bearer realm=\"EmaLab\"" : $"Bearer realm=\"EmaLab\", error=\"{error}\"", "Basic realm=\"EmaLab\""]);
        const string detail = "This server needs credentials: 'Authorization: Bearer <token>' (a personal access token, or the service token " +
            "EmaLab:ApiToken) or 'Basic' with a user name and password (MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD); " +
            "in a browser, sign in at /login.";
        // MLflow's clients read the error code from the body: without one they report INTERNAL_ERROR.
        if (Tracking.MlflowEndpoints.IsMlflowPath(context.Request.Path))
            return context.Response.WriteAsJsonAsync(new { error_code = Tracking.MlflowException.Unauthenticated, message = detail });
        return context.Response.WriteAsJsonAsync(new { title = "Unauthorized", status = 401, detail }, options: null,
            contentType: "application/problem+json");
    }
}
