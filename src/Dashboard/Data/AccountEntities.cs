using Microsoft.AspNetCore.Identity;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Data;

/// <summary>A person's account (ASP.NET Core Identity's user, in the same database as the runs). MLflow's auth app has
/// the same two facts: a name and whether the user is an admin.</summary>
public sealed class EmaLabUser : IdentityUser
{
    /// <summary>Sees and manages everything, and manages users (MLflow's <c>is_admin</c>).</summary>
    public bool IsAdmin { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>
/// A personal access token: what a script sends as <c>MLFLOW_TRACKING_TOKEN</c> instead of a password. Only its SHA-256
/// is kept (the secret is shown once, at creation); <see cref="Prefix"/> lets its owner tell tokens apart.
/// </summary>
public sealed class PersonalToken
{
    public const int MaxNameLength = 100;

    public long Id { get; set; }
    public required string UserId { get; set; }
    public required string Name { get; set; }
    /// <summary>Lower-case hex SHA-256 of the secret.</summary>
    public required string Hash { get; set; }
    /// <summary>The secret's first characters (<c>emalab_pat_3fA9</c>…).</summary>
    public required string Prefix { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? ExpiresAt { get; set; }
    public DateTimeOffset? LastUsedAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }

    public bool IsUsable(DateTimeOffset now) => RevokedAt is null && (ExpiresAt is null || ExpiresAt > now);
}

/// <summary>A user's permission on one experiment (MLflow's <c>experiment_permissions</c> row).</summary>
public sealed class ExperimentPermission
{
    public long ExperimentId { get; set; }
    public required string UserId { get; set; }
    public ExperimentPermissionLevel Permission { get; set; }
}

/// <summary>
/// One line of the audit log: who did what to what, when and from where. Written for sign-ins (and failed ones and
/// lock-outs), the use of personal tokens, changes of accounts and permissions, and deletions; never changed after.
/// The actor is kept by name, so the line outlives the account.
/// </summary>
public sealed class AuditEntry
{
    public const int MaxTextLength = 400;

    public long Id { get; set; }
    public DateTimeOffset At { get; set; }
    /// <summary>The account's name, <c>service token</c>, <c>local</c> (a server without accounts) or the name tried at a failed sign-in.</summary>
    public required string Actor { get; set; }
    /// <summary>A dotted verb: <c>sign-in</c>, <c>sign-in.failed</c>, <c>token.use</c>, <c>permission.update</c>, <c>run.delete</c>…</summary>
    public required string Action { get; set; }
    /// <summary>What it was done to: <c>run 12</c>, <c>experiment 3</c>, <c>user bob</c>, <c>token ci (emalab_pat_3fA9)</c>…</summary>
    public required string Target { get; set; }
    public string? Detail { get; set; }
    /// <summary>The client's address, when the action came over the network.</summary>
    public string? Address { get; set; }
}
