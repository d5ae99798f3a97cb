using System.Globalization;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Security;
using EmaLab.Dashboard.Tracking;

namespace EmaLab.Dashboard.Api;

/// <summary>
/// Permissions per experiment, checked once for every API endpoint from the rule it declares (<see cref="ExperimentRule"/>,
/// <see cref="AnyCaller"/>, <see cref="AdminsOnly"/>): the experiment is found from the endpoint's parameter, and a caller
/// without the level is refused 403 (<c>PERMISSION_DENIED</c> on MLflow's paths, as its auth app answers). An endpoint
/// without a rule admits admins only. Admins, the service token and the one user of a server without accounts pass.
/// A parameter that names nothing (an unknown run) is left to the handler, which answers 404 as it always does.
/// </summary>
public static class ExperimentAccessFilter
{
    public static RouteGroupBuilder RequireExperimentAccess(this RouteGroupBuilder api) =>
        api.AddEndpointFilter(async (context, next) =>
        {
            var http = context.HttpContext;
            var metadata = http.GetEndpoint()?.Metadata;
            var rules = metadata?.GetOrderedMetadata<ExperimentRule>() ?? [];
            var anyCaller = metadata?.GetMetadata<AnyCaller>() is not null;
            var caller = CallerClaims.Of(http);
            if (caller is null) return Denied(http, "Sign in first.");
            if (caller.IsAdmin || caller.UserId is null) return await next(context);
            if (rules.Count == 0 && !anyCaller) return Denied(http, "Only an admin may do this.");
            var access = await http.RequestServices.GetRequiredService<Permissions>().AccessOfAsync(caller, http.RequestAborted);
            foreach (var rule in rules)
            {
                var experiments = await ExperimentsOfAsync(http, rule);
                if (experiments is null) continue;
                if (experiments.Count == 0) return Denied(http, $"Name the {rule.Parameter}: only an admin may do this without it.");
                foreach (var experiment in experiments)
                    if (access.On(experiment) < rule.Level)
                        return Denied(http, $"This needs {PermissionNames.Of(rule.Level)} on experiment {experiment}; you have " +
                            $"{PermissionNames.Of(access.On(experiment))}.");
            }
            if (access.Readable() is { } readable) http.Features.Set(readable);
            return await next(context);
        });

    static IResult Denied(HttpContext http, string detail) =>
        MlflowEndpoints.IsMlflowPath(http.Request.Path)
            ? MlflowJson.Error(new MlflowException(MlflowException.PermissionDenied, "Permission denied"))
            : Results.Problem(detail, statusCode: StatusCodes.Status403Forbidden, title: "Permission denied");

    /// <summary>
    /// The experiments a rule's parameter names: null to leave the request to its handler (an optional parameter absent, a
    /// required one absent where the handler refuses that itself, or a name that matches nothing: the handler's 404), empty
    /// to refuse (the artifact proxy's root, which spans experiments). An absent experiment id is the default experiment.
    /// </summary>
    static async Task<IReadOnlyList<long>?> ExperimentsOfAsync(HttpContext http, ExperimentRule rule)
    {
        var values = await ValuesAsync(http, rule.Parameter);
        // MLflow's _get_request_param: 1.x clients name a run run_uuid (checked too when both are given).
        if (rule.Parameter == "run_id") values = [.. values, .. await ValuesAsync(http, "run_uuid")];
        if (values.Count == 0)
            return rule.Optional ? null : rule.Of switch
            {
                ExperimentOf.Experiment => [Experiment.DefaultId],
                ExperimentOf.ArtifactPath => [],
                _ => null,
            };
        await using var db = await http.RequestServices.GetRequiredService<IDbContextFactory<EmaLabDbContext>>()
            .CreateDbContextAsync(http.RequestAborted);
        var found = new List<long>();
        foreach (var value in values)
        {
            var experiment = rule.Of switch
            {
                ExperimentOf.Run => Long(value) is { } run
                    ? await db.Runs.Where(r => r.Id == run).Select(r => (long?)r.ExperimentId).SingleOrDefaultAsync(http.RequestAborted) : null,
                ExperimentOf.RunUuid or ExperimentOf.RunUuids =>
                    await db.Runs.Where(r => r.Uuid == value).Select(r => (long?)r.ExperimentId).SingleOrDefaultAsync(http.RequestAborted),
                ExperimentOf.Experiment => Experiment.TryParseId(value, out var experimentId) ? experimentId : null,
                ExperimentOf.ExperimentName =>
                    await db.Experiments.Where(e => e.Name == value).Select(e => (long?)e.Id).SingleOrDefaultAsync(http.RequestAborted),
                ExperimentOf.Checkpoint => Long(value) is { } checkpoint
                    ? await db.Checkpoints.Where(c => c.Id == checkpoint)
                        .Join(db.Runs, c => c.RunId, r => r.Id, (c, r) => (long?)r.ExperimentId).SingleOrDefaultAsync(http.RequestAborted)
                    : null,
                ExperimentOf.LoggedModel =>
                    await db.LoggedModels.Where(m => m.Id == value).Select(m => (long?)m.ExperimentId).SingleOrDefaultAsync(http.RequestAborted),
                ExperimentOf.ArtifactPath => Experiment.TryParseId(value.TrimStart('/').Split('/')[0], out var folder) ? folder : -1, // not an experiment's folder: refused below
                _ => null,
            };
            if (experiment is { } id) found.Add(id);
        }
        return found.Count > 0 ? found : null;
    }

    static long? Long(string text) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : null;

    /// <summary>
    /// The parameter's values wherever the request gives them: its route value, the query's and the JSON body's field. All
    /// of them, not the first found: a handler that reads the body must not act on a run the caller may not touch while the
    /// query names one they may (each value named is checked).
    /// </summary>
    internal static async Task<IReadOnlyList<string>> ValuesAsync(HttpContext http, string name)
    {
        var values = new List<string>();
        if (http.Request.RouteValues.TryGetValue(name, out var route) && route is not null)
            values.Add(Convert.ToString(route, CultureInfo.InvariantCulture)!);
        if (http.Request.Query.TryGetValue(name, out var query))
            values.AddRange(query.OfType<string>());
        if (await BodyAsync(http) is { ValueKind: JsonValueKind.Object } body && body.TryGetProperty(name, out var field))
            values.AddRange(field.ValueKind switch
            {
                JsonValueKind.String => [field.GetString()!],
                JsonValueKind.Number => [field.GetRawText()],
                JsonValueKind.Array => field.EnumerateArray().Where(v => v.ValueKind is JsonValueKind.String or JsonValueKind.Number)
                    .Select(v => v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText()),
                _ => [],
            });
        return values;
    }

    static readonly object BodyKey = new();

    /// <summary>
    /// The request's JSON body as the filters see it, parsed once per request however many parameters they look up (a
    /// log-batch of thousands of metrics is read for <c>run_id</c>, <c>run_uuid</c> and the audit alike), and rewound for
    /// the handler. Null when the body is not JSON or does not parse: the handler reads it again and says what is wrong.
    /// </summary>
    static async Task<JsonElement?> BodyAsync(HttpContext http)
    {
        if (http.Items.TryGetValue(BodyKey, out var seen)) return (JsonElement?)seen;
        JsonElement? body = null;
        if (http.Request.HasJsonContentType())
        {
            http.Request.EnableBuffering();
            try
            {
                var document = await JsonDocument.ParseAsync(http.Request.Body, cancellationToken: http.RequestAborted);
                http.Response.RegisterForDispose(document);
                body = document.RootElement;
            }
            catch (JsonException) { }
            finally
            {
                http.Request.Body.Position = 0;
            }
        }
        http.Items[BodyKey] = body;
        return body;
    }
}
