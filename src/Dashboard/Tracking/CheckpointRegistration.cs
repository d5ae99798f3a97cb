using System.Globalization;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.TrainingEngine.Checkpoints;
using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// Registering what a run page shows: a track's checkpoint (engine and script runs alike) or a script's logged model, as a
/// new version of a registered model, optionally under an alias. A checkpoint first becomes a logged model of its run —
/// the <c>pytorch</c> flavor's files (<see cref="PyTorchFlavor"/>) where the file carries EMA Lab's architecture, the
/// checkpoint alone otherwise; its evaluation (<c>eval_accuracy</c>, <c>eval_loss</c>, <c>eval_fd</c>) as the model's
/// metrics; the track, its decay and rule as tags — so the version is what MLflow's client loads by name.
/// </summary>
public sealed class CheckpointRegistration(IDbContextFactory<EmaLabDbContext> dbFactory, DataPaths paths, ModelRegistry registry,
    IExperimentPermissions experiments)
{
    /// <summary>A logged model made from a checkpoint carries its id, so registering the checkpoint again reuses it.</summary>
    public const string CheckpointTag = "emalab.checkpoint";

    public Task<MlflowModelVersion> RegisterCheckpointAsync(long checkpointId, string name, string? alias, Caller by,
        CancellationToken ct = default) => SaidAsRefusals(async () =>
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var checkpoint = await db.Checkpoints.AsNoTracking().SingleOrDefaultAsync(c => c.Id == checkpointId, ct)
            ?? throw new NotFoundException($"Checkpoint {checkpointId} does not exist.");
        var run = await db.Runs.AsNoTracking().SingleAsync(r => r.Id == checkpoint.RunId, ct);
        await experiments.RequireAsync(by, run.ExperimentId, ExperimentPermissionLevel.Read, ct);
        // Refused before the checkpoint becomes a logged model: a refusal leaves nothing behind.
        await RequireRegistrableAsync(name, alias, by, ct);
        var id = checkpointId.ToString(CultureInfo.InvariantCulture);
        var model = await db.LoggedModels.AsNoTracking()
            .Where(m => m.SourceRunId == run.Id && !m.Deleted && m.Tags.Any(t => t.Key == CheckpointTag && t.Value == id)).FirstOrDefaultAsync(ct)
            ?? await LogCheckpointAsync(db, checkpoint, run, ct);
        return await RegisterAsync(name, model.Id, run.Uuid, alias, by, ct, checkpoint.Track, checkpoint.Step);
    });

    /// <summary>A logged model a script's run logged (<c>mlflow.pytorch.log_model</c>), registered as it is.</summary>
    public Task<MlflowModelVersion> RegisterLoggedModelAsync(string modelId, string name, string? alias, Caller by, CancellationToken ct = default) =>
        SaidAsRefusals(async () =>
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await LoggedModelService.FindAsync(db, modelId, ct);
        await experiments.RequireAsync(by, model.ExperimentId, ExperimentPermissionLevel.Read, ct);
        await RequireRegistrableAsync(name, alias, by, ct);
        var runUuid = model.SourceRunId is { } runId ? await db.Runs.Where(r => r.Id == runId).Select(r => r.Uuid).SingleOrDefaultAsync(ct) : null;
        return await RegisterAsync(name, model.Id, runUuid, alias, by, ct);
    });

    /// <summary>
    /// The registry's refusals as the pages and the API say theirs: a bad name or alias by its field (both checked before
    /// anything is written), a missing thing as not found; a missing permission is already the pages' refusal.
    /// </summary>
    static async Task<MlflowModelVersion> SaidAsRefusals(Func<Task<MlflowModelVersion>> registration)
    {
        try
        {
            return await registration();
        }
        catch (MlflowException e) when (e.ErrorCode == MlflowException.InvalidParameterValue)
        {
            throw new RequestValidationException(e.Message.Contains("alias", StringComparison.OrdinalIgnoreCase) ? "alias" : "name", e.Message);
        }
        catch (MlflowException e) when (e.ErrorCode == MlflowException.ResourceDoesNotExist)
        {
            throw new NotFoundException(e.Message);
        }
    }

    /// <summary>The name and the alias are valid, and the caller may add a version under the name.</summary>
    async Task RequireRegistrableAsync(string name, string? alias, Caller by, CancellationToken ct)
    {
        ModelRegistry.ValidName(name);
        if (!string.IsNullOrEmpty(alias)) ModelRegistry.ValidSettableAlias(alias);
        await registry.RequireCanAddVersionAsync(name, by, ct);
    }

    /// <summary>The version, under a new or existing name, and the alias moved to it.</summary>
    async Task<MlflowModelVersion> RegisterAsync(string name, string modelId, string? runUuid, string? alias, Caller by, CancellationToken ct,
        string? track = null, long? step = null)
    {
        try
        {
            await registry.CreateRegisteredModelAsync(new CreateRegisteredModelRequest(name, null, null), by, ct);
        }
        catch (MlflowException e) when (e.ErrorCode == MlflowException.ResourceAlreadyExists)
        {
            // A new version of the existing model (the registry checks the caller may add one).
        }
        var version = await registry.CreateModelVersionAsync(new CreateModelVersionRequest(name, $"models:/{modelId}", runUuid, null, null, null, modelId),
            by, ct, track, step);
        if (!string.IsNullOrEmpty(alias))
            await registry.SetAliasAsync(new AliasRequest(name, alias, version.Version), by, ct);
        return alias is { Length: > 0 } ? version with { Aliases = [alias] } : version;
    }

    /// <summary>The checkpoint as a READY logged model of its run, at its step, with its files and evaluation.</summary>
    async Task<LoggedModel> LogCheckpointAsync(EmaLabDbContext db, Checkpoint checkpoint, Run run, CancellationToken ct)
    {
        var file = paths.Absolute(checkpoint.RelativePath);
        if (!File.Exists(file)) throw new ConflictException($"The file of checkpoint {checkpoint.Id} is missing.");
        var bytes = await File.ReadAllBytesAsync(file, ct);
        IReadOnlyDictionary<string, string> metadata;
        using (var stream = new MemoryStream(bytes))
            metadata = TrainingEngine.Formats.SafeTensors.ReadHeader(stream, Path.GetFileName(file)).Metadata;
        var now = DateTimeOffset.UtcNow;
        var model = new LoggedModel
        {
            Id = LoggedModel.NewId(), ExperimentId = run.ExperimentId, SourceRunId = run.Id, SourceRunUuid = run.Uuid,
            // A logged model's name may not hold '.': ema-0.999 is logged as ema-0_999 (its track is in a tag).
            Name = checkpoint.Track.Replace('.', '_'), ModelType = metadata.ContainsKey(CheckpointExport.Keys.Architecture) ? "pytorch" : "safetensors",
            Status = LoggedModelStatus.Ready, CreationTimeMs = now.ToUnixTimeMilliseconds(), LastUpdatedTimeMs = now.ToUnixTimeMilliseconds(),
        };
        var tags = new Dictionary<string, string>
        {
            [CheckpointTag] = checkpoint.Id.ToString(CultureInfo.InvariantCulture),
            [TagNames.Track] = checkpoint.Track,
            ["emalab.step"] = checkpoint.Step.ToString(CultureInfo.InvariantCulture),
            ["emalab.sha256"] = checkpoint.Sha256,
        };
        if (metadata.TryGetValue(CheckpointExport.Keys.Decay, out var decay)) tags["emalab.decay"] = decay;
        if (metadata.TryGetValue(CheckpointExport.Keys.EmaRule, out var rule)) tags["emalab.ema_rule"] = MlflowLimits.Truncate(rule, MlflowLimits.MaxTagValueLength);
        if (metadata.TryGetValue(CheckpointExport.Keys.Dataset, out var dataset)) tags["emalab.dataset"] = dataset;
        model.Tags = tags.Select(t => new LoggedModelTag { ModelId = model.Id, Key = t.Key, Value = t.Value }).ToList();
        model.Metrics = new[] { CheckpointExport.Keys.EvalAccuracy, CheckpointExport.Keys.EvalLoss, CheckpointExport.Keys.EvalFrechetDistance }
            .Where(metadata.ContainsKey)
            .Select(key => (key, value: double.Parse(metadata[key], CultureInfo.InvariantCulture)))
            .Select(m => new LoggedModelMetric
            {
                ModelId = model.Id, RunId = run.Id, Key = m.key, Step = checkpoint.Step, TimestampMs = now.ToUnixTimeMilliseconds(),
                Value = double.IsNaN(m.value) ? null : m.value,
            }).ToList();

        var folder = paths.LoggedModelDirectory(model);
        if (metadata.ContainsKey(CheckpointExport.Keys.Architecture))
            PyTorchFlavor.Write(folder, bytes, model.Id, run.Uuid, model.Name, now);
        else
        {
            // A script's checkpoint holds its own model's state, not EMA Lab's architecture: registered as the file itself.
            Directory.CreateDirectory(folder);
            await File.WriteAllBytesAsync(Path.Combine(folder, PyTorchFlavor.WeightsFile), bytes, ct);
        }
        db.LoggedModels.Add(model);
        db.RunOutputs.Add(new RunOutput { RunId = run.Id, ModelId = model.Id, Step = checkpoint.Step });
        await db.SaveChangesAsync(ct);
        return model;
    }
}
