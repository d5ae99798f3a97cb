using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Tracking;

namespace EmaLab.Dashboard.Security;

/// <summary>What one caller may do with each experiment: its grants, and the server's default for the rest.</summary>
public sealed record ExperimentAccess(ExperimentPermissionLevel Default, IReadOnlyDictionary<long, ExperimentPermissionLevel> Grants)
{
    /// <summary>An admin, the service token and the local user of a server without accounts.</summary>
    public static readonly ExperimentAccess Everything = new(ExperimentPermissionLevel.Manage, new Dictionary<long, ExperimentPermissionLevel>());
    public static readonly ExperimentAccess Nothing = new(ExperimentPermissionLevel.NoPermissions, new Dictionary<long, ExperimentPermissionLevel>());

    public ExperimentPermissionLevel On(long experimentId) => Grants.TryGetValue(experimentId, out var level) ? level : Default;

    /// <summary>What lists may show: null when everything.</summary>
    public ReadableExperiments? Readable() => ReferenceEquals(this, Everything) ? null
        : new ReadableExperiments(Default.CanRead(), Grants.Where(g => g.Value.CanRead()).Select(g => g.Key).ToHashSet(),
            Grants.Where(g => !g.Value.CanRead()).Select(g => g.Key).ToHashSet());
}

/// <summary>
/// The pages' view of the same rules as the API's: who is signed in to this circuit and what they may do with each
/// experiment, read afresh on each call (a grant changed elsewhere counts on the next load).
/// </summary>
public sealed class PageAccess(Microsoft.AspNetCore.Components.Authorization.AuthenticationStateProvider authentication, AccessMode mode,
    Permissions permissions)
{
    /// <summary>Null when nobody is signed in (pages ask to sign in first, so only a page being left sees that).</summary>
    public async Task<Caller?> CallerAsync() => CallerClaims.Of((await authentication.GetAuthenticationStateAsync()).User, mode);

    /// <summary>The caller a page acts as: refused when nobody is signed in (a page being left).</summary>
    public async Task<Caller> ActingAsync() => await CallerAsync() ?? throw new PermissionDeniedException("Sign in first.");

    public async Task<ExperimentAccess> AccessAsync() =>
        await CallerAsync() is { } caller ? await permissions.AccessOfAsync(caller) : ExperimentAccess.Nothing;
}

/// <summary>
/// Permissions per experiment, as MLflow's auth app keeps them: a user's grant on an experiment, else the server's
/// <see cref="EmaLabOptions.DefaultPermission"/>; admins (and the service token, and the one user of a server without
/// accounts) may do everything; whoever creates an experiment manages it. The grant operations are MLflow's
/// <c>/api/2.0/mlflow/experiments/permissions/*</c> with its messages and error codes.
/// </summary>
public sealed class Permissions(IServiceScopeFactory scopes, IOptions<EmaLabOptions> options, IAuditTrail audit) : IExperimentPermissions,
    IRegisteredModelPermissions
{
    /// <summary>What the caller may do with each experiment (one query: for a list or a page that shows several).</summary>
    public async Task<ExperimentAccess> AccessOfAsync(Caller caller, CancellationToken cancel = default)
    {
        if (caller.IsAdmin || caller.UserId is null) return ExperimentAccess.Everything;
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var grants = await db.ExperimentPermissions.AsNoTracking().Where(p => p.UserId == caller.UserId)
            .ToDictionaryAsync(p => p.ExperimentId, p => p.Permission, cancel);
        return new ExperimentAccess(options.Value.DefaultLevel, grants);
    }

    public async Task<ReadableExperiments?> ReadableAsync(Caller caller, CancellationToken cancel = default) =>
        (await AccessOfAsync(caller, cancel)).Readable();

    /// <summary>The caller's permission on one experiment.</summary>
    public async Task<ExperimentPermissionLevel> OnExperimentAsync(Caller caller, long experimentId, CancellationToken cancel = default)
    {
        if (caller.IsAdmin || caller.UserId is null) return ExperimentPermissionLevel.Manage;
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var grant = await db.ExperimentPermissions.AsNoTracking()
            .Where(p => p.UserId == caller.UserId && p.ExperimentId == experimentId).Select(p => (ExperimentPermissionLevel?)p.Permission)
            .SingleOrDefaultAsync(cancel);
        return grant ?? options.Value.DefaultLevel;
    }

    /// <summary>Whoever creates an experiment manages it (MLflow's <c>set_can_manage_experiment_permission</c>).</summary>
    public async Task GrantCreatorAsync(Caller caller, long experimentId, CancellationToken cancel = default)
    {
        if (caller.UserId is null) return;
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        if (await db.ExperimentPermissions.AnyAsync(p => p.ExperimentId == experimentId && p.UserId == caller.UserId, cancel)) return;
        await InsertAsync(db, experimentId, caller.UserId, ExperimentPermissionLevel.Manage, cancel);
    }

    /// <summary>
    /// A new grant, written as a statement: EF's change tracker takes a foreign key of 0 for "not known yet" and would
    /// refuse a grant on the default experiment, whose id is 0.
    /// </summary>
    static Task InsertAsync(EmaLabDbContext db, long experimentId, string userId, ExperimentPermissionLevel level, CancellationToken cancel) =>
        db.Database.ExecuteSqlInterpolatedAsync(
            $"INSERT INTO \"ExperimentPermissions\" (\"ExperimentId\", \"UserId\", \"Permission\") VALUES ({experimentId}, {userId}, {PermissionNames.Of(level)})",
            cancel);

    // ---- MLflow's experiment-permission API: whoever may MANAGE the experiment; each change into the audit log ----

    /// <summary>MLflow's <c>validate_can_manage_experiment</c>: admins, or MANAGE on the experiment named.</summary>
    async Task RequireManagerAsync(Caller by, string? experimentId, CancellationToken cancel)
    {
        if (by.IsAdmin) return;
        if (experimentId is null) throw MlflowException.Missing("experiment_id");
        if (!Experiment.TryParseId(experimentId, out var id))
            throw new PermissionDeniedException($"Changing who may use experiment {experimentId} needs MANAGE on it.");
        await this.RequireAsync(by, id, ExperimentPermissionLevel.Manage, cancel);
    }

    Task RecordAsync(Caller by, string action, string? experimentId, string? userName, string? permission) =>
        audit.RecordAsync(by, action, $"experiment {experimentId}",
            permission is null ? $"username={userName}" : $"username={userName} permission={permission}");

    public async Task<MlflowExperimentPermission> CreateAsync(string? experimentId, string? userName, string? permission, Caller by,
        CancellationToken cancel)
    {
        await RequireManagerAsync(by, experimentId, cancel);
        var level = Level(permission);
        var (id, user) = await ResolveAsync(experimentId, userName, cancel);
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        if (await db.ExperimentPermissions.AnyAsync(p => p.ExperimentId == id && p.UserId == user.Id, cancel))
            throw new MlflowException(MlflowException.ResourceAlreadyExists,
                $"Experiment permission (experiment_id={experimentId}, username={userName}) already exists.");
        await InsertAsync(db, id, user.Id, level, cancel);
        await RecordAsync(by, "permission.create", experimentId, userName, permission);
        return new MlflowExperimentPermission(experimentId!, user.Id, PermissionNames.Of(level));
    }

    public async Task<MlflowExperimentPermission> GetAsync(string? experimentId, string? userName, Caller by, CancellationToken cancel)
    {
        await RequireManagerAsync(by, experimentId, cancel);
        var (id, user) = await ResolveAsync(experimentId, userName, cancel);
        var grant = await FindAsync(id, user, experimentId!, userName!, cancel);
        return new MlflowExperimentPermission(experimentId!, user.Id, PermissionNames.Of(grant.Permission));
    }

    public async Task UpdateAsync(string? experimentId, string? userName, string? permission, Caller by, CancellationToken cancel)
    {
        await RequireManagerAsync(by, experimentId, cancel);
        var level = Level(permission);
        var (id, user) = await ResolveAsync(experimentId, userName, cancel);
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var updated = await db.ExperimentPermissions.Where(p => p.ExperimentId == id && p.UserId == user.Id)
            .ExecuteUpdateAsync(set => set.SetProperty(p => p.Permission, level), cancel);
        if (updated == 0) throw NotFound(experimentId!, userName!);
        await RecordAsync(by, "permission.update", experimentId, userName, permission);
    }

    public async Task DeleteAsync(string? experimentId, string? userName, Caller by, CancellationToken cancel)
    {
        await RequireManagerAsync(by, experimentId, cancel);
        var (id, user) = await ResolveAsync(experimentId, userName, cancel);
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var deleted = await db.ExperimentPermissions.Where(p => p.ExperimentId == id && p.UserId == user.Id).ExecuteDeleteAsync(cancel);
        if (deleted == 0) throw NotFound(experimentId!, userName!);
        await RecordAsync(by, "permission.delete", experimentId, userName, null);
    }

    /// <summary>The users granted a permission on the experiment (its members page), by name.</summary>
    public async Task<List<(string UserName, ExperimentPermissionLevel Level)>> MembersAsync(long experimentId, CancellationToken cancel = default)
    {
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var members = await db.ExperimentPermissions.AsNoTracking().Where(p => p.ExperimentId == experimentId)
            .Join(db.Users, p => p.UserId, u => u.Id, (p, u) => new { u.UserName, p.Permission }).ToListAsync(cancel);
        return members.Select(m => (m.UserName ?? "", m.Permission)).OrderBy(m => m.Item1, StringComparer.OrdinalIgnoreCase).ToList();
    }

    /// <summary>Everyone's permission where no grant says otherwise (<see cref="EmaLabOptions.DefaultPermission"/>).</summary>
    public ExperimentPermissionLevel DefaultLevel => options.Value.DefaultLevel;

    /// <summary>A user's grants, for MLflow's <c>users/get</c>.</summary>
    public async Task<List<MlflowExperimentPermission>> OfUserAsync(string userId, CancellationToken cancel)
    {
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        return (await db.ExperimentPermissions.AsNoTracking().Where(p => p.UserId == userId).OrderBy(p => p.ExperimentId).ToListAsync(cancel))
            .Select(p => new MlflowExperimentPermission(p.ExperimentId.ToString(System.Globalization.CultureInfo.InvariantCulture), p.UserId,
                PermissionNames.Of(p.Permission))).ToList();
    }

    async Task<ExperimentPermission> FindAsync(long id, EmaLabUser user, string experimentId, string userName, CancellationToken cancel)
    {
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        return await db.ExperimentPermissions.AsNoTracking().SingleOrDefaultAsync(p => p.ExperimentId == id && p.UserId == user.Id, cancel)
            ?? throw NotFound(experimentId, userName);
    }

    static MlflowException NotFound(string experimentId, string userName) => new(MlflowException.ResourceDoesNotExist,
        $"Experiment permission with experiment_id={experimentId} and username={userName} not found");

    /// <summary>MLflow's <c>_validate_permission</c>.</summary>
    static ExperimentPermissionLevel Level(string? permission) =>
        PermissionNames.TryParse(permission ?? throw MlflowException.Missing("permission"), out var level) ? level
            : throw MlflowException.Invalid(
                $"Invalid permission '{permission}'. Valid permissions are: ({string.Join(", ", PermissionNames.All.Select(n => $"'{n}'"))})");

    /// <summary>The experiment (which must exist) and the user (MLflow: <c>User with username=… not found</c>).</summary>
    async Task<(long Id, EmaLabUser User)> ResolveAsync(string? experimentId, string? userName, CancellationToken cancel)
    {
        if (experimentId is null) throw MlflowException.Missing("experiment_id");
        if (userName is null) throw MlflowException.Missing("username");
        if (!Experiment.TryParseId(experimentId, out var id))
            throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Could not find experiment with ID {experimentId}");
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        if (!await db.Experiments.AnyAsync(e => e.Id == id, cancel))
            throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Could not find experiment with ID {experimentId}");
        return (id, await UserNamedAsync(userName));
    }

    /// <summary>The user a grant names (MLflow: <c>User with username=… not found</c>).</summary>
    async Task<EmaLabUser> UserNamedAsync(string? userName)
    {
        if (userName is null) throw MlflowException.Missing("username");
        using var scope = scopes.CreateScope();
        return await scope.ServiceProvider.GetRequiredService<UserManager<EmaLabUser>>().FindByNameAsync(userName)
            ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"User with username={userName} not found");
    }

    // ---- registered models: the same levels, per model (MLflow's registered_model_permissions) ----

    public async Task<ExperimentPermissionLevel> OnRegisteredModelAsync(Caller caller, long registeredModelId, CancellationToken cancel = default)
    {
        if (caller.IsAdmin || caller.UserId is null) return ExperimentPermissionLevel.Manage;
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var grant = await db.RegisteredModelPermissions.AsNoTracking()
            .Where(p => p.UserId == caller.UserId && p.RegisteredModelId == registeredModelId).Select(p => (ExperimentPermissionLevel?)p.Permission)
            .SingleOrDefaultAsync(cancel);
        return grant ?? options.Value.DefaultLevel;
    }

    public async Task<Func<long, bool>?> ReadableModelsAsync(Caller caller, CancellationToken cancel = default)
    {
        if (caller.IsAdmin || caller.UserId is null) return null;
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var grants = await db.RegisteredModelPermissions.AsNoTracking().Where(p => p.UserId == caller.UserId)
            .ToDictionaryAsync(p => p.RegisteredModelId, p => p.Permission, cancel);
        var byDefault = options.Value.DefaultLevel.CanRead();
        return id => grants.TryGetValue(id, out var level) ? level.CanRead() : byDefault;
    }

    /// <summary>MLflow's <c>set_can_manage_registered_model_permission</c>.</summary>
    public async Task GrantModelCreatorAsync(Caller caller, long registeredModelId, CancellationToken cancel = default)
    {
        if (caller.UserId is null) return;
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        db.RegisteredModelPermissions.Add(new RegisteredModelPermission
        {
            RegisteredModelId = registeredModelId, UserId = caller.UserId, Permission = ExperimentPermissionLevel.Manage,
        });
        await db.SaveChangesAsync(cancel);
    }

    /// <summary>MLflow's <c>validate_can_manage_registered_model</c>: admins, or MANAGE on the model named (which must exist).</summary>
    async Task<long> RequireModelManagerAsync(Caller by, string? name, CancellationToken cancel)
    {
        if (name is null) throw MlflowException.Missing("name");
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var id = await db.RegisteredModels.Where(m => m.Name == name).Select(m => (long?)m.Id).SingleOrDefaultAsync(cancel)
            ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Registered Model with name={name} not found");
        if (!by.IsAdmin && await OnRegisteredModelAsync(by, id, cancel) < ExperimentPermissionLevel.Manage)
            throw new PermissionDeniedException($"Changing who may use registered model '{name}' needs MANAGE on it.");
        return id;
    }

    async Task<(long Id, EmaLabUser User)> ResolveModelAsync(Caller by, string? name, string? userName, CancellationToken cancel)
    {
        var id = await RequireModelManagerAsync(by, name, cancel);
        return (id, await UserNamedAsync(userName));
    }

    /// <summary>A user's grants on registered models, for MLflow's <c>users/get</c>.</summary>
    public async Task<List<MlflowRegisteredModelPermission>> ModelGrantsOfUserAsync(string userId, CancellationToken cancel)
    {
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        return (await db.RegisteredModelPermissions.AsNoTracking().Where(p => p.UserId == userId)
                .Join(db.RegisteredModels, p => p.RegisteredModelId, m => m.Id, (p, m) => new { m.Name, p.Permission }).ToListAsync(cancel))
            .OrderBy(g => g.Name, StringComparer.Ordinal).Select(g => new MlflowRegisteredModelPermission(g.Name, userId, PermissionNames.Of(g.Permission)))
            .ToList();
    }

    static MlflowException ModelGrantNotFound(string name, string userName) => new(MlflowException.ResourceDoesNotExist,
        $"Registered model permission with workspace=default, name={name} and username={userName} not found");

    Task RecordModelAsync(Caller by, string action, string name, string userName, string? permission) =>
        audit.RecordAsync(by, action, $"registered model {name}",
            permission is null ? $"username={userName}" : $"username={userName} permission={permission}");

    public async Task<MlflowRegisteredModelPermission> CreateModelGrantAsync(string? name, string? userName, string? permission, Caller by,
        CancellationToken cancel)
    {
        var (id, user) = await ResolveModelAsync(by, name, userName, cancel);
        var level = Level(permission);
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        if (await db.RegisteredModelPermissions.AnyAsync(p => p.RegisteredModelId == id && p.UserId == user.Id, cancel))
            throw new MlflowException(MlflowException.ResourceAlreadyExists,
                $"Registered model permission with workspace=default, name={name} and username={userName} already exists.");
        db.RegisteredModelPermissions.Add(new RegisteredModelPermission { RegisteredModelId = id, UserId = user.Id, Permission = level });
        await db.SaveChangesAsync(cancel);
        await RecordModelAsync(by, "permission.create", name!, userName!, permission);
        return new MlflowRegisteredModelPermission(name!, user.Id, PermissionNames.Of(level));
    }

    public async Task<MlflowRegisteredModelPermission> GetModelGrantAsync(string? name, string? userName, Caller by, CancellationToken cancel)
    {
        var (id, user) = await ResolveModelAsync(by, name, userName, cancel);
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        var grant = await db.RegisteredModelPermissions.AsNoTracking().SingleOrDefaultAsync(p => p.RegisteredModelId == id && p.UserId == user.Id, cancel)
            ?? throw ModelGrantNotFound(name!, userName!);
        return new MlflowRegisteredModelPermission(name!, user.Id, PermissionNames.Of(grant.Permission));
    }

    public async Task UpdateModelGrantAsync(string? name, string? userName, string? permission, Caller by, CancellationToken cancel)
    {
        var (id, user) = await ResolveModelAsync(by, name, userName, cancel);
        var level = Level(permission);
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        if (await db.RegisteredModelPermissions.Where(p => p.RegisteredModelId == id && p.UserId == user.Id)
                .ExecuteUpdateAsync(set => set.SetProperty(p => p.Permission, level), cancel) == 0)
            throw ModelGrantNotFound(name!, userName!);
        await RecordModelAsync(by, "permission.update", name!, userName!, permission);
    }

    public async Task DeleteModelGrantAsync(string? name, string? userName, Caller by, CancellationToken cancel)
    {
        var (id, user) = await ResolveModelAsync(by, name, userName, cancel);
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<EmaLabDbContext>();
        if (await db.RegisteredModelPermissions.Where(p => p.RegisteredModelId == id && p.UserId == user.Id).ExecuteDeleteAsync(cancel) == 0)
            throw ModelGrantNotFound(name!, userName!);
        await RecordModelAsync(by, "permission.delete", name!, userName!, null);
    }
}

/// <summary>MLflow's <c>RegisteredModelPermission.to_json()</c> (its workspace is the default one here).</summary>
public sealed record MlflowRegisteredModelPermission(string Name, string UserId, string Permission)
{
    public string Workspace => "default";
}

/// <summary>MLflow's <c>ExperimentPermission.to_json()</c>.</summary>
public sealed record MlflowExperimentPermission(string ExperimentId, string UserId, string Permission);

/// <summary>MLflow's <c>set_can_manage_experiment_permission</c>: the user who creates an experiment gets MANAGE on it.</summary>
sealed class CreatorManages(Permissions permissions, AccessMode mode) : IExperimentCreators
{
    public Task CreatedAsync(long experimentId, System.Security.Claims.ClaimsPrincipal by, CancellationToken cancel) =>
        CallerClaims.Of(by, mode) is { } caller ? permissions.GrantCreatorAsync(caller, experimentId, cancel) : Task.CompletedTask;
}
