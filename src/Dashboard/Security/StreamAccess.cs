using System.Security.Claims;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Security;

/// <summary>
/// Whether a long-lived answer (a run's event stream) may go on: the credentials it was opened with still work — a personal
/// token neither revoked nor expired, an account neither deleted, locked nor given a new password (its security stamp) — and
/// the caller may still read the experiment. What the check needs is taken from the request when the stream opens, so it
/// runs beside the stream without touching the request (which is not safe to share across threads).
/// </summary>
public sealed class StreamAccess
{
    readonly Caller _caller;
    readonly string? _token, _stamp;
    readonly long _experimentId;
    readonly AccountService _accounts;
    readonly Permissions _permissions;

    StreamAccess(Caller caller, string? token, string? stamp, long experimentId, AccountService accounts, Permissions permissions) =>
        (_caller, _token, _stamp, _experimentId, _accounts, _permissions) = (caller, token, stamp, experimentId, accounts, permissions);

    /// <summary>A token cancelled with the request or as soon as a check (every <c>EmaLab:Limits:EventStreamAccessCheckSeconds</c>)
    /// finds the caller may no longer read experiment <paramref name="experimentId"/>.</summary>
    public static async Task<CancellationToken> WhileAllowedAsync(HttpContext http, long experimentId)
    {
        var services = http.RequestServices;
        var caller = CallerClaims.Of(http);
        if (caller is null || caller.UserId is null) return http.RequestAborted; // the service token and a server without accounts
        var accounts = services.GetRequiredService<AccountService>();
        var header = http.Request.Headers.Authorization.ToString();
        var token = caller.Kind == CallerKind.PersonalToken && header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            ? header["Bearer ".Length..].Trim() : null;
        // A session carries the stamp it was issued with; HTTP Basic is checked against the account's stamp as it is now.
        var stamp = http.User.FindFirstValue(CallerClaims.Stamp) ?? (await accounts.FindAsync(caller.UserId))?.SecurityStamp;
        var access = new StreamAccess(caller, token, stamp, experimentId, accounts, services.GetRequiredService<Permissions>());
        var every = TimeSpan.FromSeconds(services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EmaLabOptions>>().Value.Limits
            .EventStreamAccessCheckSeconds);
        var ended = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        http.Response.RegisterForDispose(ended);
        _ = access.WatchAsync(ended, every);
        return ended.Token;
    }

    async Task WatchAsync(CancellationTokenSource ended, TimeSpan every)
    {
        try
        {
            using var timer = new PeriodicTimer(every);
            while (await timer.WaitForNextTickAsync(ended.Token))
                if (!await StillAllowedAsync(ended.Token))
                {
                    await ended.CancelAsync();
                    return;
                }
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { } // the stream ended first
    }

    async Task<bool> StillAllowedAsync(CancellationToken cancel)
    {
        var user = _token is not null ? await _accounts.UserOfTokenAsync(_token) : await _accounts.StillValidAsync(_caller.UserId!, _stamp);
        if (user is null || user.Id != _caller.UserId || user.LockoutEnd > DateTimeOffset.UtcNow) return false;
        var now = _caller with { IsAdmin = user.IsAdmin };
        return (await _permissions.OnExperimentAsync(now, _experimentId, cancel)).CanRead();
    }
}
