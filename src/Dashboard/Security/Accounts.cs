using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Security;

/// <summary>Why a password did not sign a person in.</summary>
public enum PasswordCheck { Accepted, Wrong, LockedOut }

/// <summary>
/// Accounts and personal tokens, each operation in a scope of its own (Identity's stores hold a database context: a page's
/// circuit must not keep one for its lifetime).
/// </summary>
public sealed class AccountService(IServiceScopeFactory scopes, TimeProvider clock, AuditLog audit)
{
    public const string TokenPrefix = "emalab_pat_";
    /// <summary>How often a token's last-used time is written (every request would write the database per call).</summary>
    static readonly TimeSpan LastUsedResolution = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Checks a user name and password with Identity's lock-out: after <see cref="Lockout.MaxFailedAccessAttempts"/>
    /// failures the account refuses every password, the right one too, until the lock-out ends. Failures and lock-outs go
    /// into the audit log (<paramref name="via"/>: the sign-in page or HTTP Basic); a success is the caller's to record.
    /// </summary>
    public async Task<(PasswordCheck Result, EmaLabUser? User, DateTimeOffset? LockedUntil)> CheckPasswordAsync(string userName, string password,
        string via, HttpContext? http = null)
    {
        var (result, user, lockedUntil, lockedNow) = await CheckAsync(userName, password);
        // One line when an account locks; the attempts refused while it is locked are failures (by their detail).
        if (lockedNow) await audit.RecordAsync(userName, "sign-in.locked-out", $"user {userName}", $"{via}; until {lockedUntil:u}", http);
        else if (result != PasswordCheck.Accepted)
            await audit.RecordAsync(userName, "sign-in.failed", $"user {userName}", result == PasswordCheck.LockedOut ? $"{via}; locked" : via, http);
        return (result, user, lockedUntil);
    }

    async Task<(PasswordCheck Result, EmaLabUser? User, DateTimeOffset? LockedUntil, bool LockedNow)> CheckAsync(string userName, string password)
    {
        using var scope = scopes.CreateScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>();
        var user = await users.FindByNameAsync(userName);
        if (user is null)
        {
            // As long as a real check, so the answer's time does not say which names exist.
            users.PasswordHasher.HashPassword(new EmaLabUser(), password);
            return (PasswordCheck.Wrong, null, null, false);
        }
        if (await users.IsLockedOutAsync(user)) return (PasswordCheck.LockedOut, null, user.LockoutEnd, false);
        if (await users.CheckPasswordAsync(user, password))
        {
            await users.ResetAccessFailedCountAsync(user);
            return (PasswordCheck.Accepted, user, null, false);
        }
        await users.AccessFailedAsync(user);
        return await users.IsLockedOutAsync(user) ? (PasswordCheck.LockedOut, null, user.LockoutEnd, true) : (PasswordCheck.Wrong, null, null, false);
    }

    public static Caller CallerOf(EmaLabUser user, CallerKind kind) => new(user.Id, user.UserName ?? "", user.IsAdmin, kind);

    /// <summary>
    /// HTTP Basic, as MLflow's clients send a password with every call. Identity's hash (PBKDF2, 100,000 rounds) costs tens
    /// of milliseconds of a core per check, so a user name and password that passed are remembered for a few minutes: a
    /// keyed hash of the pair (the key is random per process, so the table holds nothing that reveals or replays them)
    /// with the account's security stamp. A remembered pair still needs the account as it is now — same stamp (a new
    /// password changes it), not locked — and anything else (a wrong password above all) takes the full check, lock-out
    /// counting included.
    /// </summary>
    public async Task<EmaLabUser?> CheckBasicAsync(string userName, string password, HttpContext http)
    {
        var key = Convert.ToHexString(HMACSHA256.HashData(_basicKey, Encoding.UTF8.GetBytes($"{userName}\0{password}")));
        var now = clock.GetUtcNow();
        if (_basicPassed.TryGetValue(key, out var passed) && now - passed.At < BasicRemembered
            && await StillValidAsync(passed.UserId, passed.Stamp) is { } known && !(known.LockoutEnd > now))
            return known;
        var (result, user, _) = await CheckPasswordAsync(userName, password, "HTTP Basic", http);
        if (result != PasswordCheck.Accepted) return null;
        if (_basicPassed.Count >= 10_000) _basicPassed.Clear(); // a bound, not an eviction policy
        _basicPassed[key] = (user!.Id, user.SecurityStamp, now);
        return user;
    }

    static readonly TimeSpan BasicRemembered = TimeSpan.FromMinutes(5);
    readonly byte[] _basicKey = RandomNumberGenerator.GetBytes(32);
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, (string UserId, string? Stamp, DateTimeOffset At)> _basicPassed = new();

    /// <summary>The user a cookie was issued to, if it still exists and its security stamp (changed by a new password) still matches.</summary>
    public async Task<EmaLabUser?> StillValidAsync(string userId, string? stamp)
    {
        using var scope = scopes.CreateScope();
        var user = await scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>().FindByIdAsync(userId);
        return user is not null && user.SecurityStamp == stamp ? user : null;
    }

    public async Task<EmaLabUser?> FindAsync(string userId)
    {
        using var scope = scopes.CreateScope();
        return await scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>().FindByIdAsync(userId);
    }

    /// <summary>An admin creates an account (the audit log says so); Identity's errors (name taken, password rules) come back
    /// as messages.</summary>
    public async Task<(EmaLabUser? User, IReadOnlyList<string> Errors)> CreateUserAsync(string userName, string password, bool isAdmin, Caller by)
    {
        by.RequireAdmin();
        var (user, errors) = await CreateAccountAsync(userName, password, isAdmin);
        if (user is not null) await audit.RecordAsync(by, "user.create", $"user {user.UserName}", isAdmin ? "admin" : null);
        return (user, errors);
    }

    /// <summary>Creates an account with nobody's check: the first admin, from the one-time setup link (which records it).</summary>
    internal async Task<(EmaLabUser? User, IReadOnlyList<string> Errors)> CreateAccountAsync(string userName, string password, bool isAdmin)
    {
        using var scope = scopes.CreateScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>();
        var user = new EmaLabUser { UserName = userName.Trim(), IsAdmin = isAdmin, CreatedAt = clock.GetUtcNow() };
        var result = await users.CreateAsync(user, password);
        return result.Succeeded ? (user, []) : (null, result.Errors.Select(e => e.Description).ToList());
    }

    /// <summary>Every account, by name, with whether it is locked out now (for an admin).</summary>
    public async Task<IReadOnlyList<(EmaLabUser User, bool LockedOut)>> UsersAsync(Caller by)
    {
        by.RequireAdmin();
        using var scope = scopes.CreateScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>();
        var now = clock.GetUtcNow();
        return (await users.Users.AsNoTracking().ToListAsync()).OrderBy(u => u.UserName, StringComparer.OrdinalIgnoreCase)
            .Select(u => (u, u.LockoutEnd > now)).ToList();
    }

    /// <summary>Makes a user an admin or not; the last admin stays one (nobody could manage users after).</summary>
    public async Task<string?> SetAdminAsync(string userId, bool isAdmin, Caller by)
    {
        by.RequireAdmin();
        using var scope = scopes.CreateScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>();
        if (await users.FindByIdAsync(userId) is not { } user) return "This account no longer exists.";
        if (!isAdmin && user.IsAdmin && await users.Users.CountAsync(u => u.IsAdmin) == 1) return "The last admin stays an admin.";
        user.IsAdmin = isAdmin;
        await users.UpdateAsync(user);
        await audit.RecordAsync(by, "user.admin", $"user {user.UserName}", $"is_admin={(isAdmin ? "true" : "false")}");
        return null;
    }

    /// <summary>Ends a lock-out now (an admin's decision after too many wrong passwords).</summary>
    public async Task UnlockAsync(string userId, Caller by)
    {
        by.RequireAdmin();
        using var scope = scopes.CreateScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>();
        if (await users.FindByIdAsync(userId) is not { } user) return;
        await users.SetLockoutEndDateAsync(user, null);
        await users.ResetAccessFailedCountAsync(user);
        await audit.RecordAsync(by, "user.unlock", $"user {user.UserName}");
    }

    /// <summary>Deletes an account with its tokens and grants; never the last admin.</summary>
    public async Task<string?> DeleteUserAsync(string userId, Caller by)
    {
        by.RequireAdmin();
        using var scope = scopes.CreateScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>();
        if (await users.FindByIdAsync(userId) is not { } user) return null;
        if (user.IsAdmin && await users.Users.CountAsync(u => u.IsAdmin) == 1) return "The last admin cannot be deleted.";
        var result = await users.DeleteAsync(user);
        if (!result.Succeeded) return string.Join(" ", result.Errors.Select(e => e.Description));
        await audit.RecordAsync(by, "user.delete", $"user {user.UserName}");
        return null;
    }

    /// <summary>A user changes their own password, the current one re-asserted (the audit log says so).</summary>
    public async Task<IReadOnlyList<string>> ChangePasswordAsync(Caller self, string current, string next)
    {
        if (self.UserId is not { } userId) throw new PermissionDeniedException("Only an account has a password to change.");
        using var scope = scopes.CreateScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>();
        var user = await users.FindByIdAsync(userId);
        if (user is null) return ["This account no longer exists."];
        var result = await users.ChangePasswordAsync(user, current, next);
        if (!result.Succeeded) return result.Errors.Select(e => e.Description).ToList();
        await audit.RecordAsync(self, "password.change", $"user {user.UserName}");
        return [];
    }

    /// <summary>A new token for the user (the audit log says so): the secret is returned once and only its hash is kept.</summary>
    public async Task<(PersonalToken Token, string Secret)> CreateTokenAsync(string userId, string name, DateTimeOffset? expiresAt)
    {
        var secret = TokenPrefix + Base64Url(RandomNumberGenerator.GetBytes(30));
        var token = new PersonalToken
        {
            UserId = userId, Name = name.Trim(), Hash = HashOf(secret), Prefix = secret[..(TokenPrefix.Length + 4)],
            CreatedAt = clock.GetUtcNow(), ExpiresAt = expiresAt,
        };
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        db.PersonalTokens.Add(token);
        await db.SaveChangesAsync();
        await RecordTokenAsync(db, token, "token.create");
        return (token, secret);
    }

    public async Task<IReadOnlyList<PersonalToken>> TokensOfAsync(string userId)
    {
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        return (await db.PersonalTokens.AsNoTracking().Where(t => t.UserId == userId).ToListAsync())
            .OrderByDescending(t => t.CreatedAt).ToList();
    }

    /// <summary>Revokes one of the user's tokens: the next request with it is refused. False when the user has no such token.</summary>
    public async Task<bool> RevokeTokenAsync(string userId, long tokenId)
    {
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var token = await db.PersonalTokens.SingleOrDefaultAsync(t => t.Id == tokenId && t.UserId == userId);
        if (token is null) return false;
        token.RevokedAt ??= clock.GetUtcNow();
        await db.SaveChangesAsync();
        await RecordTokenAsync(db, token, "token.revoke");
        return true;
    }

    /// <summary>The user a token secret belongs to, if the token is usable now (not revoked, not expired); notes its use (its
    /// last-used time and a line of the audit log, at most once a minute).</summary>
    public async Task<EmaLabUser?> UserOfTokenAsync(string secret, HttpContext? http = null)
    {
        if (!secret.StartsWith(TokenPrefix, StringComparison.Ordinal)) return null;
        var hash = HashOf(secret);
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var token = await db.PersonalTokens.SingleOrDefaultAsync(t => t.Hash == hash);
        var now = clock.GetUtcNow();
        if (token is null || !token.IsUsable(now)) return null;
        var user = await db.Users.SingleOrDefaultAsync(u => u.Id == token.UserId);
        if (user is null || user.LockoutEnd > now) return null;
        if (token.LastUsedAt is not { } used || now - used >= LastUsedResolution)
        {
            token.LastUsedAt = now;
            await db.SaveChangesAsync();
            await audit.RecordAsync(user.UserName ?? "", "token.use", TokenTarget(token), null, http);
        }
        return user;
    }

    async Task RecordTokenAsync(EmaLabDbContext db, PersonalToken token, string action)
    {
        var owner = await db.Users.Where(u => u.Id == token.UserId).Select(u => u.UserName).SingleOrDefaultAsync();
        await audit.RecordAsync(owner ?? token.UserId, action, TokenTarget(token));
    }

    static string TokenTarget(PersonalToken token) => $"token {token.Name} ({token.Prefix}…)";

    static string HashOf(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <summary>
    /// At start-up, after the database: decides <see cref="AccessMode.Accounts"/>, creates the admin the settings name when
    /// it is missing (a password Identity refuses stops the start with its reasons), or, with accounts and no admin at
    /// all, makes the one-time setup secret and prints its link.
    /// </summary>
    public static async Task InitializeAsync(IServiceProvider services)
    {
        var options = services.GetRequiredService<IOptions<EmaLabOptions>>().Value;
        var mode = services.GetRequiredService<AccessMode>();
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("EmaLab.Accounts");
        using var scope = services.CreateScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>();
        mode.Accounts = options.AccountsAsked || await users.Users.AnyAsync();
        if (!mode.Accounts) return;
        if (options.Admin is { UserName: { Length: > 0 } name, Password: { Length: > 0 } password })
        {
            var existing = await users.FindByNameAsync(name);
            if (existing is null)
            {
                var user = new EmaLabUser { UserName = name.Trim(), IsAdmin = true, CreatedAt = DateTimeOffset.UtcNow };
                var created = await users.CreateAsync(user, password);
                if (!created.Succeeded)
                    throw new InvalidOperationException(
                        $"EmaLab:Admin: the admin '{name}' cannot be created: {string.Join(" ", created.Errors.Select(e => e.Description))}");
                logger.LogInformation("Created the admin account '{Name}' from EmaLab:Admin", name);
            }
            else if (!existing.IsAdmin)
            {
                existing.IsAdmin = true;
                await users.UpdateAsync(existing);
            }
        }
        if (await users.Users.AnyAsync(u => u.IsAdmin)) return;
        mode.SetupToken = Base64Url(RandomNumberGenerator.GetBytes(24));
        logger.LogWarning("No admin account yet. Create one, once, at {Path}?token={Token} (or set EmaLab:Admin:UserName and EmaLab:Admin:Password)",
            SignIn.SetupPath, mode.SetupToken);
    }
}
