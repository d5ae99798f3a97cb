using Microsoft.EntityFrameworkCore;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Security;

/// <summary>A page of the audit log, newest first; <see cref="Before"/> asks for the next (older) page.</summary>
public sealed record AuditPage(IReadOnlyList<AuditEntryDto> Items, long? Before);

public sealed record AuditEntryDto(long Id, DateTimeOffset At, string Actor, string Action, string Target, string? Detail, string? Address)
{
    public static AuditEntryDto From(AuditEntry e) => new(e.Id, e.At, e.Actor, e.Action, e.Target, e.Detail, e.Address);
}

/// <summary>
/// <b>Who did what.</b> Sign-ins (failed ones and lock-outs too), the use of personal tokens, changes of accounts and
/// permissions, and deletions each write one <see cref="AuditEntry"/>, from the API and the pages alike: the service method
/// that makes the change writes it (it takes its caller), or an endpoint declares it
/// (<see cref="AccessRuleConventions.Audited{TBuilder}"/>) where the change is the endpoint's own. Admins read it at <c>/admin/audit</c> and
/// <c>GET /api/audit</c>. A line that cannot be written is logged and the action stands: the log reports, it does not gate.
/// </summary>
public sealed class AuditLog(IDbContextFactory<EmaLabDbContext> dbFactory, TimeProvider clock, IHttpContextAccessor requests,
    ILogger<AuditLog> logger) : IAuditTrail
{
    public const int MaxPageSize = 500;

    /// <summary>How an actor is named in the log.</summary>
    public static string ActorOf(Caller caller) => caller.Kind switch
    {
        CallerKind.Service => "service token",
        CallerKind.Local => "local",
        _ => caller.Name,
    };

    public Task RecordAsync(Caller actor, string action, string target, string? detail = null, HttpContext? http = null) =>
        RecordAsync(ActorOf(actor), action, target, detail, http);

    public async Task RecordAsync(string actor, string action, string target, string? detail = null, HttpContext? http = null)
    {
        var entry = new AuditEntry
        {
            At = clock.GetUtcNow(),
            Actor = Clip(actor, 256)!,
            Action = action,
            Target = Clip(target, AuditEntry.MaxTextLength)!,
            Detail = Clip(detail, AuditEntry.MaxTextLength),
            // A service that records a change an API request asked for has no request at hand: the address is the request's.
            Address = (http ?? requests.HttpContext)?.Connection.RemoteIpAddress?.ToString(),
        };
        try
        {
            await using var db = await dbFactory.CreateDbContextAsync();
            db.AuditEntries.Add(entry);
            await db.SaveChangesAsync();
        }
        catch (Exception e) when (e is DbUpdateException or InvalidOperationException or System.Data.Common.DbException)
        {
            logger.LogError(e, "Audit: could not record {Actor} {Action} {Target}", entry.Actor, entry.Action, entry.Target);
        }
    }

    /// <summary>The log newest first, optionally of one actor and of actions starting with <paramref name="action"/>
    /// (<c>sign-in</c> finds failed sign-ins too).</summary>
    public async Task<AuditPage> ListAsync(string? actor, string? action, long? before, int pageSize, CancellationToken cancel = default)
    {
        pageSize = Math.Clamp(pageSize, 1, MaxPageSize);
        await using var db = await dbFactory.CreateDbContextAsync(cancel);
        var query = db.AuditEntries.AsNoTracking();
        if (!string.IsNullOrWhiteSpace(actor)) query = query.Where(e => e.Actor == actor.Trim());
        if (!string.IsNullOrWhiteSpace(action)) query = query.Where(e => e.Action.StartsWith(action.Trim()));
        if (before is { } id) query = query.Where(e => e.Id < id);
        var items = await query.OrderByDescending(e => e.Id).Take(pageSize + 1).ToListAsync(cancel);
        var more = items.Count > pageSize;
        if (more) items.RemoveAt(items.Count - 1);
        return new AuditPage(items.Select(AuditEntryDto.From).ToList(), more ? items[^1].Id : null);
    }

    static string? Clip(string? text, int length) => text is null || text.Length <= length ? text : text[..(length - 1)] + "…";
}
