namespace EmaLab.Dashboard.Hosting;

// A service method that takes a caller (every change a page or the API can make) refuses with one of these, or with a
// RequestValidationException naming the field: the API answers with the status and problem details (Api/ServiceRefusals),
// a page shows the message by the control that asked.

/// <summary>A service refused a request for a reason its caller can act on; the message says it in the caller's words.</summary>
public abstract class RefusalException(string message) : Exception(message);

/// <summary>The caller may not do this (403): the message says what it needs and what they have.</summary>
public sealed class PermissionDeniedException(string message) : RefusalException(message);

/// <summary>What the request names does not exist (404).</summary>
public sealed class NotFoundException(string message) : RefusalException(message);

/// <summary>The request is well formed but the thing it acts on is not in a state that allows it (409).</summary>
public sealed class ConflictException(string message) : RefusalException(message);

/// <summary>
/// What a caller may do with an experiment, as the services below <c>Security</c> ask it before they change anything
/// (implemented by <c>Security.Permissions</c>: a grant, else the server's default; admins may do everything).
/// </summary>
public interface IExperimentPermissions
{
    Task<ExperimentPermissionLevel> OnExperimentAsync(Caller caller, long experimentId, CancellationToken cancel = default);

    /// <summary>What lists may show the caller: null when everything.</summary>
    Task<ReadableExperiments?> ReadableAsync(Caller caller, CancellationToken cancel = default);
}

public static class ExperimentPermissionChecks
{
    /// <summary>Refuses (<see cref="PermissionDeniedException"/>) unless the caller has <paramref name="level"/> on the experiment.</summary>
    public static async Task RequireAsync(this IExperimentPermissions permissions, Caller caller, long experimentId,
        ExperimentPermissionLevel level, CancellationToken cancel = default)
    {
        var has = await permissions.OnExperimentAsync(caller, experimentId, cancel);
        if (has < level)
            throw new PermissionDeniedException(
                $"This needs {PermissionNames.Of(level)} on experiment {experimentId}; you have {PermissionNames.Of(has)}.");
    }

    /// <summary>Refuses unless the caller is an admin (the service token and a server without accounts are).</summary>
    public static void RequireAdmin(this Caller caller)
    {
        if (!caller.IsAdmin) throw new PermissionDeniedException("Only an admin may do this.");
    }
}

/// <summary>
/// Permissions per registered model (MLflow's auth app: READ, EDIT, MANAGE; the creator manages it; the server's default
/// elsewhere), implemented by <c>Security.Permissions</c>. Admins, the service token and a server without accounts may do everything.
/// </summary>
public interface IRegisteredModelPermissions
{
    Task<ExperimentPermissionLevel> OnRegisteredModelAsync(Caller caller, long registeredModelId, CancellationToken cancel = default);

    /// <summary>Which registered models lists may show the caller: null when all.</summary>
    Task<Func<long, bool>?> ReadableModelsAsync(Caller caller, CancellationToken cancel = default);

    /// <summary>Whoever creates a registered model manages it.</summary>
    Task GrantModelCreatorAsync(Caller caller, long registeredModelId, CancellationToken cancel = default);
}
