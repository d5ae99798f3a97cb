using System.Globalization;
using System.Text.Json;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine;
using Microsoft.EntityFrameworkCore;
using static EmaLab.Dashboard.Tracking.MlflowValidation;
using static EmaLab.Dashboard.Data.MlflowLimits;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// MLflow 3's logged models and a run's inputs and outputs, as its SQL store keeps them
/// (mlflow/store/tracking/sqlalchemy_store.py: create_logged_model … log_outputs). <c>mlflow.pytorch.log_model</c> sends,
/// in order: create (PENDING, with the run's params), runs/outputs, the run's metrics of the step again with
/// <c>model_id</c> (log-batch), the files to the model's <c>artifact_uri</c> through the artifact proxy, then finalize
/// (READY, or UPLOAD_FAILED when saving failed).
/// </summary>
public sealed class LoggedModelService(IDbContextFactory<EmaLabDbContext> dbFactory, TrackingService tracking, ArtifactStore artifacts,
    RunLifecycle lifecycle)
{
    static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>A model a client's run logged, as its page lists it: the track its weights are, the step, its files.</summary>
    public sealed record RunModel(LoggedModel Model, string? Track, long? Step, IReadOnlyList<MlflowFileInfo> Files);

    /// <summary>The run's logged models (not deleted), oldest first, each with its track, step (the run's output) and files.</summary>
    public async Task<List<RunModel>> OfRunAsync(Run run)
    {
        if (run.Origin != RunOrigin.Client) return [];
        await using var db = await dbFactory.CreateDbContextAsync();
        var models = await db.LoggedModels.AsNoTracking().Include(m => m.Tags).Where(m => m.SourceRunId == run.Id && !m.Deleted)
            .OrderBy(m => m.CreationTimeMs).ToListAsync();
        if (models.Count == 0) return [];
        var steps = await db.RunOutputs.AsNoTracking().Where(o => o.RunId == run.Id).ToListAsync();
        var tracks = run.Tracks.Select(t => t.Name).ToList();
        return models.Select(m => new RunModel(m, TrackOf(m.Name, m.Tags.ToDictionary(t => t.Key, t => t.Value), tracks),
            steps.Where(o => o.ModelId == m.Id).Select(o => (long?)o.Step).Max(), artifacts.AllFiles(m))).ToList();
    }

    /// <summary>The model's artifact root, under its experiment's as MLflow builds it: <c>…/models/&lt;model_id&gt;/artifacts</c>.</summary>
    public static string ArtifactUri(LoggedModel model) =>
        $"mlflow-artifacts:/{model.ExperimentId.ToString(CultureInfo.InvariantCulture)}/models/{model.Id}/artifacts";

    public async Task<MlflowLoggedModel> CreateAsync(CreateLoggedModelRequest request, CancellationToken ct)
    {
        if (request.ExperimentId is null) throw MlflowException.Missing("experiment_id");
        // _validate_logged_model_name: the name becomes a path segment and a URI part.
        if (request.Name is { } given && (given.Length == 0 || given.IndexOfAny(['/', ':', '.', '%', '"', '\'']) >= 0))
            throw MlflowException.Invalid($"Invalid model name ('{given}') provided. Model name must be a non-empty string and cannot contain the following characters: ('/', ':', '.', '%', '\"', \"'\")");
        if (request.Name is { } name && Length(name) > LoggedModel.MaxNameLength)
            throw MlflowException.Invalid($"'name' exceeds the maximum length of {LoggedModel.MaxNameLength} characters");
        var @params = Pairs("params", request.Params);
        var tags = Pairs("tags", request.Tags);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var experiment = await TrackingService.FindExperimentAsync(db, request.ExperimentId, ct);
        TrackingService.RequireActive(experiment);
        long? sourceRunId = null;
        // MLflow stores the source run id as given, without looking it up: a run of this server's also holds the model's files.
        if (!string.IsNullOrEmpty(request.SourceRunId))
            sourceRunId = await db.Runs.Where(r => r.Uuid == request.SourceRunId).Select(r => (long?)r.Id).SingleOrDefaultAsync(ct);
        var now = Now;
        var model = new LoggedModel
        {
            Id = LoggedModel.NewId(), ExperimentId = experiment.Id, Name = request.Name ?? TrackingService.GeneratedName(), SourceRunId = sourceRunId,
            SourceRunUuid = string.IsNullOrEmpty(request.SourceRunId) ? null : request.SourceRunId,
            ModelType = string.IsNullOrEmpty(request.ModelType) ? null : request.ModelType, Status = LoggedModelStatus.Pending,
            CreationTimeMs = now, LastUpdatedTimeMs = now,
        };
        model.Params = @params.Select(p => new LoggedModelParam { ModelId = model.Id, Key = p.Key, Value = p.Value }).ToList();
        model.Tags = tags.Select(t => new LoggedModelTag { ModelId = model.Id, Key = t.Key, Value = t.Value }).ToList();
        db.LoggedModels.Add(model);
        await db.SaveChangesAsync(ct);
        await ChangedAsync(db, model, ct);
        return await ToDtoAsync(db, model, ct);
    }

    public async Task<MlflowLoggedModel> GetAsync(string modelId, bool allowDeleted, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, modelId, ct, allowDeleted: allowDeleted);
        return await ToDtoAsync(db, model, ct);
    }

    public async Task<MlflowLoggedModel> FinalizeAsync(string modelId, FinalizeLoggedModelRequest request, CancellationToken ct)
    {
        var status = request.Status switch
        {
            null => throw MlflowException.Missing("status"),
            { ValueKind: JsonValueKind.Number } number when number.TryGetInt32(out var n) && Enum.IsDefined((LoggedModelStatus)n) =>
                (LoggedModelStatus)n,
            { ValueKind: JsonValueKind.String } text when StatusOf(text.GetString()) is { } named => named,
            var other => throw MlflowException.Invalid($"Invalid value {other} for parameter 'status' supplied: one of LOGGED_MODEL_PENDING, LOGGED_MODEL_READY, LOGGED_MODEL_UPLOAD_FAILED."),
        };
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, modelId, ct, track: true);
        model.Status = status;
        model.LastUpdatedTimeMs = Now;
        await db.SaveChangesAsync(ct);
        await ChangedAsync(db, model, ct);
        return await ToDtoAsync(db, model, ct);
    }

    /// <summary>MLflow's soft delete: the model is hidden (a get with <c>allow_deleted=true</c> still finds it), its files kept.</summary>
    public async Task DeleteAsync(string modelId, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, modelId, ct, track: true);
        model.Deleted = true;
        model.LastUpdatedTimeMs = Now;
        await db.SaveChangesAsync(ct);
        await ChangedAsync(db, model, ct);
    }

    public async Task SetTagsAsync(string modelId, IReadOnlyList<MlflowTag>? tags, CancellationToken ct)
    {
        var valid = Pairs("tags", tags);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, modelId, ct, track: true);
        foreach (var (key, value) in valid)
        {
            if (model.Tags.FirstOrDefault(t => t.Key == key) is { } existing) existing.Value = value;
            else model.Tags.Add(new LoggedModelTag { ModelId = model.Id, Key = key, Value = value });
        }
        model.LastUpdatedTimeMs = Now;
        await db.SaveChangesAsync(ct);
        await ChangedAsync(db, model, ct);
    }

    public async Task DeleteTagAsync(string modelId, string key, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, modelId, ct);
        if (await db.Set<LoggedModelTag>().Where(t => t.ModelId == model.Id && t.Key == key).ExecuteDeleteAsync(ct) == 0)
            throw new MlflowException(MlflowException.ResourceDoesNotExist, $"No tag with key '{key}' found for model with ID '{modelId}'.");
        await ChangedAsync(db, model, ct);
    }

    /// <summary>Params are written once, as a run's: the same value again is fine, another is refused.</summary>
    public async Task LogParamsAsync(string modelId, IReadOnlyList<MlflowTag>? @params, CancellationToken ct)
    {
        var valid = Pairs("params", @params);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, modelId, ct, track: true);
        foreach (var (key, value) in valid)
        {
            if (model.Params.FirstOrDefault(p => p.Key == key) is not { } existing)
                model.Params.Add(new LoggedModelParam { ModelId = model.Id, Key = key, Value = value });
            else if (existing.Value != value)
                throw MlflowException.Invalid($"Changing param values is not allowed. Param with key='{key}' was already logged with value='{existing.Value}' for model ID='{modelId}'. Attempted logging new value '{value}'.");
        }
        await db.SaveChangesAsync(ct);
    }

    public async Task<(List<MlflowLoggedModel> Models, string? NextPageToken)> SearchAsync(SearchLoggedModelsRequest request, CancellationToken ct)
    {
        if (request.ExperimentIds is not { Count: > 0 } experimentIds) throw MlflowException.Missing("experiment_ids");
        var max = TrackingService.MaxResults(request.MaxResults, unasked: 50);
        var filter = SearchFilter.Parse(request.Filter, SearchFilter.Entity.LoggedModel);
        var datasets = request.Datasets ?? [];
        if (datasets.Any(d => string.IsNullOrEmpty(d.DatasetName)))
            throw MlflowException.Invalid("`dataset_name` in the `datasets` clause must be specified.");
        var ids = experimentIds.Select(TrackingService.ParseExperimentId).ToList();
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var models = await db.LoggedModels.AsNoTracking().Include(m => m.Tags).Include(m => m.Params).Include(m => m.Metrics)
            .Where(m => ids.Contains(m.ExperimentId) && !m.Deleted).ToListAsync(ct);
        var runs = await RunUuidsAsync(db, models, ct);
        // With datasets, the metrics clauses look at those datasets' metrics only; without a metrics clause a model must
        // have a metric on one of them (MLflow's SQL store).
        bool OnDatasets(LoggedModelMetric metric) => datasets.Any(d => metric.DatasetName == d.DatasetName
            && (d.DatasetDigest is null || metric.DatasetDigest == d.DatasetDigest));
        var byMetrics = filter.Clauses.Any(c => c.Kind == "metrics");
        var matching = models
            .Where(m => datasets.Count == 0 || byMetrics || m.Metrics.Any(OnDatasets))
            .Select(m => (Model: ToDto(m, runs), Scored: datasets.Count == 0 ? null : ToDto(WithMetrics(m, m.Metrics.Where(OnDatasets)), runs)))
            .Where(x => filter.Matches(x.Scored ?? x.Model)).Select(x => x.Model).ToList();
        IOrderedEnumerable<MlflowLoggedModel>? sorted = null;
        foreach (var order in request.OrderBy ?? [])
        {
            if (string.IsNullOrEmpty(order.FieldName)) throw MlflowException.Missing("order_by.field_name");
            var (kind, name) = SearchFilter.Identifier(order.FieldName, SearchFilter.Entity.LoggedModel, order.FieldName);
            IComparable? Key(MlflowLoggedModel m) => kind switch
            {
                "metrics" => SearchFilter.LatestMetric(m, name),
                "params" => m.Data.Params.FirstOrDefault(p => p.Key == name)?.Value,
                "tags" => m.Info.Tags.FirstOrDefault(t => t.Key == name)?.Value,
                _ => SearchFilter.LoggedModelAttribute(m, name) as IComparable,
            };
            // Missing values last in both directions, as the runs' order.
            sorted = sorted is null ? matching.OrderBy(m => Key(m) is null) : sorted.ThenBy(m => Key(m) is null);
            sorted = order.Ascending ?? true ? sorted.ThenBy(Key) : sorted.ThenByDescending(Key);
        }
        // MLflow's default order: newest first, then by id.
        var ordered = (sorted ?? matching.OrderByDescending(m => m.Info.CreationTimestampMs)).ThenBy(m => m.Info.ModelId, StringComparer.Ordinal)
            .ToList();
        return TrackingService.Page(ordered, request.PageToken, max);
    }

    /// <summary>
    /// runs/log-inputs: datasets (deduplicated by name and digest, as MLflow does) and models a run read. A dataset's
    /// name, digest, source type and source are required.
    /// </summary>
    public async Task LogInputsAsync(LogInputsRequest request, CancellationToken ct)
    {
        var datasets = request.Datasets ?? [];
        for (var i = 0; i < datasets.Count; i++)
        {
            var d = datasets[i].Dataset ?? throw MlflowException.Missing($"datasets[{i}].dataset");
            if (d.Name is null) throw MlflowException.Missing($"datasets[{i}].dataset.name");
            if (d.Digest is null) throw MlflowException.Missing($"datasets[{i}].dataset.digest");
            if (d.SourceType is null) throw MlflowException.Missing($"datasets[{i}].dataset.source_type");
            if (d.Source is null) throw MlflowException.Missing($"datasets[{i}].dataset.source");
            foreach (var tag in datasets[i].Tags ?? [])
                if (tag.Key is null || tag.Value is null) throw MlflowException.Missing($"datasets[{i}].tags.key");
        }
        var models = request.Models ?? [];
        for (var i = 0; i < models.Count; i++) if (string.IsNullOrEmpty(models[i].ModelId)) throw MlflowException.Missing($"models[{i}].model_id");

        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var run = await tracking.FindRunAsync(db, request.RunId, ct);
        TrackingService.RequireActive(run);
        var existing = (await db.RunInputs.AsNoTracking().Where(i => i.RunId == run.Id && i.DatasetName != null)
            .Select(i => new { i.DatasetName, i.DatasetDigest }).ToListAsync(ct))
            .Select(i => (i.DatasetName, i.DatasetDigest)).ToHashSet();
        foreach (var input in datasets)
        {
            var d = input.Dataset!;
            if (!existing.Add((d.Name, d.Digest))) continue;
            var tags = new Dictionary<string, string>();
            foreach (var tag in input.Tags ?? []) tags[tag.Key!] = tag.Value!; // a key sent twice: the last value, as for a run's tags
            db.RunInputs.Add(new RunInput
            {
                RunId = run.Id, DatasetName = d.Name, DatasetDigest = d.Digest, SourceType = d.SourceType, Source = d.Source, Schema = d.Schema,
                    Profile = d.Profile,
                TagsJson = JsonSerializer.Serialize(tags), Context = tags.GetValueOrDefault(TagNames.DataContext),
            });
        }
        foreach (var model in models)
        {
            await FindAsync(db, model.ModelId!, ct);
            db.RunInputs.Add(new RunInput { RunId = run.Id, ModelId = model.ModelId });
        }
        await db.SaveChangesAsync(ct);
    }

    /// <summary>
    /// MLflow's UI route <c>experiments/search-datasets</c> (its SQL store's <c>_search_datasets</c>): each distinct
    /// (experiment, dataset name, digest, context) the experiments' runs logged as inputs, 1,000 at most.
    /// </summary>
    public async Task<List<MlflowDatasetSummary>> DatasetSummariesAsync(IReadOnlyCollection<long> experimentIds, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var rows = await db.RunInputs.AsNoTracking().Where(i => i.DatasetName != null)
            .Join(db.Runs, i => i.RunId, r => r.Id, (i, r) => new { r.ExperimentId, i.DatasetName, i.DatasetDigest, i.Context })
            .Where(x => experimentIds.Contains(x.ExperimentId)).Distinct().Take(1000).ToListAsync(ct);
        return rows.Select(x => new MlflowDatasetSummary(x.ExperimentId.ToString(CultureInfo.InvariantCulture), x.DatasetName!, x.DatasetDigest,
            x.Context)).ToList();
    }

    /// <summary>runs/outputs: the models a run produced, each at a step.</summary>
    public async Task LogOutputsAsync(LogOutputsRequest request, CancellationToken ct)
    {
        if (request.Models is null) throw MlflowException.Missing("models");
        for (var i = 0; i < request.Models.Count; i++)
        {
            if (string.IsNullOrEmpty(request.Models[i].ModelId)) throw MlflowException.Missing($"models[{i}].model_id");
            if (request.Models[i].Step is null) throw MlflowException.Missing($"models[{i}].step");
        }
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var run = await tracking.FindRunAsync(db, request.RunId, ct);
        TrackingService.RequireActive(run);
        foreach (var output in request.Models)
        {
            await FindAsync(db, output.ModelId!, ct);
            if (!await db.RunOutputs.AnyAsync(o => o.RunId == run.Id && o.ModelId == output.ModelId && o.Step == output.Step, ct))
                db.RunOutputs.Add(new RunOutput { RunId = run.Id, ModelId = output.ModelId!, Step = output.Step!.Value });
        }
        await db.SaveChangesAsync(ct);
        lifecycle.Changed(run.Id, run.Status);
    }

    /// <summary>The metrics of a log-batch that name a model (MLflow's logged model metrics), checked to exist before anything is written.</summary>
    public static async Task<List<LoggedModelMetric>> ModelMetricsAsync(EmaLabDbContext db, long runId, IReadOnlyList<MlflowMetric> metrics,
        CancellationToken ct)
    {
        var named = metrics.Where(m => !string.IsNullOrEmpty(m.ModelId)).ToList();
        if (named.Count == 0) return [];
        var ids = named.Select(m => m.ModelId!).Distinct().ToList();
        var known = await db.LoggedModels.AsNoTracking().Where(m => ids.Contains(m.Id) && !m.Deleted).Select(m => m.Id).ToListAsync(ct);
        if (ids.Except(known).FirstOrDefault() is { } missing)
            throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Logged model with ID '{missing}' not found.");
        return named.Distinct().Select(m => new LoggedModelMetric
        {
            ModelId = m.ModelId!, RunId = runId, Key = m.Key!, Step = m.Step ?? 0, TimestampMs = m.Timestamp ?? 0,
            Value = double.IsNaN(m.Value!.Value) ? null : m.Value, DatasetName = m.DatasetName, DatasetDigest = m.DatasetDigest,
        }).ToList();
    }

    static LoggedModel WithMetrics(LoggedModel model, IEnumerable<LoggedModelMetric> metrics) => new()
    {
        Id = model.Id, ExperimentId = model.ExperimentId, Name = model.Name, SourceRunId = model.SourceRunId, SourceRunUuid = model.SourceRunUuid,
        ModelType = model.ModelType, Status = model.Status, StatusMessage = model.StatusMessage, CreationTimeMs = model.CreationTimeMs,
        LastUpdatedTimeMs = model.LastUpdatedTimeMs, Deleted = model.Deleted, Tags = model.Tags, Params = model.Params, Metrics = metrics.ToList(),
    };

    internal static async Task<LoggedModel> FindAsync(EmaLabDbContext db, string modelId, CancellationToken ct, bool track = false,
        bool allowDeleted = false)
    {
        var query = db.LoggedModels.Include(m => m.Tags).Include(m => m.Params).Include(m => m.Metrics).AsSplitQuery();
        var model = await (track ? query : query.AsNoTracking()).SingleOrDefaultAsync(m => m.Id == modelId, ct);
        return model is not null && (allowDeleted || !model.Deleted) ? model
            : throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Logged model with ID '{modelId}' not found.");
    }


    /// <summary>
    /// Which of the run's tracks a logged model holds, so the run page shows it beside that track: the track its
    /// <see cref="TagNames.Track"/> tag names; else one its name or a tag's value names (<c>ema-0.999</c>); else, when its name
    /// says EMA or SWA (<c>ema</c>, <c>ema_model</c>, <c>swa</c>, as <see cref="ClientTrackKeys.IsTrackName"/>), the run's
    /// only track of that kind, or the EMA track of the decay a <c>…decay…</c> tag states. Null when nothing says which.
    /// </summary>
    public static string? TrackOf(string name, IReadOnlyDictionary<string, string> tags, IReadOnlyCollection<string> tracks)
    {
        if (tags.TryGetValue(TagNames.Track, out var tagged) && tracks.Contains(tagged)) return tagged;
        if (tracks.Contains(name)) return name;
        if (tags.Values.FirstOrDefault(tracks.Contains) is { } named) return named;
        var lower = name.ToLowerInvariant();
        if (!ClientTrackKeys.IsTrackName(lower) || lower == TrackNames.Raw) return null;
        if (tags.FirstOrDefault(t => t.Key.Contains("decay", StringComparison.OrdinalIgnoreCase)).Value is { } decayText
            && double.TryParse(decayText, NumberStyles.Float, CultureInfo.InvariantCulture, out var decay)
            && tracks.FirstOrDefault(t => ClientTrackKeys.DecayOf(t) == decay) is { } byDecay) return byDecay;
        var kind = lower.StartsWith("swa", StringComparison.Ordinal) ? "swa" : "ema";
        var ofKind = tracks.Where(t => t.StartsWith(kind, StringComparison.Ordinal)).ToList();
        return ofKind.Count == 1 ? ofKind[0] : null;
    }

    static LoggedModelStatus? StatusOf(string? name) => name switch
    {
        "LOGGED_MODEL_STATUS_UNSPECIFIED" => LoggedModelStatus.Unspecified,
        "LOGGED_MODEL_PENDING" => LoggedModelStatus.Pending,
        "LOGGED_MODEL_READY" => LoggedModelStatus.Ready,
        "LOGGED_MODEL_UPLOAD_FAILED" => LoggedModelStatus.UploadFailed,
        _ => null,
    };

    public static string StatusName(LoggedModelStatus status) => status switch
    {
        LoggedModelStatus.Pending => "LOGGED_MODEL_PENDING",
        LoggedModelStatus.Ready => "LOGGED_MODEL_READY",
        LoggedModelStatus.UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        _ => "LOGGED_MODEL_STATUS_UNSPECIFIED",
    };

    /// <summary>Keys and values of params or tags, by MLflow's name rules; values over the limit are truncated as a run's are.</summary>
    static List<(string Key, string Value)> Pairs(string field, IReadOnlyList<MlflowTag>? pairs)
    {
        var valid = new List<(string, string)>();
        for (var i = 0; i < (pairs?.Count ?? 0); i++)
        {
            var pair = pairs![i];
            Name(field == "params" ? "param" : "tag", pair.Key, $"{field}[{i}].key");
            LengthLimit($"{field}[{i}].key", MaxEntityKeyLength, pair.Key!);
            if (pair.Value is null) throw MlflowException.Missing($"{field}[{i}].value");
            valid.Add((pair.Key!, Truncate(pair.Value, field == "params" ? MaxParamValueLength : MaxTagValueLength)));
        }
        return valid;
    }

    static async Task<Dictionary<long, string>> RunUuidsAsync(EmaLabDbContext db, IEnumerable<LoggedModel> models, CancellationToken ct)
    {
        var ids = models.SelectMany(m => m.Metrics.Select(x => x.RunId).Append(m.SourceRunId)).OfType<long>().Distinct().ToList();
        return ids.Count == 0 ? [] : await db.Runs.AsNoTracking().Where(r => ids.Contains(r.Id)).ToDictionaryAsync(r => r.Id, r => r.Uuid, ct);
    }

    async Task<MlflowLoggedModel> ToDtoAsync(EmaLabDbContext db, LoggedModel model, CancellationToken ct) =>
        ToDto(model, await RunUuidsAsync(db, [model], ct));

    static MlflowLoggedModel ToDto(LoggedModel m, IReadOnlyDictionary<long, string> runUuids) => new(
        new MlflowLoggedModelInfo(m.Id, m.ExperimentId.ToString(CultureInfo.InvariantCulture), m.Name, m.CreationTimeMs, m.LastUpdatedTimeMs,
            ArtifactUri(m),
            StatusName(m.Status), m.ModelType, m.SourceRunUuid ?? (m.SourceRunId is { } run ? runUuids.GetValueOrDefault(run) : null), m.StatusMessage,
            m.Tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => new MlflowTag(t.Key, t.Value)).ToList()),
        new MlflowLoggedModelData(m.Params.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => new MlflowTag(p.Key, p.Value)).ToList(),
            m.Metrics.OrderBy(x => x.Key, StringComparer.Ordinal).ThenBy(x => x.Step).ThenBy(x => x.TimestampMs)
                .Select(x => new MlflowMetric(x.Key, x.Value ?? double.NaN, x.TimestampMs, x.Step, x.DatasetName, x.DatasetDigest, m.Id,
                    x.RunId is { } r ? runUuids.GetValueOrDefault(r) : null)).ToList()));

    /// <summary>A run's inputs and outputs as MLflow's Run message holds them (empty lists left out, as protobuf JSON does).</summary>
    public static MlflowRunInputs InputsOf(IReadOnlyList<RunInput> inputs)
    {
        var datasets = inputs.Where(i => i.ModelId is null).Select(i => new MlflowDatasetInput(
            (JsonSerializer.Deserialize<Dictionary<string, string>>(i.TagsJson ?? "{}") ?? []).Select(t => new MlflowTag(t.Key, t.Value))
                .ToList() is { Count: > 0 } tags ? tags : null,
            new MlflowDataset(i.DatasetName, i.DatasetDigest, i.SourceType, i.Source, i.Schema, i.Profile))).ToList();
        var models = inputs.Where(i => i.ModelId is not null).Select(i => new MlflowModelInput(i.ModelId)).ToList();
        return new MlflowRunInputs(datasets.Count > 0 ? datasets : null, models.Count > 0 ? models : null);
    }

    public static MlflowRunOutputs OutputsOf(IReadOnlyList<RunOutput> outputs) =>
        new(outputs.Count > 0 ? outputs.Select(o => new MlflowModelOutput(o.ModelId, o.Step)).ToList() : null);

    /// <summary>The source run's page lists its models: a change of one is a change of the run.</summary>
    async Task ChangedAsync(EmaLabDbContext db, LoggedModel model, CancellationToken ct)
    {
        if (model.SourceRunId is not { } runId) return;
        if (await db.Runs.Where(r => r.Id == runId).Select(r => (RunStatus?)r.Status).FirstOrDefaultAsync(ct) is { } status)
            lifecycle.Changed(runId, status);
    }
}
