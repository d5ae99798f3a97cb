using EmaLab.Dashboard.Security;

namespace EmaLab.Dashboard.Api;

/// <summary>
/// An endpoint whose success goes into the audit log: <see cref="Action"/> on the <see cref="Target"/> named by the request's
/// <see cref="Parameter"/> (as <c>run 12</c>), with the <see cref="Details"/> parameters' values.
/// </summary>
public sealed record AuditedAction(string Action, string Target, string Parameter, IReadOnlyList<string> Details);

public static class AuditConventions
{
    /// <summary>Records the call in the audit log when it succeeds (a 2xx answer).</summary>
    public static TBuilder Audited<TBuilder>(this TBuilder builder, string action, string target, string parameter, params string[] details)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new AuditedAction(action, target, parameter, details));

    /// <summary>The API group's filter for <see cref="AuditedAction"/>: the parameters are read before the handler (which may
    /// consume the body), the line is written once the answer's status is known and before it leaves, so a client that
    /// reads the log after its call finds it.</summary>
    public static RouteGroupBuilder RecordAuditedActions(this RouteGroupBuilder api) =>
        api.AddEndpointFilter(async (context, next) =>
        {
            var http = context.HttpContext;
            if (http.GetEndpoint()?.Metadata.GetMetadata<AuditedAction>() is not { } audited) return await next(context);
            var target = string.Join(",", await ExperimentAccessFilter.ValuesAsync(http, audited.Parameter));
            var details = new List<string>();
            foreach (var name in audited.Details)
                if (await ExperimentAccessFilter.ValuesAsync(http, name) is { Count: > 0 } values) details.Add($"{name}={string.Join(",", values)}");
            http.Response.OnStarting(async () =>
            {
                if (http.Response.StatusCode is < 200 or >= 300 || CallerClaims.Of(http) is not { } caller) return;
                await http.RequestServices.GetRequiredService<AuditLog>().RecordAsync(caller, audited.Action, $"{audited.Target} {target}",
                    details.Count == 0 ? null : string.Join(" ", details), http);
            });
            return await next(context);
        });
}
