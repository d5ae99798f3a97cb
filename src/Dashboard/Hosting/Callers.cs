using System.Security.Claims;

namespace EmaLab.Dashboard.Hosting;

/// <summary>
/// Whether this server has accounts, decided once at start-up: when the settings ask for them
/// (<see cref="EmaLabOptions.AccountsAsked"/>) or the database already has users. Without accounts the one person on
/// this machine is the admin and nothing asks for a password (the loopback default).
/// </summary>
public sealed class AccessMode
{
    public bool Accounts { get; internal set; }

    /// <summary>While no admin exists: the secret of the one-time setup link printed in the log.</summary>
    public string? SetupToken { get; internal set; }
}

/// <summary>Who is calling, as every check sees it.</summary>
public sealed record Caller(string? UserId, string Name, bool IsAdmin, CallerKind Kind)
{
    /// <summary>The one local user of a server without accounts.</summary>
    public static readonly Caller Local = new(null, "local", IsAdmin: true, CallerKind.Local);

    /// <summary>The account what this caller creates is attributed to (a run's <c>mlflow.user</c>): a signed-in user's name;
    /// none for the service token or the one user of a server without accounts.</summary>
    public string? Account => UserId is null ? null : Name;
}

public enum CallerKind
{
    /// <summary>A server without accounts: the person on this machine.</summary>
    Local,
    /// <summary>Signed in with a password (sign-in cookie or HTTP Basic).</summary>
    Password,
    /// <summary>A personal access token.</summary>
    PersonalToken,
    /// <summary>The service token (<c>EmaLab:ApiToken</c>).</summary>
    Service,
}

/// <summary>The claims a caller carries (cookie, Basic, tokens), and back.</summary>
public static class CallerClaims
{
    public const string Admin = "emalab:admin";
    public const string Kind = "emalab:kind";
    public const string Stamp = "emalab:stamp";

    public static ClaimsPrincipal Principal(Caller caller, string scheme, string? securityStamp = null)
    {
        var claims = new List<Claim>
        {
            new(ClaimTypes.Name, caller.Name),
            new(Kind, WireNames.Of(caller.Kind)),
        };
        if (caller.UserId is { } id) claims.Add(new Claim(ClaimTypes.NameIdentifier, id));
        if (caller.IsAdmin) claims.Add(new Claim(Admin, "true"));
        if (securityStamp is not null) claims.Add(new Claim(Stamp, securityStamp));
        return new ClaimsPrincipal(new ClaimsIdentity(claims, scheme));
    }

    /// <summary>The caller behind a request: see <see cref="Of(ClaimsPrincipal, AccessMode)"/>.</summary>
    public static Caller? Of(HttpContext http) => Of(http.User, http.RequestServices.GetRequiredService<AccessMode>());

    /// <summary>The caller behind a request's user: the local admin on a server without accounts, null when not signed in.</summary>
    public static Caller? Of(ClaimsPrincipal user, AccessMode mode)
    {
        if (!mode.Accounts) return Caller.Local;
        if (user.Identity?.IsAuthenticated != true) return null;
        var kind = WireNames.TryParse<CallerKind>(user.FindFirstValue(Kind) ?? "", out var k) ? k : CallerKind.Password;
        return new Caller(user.FindFirstValue(ClaimTypes.NameIdentifier), user.Identity.Name ?? "", user.HasClaim(Admin, "true"), kind);
    }
}

/// <summary>The audit log as the features below it write to it (implemented by <c>Security.AuditLog</c>).</summary>
public interface IAuditTrail
{
    Task RecordAsync(Caller actor, string action, string target, string? detail = null, HttpContext? http = null);
}

/// <summary>How a long-lived answer learns that its caller lost access (implemented by <c>Security.StreamAccess</c>).</summary>
public interface IStreamAccess
{
    /// <summary>A token cancelled with the request, or as soon as the caller may no longer read the experiment.</summary>
    Task<CancellationToken> WhileAllowedAsync(HttpContext http, long experimentId);
}
