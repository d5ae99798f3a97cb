namespace EmaLab.Dashboard.Hosting;

/// <summary>Where an endpoint's parameter names the experiment it touches.</summary>
public enum ExperimentOf
{
    /// <summary>EMA Lab's run number (<c>/api/runs/{id}</c>).</summary>
    Run,
    /// <summary>MLflow's run id (<c>run_id</c>, or <c>run_uuid</c> as 1.x clients send it).</summary>
    RunUuid,
    /// <summary>Several MLflow run ids (<c>run_ids</c>, repeated): each must allow it.</summary>
    RunUuids,
    /// <summary>An experiment id; absent means the default experiment, 0 (as the API reads it).</summary>
    Experiment,
    /// <summary>An experiment's name (<c>experiments/get-by-name</c>).</summary>
    ExperimentName,
    /// <summary>A checkpoint's id (its run's experiment).</summary>
    Checkpoint,
    /// <summary>A logged model's id (<c>m-…</c>).</summary>
    LoggedModel,
    /// <summary>An artifact path <c>&lt;experiment&gt;/…</c> of MLflow's artifact proxy.</summary>
    ArtifactPath,
}

/// <summary>
/// An endpoint's access rule: the caller needs <see cref="Level"/> on the experiment that <see cref="Parameter"/> (a route
/// value, a query parameter or a field of the JSON body, looked up in that order) names. An <see cref="Optional"/> rule
/// applies only when the parameter is given (a clone into another experiment). Admins pass every rule.
/// </summary>
public sealed record ExperimentRule(ExperimentPermissionLevel Level, ExperimentOf Of, string Parameter, bool Optional = false);

/// <summary>Any signed-in caller: a list (filtered to what the caller may read: <see cref="ReadableExperiments"/>), the
/// caller's own account, or what touches no experiment. The endpoint's own checks, if any, are its handler's.</summary>
public sealed record AnyCaller(string Why);

/// <summary>Admins only.</summary>
public sealed record AdminsOnly;

/// <summary>
/// What the caller of a list may read, set on the request by the access filter: every experiment (null from
/// <see cref="Of"/>), or those of <see cref="Allowed"/> when the default denies, or all but <see cref="Denied"/> when the
/// default allows. Lists filter their queries with it, so they never show what the caller may not read.
/// </summary>
public sealed record ReadableExperiments(bool ByDefault, IReadOnlyCollection<long> Allowed, IReadOnlyCollection<long> Denied)
{
    public bool CanRead(long experimentId) => ByDefault ? !Denied.Contains(experimentId) : Allowed.Contains(experimentId);

    /// <summary>The request's restriction, or null when the caller may read everything.</summary>
    public static ReadableExperiments? Of(HttpContext http) => http.Features.Get<ReadableExperiments>();
}

/// <summary>
/// An endpoint whose success goes into the audit log: <see cref="Action"/> on the <see cref="Target"/> named by the request's
/// <see cref="Parameter"/> (as <c>run 12</c>), with the <see cref="Details"/> parameters' values.
/// </summary>
public sealed record AuditedAction(string Action, string Target, string Parameter, IReadOnlyList<string> Details);

public static class AccessRuleConventions
{
    public static TBuilder Needs<TBuilder>(this TBuilder builder, ExperimentPermissionLevel level, ExperimentOf of, string parameter,
        bool optional = false) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new ExperimentRule(level, of, parameter, optional));

    public static TBuilder ForAnyCaller<TBuilder>(this TBuilder builder, string why) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new AnyCaller(why));

    public static TBuilder ForAdmins<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new AdminsOnly());

    /// <summary>Records the call in the audit log when it succeeds (a 2xx answer): <c>Api/AuditFilter.cs</c>.</summary>
    public static TBuilder Audited<TBuilder>(this TBuilder builder, string action, string target, string parameter, params string[] details)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new AuditedAction(action, target, parameter, details));
}
