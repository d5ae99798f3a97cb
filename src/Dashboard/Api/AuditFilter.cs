using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Security;

namespace EmaLab.Dashboard.Api;

public static class AuditFilter
{
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
