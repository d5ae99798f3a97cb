using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Hosting;
using System.Globalization;
using System.Linq.Expressions;
using System.Text.RegularExpressions;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine;
using Microsoft.EntityFrameworkCore;
using static EmaLab.Dashboard.Tracking.MlflowValidation;
using static EmaLab.Dashboard.Data.MlflowLimits;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// The MLflow tracking store over EMA Lab's database: experiments, runs, params, tags and metrics as MLflow's
/// server keeps them (mlflow/store/tracking/sqlalchemy_store.py), with its validation rules and messages
/// (mlflow/utils/validation.py). Metrics go through the same <see cref="MetricPipeline"/> as the engine's.
/// </summary>
public sealed partial class TrackingService(
    IDbContextFactory<EmaLabDbContext> dbFactory,
    MetricPipeline pipeline,
    EmaLabDatabase database,
    RunLifecycle lifecycle,
    IAuditTrail audit)
{
    static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    // ---------------------------------------------------------------- experiments

    public async Task<string> CreateExperimentAsync(CreateExperimentRequest request, CancellationToken ct)
    {
        var name = request.Name;
        if (string.IsNullOrEmpty(name)) throw MlflowException.Missing("name");
        if (Length(name) > Experiment.MaxNameLength)
            throw MlflowException.Invalid($"Experiment name exceeds the maximum length of {Experiment.MaxNameLength} characters");
        var tags = (request.Tags ?? []).Select(t => ValidExperimentTag(t.Key, t.Value)).ToList();
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        if (await db.Experiments.AnyAsync(e => e.Name == name, ct))
            throw new MlflowException(MlflowException.ResourceAlreadyExists, $"Experiment(name={name}) already exists.");
        var now = Now;
        var experiment = new Experiment
        {
            Name = name, ArtifactLocation = ResolvedIfLocal(request.ArtifactLocation), CreationTimeMs = now, LastUpdateTimeMs = now,
            Tags = tags.Select(t => new ExperimentTag { Key = t.Key, Value = t.Value }).ToList(),
        };
        db.Experiments.Add(experiment);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (database.IsUniqueViolation(e))
        {
            throw new MlflowException(MlflowException.ResourceAlreadyExists, $"Experiment(name={name}) already exists.");
        }
        return Id(experiment.Id);
    }

    public async Task<MlflowExperiment> GetExperimentAsync(string? experimentId, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        return ToDto(await FindExperimentAsync(db, experimentId, ct));
    }

    public async Task<MlflowExperiment> GetExperimentByNameAsync(string? name, CancellationToken ct)
    {
        if (name is null) throw MlflowException.Missing("experiment_name");
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var experiment = await db.Experiments.Include(e => e.Tags).AsNoTracking().SingleOrDefaultAsync(e => e.Name == name, ct)
            ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Could not find experiment with name '{name}'");
        return ToDto(experiment);
    }

    public async Task<(List<MlflowExperiment> Experiments, string? NextPageToken)> SearchExperimentsAsync(SearchExperimentsRequest request,
        CancellationToken ct)
    {
        var max = MaxResults(request.MaxResults);
        var view = ViewType(request.ViewType);
        var filter = SearchFilter.Parse(request.Filter, SearchFilter.Entity.Experiment);
        var order = SearchOrder.Parse(request.OrderBy, SearchFilter.Entity.Experiment);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var all = await db.Experiments.Include(e => e.Tags).AsNoTracking().ToListAsync(ct);
        var matching = all.Where(e => view.Includes(e.Deleted)).Select(ToDto).Where(filter.Matches).ToList();
        return Page(order.Sort(matching), request.PageToken, max);
    }

    public async Task DeleteExperimentAsync(string? experimentId, bool deleted, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var experiment = await FindExperimentAsync(db, experimentId, ct, tracking: true);
        if (deleted && experiment.Id == Experiment.DefaultId)
            throw MlflowException.Invalid("Cannot delete the default experiment '0'. This is an internally reserved experiment.");
        experiment.Deleted = deleted;
        experiment.LastUpdateTimeMs = Now;
        await db.SaveChangesAsync(ct);
    }

    public async Task RenameExperimentAsync(UpdateExperimentRequest request, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(request.NewName)) throw MlflowException.Missing("new_name");
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var experiment = await FindExperimentAsync(db, request.ExperimentId, ct, tracking: true);
        if (experiment.Deleted) throw MlflowException.Invalid("Cannot rename a non-active experiment.");
        if (await db.Experiments.AnyAsync(e => e.Name == request.NewName && e.Id != experiment.Id, ct))
            throw new MlflowException(MlflowException.ResourceAlreadyExists, $"Experiment(name={request.NewName}) already exists.");
        experiment.Name = request.NewName;
        experiment.LastUpdateTimeMs = Now;
        await db.SaveChangesAsync(ct);
    }

    public async Task SetExperimentTagAsync(SetExperimentTagRequest request, CancellationToken ct)
    {
        var (key, value) = ValidExperimentTag(request.Key, request.Value);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var experiment = await FindExperimentAsync(db, request.ExperimentId, ct, tracking: true);
        RequireActive(experiment);
        var existing = experiment.Tags.FirstOrDefault(t => t.Key == key);
        if (existing is null) experiment.Tags.Add(new ExperimentTag { Key = key, Value = value });
        else existing.Value = value;
        await db.SaveChangesAsync(ct);
    }

    /// <summary>MLflow's <c>experiments/delete-experiment-tag</c>: the experiment active, the tag there.</summary>
    public async Task DeleteExperimentTagAsync(SetExperimentTagRequest request, CancellationToken ct)
    {
        if (request.Key is null) throw MlflowException.Missing("key");
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var experiment = await FindExperimentAsync(db, request.ExperimentId, ct);
        RequireActive(experiment);
        if (await db.Set<ExperimentTag>().Where(t => t.ExperimentId == experiment.Id && t.Key == request.Key).ExecuteDeleteAsync(ct) == 0)
            throw new MlflowException(MlflowException.ResourceDoesNotExist, $"No tag with name: {request.Key} in experiment with id {request.ExperimentId}");
    }

    /// <summary>MLflow's <c>resolve_uri_if_local</c>: a location without a scheme is a path, made absolute under the server's
    /// working directory; a URI (<c>s3://…</c>, <c>file:///…</c>, <c>mlflow-artifacts:/…</c>) is kept as given.</summary>
    static string? ResolvedIfLocal(string? location) =>
        string.IsNullOrEmpty(location) || MlflowValidation.UriScheme(location) is not null ? location
            : Path.GetFullPath(location).Replace('\\', '/');

    internal static async Task<Experiment> FindExperimentAsync(EmaLabDbContext db, string? experimentId, CancellationToken ct, bool tracking = false)
    {
        if (experimentId is null) throw MlflowException.Missing("experiment_id");
        var id = ParseExperimentId(experimentId);
        var query = db.Experiments.Include(e => e.Tags);
        var experiment = await (tracking ? query : query.AsNoTracking()).SingleOrDefaultAsync(e => e.Id == id, ct);
        return experiment ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"No Experiment with id={experimentId} exists");
    }

    internal static void RequireActive(Experiment experiment)
    {
        if (experiment.Deleted)
            throw MlflowException.Invalid($"The experiment {experiment.Id} must be in the 'active' state. Current state is deleted.");
    }

    internal static long ParseExperimentId(string experimentId) =>
        Experiment.TryParseId(experimentId, out var id) ? id
            : throw new MlflowException(MlflowException.ResourceDoesNotExist, $"No Experiment with id={experimentId} exists");

    static (string Key, string Value) ValidExperimentTag(string? key, string? value)
    {
        Name("tag", key, "key");
        if (value is null) throw MlflowException.Missing("value");
        LengthLimit("key", MaxEntityKeyLength, key!);
        LengthLimit("value", MaxExperimentTagValueLength, value);
        return (key!, value);
    }

    static string Id(long id) => id.ToString(CultureInfo.InvariantCulture);

    public static MlflowExperiment ToDto(Experiment e) => new(
        Id(e.Id), e.Name, e.ArtifactLocation ?? $"mlflow-artifacts:/{Id(e.Id)}", e.Deleted ? "deleted" : "active",
        e.LastUpdateTimeMs, e.CreationTimeMs, e.Tags.Select(t => new MlflowTag(t.Key, t.Value)).ToList());

    // ---------------------------------------------------------------- runs

    /// <summary>MLflow's runs/create. On a server with accounts the run is the signed-in account's (<c>mlflow.user</c>): what
    /// the client sends names the user of the machine it runs on, whoever that is.</summary>
    public async Task<MlflowRun> CreateRunAsync(CreateRunRequest request, Caller creator, CancellationToken ct)
    {
        var tags = ValidTags(request.Tags ?? []);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var experiment = await FindExperimentAsync(db, request.ExperimentId ?? Id(Experiment.DefaultId), ct);
        RequireActive(experiment);
        // MLflow's run name: the argument, else the mlflow.runName tag, else a generated one; the tag is set to it.
        var name = request.RunName is { Length: > 0 } given ? given : tags.GetValueOrDefault(TagNames.RunName) is { Length: > 0 } tagged ? tagged
            : GeneratedName();
        if (request.RunName is { Length: > 0 } && tags.TryGetValue(TagNames.RunName, out var other) && other != request.RunName)
            throw MlflowException.Invalid($"Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='{request.RunName}', mlflow.runName='{other}').");
        tags[TagNames.RunName] = name;
        if (creator.Account is { } account) tags[TagNames.User] = account;
        else if (request.UserId is { Length: > 0 } user) tags.TryAdd(TagNames.User, user);
        var start = request.StartTime ?? Now;
        var runTags = tags.Select(t => new RunTag { Key = t.Key, Value = t.Value }).ToList();
        var run = new Run
        {
            Name = Truncate(name, MaxRunNameLength),
            Uuid = Run.NewUuid(),
            Origin = RunOrigin.Client,
            ExperimentId = experiment.Id,
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(start),
            StartedAt = DateTimeOffset.FromUnixTimeMilliseconds(start),
            Tracks = [new EmaTrack { Name = TrackNames.Raw }],
            Tags = runTags,
        };
        await lifecycle.CreateAsync(db, [run], ct);
        await audit.RecordAsync(creator, "run.create", $"run {run.Id}", $"{run.Name} ({run.Uuid})");
        // A new run has its tags and nothing else yet: answered from what was written, without reading it back.
        return ToDto(run, runTags, [], [], new Dictionary<(string, string), string>(), [], []);
    }

    public async Task<MlflowRun> GetRunAsync(string? runId, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var run = await FindRunAsync(db, runId, ct);
        return (await ToDtosAsync(db, [run], ct))[0];
    }

    public async Task<MlflowRunInfo> UpdateRunAsync(UpdateRunRequest request, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var run = await FindRunAsync(db, request.RunId ?? request.RunUuid, ct, tracking: true);
        RequireActive(run);
        RequireClient(run);
        if (request.Status is { } status)
        {
            RunLifecycle.SetClientStatus(run, status switch
            {
                "RUNNING" => RunStatus.Running,
                "SCHEDULED" => RunStatus.Queued,
                "FINISHED" => RunStatus.Completed,
                "FAILED" => RunStatus.Failed,
                "KILLED" => RunStatus.Cancelled,
                _ => throw MlflowException.Invalid($"Invalid value '{status}' for parameter 'status': one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED."),
            }, DateTimeOffset.FromUnixTimeMilliseconds(request.EndTime ?? Now));
        }
        else if (request.EndTime is { } end) RunLifecycle.SetClientEndTime(run, DateTimeOffset.FromUnixTimeMilliseconds(end));
        if (request.RunName is { Length: > 0 } name)
        {
            run.Name = Truncate(name, MaxRunNameLength);
            await UpsertTagAsync(db, run.Id, TagNames.RunName, name, ct);
        }
        await db.SaveChangesAsync(ct);
        lifecycle.Changed(run.Id, run.Status);
        // A run that ended has logged (a late call reads its keys again).
        if (run.Status.IsFinished()) _knownKeys.Forget(run.Id);
        return InfoOf(run, await db.RunTags.AsNoTracking().Where(t => t.RunId == run.Id).ToListAsync(ct));
    }

    /// <summary>MLflow's soft delete and restore: the run is hidden from lists and searches, and kept.</summary>
    public async Task SetRunDeletedAsync(string? runId, bool deleted, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var run = await FindRunAsync(db, runId, ct, tracking: true);
        run.Deleted = deleted;
        await db.SaveChangesAsync(ct);
        lifecycle.Changed(run.Id, run.Status);
        if (deleted) _knownKeys.Forget(run.Id);
    }

    /// <summary>
    /// log-batch, log-metric, log-parameter and set-tag in one: everything is validated before anything is written
    /// (MLflow may write part of a batch; here a refused batch leaves no trace), then params and tags commit and the
    /// metrics go through the metric pipeline; the call returns once they are stored, so a read that follows sees them.
    /// </summary>
    public async Task LogBatchAsync(string? runId, IReadOnlyList<MlflowMetric> metrics, IReadOnlyList<MlflowTag> @params,
        IReadOnlyList<MlflowTag> tags, CancellationToken ct)
    {
        if (runId is null) throw MlflowException.Missing("run_id");
        BatchLimit("metrics", MaxMetricsPerBatch, metrics.Count);
        BatchLimit("params", MaxParamsTagsPerBatch, @params.Count);
        BatchLimit("tags", MaxParamsTagsPerBatch, tags.Count);
        BatchLimit("metrics, params, and tags", MaxEntitiesPerBatch, metrics.Count + @params.Count + tags.Count);
        // The fields log-batch requires (mlflow/server/handlers.py, _log_batch), named by their place in the request.
        for (var i = 0; i < metrics.Count; i++)
        {
            if (metrics[i].Key is null) throw MlflowException.Missing($"metrics[{i}].key");
            if (metrics[i].Value is null) throw MlflowException.Missing($"metrics[{i}].value");
            if (metrics[i].Timestamp is null) throw MlflowException.Missing($"metrics[{i}].timestamp");
        }
        for (var i = 0; i < @params.Count; i++) if (@params[i].Key is null) throw MlflowException.Missing($"params[{i}].key");
        for (var i = 0; i < tags.Count; i++) if (tags[i].Key is null) throw MlflowException.Missing($"tags[{i}].key");

        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var run = await FindRunAsync(db, runId, ct);
        RequireActive(run);
        if (metrics.Count > 0 || @params.Count > 0) RequireClient(run);

        // A key this run has logged before passed the name rules then: only the new ones are checked again.
        var known = await KnownKeysAsync(db, run.Id, ct);
        var validMetrics = metrics.Select((m, i) => ValidMetric(m, $"metrics[{i}]", nameChecked: known.ContainsKey(m.Key!))).ToList();
        var validParams = new Dictionary<string, string>();
        foreach (var p in @params)
        {
            Name("param", p.Key, $"params[{validParams.Count}].key");
            LengthLimit("Param key", MaxEntityKeyLength, p.Key!);
            if (!validParams.TryAdd(p.Key!, Truncate(p.Value ?? "", MaxParamValueLength)))
                throw MlflowException.Invalid($"Duplicate parameter keys have been submitted: ['{p.Key}']. Please ensure the request contains only one param value per param key.");
        }
        var validTags = ValidTags(tags);
        var stored = validParams.Count == 0 ? []
            : await db.Params.AsNoTracking().Where(p => p.RunId == run.Id).ToDictionaryAsync(p => p.Key, p => p.Value, ct);
        foreach (var (key, value) in validParams)
            if (stored.TryGetValue(key, out var old) && old != value)
                throw MlflowException.Invalid($"Changing param values is not allowed. Param with key='{key}' was already logged with value='{old}' for run ID='{run.Uuid}'. Attempted logging new value '{value}'.");

        // Keys already mapped (the common case: the same keys every batch) come from memory; a new key is mapped by
        // the suffix map, which the same batch may set (tags are applied first).
        var newKeys = new List<ClientMetricKey>();
        IReadOnlyDictionary<string, string>? suffixes = null;
        var mapped = new List<(string Track, string Key, MlflowMetric Metric)>(validMetrics.Count);
        foreach (var metric in validMetrics)
        {
            (string Track, string Key) key;
            if (known.TryGetValue(metric.Key!, out var mappedBefore)) key = mappedBefore;
            else if (newKeys.FirstOrDefault(k => k.LoggedKey == metric.Key) is { } added) key = (added.Track, added.Key);
            else
            {
                suffixes ??= ClientTrackKeys.ParseSuffixes(validTags.TryGetValue(TagNames.TrackSuffixes, out var newSuffixes) ? newSuffixes
                    : await db.RunTags.AsNoTracking().Where(t => t.RunId == run.Id && t.Key == TagNames.TrackSuffixes).Select(t => t.Value)
                        .SingleOrDefaultAsync(ct));
                key = ClientTrackKeys.Map(metric.Key!, suffixes);
                newKeys.Add(new ClientMetricKey { RunId = run.Id, LoggedKey = metric.Key!, Track = key.Track, Key = key.Key });
            }
            mapped.Add((key.Track, key.Key, metric));
        }

        // Metrics naming a logged model (log_model copies the run's metrics of its step) are the model's too.
        var modelMetrics = await LoggedModelService.ModelMetricsAsync(db, run.Id, validMetrics, ct);

        if (validParams.Count + validTags.Count + newKeys.Count + modelMetrics.Count > 0)
        {
            db.LoggedModelMetrics.AddRange(modelMetrics);
            db.Params.AddRange(validParams.Where(p => !stored.ContainsKey(p.Key))
                .Select(p => new RunParam { RunId = run.Id, Key = p.Key, Value = p.Value }));
            foreach (var (key, value) in validTags) await UpsertTagAsync(db, run.Id, key, value, ct);
            db.ClientMetricKeys.AddRange(newKeys);
            if (newKeys.Count > 0)
            {
                var tracks = await db.Tracks.AsNoTracking().Where(t => t.RunId == run.Id).Select(t => t.Name).ToListAsync(ct);
                db.Tracks.AddRange(newKeys.Select(k => k.Track).Distinct().Except(tracks)
                    .Select(t => new EmaTrack { RunId = run.Id, Name = t, Decay = ClientTrackKeys.DecayOf(t) }));
            }
            await SaveIgnoringRacesAsync(db, ct);
            // What is stored is what counts (a concurrent request may have mapped the same key first).
            if (newKeys.Count > 0) _knownKeys.Forget(run.Id);
        }

        if (mapped.Count == 0) return;
        // Rows the store refused for good are not taken again and again (the pipeline drops them): say so instead of 200.
        if (pipeline.StoreFailureOf(run.Id) is { } failed) throw new MlflowException(MlflowException.InternalError, failed);
        await pipeline.WriteClientMetricsAsync(run.Id,
            mapped.Select(m => new MetricRow(m.Track, m.Key, m.Metric.Step ?? 0, m.Metric.Value!.Value, m.Metric.Timestamp ?? 0)).ToArray(), ct);
        await pipeline.FlushAsync();
        if (pipeline.StoreFailureOf(run.Id) is { } reason) throw new MlflowException(MlflowException.InternalError, reason);
    }

    readonly ClientKeyCache _knownKeys = new(ClientKeyCache.DefaultCapacity);

    /// <summary>The runs whose key mapping is held now (for tests of when it is let go).</summary>
    internal ClientKeyCache KnownKeys => _knownKeys;

    /// <summary>Each client run's logged key → (track, key), as stored (see <see cref="ClientKeyCache"/>).</summary>
    async Task<IReadOnlyDictionary<string, (string Track, string Key)>> KnownKeysAsync(EmaLabDbContext db, long runId, CancellationToken ct)
    {
        if (_knownKeys.Get(runId) is { } cached) return cached;
        var stored = await db.ClientMetricKeys.AsNoTracking().Where(k => k.RunId == runId)
            .ToDictionaryAsync(k => k.LoggedKey, k => (k.Track, k.Key), ct);
        _knownKeys.Set(runId, stored);
        return stored;
    }

    public async Task DeleteTagAsync(DeleteTagRequest request, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var run = await FindRunAsync(db, request.RunId, ct);
        RequireActive(run);
        if (request.Key is null) throw MlflowException.Missing("key");
        var deleted = await db.RunTags.Where(t => t.RunId == run.Id && t.Key == request.Key).ExecuteDeleteAsync(ct);
        if (deleted == 0) throw new MlflowException(MlflowException.ResourceDoesNotExist,
            $"No tag with name: {request.Key} in run with id {run.Uuid}");
    }

    public async Task<(List<MlflowMetric> Metrics, string? NextPageToken)> GetMetricHistoryAsync(string? runId, string? metricKey, int? maxResults,
        string? pageToken, CancellationToken ct)
    {
        if (metricKey is null) throw MlflowException.Missing("metric_key");
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var run = await FindRunAsync(db, runId, ct);
        var (track, key) = await StoredKeyAsync(db, run, metricKey, ct);
        var offset = ParsePageToken(pageToken);
        var query = db.Metrics.AsNoTracking().Where(m => m.RunId == run.Id && m.Key == key && m.Track == track)
            .OrderBy(m => m.Step).ThenBy(m => m.WallTimeMs).Skip(offset);
        if (maxResults is { } max)
        {
            if (max < 1) throw MlflowException.Invalid($"Invalid value {max} for parameter 'max_results': it must be positive.");
            query = query.Take(max + 1);
        }
        var rows = (await query.Select(m => new { m.Value, m.WallTimeMs, m.Step }).ToListAsync(ct))
            .Select(m => new MlflowMetric(metricKey, m.Value ?? double.NaN, m.WallTimeMs, m.Step)).ToList(); // NULL stands for NaN
        if (maxResults is { } take && rows.Count > take)
            return (rows.Take(take).ToList(), (offset + take).ToString(CultureInfo.InvariantCulture));
        return (rows, null);
    }

    /// <summary>
    /// MLflow's UI route <c>metrics/get-history-bulk</c> (<c>get_metric_history_bulk_handler</c> over its SQL store): every
    /// value of the key in each run — runs by id, then by time, step and value —, the first <paramref name="maxResults"/>
    /// (25,000 at most). A run id that names no run adds nothing, as MLflow's store filters the ids it knows.
    /// </summary>
    public async Task<List<MlflowMetricWithRunId>> GetMetricHistoryBulkAsync(IReadOnlyList<string> runIds, string? metricKey, int? maxResults,
        CancellationToken ct)
    {
        if (runIds.Count == 0) throw MlflowException.Invalid("GetMetricHistoryBulk request must specify at least one run_id.");
        if (runIds.Count > MaxRunsPerBulkHistory)
            throw MlflowException.Invalid($"GetMetricHistoryBulk request cannot specify more than {MaxRunsPerBulkHistory} run_ids. Received {runIds.Count} run_ids.");
        if (metricKey is null) throw MlflowException.Invalid("GetMetricHistoryBulk request must specify a metric_key.");
        var max = Math.Min(maxResults ?? MaxResultsGetMetricHistory, MaxResultsGetMetricHistory);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var metrics = new List<MlflowMetricWithRunId>();
        foreach (var runId in runIds.Distinct().Order(StringComparer.Ordinal))
        {
            if (await _runByUuid(db, runId, ct) is not { } run) continue;
            var (track, key) = await StoredKeyAsync(db, run, metricKey, ct);
            metrics.AddRange((await db.Metrics.AsNoTracking().Where(m => m.RunId == run.Id && m.Key == key && m.Track == track)
                    .Select(m => new { m.Step, m.WallTimeMs, m.Value }).ToListAsync(ct))
                .OrderBy(m => m.WallTimeMs).ThenBy(m => m.Step).ThenBy(m => m.Value ?? double.NaN)
                .Select(m => new MlflowMetricWithRunId(metricKey, m.Value ?? double.NaN, m.WallTimeMs, m.Step, run.Uuid)));
            if (metrics.Count >= max) break;
        }
        return metrics.Take(max).ToList();
    }

    // mlflow/server/handlers.py: the limits of get-history-bulk-interval.
    public const int MaxRunsPerBulkHistory = 100;
    public const int MaxResultsPerRun = 2500;
    const int MaxResultsGetMetricHistory = 25000;

    /// <summary>
    /// metrics/get-history-bulk-interval as MLflow's server answers it: the steps the runs logged (within start..end, or
    /// 0..the last), sampled evenly down to max_results (2,500 at most) as <c>_get_sampled_steps_from_steps</c> does, plus
    /// each run's first and last step in range; then every value of the key at those steps, by run and step.
    /// </summary>
    public async Task<List<MlflowMetricWithRunId>> GetMetricHistoryBulkIntervalAsync(
        IReadOnlyList<string> runIds, string? metricKey, long? start, long? end, long? maxResults, CancellationToken ct)
    {
        if (runIds.Count == 0) throw MlflowException.Missing("run_ids");
        if (runIds.Count > MaxRunsPerBulkHistory)
            throw MlflowException.Invalid($"GetMetricHistoryBulkInterval request must specify at most {MaxRunsPerBulkHistory} run_ids. Received {runIds.Count} run_ids.");
        if (string.IsNullOrEmpty(metricKey)) throw MlflowException.Missing("metric_key"); // _assert_required: "" is missing too
        var max = maxResults ?? MaxResultsPerRun;
        if (max is < 1 or > MaxResultsPerRun) throw MlflowException.Invalid($"max_results must be between 1 and {MaxResultsPerRun}.");
        if (start is { } s && end is { } e && s > e)
            throw MlflowException.Invalid($"end_step must be greater than start_step. Found start_step={s} and end_step={e}.");
        if (start is null != end is null) throw MlflowException.Invalid("If either start step or end step are specified, both must be specified.");

        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var histories = new List<(Run Run, List<(long Step, long Time, double? Value)> Points)>();
        foreach (var runId in runIds)
        {
            var run = await FindRunAsync(db, runId, ct);
            var (track, key) = await StoredKeyAsync(db, run, metricKey, ct);
            var points = (await db.Metrics.AsNoTracking().Where(m => m.RunId == run.Id && m.Key == key && m.Track == track)
                .OrderBy(m => m.Step).ThenBy(m => m.WallTimeMs).Select(m => new { m.Step, m.WallTimeMs, m.Value }).ToListAsync(ct))
                .Select(m => (m.Step, m.WallTimeMs, m.Value)).ToList();
            histories.Add((run, points));
        }
        var allSteps = histories.SelectMany(h => h.Points.Select(p => p.Step)).Distinct().Order().ToList();
        var (from, to) = (start ?? 0, end ?? (allSteps.Count > 0 ? allSteps[^1] : 0));
        var ends = histories.Where(h => h.Points.Count > 0).SelectMany(h => new[] { h.Points.Min(p => p.Step), h.Points.Max(p => p.Step) })
            .Where(step => from <= step && step <= to);
        var steps = SampledSteps(from, to, (int)max, allSteps).Union(ends).ToHashSet();
        return histories.SelectMany(h => h.Points.Where(p => steps.Contains(p.Step)).Take(MaxResultsGetMetricHistory)
            .Select(p => new MlflowMetricWithRunId(metricKey, p.Value ?? double.NaN, p.Time, p.Step, h.Run.Uuid))).ToList();
    }

    /// <summary>MLflow's <c>_get_sampled_steps_from_steps</c>: evenly spaced indices into the sorted steps in range, and the last one.</summary>
    static HashSet<long> SampledSteps(long start, long end, int maxResults, List<long> allSteps)
    {
        var startIndex = LowerBound(allSteps, start);
        var endIndex = LowerBound(allSteps, end + 1);
        if (endIndex - startIndex <= maxResults) return allSteps.GetRange(startIndex, endIndex - startIndex).ToHashSet();
        var count = endIndex - startIndex;
        var interval = (double)count / maxResults;
        var sampled = new HashSet<long>();
        for (var i = 0; i < maxResults; i++)
        {
            var index = startIndex + (int)(i * interval);
            if (index < count) sampled.Add(allSteps[index]); // MLflow compares with the count, not the end index
        }
        sampled.Add(allSteps[endIndex - 1]);
        return sampled;
    }

    static int LowerBound(List<long> sorted, long value)
    {
        var index = sorted.BinarySearch(value);
        if (index < 0) return ~index;
        while (index > 0 && sorted[index - 1] == value) index--;
        return index;
    }

    /// <summary>One query filters, orders and pages in the database (<see cref="RunSearch"/>); then the page's runs are read whole.</summary>
    public async Task<(List<MlflowRun> Runs, string? NextPageToken)> SearchRunsAsync(SearchRunsRequest request, CancellationToken ct)
    {
        var max = MaxResults(request.MaxResults);
        var view = ViewType(request.RunViewType);
        var filter = SearchFilter.Parse(request.Filter, SearchFilter.Entity.Run);
        var order = SearchOrder.Parse(request.OrderBy, SearchFilter.Entity.Run);
        var offset = ParsePageToken(request.PageToken);
        var experimentIds = (request.ExperimentIds ?? []).Select(ParseExperimentId).Distinct().ToList();
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var runs = db.Runs.AsNoTracking().Where(r => experimentIds.Contains(r.ExperimentId));
        if (!view.Deleted) runs = runs.Where(r => !r.Deleted);
        if (!view.Active) runs = runs.Where(r => r.Deleted);
        // One more than the page: whether a next page exists, without counting every match.
        var page = await RunSearch.Order(RunSearch.Filter(runs, db, filter), db, order).Skip(offset).Take(max + 1).ToListAsync(ct);
        var next = page.Count > max ? (offset + max).ToString(CultureInfo.InvariantCulture) : null;
        return (await ToDtosAsync(db, page.Take(max).ToList(), ct), next);
    }

    // ---------------------------------------------------------------- helpers


    // Every logging call looks its run up: compiled once, not translated again per call. Per instance, not static: a
    // compiled query keeps the SQL of the first database it ran on (the tests host SQLite and PostgreSQL apps at once).
    readonly Func<EmaLabDbContext, string, CancellationToken, Task<Run?>> _runByUuid =
        EF.CompileAsyncQuery((EmaLabDbContext db, string uuid, CancellationToken ct) => db.Runs.AsNoTracking().SingleOrDefault(r => r.Uuid == uuid));
    readonly Func<EmaLabDbContext, string, CancellationToken, Task<Run?>> _trackedRunByUuid =
        EF.CompileAsyncQuery((EmaLabDbContext db, string uuid, CancellationToken ct) => db.Runs.SingleOrDefault(r => r.Uuid == uuid));

    internal async Task<Run> FindRunAsync(EmaLabDbContext db, string? runId, CancellationToken ct, bool tracking = false)
    {
        if (runId is null) throw MlflowException.Missing("run_id");
        return await (tracking ? _trackedRunByUuid : _runByUuid)(db, runId, ct)
            ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Run with id={runId} not found");
    }

    internal static void RequireActive(Run run)
    {
        if (run.Deleted) throw MlflowException.Invalid($"The run {run.Uuid} must be in the 'active' state. Current state is deleted.");
    }

    /// <summary>An engine run's metrics, params and status are the engine's: a client may tag it, not log into it.</summary>
    static void RequireClient(Run run)
    {
        if (run.Origin != RunOrigin.Client)
            throw MlflowException.Invalid($"Run {run.Uuid} is trained by EMA Lab's engine (run #{run.Id}); only runs created through the tracking API take metrics, params and status.");
    }

    /// <summary>The stored (track, key) of a key as the tracking API names it (a key nothing was logged under: raw's, empty).</summary>
    static async Task<(string Track, string Key)> StoredKeyAsync(EmaLabDbContext db, Run run, string metricKey, CancellationToken ct)
    {
        if (run.Origin == RunOrigin.Client)
        {
            var key = await db.ClientMetricKeys.AsNoTracking().SingleOrDefaultAsync(k => k.RunId == run.Id && k.LoggedKey == metricKey, ct);
            return key is null ? (TrackNames.Raw, metricKey) : (key.Track, key.Key);
        }
        var series = await db.LatestMetrics.AsNoTracking().Where(m => m.RunId == run.Id).Where(ClientTrackKeys.EngineKeyIs(metricKey))
            .Select(m => new { m.Track, m.Key }).FirstOrDefaultAsync(ct);
        return series is null ? (TrackNames.Raw, metricKey) : (series.Track, series.Key);
    }

    /// <summary>
    /// Runs as the tracking API returns them, read in six queries however many runs there are. A run's metrics are
    /// MLflow's latest value of each key (<see cref="LatestValues"/>), kept by the metric writer: no series is scanned.
    /// </summary>
    async Task<List<MlflowRun>> ToDtosAsync(EmaLabDbContext db, IReadOnlyList<Run> runs, CancellationToken ct)
    {
        if (runs.Count == 0) return [];
        var ids = runs.Select(r => r.Id).ToList();
        var clientIds = runs.Where(r => r.Origin == RunOrigin.Client).Select(r => r.Id).ToList();
        var tags = (await db.RunTags.AsNoTracking().Where(t => ids.Contains(t.RunId)).ToListAsync(ct)).ToLookup(t => t.RunId);
        var @params = (await db.Params.AsNoTracking().Where(p => ids.Contains(p.RunId)).ToListAsync(ct)).ToLookup(p => p.RunId);
        var latest = (await db.LatestMetrics.AsNoTracking().Where(m => ids.Contains(m.RunId)).ToListAsync(ct)).ToLookup(m => m.RunId);
        var loggedKeys = (clientIds.Count == 0 ? [] : await db.ClientMetricKeys.AsNoTracking().Where(k => clientIds.Contains(k.RunId))
            .ToListAsync(ct)).ToLookup(k => k.RunId);
        var inputs = (await db.RunInputs.AsNoTracking().Where(i => ids.Contains(i.RunId)).OrderBy(i => i.Id).ToListAsync(ct)).ToLookup(i => i.RunId);
        var outputs = (await db.RunOutputs.AsNoTracking().Where(o => ids.Contains(o.RunId)).ToListAsync(ct)).ToLookup(o => o.RunId);
        return runs.Select(run => ToDto(run, tags[run.Id].ToList(), @params[run.Id], latest[run.Id],
            loggedKeys[run.Id].ToDictionary(k => (k.Track, k.Key), k => k.LoggedKey), inputs[run.Id].ToList(), outputs[run.Id])).ToList();
    }

    /// <summary>A run as the tracking API returns it, from its rows: a metric under the key the client logged, else the
    /// engine's name for it.</summary>
    static MlflowRun ToDto(Run run, IReadOnlyList<RunTag> tags, IEnumerable<RunParam> @params, IEnumerable<LatestMetric> latest,
        IReadOnlyDictionary<(string Track, string Key), string> loggedKeys, IReadOnlyList<RunInput> inputs, IEnumerable<RunOutput> outputs)
    {
        var metrics = latest
            .Select(m => new MlflowMetric(loggedKeys.GetValueOrDefault((m.Track, m.Key)) ?? ClientTrackKeys.EngineKey(m.Track, m.Key),
                m.Value ?? double.NaN, m.WallTimeMs, m.Step))
            .OrderBy(m => m.Key, StringComparer.Ordinal).ToList();
        return new MlflowRun(InfoOf(run, tags),
            new MlflowRunData(metrics, @params.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => new MlflowTag(p.Key, p.Value)).ToList(),
                tags.Select(t => new MlflowTag(t.Key, t.Value)).ToList()),
            LoggedModelService.InputsOf(inputs),
            LoggedModelService.OutputsOf(outputs.OrderBy(o => o.Step).ThenBy(o => o.ModelId, StringComparer.Ordinal).ToList()));
    }

    static MlflowRunInfo InfoOf(Run run, IReadOnlyList<RunTag> tags) => new(
        run.Uuid, run.Uuid, run.Name, Id(run.ExperimentId), tags.FirstOrDefault(t => t.Key == TagNames.User)?.Value ?? "",
        StatusOf(run.Status), StartTimeOf(run).ToUnixTimeMilliseconds(), run.FinishedAt?.ToUnixTimeMilliseconds(),
        ArtifactUriOf(run), run.Deleted ? "deleted" : "active");

    // A run's computed fields, each written once as an expression: the search runs them as SQL, the API's answers as code.

    /// <summary>MLflow's status of a run.</summary>
    internal static readonly Expression<Func<RunStatus, string>> MlflowStatus = s =>
        s == RunStatus.Queued ? "SCHEDULED"
        : s == RunStatus.Running ? "RUNNING"
        : s == RunStatus.Completed ? "FINISHED"
        : s == RunStatus.Cancelled || s == RunStatus.Interrupted ? "KILLED"
        : "FAILED";

    /// <summary>MLflow's start time: when the run started, else when it was created (a queued run).</summary>
    internal static readonly Expression<Func<Run, DateTimeOffset>> StartTime = r => r.StartedAt ?? r.CreatedAt;

    /// <summary>Where the run's artifacts are, through the artifact proxy.</summary>
    internal static readonly Expression<Func<Run, string>> ArtifactUri = r =>
        "mlflow-artifacts:/" + r.ExperimentId.ToString() + "/" + r.Uuid + "/artifacts";

    public static readonly Func<RunStatus, string> StatusOf = MlflowStatus.Compile();
    static readonly Func<Run, DateTimeOffset> StartTimeOf = StartTime.Compile();
    static readonly Func<Run, string> ArtifactUriOf = ArtifactUri.Compile();

    static MlflowMetric ValidMetric(MlflowMetric metric, string path, bool nameChecked)
    {
        if (!nameChecked) Name("metric", metric.Key, $"{path}.name");
        if (metric.Value is null)
            throw MlflowException.Invalid($"Got invalid value None for metric '{metric.Key}' (timestamp={metric.Timestamp}). Please specify value as a valid double (64-bit floating point)");
        if (metric.Timestamp is < 0)
            throw MlflowException.Invalid($"Got invalid timestamp {metric.Timestamp} for metric '{metric.Key}' (value={metric.Value}). Timestamp must be a nonnegative long (64-bit integer) ");
        if (!nameChecked) LengthLimit("Metric name", MaxEntityKeyLength, metric.Key!);
        return metric;
    }

    static Dictionary<string, string> ValidTags(IReadOnlyList<MlflowTag> tags)
    {
        var valid = new Dictionary<string, string>();
        for (var i = 0; i < tags.Count; i++)
        {
            var tag = tags[i];
            Name("tag", tag.Key, $"tags[{i}].key");
            LengthLimit($"tags[{i}].key", MaxEntityKeyLength, tag.Key!);
            valid[tag.Key!] = Truncate(tag.Value ?? "", MaxTagValueLength); // the last value of a key wins, as in MLflow
        }
        if (valid.TryGetValue(TagNames.TrackSuffixes, out var suffixes)) ClientTrackKeys.ParseSuffixes(suffixes);
        if (valid.TryGetValue(TagNames.MetricRoles, out var roles) && MetricRoles.Problem(roles) is { } problem)
            throw MlflowException.Invalid(problem);
        if (valid.TryGetValue(TagNames.Tracks, out var rules) && ClientTrackRules.Problem(rules) is { } rulesProblem)
            throw MlflowException.Invalid(rulesProblem);
        return valid;
    }

    static async Task UpsertTagAsync(EmaLabDbContext db, long runId, string key, string value, CancellationToken ct)
    {
        var tag = await db.RunTags.FindAsync([runId, key], ct);
        if (tag is null) db.RunTags.Add(new RunTag { RunId = runId, Key = key, Value = value });
        else tag.Value = value;
    }

    /// <summary>Two requests for one run may both add a new key or track: the second one's rows exist already, which is what it wanted.</summary>
    async Task SaveIgnoringRacesAsync(EmaLabDbContext db, CancellationToken ct)
    {
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (database.IsUniqueViolation(e))
        {
            foreach (var entry in db.ChangeTracker.Entries().Where(x => x.Entity is EmaTrack or ClientMetricKey && x.State == EntityState.Added)
                .ToList())
                entry.State = EntityState.Detached;
            await db.SaveChangesAsync(ct);
        }
    }

    internal static (List<T> Page, string? NextPageToken) Page<T>(List<T> items, string? pageToken, int max)
    {
        var offset = ParsePageToken(pageToken);
        var page = items.Skip(offset).Take(max).ToList();
        return (page, offset + max < items.Count ? (offset + max).ToString(CultureInfo.InvariantCulture) : null);
    }

    /// <summary>A search's page size: <paramref name="unasked"/> (MLflow's 1,000 for runs and experiments) unless
    /// asked; MLflow's servers take up to 50,000.</summary>
    internal static int MaxResults(long? requested, int unasked = 1000) =>
        (requested ?? unasked) is >= 1 and <= 50_000 and var max ? (int)max
            : throw MlflowException.Invalid($"Invalid value {requested} for parameter 'max_results' supplied. It must be at most 50000 and positive.");

    static int ParsePageToken(string? token) =>
        string.IsNullOrEmpty(token) ? 0
            : int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out var offset) ? offset
            : throw MlflowException.Invalid($"Invalid page token, could not base64-decode: '{token}'");

    sealed record View(bool Active, bool Deleted)
    {
        public bool Includes(bool deleted) => deleted ? Deleted : Active;
    }

    static View ViewType(string? viewType) => viewType switch
    {
        null or "ACTIVE_ONLY" or "1" => new View(true, false),
        "DELETED_ONLY" or "2" => new View(false, true),
        "ALL" or "3" => new View(true, true),
        _ => throw MlflowException.Invalid($"Invalid value '{viewType}' for parameter 'view_type': one of ACTIVE_ONLY, DELETED_ONLY, ALL."),
    };

    static readonly string[] Adjectives = ["bold", "calm", "clever", "eager", "gentle", "keen", "lucky", "merry", "quiet", "swift", "tidy", "wise"];
    static readonly string[] Nouns = ["badger", "crane", "fox", "hare", "heron", "lark", "lynx", "otter", "owl", "seal", "stoat", "wren"];

    /// <summary>A readable name for a run created without one, as MLflow's <c>adjective-noun-number</c>.</summary>
    internal static string GeneratedName() =>
        $"{Adjectives[Random.Shared.Next(Adjectives.Length)]}-{Nouns[Random.Shared.Next(Nouns.Length)]}-{Random.Shared.Next(1000)}";
}
