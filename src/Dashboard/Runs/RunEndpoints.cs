using EmaLab.Dashboard.Metrics;
using static EmaLab.Dashboard.Hosting.ApiResults;
using System.Globalization;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Runs;

/// <summary>The runs' part of the REST API (minimal APIs), under the <c>/api</c> group the API module makes.</summary>
public static class RunEndpoints
{
    public static void MapRunApi(this RouteGroupBuilder api)
    {
        var runs = api.MapGroup("/runs").WithTags("Runs");
        runs.MapGet("", ListRuns).ForAnyCaller("lists the runs the caller may read")
            .WithSummary("Lists runs, newest first; filters: search (in the name), status, experiment, dataset, model, group, tag (a key, or key=value), trackingId (MLflow's run_id); all combine.");
        runs.MapPost("", CreateRun).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experimentId").WithSummary("Creates and queues a run from a run specification (plus optional name and checkpointEvery).")
            .RequireJsonBody()
            .Accepts<RunSpec>("application/json");
        runs.MapGet("/{id:long}", GetRun).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Run, "id").WithSummary("One run with its spec, tracks and live progress.");
        runs.MapPatch("/{id:long}", UpdateRun).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Run, "id").RequireJsonBody().Accepts<RunUpdate>("application/json")
            .WithSummary("Renames the run and sets its notes and tags (each field only when given; 'tags' replaces the run's own tags, system tags stay).");
        runs.MapPost("/{id:long}/cancel", CancelRun).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Run, "id").WithSummary("Cancels a queued or running run.");
        runs.MapPost("/{id:long}/resume", ResumeRun).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Run, "id").WithSummary("Continues an interrupted or cancelled run from its resume bundle.");
        runs.MapPost("/{id:long}/clone", CloneRun).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Run, "id")
            .Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Experiment, "experimentId", optional: true).WithSummary("Creates a new run from this one's spec with overrides (e.g. other decays).")
            .RequireJsonBody(optional: true)
            .Accepts<RunSpec>(isOptional: true, "application/json");
        runs.MapDelete("/{id:long}", DeleteRun).Needs(ExperimentPermissionLevel.Manage, ExperimentOf.Run, "id").WithSummary("Stops the run if needed and removes its rows and files.");
        runs.MapGet("/{id:long}/metrics", GetMetrics).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Run, "id")
            .WithSummary("Metric series (downsampled with min/max buckets unless maxPoints=0); without key, the list of series.");
        runs.MapGet("/{id:long}/metrics.csv", GetMetricsCsv).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Run, "id").WithSummary("Every metric of the run as CSV.");
        runs.MapGet("/{id:long}/events", GetEvents).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Run, "id").WithSummary("Server-Sent Events: live metrics, progress and status of the run.")
            .DisableRateLimiting(); // long-lived: capped by count instead (EmaLab:MaxEventStreams*)
        runs.MapGet("/{id:long}/checkpoints", GetCheckpoints).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Run, "id").WithSummary("The run's checkpoints (raw and each EMA, periodic and final).");
        runs.MapGet("/{id:long}/posthoc", GetPostHoc).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Run, "id").WithTags("Post-hoc EMA")
            .WithSummary("Post-hoc tracks, the sweep's progress, and the run's classic EMAs on the σ_rel axis.");
        runs.MapPost("/{id:long}/posthoc", ReconstructPostHoc).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Run, "id").WithTags("Post-hoc EMA").RequireJsonBody().Accepts<PostHocRequest>("application/json")
            .WithSummary("Reconstructs the EMA of a σ_rel (or of a classic decay) from the snapshots, evaluates it and stores it as a track.");
        runs.MapGet("/{id:long}/posthoc/lawa", GetLawaOptions).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Run, "id").WithTags("Post-hoc EMA")
            .WithSummary("The steps whose raw weights were kept, and the LAWAs (k copies ν steps apart) they allow.");
        runs.MapPost("/{id:long}/posthoc/lawa", ReconstructLawa).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Run, "id").WithTags("Post-hoc EMA").RequireJsonBody().Accepts<LawaRequest>("application/json")
            .WithSummary("LAWA after the fact: the mean of the k latest raw checkpoints ν steps apart, evaluated and stored as a track.");
        runs.MapPost("/{id:long}/posthoc/sweep", StartSweep).Needs(ExperimentPermissionLevel.Edit, ExperimentOf.Run, "id").WithTags("Post-hoc EMA").RequireJsonBody().Accepts<SweepRequest>("application/json")
            .WithSummary("Reconstructs and evaluates a range of σ_rel values in the background.");
        runs.MapGet("/{id:long}/log", GetLog).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Run, "id").WithSummary("The run's log: start, spec summary, evaluations, warnings, errors.");

        api.MapGet("/checkpoints/{id:long}/download", DownloadCheckpoint).Needs(ExperimentPermissionLevel.Read, ExperimentOf.Checkpoint, "id").WithTags("Checkpoints").WithSummary("The checkpoint's .safetensors file.");
        api.MapGet("/models", () => new[]
        {
            new ModelInfo(ModelArchitecture.Mlp, "Multi-layer perceptron (Flatten, Linear+ReLU per hidden size, Linear)",
                ModelArchitecture.DefaultHidden),
            new ModelInfo(ModelArchitecture.Cnn, "CNN: per channel count Conv3x3 + BatchNorm + ReLU + MaxPool2, then Linear",
                ModelArchitecture.DefaultChannels),
            new ModelInfo(ModelArchitecture.ResNet, $"ResNet: a Conv3x3 stem, then per channel count a stage of 'blocks' basic blocks " +
                $"(default {ModelArchitecture.DefaultBlocks}: ResNet-20; each stage after the first halves the size), global average pooling, Linear",
                ModelArchitecture.DefaultResNetChannels),
        }).ForAnyCaller("the model catalog").WithTags("Catalog").WithSummary("Model kinds and their default sizes.");
    }

    const int MaxPage = 1_000_000;

    static async Task<Results<Ok<RunPage>, ValidationProblem>> ListRuns(
        HttpContext http, RunQueries queries, ActiveRuns active, string? status = null, long? experiment = null, string? search = null,
        string? dataset = null, string? model = null, string? group = null, string? tag = null, string? trackingId = null, int page = 1,
        int pageSize = 50, string? sort = null, string? order = null, CancellationToken ct = default)
    {
        if (page is < 1 or > MaxPage) return Invalid("page", $"page must be from 1 to {MaxPage:N0}.");
        MetricOrder? sorted = null;
        if (!string.IsNullOrEmpty(sort))
        {
            if (MetricColumn.Parse(sort) is not { } column)
                return Invalid("sort", $"'{sort}' is not a metric column: key~track~summary, the summary one of last, best, min, max or at:<step> (val_acc~raw~best).");
            if (order is not (null or "asc" or "desc")) return Invalid("order", $"order must be asc or desc, not '{order}'.");
            sorted = new MetricOrder(column, Descending: order != "asc");
        }
        if (pageSize is < 1 or > 500) return Invalid("pageSize", "pageSize must be from 1 to 500.");
        RunStatus? wanted = null;
        if (!string.IsNullOrEmpty(status))
        {
            if (!Enum.TryParse<RunStatus>(status, ignoreCase: true, out var s) || int.TryParse(status, out _))
                return Invalid("status",
                    $"Unknown status '{status}'; one of {string.Join(", ", Enum.GetValues<RunStatus>().Select(v => v.ToApi()))}.");
            wanted = s;
        }
        var listed = await queries.PageAsync(new RunFilter(search, wanted, experiment, dataset, model, group, tag, trackingId, ReadableExperiments.Of(http)),
            page, pageSize, sorted, ct);
        return TypedResults.Ok(new RunPage(listed.Runs.Select(r => RunDto.From(r, active.ProgressOf(r.Id))).ToList(), listed.Total, page, pageSize));
    }

    static async Task<Results<Ok<RunDto>, ValidationProblem, ProblemHttpResult>> UpdateRun(long id, HttpRequest request, RunService runs,
        RunQueries queries, ActiveRuns active, CancellationToken ct)
    {
        try
        {
            var update = RequestJson.Deserialize<RunUpdate>(await ReadJsonAsync(request, ct));
            if (await runs.UpdateAsync(id, update, CallerOf(request), ct) is null) return NotFound(id);
            return TypedResults.Ok(RunDto.From((await queries.FindAsync(id, ct))!, active.ProgressOf(id)));
        }
        catch (RequestValidationException e)
        {
            return Invalid(e);
        }
    }

    static async Task<Results<Created<RunDto>, ValidationProblem>> CreateRun(HttpRequest request, RunService runs, CancellationToken ct)
    {
        try
        {
            var run = await runs.CreateAsync(RunRequest.Parse(await ReadJsonAsync(request, ct)), CallerOf(request), ct);
            return TypedResults.Created($"/api/runs/{run.Id}", RunDto.From(run, null));
        }
        catch (RequestValidationException e)
        {
            return Invalid(e);
        }
    }

    static async Task<Results<Ok<RunDto>, ProblemHttpResult>> GetRun(long id, RunQueries queries, ActiveRuns active, CancellationToken ct) =>
        await queries.FindAsync(id, ct) is { } run ? TypedResults.Ok(RunDto.From(run, active.ProgressOf(id))) : NotFound(id);

    static async Task<Results<Ok<RunDto>, Accepted<RunDto>, ProblemHttpResult>> CancelRun(long id, HttpRequest request, RunService runs,
        RunQueries queries, ActiveRuns active, CancellationToken ct) =>
        await AfterAction(id, await runs.CancelAsync(id, CallerOf(request), ct), queries, active, ct);

    static async Task<Results<Ok<RunDto>, Accepted<RunDto>, ProblemHttpResult>> ResumeRun(long id, HttpRequest request, RunService runs,
        RunQueries queries, ActiveRuns active, CancellationToken ct) =>
        await AfterAction(id, await runs.ResumeAsync(id, CallerOf(request), ct), queries, active, ct);

    /// <summary>The run as it stands after a cancel or resume (202 while it is still stopping), or why the action was refused.</summary>
    static async Task<Results<Ok<RunDto>, Accepted<RunDto>, ProblemHttpResult>> AfterAction(
        long id, (RunService.Outcome Outcome, string? Message) result, RunQueries queries, ActiveRuns active, CancellationToken ct) =>
            result.Outcome switch
    {
        RunService.Outcome.NotFound => NotFound(id),
        RunService.Outcome.Conflict => Conflict(result.Message!),
        RunService.Outcome.Accepted => TypedResults.Accepted($"/api/runs/{id}", RunDto.From((await queries.FindAsync(id, ct))!, active.ProgressOf(id))),
        _ => TypedResults.Ok(RunDto.From((await queries.FindAsync(id, ct))!, active.ProgressOf(id))),
    };

    static async Task<Results<Created<RunDto>, ValidationProblem, ProblemHttpResult>> CloneRun(long id, HttpRequest request, RunService runs,
        RunQueries queries, CancellationToken ct)
    {
        var original = await queries.FindAsync(id, ct);
        if (original is null) return NotFound(id);
        try
        {
            var overrides = request.ContentLength is 0 || (request.ContentLength is null && !request.HasJsonContentType()) ? null
                : await ReadJsonAsync(request, ct);
            var run = await runs.CreateAsync(RunRequest.CloneOf(original, overrides), CallerOf(request), ct);
            return TypedResults.Created($"/api/runs/{run.Id}", RunDto.From(run, null));
        }
        catch (RequestValidationException e)
        {
            return Invalid(e);
        }
    }

    static async Task<Results<NoContent, Accepted, ProblemHttpResult>> DeleteRun(long id, HttpRequest request, RunService runs,
        CancellationToken ct) =>
        await runs.DeleteAsync(id, CallerOf(request), ct) switch
        {
            RunService.Outcome.NotFound => NotFound(id),
            RunService.Outcome.Accepted => TypedResults.Accepted($"/api/runs/{id}"), // removed once its current step ends
            _ => TypedResults.NoContent(),
        };

    static async Task<Results<Ok<List<SeriesInfo>>, Ok<List<MetricSeries>>, ValidationProblem, ProblemHttpResult>> GetMetrics(
        long id, RunQueries queries, MetricQueries metrics, string? key = null, string? track = null, int maxPoints = MetricQueries.DefaultMaxPoints,
            CancellationToken ct = default)
    {
        if (maxPoints != 0 && maxPoints is < 10 or > 1_000_000)
            return Invalid("maxPoints", "maxPoints must be 0 (full resolution) or from 10 to 1,000,000.");
        var run = await queries.FindAsync(id, ct);
        if (run is null) return NotFound(id);
        // One named series is read directly (listing every series scans the whole run).
        if (key is not null && track is not null)
            return TypedResults.Ok(metrics.Read(id, track, key, maxPoints) is { TotalPoints: > 0 } one ? [one] : new List<MetricSeries>());
        var series = metrics.ListSeries(id);
        if (key is null && track is null) return TypedResults.Ok(series);
        var wanted = series.Where(s => (key is null || s.Key == key) && (track is null || s.Track == track)).ToList();
        return TypedResults.Ok(wanted.Select(s => metrics.Read(id, s.Track, s.Key, maxPoints)).ToList());
    }

    static async Task<IResult> GetMetricsCsv(long id, RunQueries queries, MetricQueries metrics, HttpContext context, CancellationToken ct)
    {
        var run = await queries.FindAsync(id, ct);
        if (run is null) return NotFound(id);
        context.Response.ContentType = "text/csv; charset=utf-8";
        context.Response.Headers.ContentDisposition = $"attachment; filename=\"run{id}-metrics.csv\"";
        await metrics.WriteCsvAsync(id, context.Response.Body, ct);
        return TypedResults.Empty;
    }

    static async Task<Results<ServerSentEventsResult<RunEvent>, ProblemHttpResult>> GetEvents(
        long id, HttpContext http, RunQueries queries, RunEventHub hub, IStreamAccess access, IOptions<EmaLabOptions> options, CancellationToken ct)
    {
        if (await queries.FindAsync(id, ct) is not { } run) return NotFound(id);
        // The stream lasts while its caller may read the run: a revoked token or a removed grant ends it.
        ct = await access.WhileAllowedAsync(http, run.ExperimentId);
        var subscription = hub.TrySubscribeStream(id, options.Value.Limits.MaxEventStreamsPerRun, options.Value.Limits.MaxEventStreams);
        if (subscription is null)
            return TypedResults.Problem($"Too many event streams (at most {options.Value.Limits.MaxEventStreamsPerRun} per run and {options.Value.Limits.MaxEventStreams} in all); close one or poll /api/runs/{id}.",
                statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests");
        // The stream opens with where the run stands, so a client sees it at once (also for a finished run).
        var current = new RunEvent(RunEventType.Status, id) { Status = run.Status.ToApi(), Step = run.Step, TotalSteps = run.TotalSteps,
            Message = run.Error };
        return TypedResults.ServerSentEvents(Stream(current, subscription, ct));

        static async IAsyncEnumerable<SseItem<RunEvent>> Stream(RunEvent current, RunEventHub.Subscription subscription,
            [EnumeratorCancellation] CancellationToken ct)
        {
            using (subscription)
            {
                yield return new SseItem<RunEvent>(current, WireNames.Of(current.Type));
                while (true)
                {
                    // Ended (the client left, or its access did): the stream closes as a finished answer, not an error.
                    try { if (!await subscription.Reader.WaitToReadAsync(ct)) yield break; }
                    catch (OperationCanceledException) { yield break; }
                    while (subscription.Reader.TryRead(out var e)) yield return new SseItem<RunEvent>(e, WireNames.Of(e.Type));
                }
            }
        }
    }

    static async Task<Results<Ok<List<CheckpointDto>>, ProblemHttpResult>> GetCheckpoints(long id, RunQueries queries, CancellationToken ct) =>
        await queries.CheckpointsAsync(id, ct) is { } list ? TypedResults.Ok(list.Select(CheckpointDto.From).ToList()) : NotFound(id);

    // The post-hoc service checks the request and the caller, and refuses as Api/ServiceRefusals answers (400, 403, 404, 409).
    static async Task<Results<Ok<PostHocResult>, ValidationProblem, ProblemHttpResult>> ReconstructPostHoc(long id, HttpRequest http,
        PostHocService postHoc, CancellationToken ct) =>
        TypedResults.Ok(await postHoc.ReconstructAsync(id, RequestJson.Deserialize<PostHocRequest>(await ReadJsonAsync(http, ct)), CallerOf(http), ct));

    static async Task<Results<Ok<LawaOptions>, ProblemHttpResult>> GetLawaOptions(long id, PostHocService postHoc, CancellationToken ct)
    {
        var (run, _) = await postHoc.CheckAsync(id, ct);
        return run is null ? NotFound(id) : TypedResults.Ok(await postHoc.LawaOptionsAsync(run, ct));
    }

    static async Task<Results<Ok<PostHocResult>, ValidationProblem, ProblemHttpResult>> ReconstructLawa(long id, HttpRequest http,
        PostHocService postHoc, CancellationToken ct) =>
        TypedResults.Ok(await postHoc.ReconstructLawaAsync(id, RequestJson.Deserialize<LawaRequest>(await ReadJsonAsync(http, ct)), CallerOf(http), ct));

    static async Task<Results<Accepted<SweepStatus>, ValidationProblem, ProblemHttpResult>> StartSweep(long id, HttpRequest http,
        PostHocService postHoc, CancellationToken ct) =>
        TypedResults.Accepted($"/api/runs/{id}/posthoc",
            await postHoc.StartSweepAsync(id, RequestJson.Deserialize<SweepRequest>(await ReadJsonAsync(http, ct)), CallerOf(http), ct));

    /// <summary>The request's caller: the access filter has refused anyone not signed in before a handler runs.</summary>
    static Caller CallerOf(HttpRequest request) => CallerClaims.Of(request.HttpContext)!;

    static async Task<Results<Ok<PostHocOverview>, ProblemHttpResult>> GetPostHoc(long id, RunQueries queries, PostHocService postHoc,
        CancellationToken ct) =>
        await queries.FindAsync(id, ct) is { } run ? TypedResults.Ok(await postHoc.OverviewAsync(run, ct)) : NotFound(id);

    static async Task<Results<Ok<List<LogEntryDto>>, ProblemHttpResult>> GetLog(long id, RunQueries queries, CancellationToken ct) =>
        await queries.LogAsync(id, ct) is { } entries ? TypedResults.Ok(entries.Select(LogEntryDto.From).ToList()) : NotFound(id);

    static async Task<Results<PhysicalFileHttpResult, ProblemHttpResult>> DownloadCheckpoint(
        long id, RunQueries queries, DataPaths paths, CancellationToken ct)
    {
        if (await queries.CheckpointFileAsync(id, ct) is not var (checkpoint, runName))
            return TypedResults.Problem($"Checkpoint {id} does not exist.", statusCode: StatusCodes.Status404NotFound, title: "Not found");
        var path = paths.Absolute(checkpoint.RelativePath);
        if (!File.Exists(path))
            return TypedResults.Problem($"The file of checkpoint {id} is missing.", statusCode: StatusCodes.Status410Gone, title: "Gone");
        var fileName = $"{Slug(runName)}-run{checkpoint.RunId}-{checkpoint.Track}-step{checkpoint.Step}.safetensors";
        return TypedResults.PhysicalFile(path, "application/octet-stream", fileName);
    }

    static ProblemHttpResult NotFound(long id) =>
        TypedResults.Problem($"Run {id.ToString(CultureInfo.InvariantCulture)} does not exist.", statusCode: StatusCodes.Status404NotFound,
            title: "Not found");
}
