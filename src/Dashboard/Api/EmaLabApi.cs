using EmaLab.Dashboard.Datasets;
using EmaLab.Dashboard.Groups;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Security;
using EmaLab.Dashboard.Tracking;

namespace EmaLab.Dashboard.Api;

/// <summary>The REST API under <c>/api</c>: every feature's endpoints in one group, which holds the access rules.</summary>
public static class EmaLabApi
{
    public static void MapEmaLabApi(this IEndpointRouteBuilder app)
    {
        // Every API call: signed in when a token is set; changes only from this origin or non-browser clients;
        // a bounded number at once, so request handling cannot take the cores training runs on.
        var api = app.MapGroup("/api").RequireAuthorization(Access.Policy).RequireSameOriginForChanges().RequireRateLimiting(ApiLoad.Policy)
            .RequireExperimentAccess().RecordAuditedActions()
            .AnswerServiceRefusals();
        api.MapMlflowApi();
        api.MapMlflowAuthApi();
        api.MapAccountApi();
        api.MapGroupApi();
        api.MapRunApi();
        api.MapDatasetApi();
        api.MapRegistrationApi();
        api.MapGet("/audit", (AuditLog audit, string? actor, string? action, long? before, int? pageSize, CancellationToken ct) =>
                audit.ListAsync(actor, action, before, pageSize ?? 100, ct))
            .ForAdmins().WithTags("Accounts")
            .WithSummary("The audit log, newest first: sign-ins, token use, account and permission changes, deletions. Filters: actor, action (a prefix); 'before' pages on.");
    }
}
