using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Hosting;
using EmaLab.TrainingEngine.Averaging;
using Microsoft.AspNetCore.Http.HttpResults;

namespace EmaLab.Dashboard.Groups;

/// <summary>What <c>POST /api/groups/preview</c> answers: the runs the grid would create, before anything is stored.</summary>
public sealed record GroupPreview(string Name, long ExperimentId, int Runs, long TotalSteps, IReadOnlyList<GridAxis> Axes,
    IReadOnlyList<string> RunNames);

/// <summary>A group just created: its name and the runs queued for it.</summary>
public sealed record GroupCreated(string Name, long ExperimentId, IReadOnlyList<long> RunIds, long TotalSteps, string Url);

public sealed record GroupPostHocRequest(double? SigmaRel);

/// <summary>
/// <c>/api/groups</c>: launch a grid, list groups, read a group's statistics, reconstruct one σ_rel on all its runs.
/// A group is named in the path (escaped as a path segment; <c>%2F</c> stands for a slash) and lives in an experiment
/// (<c>?experiment=</c>, the default experiment 0 when left out).
/// </summary>
public static class GroupEndpoints
{
    public static void MapGroupApi(this RouteGroupBuilder api)
    {
        var groups = api.MapGroup("/groups").WithTags("Groups");
        groups.MapGet("", List).ForAnyCaller("lists the groups of experiments the caller may read").WithSummary("Groups (newest first) with their run counts; optionally of one experiment.");
        groups.MapPost("", Create).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experimentId").RequireJsonBody().Accepts<EmaLab.TrainingEngine.Training.RunSpec>("application/json")
            .WithSummary("Launches a group: a run specification whose top-level fields may be lists (seed, learningRate, batchSize, optimizer, model…; hidden/channels as lists of lists) becomes the cross product of runs, all in one transaction. 'name' names the group.");
        groups.MapPost("/preview", Preview).ForAnyCaller("validates a specification; stores and reads nothing").RequireJsonBody().Accepts<EmaLab.TrainingEngine.Training.RunSpec>("application/json")
            .WithSummary("What POST /api/groups would create (run count, planned steps, run names), validated, without storing anything.");
        groups.MapGet("/{name}", Get).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Experiment, "experiment")
            .WithSummary("The group's runs, configurations and statistics: per track the mean final and best value over seeds, the paired EMA − raw gap with its 95 % CI and p-value, a verdict, the best track.");
        groups.MapGet("/{name}/runs.csv", GetCsv).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Experiment, "experiment")
            .WithSummary("The group's statistics table as CSV: per configuration and track, the final and best mean with 95 % CI half-widths, the paired gaps with p-values, the verdict.");
        groups.MapPost("/{name}/posthoc", ReconstructPostHoc).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experiment").WithTags("Post-hoc EMA").RequireJsonBody()
            .Accepts<GroupPostHocRequest>("application/json")
            .WithSummary("Reconstructs the same σ_rel on every run of the group that has post-hoc snapshots (the others are listed with the reason).");
    }

    static async Task<Ok<List<GroupSummary>>> List(HttpContext http, GroupService groups, long? experiment = null, CancellationToken ct = default)
    {
        var listed = await groups.ListAsync(experiment, ct);
        return TypedResults.Ok(ReadableExperiments.Of(http) is { } readable ? listed.Where(g => readable.CanRead(g.ExperimentId)).ToList() : listed);
    }

    static async Task<Results<Ok<GroupPreview>, ValidationProblem>> Preview(HttpRequest request, CancellationToken ct)
    {
        try
        {
            var group = GroupRequest.Parse(await ApiResults.ReadJsonAsync(request, ct));
            return TypedResults.Ok(new GroupPreview(group.Name, group.ExperimentId, group.Runs.Count, group.TotalSteps, group.Axes,
                group.Runs.Select(r => r.Name).ToList()));
        }
        catch (RequestValidationException e)
        {
            return ApiResults.Invalid(e);
        }
    }

    static async Task<Results<Created<GroupCreated>, ValidationProblem>> Create(HttpRequest request, RunService runs, CancellationToken ct)
    {
        try
        {
            var group = GroupRequest.Parse(await ApiResults.ReadJsonAsync(request, ct));
            var created = await runs.CreateManyAsync(group.Runs, CallerClaims.Of(request.HttpContext)!, ct);
            var url = UrlOf(group.Name, group.ExperimentId);
            return TypedResults.Created(url,
                new GroupCreated(group.Name, group.ExperimentId, created.Select(r => r.Id).ToList(), group.TotalSteps, url));
        }
        catch (RequestValidationException e)
        {
            return ApiResults.Invalid(e);
        }
    }

    static async Task<Results<Ok<GroupAnalysis>, ValidationProblem, ProblemHttpResult>> Get(
        string name, GroupService groups, long experiment = Data.Experiment.DefaultId, string metric = "accuracy", CancellationToken ct = default)
    {
        if (!GroupService.Metrics.Contains(metric))
            return ApiResults.Invalid("metric", $"Unknown metric '{metric}'; one of {string.Join(", ", GroupService.Metrics)}.");
        var data = await groups.LoadAsync(experiment, NameOf(name), ct);
        return data is null ? NotFound(NameOf(name), experiment) : TypedResults.Ok(groups.Analyze(data, metric));
    }

    /// <summary>The statistics <see cref="Get"/> answers, as a table (the same checks: an unknown metric or group is refused alike).</summary>
    static async Task<IResult> GetCsv(string name, GroupService groups, HttpContext context, long experiment = Data.Experiment.DefaultId,
        string metric = "accuracy", CancellationToken ct = default)
    {
        var found = await Get(name, groups, experiment, metric, ct);
        if (found.Result is not Ok<GroupAnalysis> { Value: { } analysis }) return found.Result;
        var lines = new List<string>
        {
            CsvText.Row("configuration", "track", "seeds", $"final_{metric}_mean", "final_ci95", $"best_{metric}_mean", "best_ci95",
                "gap_final_mean", "gap_final_ci95", "gap_final_p", "gap_final_steps", "best_step", "gap_best_mean", "gap_best_ci95", "gap_best_p",
                    "best_track", "verdict"),
        };
        foreach (var configuration in analysis.Configurations)
            foreach (var t in configuration.Tracks)
                lines.Add(CsvText.Row(configuration.Label, t.Track, t.Seeds, t.Final.Mean, t.Final.ConfidenceHalfWidth, t.Best.Mean,
                    t.Best.ConfidenceHalfWidth,
                    t.FinalGap?.Difference.Mean, t.FinalGap?.Difference.ConfidenceHalfWidth, t.FinalGap?.PValue,
                        t.FinalGapSteps?.ToString().Replace("–", "-", StringComparison.Ordinal).Replace(",", "", StringComparison.Ordinal),
                        t.BestStep,
                    t.BestGap?.Difference.Mean, t.BestGap?.Difference.ConfidenceHalfWidth, t.BestGap?.PValue, t.Track == configuration.BestTrack,
                        t.Verdict));
        context.Response.Headers.ContentDisposition = $"attachment; filename=\"group-{ApiResults.Slug(analysis.Name)}.csv\"";
        return TypedResults.Text(string.Join("\n", lines) + "\n", "text/csv; charset=utf-8");
    }

    static async Task<Results<Ok<List<GroupService.PostHocOutcome>>, ValidationProblem, ProblemHttpResult>> ReconstructPostHoc(
        string name, HttpRequest http, GroupService groups, long experiment = Data.Experiment.DefaultId, CancellationToken ct = default)
    {
        GroupPostHocRequest request;
        try { request = RequestJson.Deserialize<GroupPostHocRequest>(await ApiResults.ReadJsonAsync(http, ct)); }
        catch (RequestValidationException e) { return ApiResults.Invalid(e); }
        if (request.SigmaRel is not { } sigmaRel) return ApiResults.Invalid("sigmaRel", "Give the σ_rel to reconstruct on every run.");
        var data = await groups.LoadAsync(experiment, NameOf(name), ct);
        if (data is null) return NotFound(NameOf(name), experiment);
        return TypedResults.Ok(await groups.ReconstructAsync(data, sigmaRel, CallerClaims.Of(http.HttpContext)!));
    }

    /// <summary>The API address of a group (its name escaped as one path segment).</summary>
    public static string UrlOf(string name, long experimentId) => $"/api/groups/{Uri.EscapeDataString(name)}?experiment={experimentId}";

    /// <summary>Routing decodes every escape in a segment but <c>%2F</c> (so a slash cannot split the path): that one is decoded here.</summary>
    static string NameOf(string routeValue) => routeValue.Replace("%2F", "/", StringComparison.OrdinalIgnoreCase);

    static ProblemHttpResult NotFound(string name, long experiment) =>
        TypedResults.Problem($"Experiment {experiment} has no group '{name}'.", statusCode: StatusCodes.Status404NotFound, title: "Not found");
}
