using System.Security.Claims;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Security;

/// <summary>
/// Whether a long-lived answer (a run's event stream) may go on: the credentials it was opened with still work — a personal
/// token neither revoked nor expired, an account neither deleted, locked nor given a new password (its security stamp) — and
/// the caller may still read the experiment. What the check needs is taken from the request when the stream opens, so it
/// runs beside the stream without touching the request (which is not safe to share across threads).
/// </summary>
public sealed class StreamAccess(AccountService accounts, Permissions permissions, Microsoft.Extensions.Options.IOptions<EmaLabOptions> options)
    : IStreamAccess
{
    /// <summary>A token cancelled with the request or as soon as a check (every <c>EmaLab:Limits:EventStreamAccessCheckSeconds</c>)
    /// finds the caller may no longer read experiment <paramref name="experimentId"/>.</summary>
    public async Task<CancellationToken> WhileAllowedAsync(HttpContext http, long experimentId)
    {
        var caller = CallerClaims.Of(http);
        if (caller is null || caller.UserId is null) return http.RequestAborted; // the service token and a server without accounts
        var header = http.Request.Headers.Authorization.ToString();
        var token = caller.Kind == CallerKind.PersonalToken && header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            ? header["Bearer ".Length..].Trim() : null;
        // A session carries the stamp it was issued with; HTTP Basic is checked against the account's stamp as it is now.
        var stamp = http.User.FindFirstValue(CallerClaims.Stamp) ?? (await accounts.FindAsync(caller.UserId))?.SecurityStamp;
        var grant = new Grant(caller, token, stamp, experimentId);
        var ended = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        http.Response.RegisterForDispose(ended);
        _ = WatchAsync(grant, ended, TimeSpan.FromSeconds(options.Value.Limits.EventStreamAccessCheckSeconds));
        return ended.Token;
    }

    /// <summary>What a stream was opened with: the caller, its token or session stamp, the experiment.</summary>
    sealed record Grant(Caller Caller, string? Token, string? Stamp, long ExperimentId);

    async Task WatchAsync(Grant grant, CancellationTokenSource ended, TimeSpan every)
    {
        try
        {
            using var timer = new PeriodicTimer(every);
            while (await timer.WaitForNextTickAsync(ended.Token))
                if (!await StillAllowedAsync(grant, ended.Token))
                {
                    await ended.CancelAsync();
                    return;
                }
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { } // the stream ended first
    }

    async Task<bool> StillAllowedAsync(Grant grant, CancellationToken cancel)
    {
        var user = grant.Token is not null ? await accounts.UserOfTokenAsync(grant.Token)
            : await accounts.StillValidAsync(grant.Caller.UserId!, grant.Stamp);
        if (user is null || user.Id != grant.Caller.UserId || user.LockoutEnd > DateTimeOffset.UtcNow) return false;
        var now = grant.Caller with { IsAdmin = user.IsAdmin };
        return (await permissions.OnExperimentAsync(now, grant.ExperimentId, cancel)).CanRead();
    }
}
