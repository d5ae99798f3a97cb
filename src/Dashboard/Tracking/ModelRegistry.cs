using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using Microsoft.EntityFrameworkCore;
using static EmaLab.Dashboard.Data.MlflowLimits;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// MLflow's model registry as its SQL store keeps it (mlflow/store/model_registry/sqlalchemy_store.py) and its server
/// answers it (mlflow/server/handlers.py): registered models, versions numbered from 1 per name and never renumbered
/// (a deleted version keeps its number, its fields redacted), aliases that move in one statement, stages for older
/// clients, MLflow's messages and error codes. Every operation is checked against the caller's permission on the
/// registered model (MLflow's auth app: READ reads, EDIT changes, MANAGE deletes) here, so the API and the pages share one
/// rule; registering, alias moves and deletions go into the audit log.
/// </summary>
public sealed partial class ModelRegistry(IDbContextFactory<EmaLabDbContext> dbFactory,
    IRegisteredModelPermissions permissions, IAuditTrail audit, ArtifactStore artifacts)
{
    public const int MaxTagValueLength = 100_000;
    public const int MaxSearchRegisteredModels = 1000;
    public const int MaxSearchModelVersions = 200_000;
    const string ModelVersionsTag = "mlflow.modelVersions";
    const string Latest = "latest";

    static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    // ---- registered models ----

    public async Task<MlflowRegisteredModel> CreateRegisteredModelAsync(CreateRegisteredModelRequest request, Caller by, CancellationToken ct)
    {
        var name = ValidName(request.Name);
        var tags = ValidTags(request.Tags);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        if (await db.RegisteredModels.AnyAsync(m => m.Name == name, ct)) throw AlreadyExists(name);
        var now = Now;
        var model = new RegisteredModel
        {
            Name = name, CreationTimeMs = now, LastUpdatedTimeMs = now, Description = NullIfEmpty(request.Description), CreatedBy = by.Account,
            Tags = tags.Select(t => new RegisteredModelTag { Key = t.Key, Value = t.Value }).ToList(),
        };
        db.RegisteredModels.Add(model);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException)
        {
            throw AlreadyExists(name); // created by another request between the check and the insert (the unique index refused it)
        }
        await permissions.GrantModelCreatorAsync(by, model.Id, ct);
        await audit.RecordAsync(by, "registered-model.create", Target(name));
        return ToDto(model, []);
    }

    public async Task<MlflowRegisteredModel> GetRegisteredModelAsync(string? name, Caller by, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, name, by, ExperimentPermissionLevel.Read, ct);
        return ToDto(model, await LatestOfAsync(db, model.Id, ct));
    }

    public async Task<MlflowRegisteredModel> UpdateRegisteredModelAsync(UpdateRegisteredModelRequest request, Caller by, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct, track: true);
        model.Description = request.Description;
        model.LastUpdatedTimeMs = Now;
        await db.SaveChangesAsync(ct);
        return ToDto(model, await LatestOfAsync(db, model.Id, ct));
    }

    public async Task<MlflowRegisteredModel> RenameRegisteredModelAsync(RenameRegisteredModelRequest request, Caller by, CancellationToken ct)
    {
        if (request.NewName is null || request.NewName.Trim().Length == 0) throw MlflowException.Missing("new_name");
        var newName = ValidName(request.NewName);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct, track: true);
        if (newName != model.Name && await db.RegisteredModels.AnyAsync(m => m.Name == newName, ct))
            throw new MlflowException(MlflowException.ResourceAlreadyExists, $"Registered Model (name={newName}) already exists.");
        var now = Now;
        var oldName = model.Name;
        model.Name = newName;
        model.LastUpdatedTimeMs = now;
        // MLflow's versions carry their model's name: each is updated by the rename.
        await db.ModelVersions.Where(v => v.RegisteredModelId == model.Id).ExecuteUpdateAsync(set => set.SetProperty(v => v.LastUpdatedTimeMs, now), ct);
        await db.SaveChangesAsync(ct);
        await audit.RecordAsync(by, "registered-model.rename", Target(oldName), $"new_name={newName}");
        return ToDto(model, await LatestOfAsync(db, model.Id, ct));
    }

    /// <summary>Deletes the model, its versions, tags, aliases and permissions; the files of logged models stay with them.</summary>
    public async Task DeleteRegisteredModelAsync(string? name, Caller by, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, name, by, ExperimentPermissionLevel.Manage, ct);
        await db.RegisteredModels.Where(m => m.Id == model.Id).ExecuteDeleteAsync(ct);
        await audit.RecordAsync(by, "registered-model.delete", Target(model.Name));
    }

    public async Task SetRegisteredModelTagAsync(RegisteredModelTagRequest request, Caller by, CancellationToken ct)
    {
        var (key, value) = ValidTag(request.Key, request.Value);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct, track: true);
        if (model.Tags.FirstOrDefault(t => t.Key == key) is { } existing) existing.Value = value;
        else model.Tags.Add(new RegisteredModelTag { Key = key, Value = value });
        await db.SaveChangesAsync(ct);
    }

    /// <summary>Deleting a tag the model does not have is not an error (MLflow's store ignores it).</summary>
    public async Task DeleteRegisteredModelTagAsync(RegisteredModelTagRequest request, Caller by, CancellationToken ct)
    {
        var key = ValidTagKey(request.Key);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct);
        await db.Set<RegisteredModelTag>().Where(t => t.RegisteredModelId == model.Id && t.Key == key).ExecuteDeleteAsync(ct);
    }

    /// <summary>
    /// MLflow's search (name and tags, <c>=</c> <c>!=</c> <c>LIKE</c> <c>ILIKE</c>; order by name, creation or last update;
    /// offset pages), over the models the caller may read — filtered before paging, so a page is never short.
    /// </summary>
    public async Task<(List<MlflowRegisteredModel> Models, string? NextPageToken)> SearchRegisteredModelsAsync(RegistrySearchRequest request,
        Caller by, CancellationToken ct)
    {
        var max = request.MaxResults ?? 100;
        if (max is < 1 or > MaxSearchRegisteredModels)
            throw MlflowException.Invalid($"Invalid value for request parameter max_results. It must be at most {MaxSearchRegisteredModels}, but got value {max}");
        var filter = SearchFilter.Parse(request.Filter, SearchFilter.Entity.RegisteredModel);
        var order = RegisteredModelOrder(request.OrderBy);
        var readable = await permissions.ReadableModelsAsync(by, ct);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var rows = db.RegisteredModels.AsNoTracking();
        if (filter.Clauses.FirstOrDefault(c => c is { Kind: "attributes", Name: "name", Comparator: "=" }) is { } exact)
            rows = rows.Where(m => m.Name == (string)exact.Value!);
        var candidates = await rows.Select(m => new { m.Id, m.Name, m.CreationTimeMs, m.LastUpdatedTimeMs }).ToListAsync(ct);
        var byTags = filter.Clauses.Any(c => c.Kind == "tags");
        var tags = (await db.Set<RegisteredModelTag>().AsNoTracking().Where(t => byTags || t.Key == PromptTag).ToListAsync(ct))
            .ToLookup(t => t.RegisteredModelId);
        var prompts = WantsPrompts(filter);
        var matching = candidates.Where(m => readable?.Invoke(m.Id) ?? true)
            .Where(m => prompts || tags[m.Id].All(t => t.Key != PromptTag || !t.Value.Equals("true", StringComparison.OrdinalIgnoreCase)))
            .Where(m => filter.Clauses.All(c => c.Kind == "tags"
                ? MatchesTag(tags[m.Id].FirstOrDefault(t => t.Key == c.Name)?.Value, c)
                : SearchFilter.Compare(m.Name, c)));
        var sortedIds = Sort(matching.ToList(), order, m => m.Name, m => m.CreationTimeMs, m => m.LastUpdatedTimeMs).Select(m => m.Id).ToList();
        var (pageIds, next) = TrackingService.Page(sortedIds, request.PageToken, (int)max);
        // Three plain queries: EF's split query of the same (Include, Include) took half a second for a page of 1,000 on SQLite.
        var models = await db.RegisteredModels.AsNoTracking().Where(m => pageIds.Contains(m.Id)).ToDictionaryAsync(m => m.Id, ct);
        var tagsOf = (await db.Set<RegisteredModelTag>().AsNoTracking().Where(t => pageIds.Contains(t.RegisteredModelId)).ToListAsync(ct))
            .ToLookup(t => t.RegisteredModelId);
        var aliasesOf = (await db.RegisteredModelAliases.AsNoTracking().Where(a => pageIds.Contains(a.RegisteredModelId)).ToListAsync(ct))
            .ToLookup(a => a.RegisteredModelId);
        foreach (var (id, model) in models)
        {
            model.Tags = tagsOf[id].ToList();
            model.Aliases = aliasesOf[id].ToList();
        }
        var latest = await LatestVersionsAsync(db, pageIds, ct);
        // MLflow's search reads the newest version per stage with a window over (name, stage): they come in stage order.
        return (pageIds.Select(id => ToDto(models[id], (latest.GetValueOrDefault(id) ?? []).OrderBy(v => v.CurrentStage, StringComparer.Ordinal).ToList()))
            .ToList(), next);
    }

    /// <summary>The newest version of each stage (or of the stages asked for, any case), in MLflow's order.</summary>
    public async Task<List<MlflowModelVersion>> GetLatestVersionsAsync(GetLatestVersionsRequest request, Caller by, CancellationToken ct)
    {
        var stages = request.Stages is { Count: > 0 } asked ? asked.Select(CanonicalStage).ToHashSet() : ModelVersion.Stages.ToHashSet();
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Read, ct);
        var latest = (await LatestVersionsAsync(db, [model.Id], ct)).GetValueOrDefault(model.Id) ?? [];
        return latest.Where(v => stages.Contains(v.CurrentStage))
            .Select(v => ToDto(model, v, model.Aliases.Where(a => a.Version == v.Version).Select(a => a.Alias).Order(StringComparer.Ordinal).ToList()))
            .ToList();
    }

    // ---- versions ----

    /// <summary>
    /// A new version, numbered one past the highest the name ever had. A <c>models:/m-…</c> source promotes a logged model
    /// (its files are the version's; the run defaults to the model's source run; the logged model is tagged
    /// <c>mlflow.modelVersions</c>, as MLflow's server does); <c>models:/name/2</c> and <c>models:/name@alias</c> point at that
    /// version's files. Local paths and relative references are refused, as a server with proxied artifacts refuses them.
    /// </summary>
    public async Task<MlflowModelVersion> CreateModelVersionAsync(CreateModelVersionRequest request, Caller by, CancellationToken ct,
        string? track = null, long? step = null)
    {
        if (request.Name is null) throw MlflowException.Missing("name");
        if (request.Source is null) throw MlflowException.Missing("source");
        var source = request.Source;
        ValidateSource(source, request.ModelId is { Length: > 0 } ? "model_id" : "run_id");
        var tags = ValidTags(request.Tags, version: true);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct);
        var runId = NullIfEmpty(request.RunId);
        var modelId = NullIfEmpty(request.ModelId);
        var storage = source;
        if (ModelsUri().Match(source) is { Success: true } uri)
        {
            try
            {
                if (uri.Groups["id"].Success)
                {
                    var logged = await LoggedModelService.FindAsync(db, uri.Groups["id"].Value, ct);
                    storage = LoggedModelService.ArtifactUri(logged);
                    modelId ??= logged.Id;
                    runId ??= await RunUuidAsync(db, logged.SourceRunId, ct);
                }
                else
                {
                    var target = await db.RegisteredModels.AsNoTracking().SingleOrDefaultAsync(m => m.Name == uri.Groups["name"].Value, ct)
                        ?? throw NotFound(uri.Groups["name"].Value);
                    var version = uri.Groups["alias"].Success
                        ? await ByAliasAsync(db, target, uri.Groups["alias"].Value, ct)
                        : await FindVersionAsync(db, target, uri.Groups["version"].Value, ct);
                    storage = version.StorageLocation ?? version.Source;
                }
            }
            catch (MlflowException e)
            {
                throw new MlflowException(MlflowException.InvalidParameterValue,
                    $"Unable to fetch model from model URI source artifact location '{source}'.Error: {e.Message}");
            }
        }
        LoggedModel? promoted = null;
        if (modelId is not null)
        {
            promoted = await LoggedModelService.FindAsync(db, modelId, ct);
            runId ??= await RunUuidAsync(db, promoted.SourceRunId, ct);
        }
        var (whereTrack, whereStep) = await OriginAsync(db, promoted, ct);
        var now = Now;
        // The number is taken in one statement (UPDATE … RETURNING, on SQLite and PostgreSQL alike): registrations at
        // once each get their own, and a number is never given twice (MLflow's store reads the highest and retries).
        var number = (await db.Database.SqlQuery<int>(
            $"UPDATE \"RegisteredModels\" SET \"LastVersion\" = \"LastVersion\" + 1 WHERE \"Id\" = {model.Id} RETURNING \"LastVersion\" AS \"Value\"")
            .ToListAsync(ct)).Single();
        var created = new ModelVersion
        {
            RegisteredModelId = model.Id, Version = number, CreationTimeMs = now, LastUpdatedTimeMs = now, Source = source,
            StorageLocation = storage, RunUuid = runId, RunLink = NullIfEmpty(request.RunLink), Description = NullIfEmpty(request.Description),
            UserId = by.Account, ModelId = modelId, Track = track ?? whereTrack, Step = step ?? whereStep,
            Tags = tags.Select(t => new ModelVersionTag { Key = t.Key, Value = t.Value }).ToList(),
        };
        db.ModelVersions.Add(created);
        await db.SaveChangesAsync(ct);
        await db.RegisteredModels.Where(m => m.Id == model.Id).ExecuteUpdateAsync(set => set.SetProperty(m => m.LastUpdatedTimeMs, now), ct);
        if (promoted is not null) await TagLoggedModelAsync(db, promoted.Id, model.Name, created.Version, ct);
        await audit.RecordAsync(by, "model-version.create", Target(model.Name, created.Version), $"source={source}");
        return ToDto(model, created, await AliasesOfAsync(db, model.Id, created.Version, ct));
    }

    public async Task<MlflowModelVersion> GetModelVersionAsync(string? name, string? version, Caller by, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, name, by, ExperimentPermissionLevel.Read, ct);
        var found = await FindVersionAsync(db, model, version, ct);
        return ToDto(model, found, await AliasesOfAsync(db, model.Id, found.Version, ct));
    }

    public async Task<MlflowModelVersion> UpdateModelVersionAsync(UpdateModelVersionRequest request, Caller by, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct);
        var version = await FindVersionAsync(db, model, request.Version, ct, track: true);
        version.Description = request.Description;
        version.LastUpdatedTimeMs = Now;
        await db.SaveChangesAsync(ct);
        return ToDto(model, version, await AliasesOfAsync(db, model.Id, version.Version, ct));
    }

    /// <summary>Stages, for clients older than aliases: moving to Staging or Production may archive the versions there.</summary>
    public async Task<MlflowModelVersion> TransitionStageAsync(TransitionStageRequest request, Caller by, CancellationToken ct)
    {
        if (request.Name is null) throw MlflowException.Missing("name");
        if (request.Version is null) throw MlflowException.Missing("version");
        if (request.Stage is null) throw MlflowException.Missing("stage");
        var stage = CanonicalStage(request.Stage);
        var archive = request.ArchiveExistingVersions ?? false;
        // MLflow answers this client mistake with a 500 (which its client retries for minutes): a 400 here.
        if (archive && stage is not ("Staging" or "Production"))
            throw MlflowException.Invalid($"Model version transition cannot archive existing model versions because '{request.Stage}' is not an Active stage. Valid stages are ['Staging', 'Production']");
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct);
        var version = await FindVersionAsync(db, model, request.Version, ct);
        var now = Now;
        await InTransactionAsync(db, async () =>
        {
            if (archive)
                await db.ModelVersions.Where(v => v.RegisteredModelId == model.Id && v.Version != version.Version && v.CurrentStage == stage)
                    .ExecuteUpdateAsync(set => set.SetProperty(v => v.CurrentStage, "Archived").SetProperty(v => v.LastUpdatedTimeMs, now), ct);
            await db.ModelVersions.Where(v => v.Id == version.Id)
                .ExecuteUpdateAsync(set => set.SetProperty(v => v.CurrentStage, stage).SetProperty(v => v.LastUpdatedTimeMs, now), ct);
            await db.RegisteredModels.Where(m => m.Id == model.Id).ExecuteUpdateAsync(set => set.SetProperty(m => m.LastUpdatedTimeMs, now), ct);
        }, ct);
        version.CurrentStage = stage;
        version.LastUpdatedTimeMs = now;
        await audit.RecordAsync(by, "model-version.stage", Target(model.Name, version.Version), $"stage={stage}");
        return ToDto(model, version, await AliasesOfAsync(db, model.Id, version.Version, ct));
    }

    /// <summary>MLflow's delete: the number stays taken, the fields are redacted, its aliases go.</summary>
    public async Task DeleteModelVersionAsync(string? name, string? versionText, Caller by, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, name, by, ExperimentPermissionLevel.Manage, ct);
        var version = await FindVersionAsync(db, model, versionText, ct);
        var now = Now;
        await InTransactionAsync(db, async () =>
        {
            await db.RegisteredModelAliases.Where(a => a.RegisteredModelId == model.Id && a.Version == version.Version).ExecuteDeleteAsync(ct);
            await db.ModelVersions.Where(v => v.Id == version.Id).ExecuteUpdateAsync(set => set
                .SetProperty(v => v.CurrentStage, ModelVersion.DeletedStage).SetProperty(v => v.LastUpdatedTimeMs, now)
                .SetProperty(v => v.Description, (string?)null).SetProperty(v => v.UserId, (string?)null)
                .SetProperty(v => v.Source, "REDACTED-SOURCE-PATH").SetProperty(v => v.StorageLocation, (string?)null)
                .SetProperty(v => v.RunUuid, "REDACTED-RUN-ID").SetProperty(v => v.RunLink, "REDACTED-RUN-LINK")
                .SetProperty(v => v.StatusMessage, (string?)null), ct);
            await db.RegisteredModels.Where(m => m.Id == model.Id).ExecuteUpdateAsync(set => set.SetProperty(m => m.LastUpdatedTimeMs, now), ct);
        }, ct);
        await audit.RecordAsync(by, "model-version.delete", Target(model.Name, version.Version));
    }

    /// <summary>Where the version's files are: the logged model's artifact root it promotes, else its source.</summary>
    public async Task<string> GetDownloadUriAsync(string? name, string? version, Caller by, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, name, by, ExperimentPermissionLevel.Read, ct);
        var found = await FindVersionAsync(db, model, version, ct);
        return found.StorageLocation ?? found.Source;
    }

    /// <summary>
    /// MLflow's version search (name, version_number, run_id — also <c>IN</c> —, source_path, tags; by default newest update
    /// first, then name, then version descending), over the models the caller may read.
    /// </summary>
    public async Task<(List<MlflowModelVersion> Versions, string? NextPageToken)> SearchModelVersionsAsync(RegistrySearchRequest request,
        Caller by, CancellationToken ct)
    {
        var max = request.MaxResults ?? MaxSearchModelVersions;
        if (max < 1) throw MlflowException.Invalid($"Invalid value for max_results. It must be a positive integer, but got {max}");
        if (max > MaxSearchModelVersions)
            throw MlflowException.Invalid($"Invalid value for request parameter max_results. It must be at most {MaxSearchModelVersions}, but got value {max}");
        var filter = SearchFilter.Parse(request.Filter, SearchFilter.Entity.ModelVersion);
        var order = VersionOrder(request.OrderBy);
        var readable = await permissions.ReadableModelsAsync(by, ct);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var rows = db.ModelVersions.AsNoTracking().Where(v => v.CurrentStage != ModelVersion.DeletedStage)
            .Join(db.RegisteredModels, v => v.RegisteredModelId, m => m.Id, (v, m) => new { Version = v, m.Name });
        if (filter.Clauses.FirstOrDefault(c => c is { Kind: "attributes", Name: "name", Comparator: "=" }) is { } exact)
            rows = rows.Where(r => r.Name == (string)exact.Value!);
        if (filter.Clauses.FirstOrDefault(c => c is { Kind: "attributes", Name: "run_id", Comparator: "=" }) is { } run)
            rows = rows.Where(r => r.Version.RunUuid == (string)run.Value!);
        var candidates = await rows.Select(r => new VersionRow(r.Version.Id, r.Version.RegisteredModelId, r.Name, r.Version.Version,
            r.Version.RunUuid, r.Version.Source, r.Version.CreationTimeMs, r.Version.LastUpdatedTimeMs)).ToListAsync(ct);
        var tags = filter.Clauses.Any(c => c.Kind == "tags")
            ? (await db.Set<ModelVersionTag>().AsNoTracking().ToListAsync(ct)).ToLookup(t => t.ModelVersionId)
            : null;
        // A prompt's versions are listed only when the filter asks for prompts (its registered model carries the tag).
        var promptModels = WantsPrompts(filter) ? [] : (await db.Set<RegisteredModelTag>().AsNoTracking()
            .Where(t => t.Key == PromptTag && t.Value.ToLower() == "true").Select(t => t.RegisteredModelId).ToListAsync(ct)).ToHashSet();
        var matching = candidates.Where(r => readable?.Invoke(r.ModelId) ?? true).Where(r => !promptModels.Contains(r.ModelId))
            .Where(r => filter.Clauses.All(c => c.Kind == "tags"
            ? MatchesTag(tags![r.Id].FirstOrDefault(t => t.Key == c.Name)?.Value, c)
            : c.Name switch
            {
                "version_number" => SearchFilter.Compare(r.Version, c),
                "run_id" => r.RunUuid is { } id && SearchFilter.Compare(id, c),
                "source_path" => SearchFilter.Compare(r.Source, c),
                _ => SearchFilter.Compare(r.Name, c),
            })).ToList();
        var sorted = order.Aggregate((IOrderedEnumerable<VersionRow>?)null, (s, key) => Then(s, matching, key.Field switch
        {
            "name" => r => r.Name,
            "version_number" => r => r.Version,
            "creation_timestamp" => r => r.CreationTimeMs,
            _ => (Func<VersionRow, IComparable>)(r => r.LastUpdatedTimeMs),
        }, key.Descending))!;
        var (page, next) = TrackingService.Page(sorted.ToList(), request.PageToken, (int)Math.Min(max, int.MaxValue));
        var ids = page.Select(r => r.Id).ToList();
        var versions = await db.ModelVersions.AsNoTracking().Include(v => v.Tags).Where(v => ids.Contains(v.Id)).ToDictionaryAsync(v => v.Id, ct);
        var modelIds = page.Select(r => r.ModelId).Distinct().ToList();
        var models = await db.RegisteredModels.AsNoTracking().Include(m => m.Aliases).Where(m => modelIds.Contains(m.Id)).ToDictionaryAsync(m => m.Id, ct);
        // MLflow's search leaves aliases out of the versions it lists.
        return (page.Select(r => ToDto(models[r.ModelId], versions[r.Id], [])).ToList(), next);
    }

    public async Task SetModelVersionTagAsync(ModelVersionTagRequest request, Caller by, CancellationToken ct)
    {
        var (key, value) = ValidTag(request.Key, request.Value, version: true);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct);
        var version = await FindVersionAsync(db, model, request.Version, ct, track: true);
        if (version.Tags.FirstOrDefault(t => t.Key == key) is { } existing) existing.Value = value;
        else version.Tags.Add(new ModelVersionTag { Key = key, Value = value });
        await db.SaveChangesAsync(ct);
    }

    /// <summary>MLflow's auth app asks MANAGE for deleting a version's tag (EDIT for the model's).</summary>
    public async Task DeleteModelVersionTagAsync(ModelVersionTagRequest request, Caller by, CancellationToken ct)
    {
        var key = ValidTagKey(request.Key);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Manage, ct);
        var version = await FindVersionAsync(db, model, request.Version, ct);
        await db.Set<ModelVersionTag>().Where(t => t.ModelVersionId == version.Id && t.Key == key).ExecuteDeleteAsync(ct);
    }

    // ---- aliases ----

    /// <summary>Points the alias at the version, moving it if it pointed elsewhere: one row per alias, updated in one statement.</summary>
    public async Task SetAliasAsync(AliasRequest request, Caller by, CancellationToken ct)
    {
        if (request.Name is null) throw MlflowException.Missing("name");
        var alias = ValidSettableAlias(request.Alias);
        if (request.Version is null) throw MlflowException.Missing("version");
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Edit, ct);
        var version = await FindVersionAsync(db, model, request.Version, ct);
        var before = await db.RegisteredModelAliases.AsNoTracking().Where(a => a.RegisteredModelId == model.Id && a.Alias == alias)
            .Select(a => (int?)a.Version).SingleOrDefaultAsync(ct);
        if (before is null)
        {
            db.RegisteredModelAliases.Add(new RegisteredModelAlias { RegisteredModelId = model.Id, Alias = alias, Version = version.Version });
            try
            {
                await db.SaveChangesAsync(ct);
            }
            catch (DbUpdateException)
            {
                db.ChangeTracker.Clear(); // set by another request meanwhile: move it instead
                await MoveAsync();
            }
        }
        else await MoveAsync();
        await audit.RecordAsync(by, "alias.set", Target(model.Name), before is { } from && from != version.Version
            ? $"alias={alias} version={from}→{version.Version}" : $"alias={alias} version={version.Version}");

        Task MoveAsync() => db.RegisteredModelAliases.Where(a => a.RegisteredModelId == model.Id && a.Alias == alias)
            .ExecuteUpdateAsync(set => set.SetProperty(a => a.Version, version.Version), ct);
    }

    public async Task DeleteAliasAsync(AliasRequest request, Caller by, CancellationToken ct)
    {
        if (request.Name is null) throw MlflowException.Missing("name");
        var alias = ValidAlias(request.Alias);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, request.Name, by, ExperimentPermissionLevel.Manage, ct);
        if (await db.RegisteredModelAliases.Where(a => a.RegisteredModelId == model.Id && a.Alias == alias).ExecuteDeleteAsync(ct) > 0)
            await audit.RecordAsync(by, "alias.delete", Target(model.Name), $"alias={alias}");
    }

    /// <summary>The version an alias names; <c>latest</c> is the newest version of the first stage (MLflow's rule).</summary>
    public async Task<MlflowModelVersion> GetByAliasAsync(string? name, string? alias, Caller by, CancellationToken ct)
    {
        if (name is null) throw MlflowException.Missing("name");
        var valid = ValidAlias(alias);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, name, by, ExperimentPermissionLevel.Read, ct);
        var version = await ByAliasAsync(db, model, valid, ct);
        return ToDto(model, version, await AliasesOfAsync(db, model.Id, version.Version, ct));
    }

    // ---- what the pages read ----

    /// <summary>A registered model with every live version (newest first), for its page; what the caller may do with it.</summary>
    public sealed record ModelDetail(RegisteredModel Model, IReadOnlyList<VersionView> Versions, ExperimentPermissionLevel Permission);

    /// <summary>
    /// A version as the Models page shows it: its aliases; where it came from (the run — null when deleted or not EMA
    /// Lab's —, the track described, the step); its evaluation (the logged model's metrics); its weights' download path.
    /// </summary>
    public sealed record VersionView(ModelVersion Version, IReadOnlyList<string> Aliases, long? RunNumber, string? RunName, string? TrackDescription,
        IReadOnlyList<LoggedModelMetric> Evaluation, string? WeightsPath);

    /// <summary>Refuses unless the caller may add a version under <paramref name="name"/>: EDIT on it when it exists (anyone
    /// may create a new one). Checked before a registration writes anything of its own.</summary>
    public async Task RequireCanAddVersionAsync(string name, Caller by, CancellationToken ct = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        if (await db.RegisteredModels.AnyAsync(m => m.Name == name, ct)) await FindAsync(db, name, by, ExperimentPermissionLevel.Edit, ct);
    }

    /// <summary>The registered models the caller may read, by name, with their version counts and aliases.</summary>
    public async Task<List<(RegisteredModel Model, int Versions)>> ListAsync(Caller by, CancellationToken ct = default)
    {
        var readable = await permissions.ReadableModelsAsync(by, ct);
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var models = await db.RegisteredModels.AsNoTracking().Include(m => m.Aliases).Include(m => m.Tags).AsSplitQuery().OrderBy(m => m.Name)
            .ToListAsync(ct);
        var counts = await db.ModelVersions.Where(v => v.CurrentStage != ModelVersion.DeletedStage).GroupBy(v => v.RegisteredModelId)
            .Select(g => new { g.Key, Count = g.Count() }).ToDictionaryAsync(g => g.Key, g => g.Count, ct);
        return models.Where(m => readable?.Invoke(m.Id) ?? true).Select(m => (m, counts.GetValueOrDefault(m.Id))).ToList();
    }

    /// <summary>The names of the registered models the caller may add a version to (a register form's suggestions).</summary>
    public async Task<List<string>> EditableNamesAsync(Caller by, CancellationToken ct = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var models = await db.RegisteredModels.AsNoTracking().OrderBy(m => m.Name).Select(m => new { m.Id, m.Name }).ToListAsync(ct);
        var names = new List<string>();
        foreach (var model in models)
            if (await permissions.OnRegisteredModelAsync(by, model.Id, ct) >= ExperimentPermissionLevel.Edit) names.Add(model.Name);
        return names;
    }

    public async Task<ModelDetail> DetailAsync(string name, Caller by, CancellationToken ct = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await FindAsync(db, name, by, ExperimentPermissionLevel.Read, ct);
        var versions = await db.ModelVersions.AsNoTracking().Include(v => v.Tags)
            .Where(v => v.RegisteredModelId == model.Id && v.CurrentStage != ModelVersion.DeletedStage).OrderByDescending(v => v.Version).ToListAsync(ct);
        var uuids = versions.Select(v => v.RunUuid).OfType<string>().Distinct().ToList();
        var runs = await db.Runs.AsNoTracking().Where(r => uuids.Contains(r.Uuid)).Select(r => new { r.Uuid, r.Id, r.Name })
            .ToDictionaryAsync(r => r.Uuid, ct);
        var modelIds = versions.Select(v => v.ModelId).OfType<string>().Distinct().ToList();
        var logged = await db.LoggedModels.AsNoTracking().Include(m => m.Tags).Include(m => m.Metrics).AsSplitQuery()
            .Where(m => modelIds.Contains(m.Id)).ToDictionaryAsync(m => m.Id, ct);
        var views = versions.Select(v =>
        {
            var source = v.ModelId is { } id ? logged.GetValueOrDefault(id) : null;
            var run = v.RunUuid is { } uuid ? runs.GetValueOrDefault(uuid) : null;
            var weights = source is null ? null : artifacts.AllFiles(source).Where(f => !f.IsDir).Select(f => f.Path)
                .OrderBy(p => p == PyTorchFlavor.WeightsFile ? 0 : p.EndsWith(".safetensors", StringComparison.Ordinal) ? 1 : 2)
                .FirstOrDefault(p => p.EndsWith(".safetensors", StringComparison.Ordinal) || p.EndsWith(".pth", StringComparison.Ordinal)
                    || p.EndsWith(".pt", StringComparison.Ordinal));
            return new VersionView(v, model.Aliases.Where(a => a.Version == v.Version).Select(a => a.Alias).Order(StringComparer.Ordinal).ToList(),
                run?.Id, run?.Name, Describe(v.Track, source),
                source?.Metrics.GroupBy(m => m.Key).Select(g => g.MaxBy(m => (m.Step, m.TimestampMs))!).OrderBy(m => m.Key, StringComparer.Ordinal).ToList() ?? [],
                source is not null && weights is not null
                    ? $"api/2.0/mlflow-artifacts/artifacts/{LoggedModelService.ArtifactUri(source)["mlflow-artifacts:/".Length..]}/{weights}" : null);
        }).ToList();
        return new ModelDetail(model, views, await permissions.OnRegisteredModelAsync(by, model.Id, ct));
    }

    /// <summary>What a track is, in words: raw weights, a post-hoc σ_rel, or the EMA rule's preset and decay.</summary>
    static string? Describe(string? track, LoggedModel? source)
    {
        if (track is null) return null;
        if (track == EmaLab.TrainingEngine.TrackNames.Raw) return "raw weights";
        if (track.StartsWith("posthoc-", StringComparison.Ordinal)) return $"post-hoc reconstruction, σ_rel {track["posthoc-".Length..]}";
        var tags = source?.Tags.ToDictionary(t => t.Key, t => t.Value) ?? [];
        string? preset = null;
        if (tags.GetValueOrDefault("emalab.ema_rule") is { } rule)
            try { preset = JsonNode.Parse(rule)?["preset"]?.GetValue<string>(); }
            catch (JsonException) { } // a rule cut at the tag's limit: the decay alone
        var decay = tags.GetValueOrDefault("emalab.decay") is { Length: > 0 } d ? $"decay {d}" : null;
        return string.Join(" · ", new[] { preset is null ? "EMA" : $"{preset} rule", decay }.OfType<string>());
    }

    /// <summary>The versions registered from a run (its page says where each went).</summary>
    public async Task<List<(string Name, ModelVersion Version)>> OfRunAsync(string runUuid, CancellationToken ct = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        return (await db.ModelVersions.AsNoTracking().Where(v => v.RunUuid == runUuid && v.CurrentStage != ModelVersion.DeletedStage)
            .Join(db.RegisteredModels, v => v.RegisteredModelId, m => m.Id, (v, m) => new { m.Name, Version = v }).ToListAsync(ct))
            .Select(r => (r.Name, r.Version)).OrderBy(r => r.Name, StringComparer.Ordinal).ThenBy(r => r.Version.Version).ToList();
    }

    // ---- helpers ----

    sealed record VersionRow(long Id, long ModelId, string Name, int Version, string? RunUuid, string Source, long CreationTimeMs,
        long LastUpdatedTimeMs);

    static IOrderedEnumerable<T> Then<T>(IOrderedEnumerable<T>? sorted, IEnumerable<T> items, Func<T, IComparable> key, bool descending) =>
        sorted is null ? descending ? items.OrderByDescending(key) : items.OrderBy(key)
            : descending ? sorted.ThenByDescending(key) : sorted.ThenBy(key);

    static IEnumerable<T> Sort<T>(IEnumerable<T> items, List<(string Field, bool Descending)> order, Func<T, string> name, Func<T, long> created,
        Func<T, long> updated) =>
        order.Aggregate((IOrderedEnumerable<T>?)null, (s, key) => Then(s, items, key.Field switch
        {
            "name" => x => name(x),
            "creation_timestamp" => x => created(x),
            _ => (Func<T, IComparable>)(x => updated(x)),
        }, key.Descending))!;

    /// <summary>MLflow's registered-model order_by: name, or a timestamp (<c>timestamp</c>, <c>last_updated_timestamp</c> —
    /// both the last update —, <c>creation_timestamp</c>), each once; name ascending breaks ties.</summary>
    static List<(string Field, bool Descending)> RegisteredModelOrder(IReadOnlyList<string>? orderBy)
    {
        var keys = new List<(string Field, bool Descending)>();
        foreach (var clause in orderBy ?? [])
        {
            var (token, descending) = OrderClause(clause);
            var field = token switch
            {
                "name" => "name",
                "timestamp" or "last_updated_timestamp" => "last_updated_timestamp",
                "creation_timestamp" => "creation_timestamp",
                _ => throw MlflowException.Invalid($"Invalid order by key '{token}' specified. Valid keys are '{{'timestamp', 'name'}}'"),
            };
            if (keys.Any(k => k.Field == field)) throw DuplicateOrder(orderBy!);
            keys.Add((field, descending));
        }
        if (keys.All(k => k.Field != "name")) keys.Add(("name", false));
        return keys;
    }

    static List<(string Field, bool Descending)> VersionOrder(IReadOnlyList<string>? orderBy)
    {
        var keys = new List<(string Field, bool Descending)>();
        foreach (var clause in orderBy is { Count: > 0 } ? orderBy : ["last_updated_timestamp DESC", "name ASC", "version_number DESC"])
        {
            var (token, descending) = OrderClause(clause);
            if (token is not ("name" or "version_number" or "creation_timestamp" or "last_updated_timestamp"))
                throw MlflowException.Invalid($"Invalid order by key '{token}' specified. Valid keys are {{'name', 'version_number', 'creation_timestamp', 'last_updated_timestamp'}}");
            if (keys.Any(k => k.Field == token)) throw DuplicateOrder(orderBy!);
            keys.Add((token, descending));
        }
        if (keys.All(k => k.Field != "name")) keys.Add(("name", false));
        if (keys.All(k => k.Field != "version_number")) keys.Add(("version_number", true));
        return keys;
    }

    static (string Token, bool Descending) OrderClause(string clause)
    {
        var parts = clause.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length is 0 or > 2 || parts.Length == 2 && parts[1].ToUpperInvariant() is not ("ASC" or "DESC"))
            throw MlflowException.Invalid($"Invalid order_by clause '{clause}'. Could not be parsed.");
        var token = parts[0].StartsWith("attribute.", StringComparison.Ordinal) ? parts[0]["attribute.".Length..] : parts[0];
        return (token.Trim('`', '"'), parts.Length == 2 && parts[1].Equals("DESC", StringComparison.OrdinalIgnoreCase));
    }

    static MlflowException DuplicateOrder(IReadOnlyList<string> orderBy) =>
        MlflowException.Invalid($"`order_by` contains duplicate fields: [{string.Join(", ", orderBy.Select(o => $"'{o}'"))}]");

    /// <summary>
    /// A tag clause; MLflow's prompts live in the same tables, told apart by <see cref="PromptTag"/>: a model without it is not a
    /// prompt, so <c>tags.`mlflow.prompt.is_prompt` != 'true'</c> (what MLflow 3's client adds to every search) matches it.
    /// </summary>
    static bool MatchesTag(string? value, SearchFilter.Clause clause) => value is not null ? SearchFilter.Compare(value, clause)
        : clause.Name == PromptTag && (clause.Comparator, (string?)clause.Value) is ("=", "false") or ("!=", "true");

    /// <summary>Prompts are listed only when the filter asks for them (<c>= 'true'</c>), as MLflow's store excludes them.</summary>
    static bool WantsPrompts(SearchFilter filter) => filter.Clauses.Any(c => c.Kind == "tags" && c.Name == PromptTag
        && (c.Comparator, ((string?)c.Value)?.ToLowerInvariant()) is ("=", "true") or ("!=", "false"));

    const string PromptTag = "mlflow.prompt.is_prompt";

    /// <summary>The registered model by name, checked against the caller's permission on it (missing: 404 first).</summary>
    async Task<RegisteredModel> FindAsync(EmaLabDbContext db, string? name, Caller by, ExperimentPermissionLevel level, CancellationToken ct,
        bool track = false)
    {
        var valid = ValidName(name);
        var query = db.RegisteredModels.Include(m => m.Tags).Include(m => m.Aliases).AsSplitQuery();
        var model = await (track ? query : query.AsNoTracking()).SingleOrDefaultAsync(m => m.Name == valid, ct) ?? throw NotFound(valid);
        var has = await permissions.OnRegisteredModelAsync(by, model.Id, ct);
        if (has < level)
            throw new PermissionDeniedException($"This needs {PermissionNames.Of(level)} on registered model '{model.Name}'; you have {PermissionNames.Of(has)}.");
        return model;
    }

    static async Task<ModelVersion> FindVersionAsync(EmaLabDbContext db, RegisteredModel model, string? versionText, CancellationToken ct,
        bool track = false)
    {
        if (versionText is null) throw MlflowException.Missing("version");
        if (!int.TryParse(versionText, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
            throw MlflowException.Invalid($"Parameter 'version' must be an integer, got '{versionText}'.");
        var query = db.ModelVersions.Include(v => v.Tags);
        return await (track ? query : query.AsNoTracking())
            .SingleOrDefaultAsync(v => v.RegisteredModelId == model.Id && v.Version == number && v.CurrentStage != ModelVersion.DeletedStage, ct)
            ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Model Version (name={model.Name}, version={versionText}) not found");
    }

    async Task<ModelVersion> ByAliasAsync(EmaLabDbContext db, RegisteredModel model, string alias, CancellationToken ct)
    {
        if (alias.Equals(Latest, StringComparison.OrdinalIgnoreCase))
            return (await LatestVersionsAsync(db, [model.Id], ct)).GetValueOrDefault(model.Id)?.FirstOrDefault()
                ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Latest version not found for model {model.Name}.");
        var version = await db.RegisteredModelAliases.AsNoTracking().Where(a => a.RegisteredModelId == model.Id && a.Alias == alias)
            .Select(a => (int?)a.Version).SingleOrDefaultAsync(ct)
            ?? throw MlflowException.Invalid($"Registered model alias {alias} not found.");
        return await FindVersionAsync(db, model, version.ToString(CultureInfo.InvariantCulture), ct);
    }

    /// <summary>Each model's newest version per stage, the stages in the order their first version came (MLflow's dict order).</summary>
    static async Task<Dictionary<long, List<ModelVersion>>> LatestVersionsAsync(EmaLabDbContext db, IReadOnlyCollection<long> modelIds,
        CancellationToken ct)
    {
        // The numbers first (a search's page of 1,000 models has 10,000 versions), then the few newest ones whole.
        var numbers = await db.ModelVersions.AsNoTracking()
            .Where(v => modelIds.Contains(v.RegisteredModelId) && v.CurrentStage != ModelVersion.DeletedStage)
            .Select(v => new { v.Id, v.RegisteredModelId, v.Version, v.CurrentStage }).ToListAsync(ct);
        var latest = numbers.GroupBy(v => v.RegisteredModelId).ToDictionary(g => g.Key, g => g.GroupBy(v => v.CurrentStage)
            .OrderBy(stage => stage.Min(v => v.Version)).Select(stage => stage.MaxBy(v => v.Version)!.Id).ToList());
        var ids = latest.Values.SelectMany(v => v).ToList();
        var versions = await db.ModelVersions.AsNoTracking().Include(v => v.Tags).Where(v => ids.Contains(v.Id)).ToDictionaryAsync(v => v.Id, ct);
        return latest.ToDictionary(l => l.Key, l => l.Value.Select(id => versions[id]).ToList());
    }

    /// <summary>Statements that stand or fall together, through the execution strategy (PostgreSQL's retries on a dropped
    /// connection take user transactions only this way).</summary>
    static Task InTransactionAsync(EmaLabDbContext db, Func<Task> work, CancellationToken ct) =>
        db.Database.CreateExecutionStrategy().ExecuteAsync(async () =>
        {
            await using var transaction = await db.Database.BeginTransactionAsync(ct);
            await work();
            await transaction.CommitAsync(ct);
        });

    static async Task<IReadOnlyList<ModelVersion>> LatestOfAsync(EmaLabDbContext db, long modelId, CancellationToken ct) =>
        (await LatestVersionsAsync(db, [modelId], ct)).GetValueOrDefault(modelId) ?? [];

    static async Task<List<string>> AliasesOfAsync(EmaLabDbContext db, long modelId, int version, CancellationToken ct) =>
        await db.RegisteredModelAliases.AsNoTracking().Where(a => a.RegisteredModelId == modelId && a.Version == version)
            .OrderBy(a => a.Alias).Select(a => a.Alias).ToListAsync(ct);

    static async Task<string?> RunUuidAsync(EmaLabDbContext db, long? runId, CancellationToken ct) =>
        runId is { } id ? await db.Runs.Where(r => r.Id == id).Select(r => r.Uuid).SingleOrDefaultAsync(ct) : null;

    /// <summary>The track and step of a promoted logged model (its tags, its name, the run's output), for the Models page.</summary>
    static async Task<(string? Track, long? Step)> OriginAsync(EmaLabDbContext db, LoggedModel? logged, CancellationToken ct)
    {
        if (logged?.SourceRunId is not { } runId) return (null, null);
        var tracks = await db.Tracks.AsNoTracking().Where(t => t.RunId == runId).Select(t => t.Name).ToListAsync(ct);
        var track = LoggedModelService.TrackOf(logged.Name, logged.Tags.ToDictionary(t => t.Key, t => t.Value), tracks);
        var step = await db.RunOutputs.AsNoTracking().Where(o => o.RunId == runId && o.ModelId == logged.Id).MaxAsync(o => (long?)o.Step, ct);
        return (track, step);
    }

    /// <summary>MLflow's <c>set_model_versions_tags</c>: the logged model lists the versions that promote it.</summary>
    static async Task TagLoggedModelAsync(EmaLabDbContext db, string modelId, string name, int version, CancellationToken ct)
    {
        var tag = await db.Set<LoggedModelTag>().SingleOrDefaultAsync(t => t.ModelId == modelId && t.Key == ModelVersionsTag, ct);
        var entry = new JsonObject { ["name"] = name, ["version"] = version };
        var list = tag is null ? [] : JsonNode.Parse(tag.Value) as JsonArray ?? [];
        if (list.Any(e => JsonNode.DeepEquals(e, entry))) return;
        list.Add(entry);
        // Python's json.dumps spacing, as MLflow's server writes the tag.
        var text = list.ToJsonString().Replace("\":", "\": ", StringComparison.Ordinal).Replace(",\"", ", \"", StringComparison.Ordinal)
            .Replace("},{", "}, {", StringComparison.Ordinal);
        if (tag is null) db.Set<LoggedModelTag>().Add(new LoggedModelTag { ModelId = modelId, Key = ModelVersionsTag, Value = text });
        else tag.Value = text;
        await db.SaveChangesAsync(ct);
    }

    /// <summary>
    /// MLflow's <c>_validate_source_run</c> for a server whose runs' artifacts are proxied (never local): a local path is
    /// refused, and so is a URI with a relative reference (<c>..</c>, percent-encoded or not) or a NUL.
    /// </summary>
    static void ValidateSource(string source, string idParameter)
    {
        if (IsLocal(source))
            throw MlflowException.Invalid(idParameter == "model_id"
                ? $"Invalid model version source: '{source}'. To use a local path as a model version source, the model_id request parameter has to be specified and the local path has to be contained within the artifact directory of the run specified by the model_id."
                : $"Invalid model version source: '{source}'. To use a local path as a model version source, the run_id request parameter has to be specified and the local path has to be contained within the artifact directory of the run specified by the run_id.");
        var decoded = source;
        for (var next = Uri.UnescapeDataString(decoded.Replace('+', ' ')); next != decoded; next = Uri.UnescapeDataString(next.Replace('+', ' ')))
            decoded = next;
        var path = PathOf(decoded);
        if (path.Contains('\0') || decoded.Split('/').Contains("..") || path.Split('/').Contains("."))
            throw MlflowException.Invalid($"Invalid model version source: '{decoded}'. If supplying a source as an http, https, local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be provided without relative path references present. Please provide an absolute path.");
    }

    /// <summary>Python's <c>is_local_uri</c> on Linux: no scheme, or <c>file:</c> without a remote host.</summary>
    static bool IsLocal(string uri)
    {
        if (uri == "databricks") return false;
        if (MlflowValidation.UriScheme(uri) is not { } scheme) return true;
        return scheme.Equals("file", StringComparison.OrdinalIgnoreCase)
            && (uri.Length <= 7 || !uri.StartsWith("file://", StringComparison.OrdinalIgnoreCase) || uri[7] == '/' || uri[7..].StartsWith("localhost", StringComparison.Ordinal));
    }

    static string PathOf(string uri)
    {
        var rest = MlflowValidation.UriScheme(uri) is { } scheme ? uri[(scheme.Length + 1)..] : uri;
        if (rest.StartsWith("//", StringComparison.Ordinal))
        {
            var slash = rest.IndexOf('/', 2);
            rest = slash < 0 ? "" : rest[slash..];
        }
        var end = rest.IndexOfAny(['?', '#']);
        return end < 0 ? rest : rest[..end];
    }

    [GeneratedRegex(@"^models:/(?:(?<id>m-[0-9a-f]{32})/?$|(?<name>[^/@]+)(?:/(?<version>\d+)|@(?<alias>[\w\-]+))/?$)")]
    private static partial Regex ModelsUri();

    [GeneratedRegex(@"^[vV]\d+$")]
    private static partial Regex VersionAlias();

    [GeneratedRegex(@"^[\w\-]*$")]
    private static partial Regex AliasCharacters();

    public static string ValidName(string? name)
    {
        if (name is null) throw MlflowException.Missing("name");
        if (name.Trim().Length == 0) throw MlflowException.Invalid("Missing value for required parameter 'name'.");
        if (name.Contains('/') || name.Contains(':')) throw MlflowException.Invalid($"Invalid model name '{name}'. Names cannot contain '/' or ':'.");
        if (PathProblem(name) is { } problem)
            throw MlflowException.Invalid($"Invalid value {JsonSerializer.Serialize(name, MlflowJson.Options)} for parameter 'name' supplied: {problem}");
        if (Length(name) > RegisteredModel.MaxNameLength)
            throw MlflowException.Invalid($"'name' exceeds the maximum length of {RegisteredModel.MaxNameLength} characters");
        return name;
    }

    /// <summary>An alias that may be set: valid, and neither <c>latest</c> nor a version's name (<c>v3</c>), which MLflow reserves.</summary>
    public static string ValidSettableAlias(string? alias)
    {
        var valid = ValidAlias(alias);
        if (valid.Equals(Latest, StringComparison.OrdinalIgnoreCase))
            throw MlflowException.Invalid("'latest' alias name (case insensitive) is reserved.");
        if (VersionAlias().IsMatch(valid)) throw MlflowException.Invalid($"Version alias name '{valid}' is reserved.");
        return valid;
    }

    static string ValidAlias(string? alias)
    {
        if (string.IsNullOrEmpty(alias)) throw MlflowException.Invalid("Registered model alias name cannot be empty.");
        if (!AliasCharacters().IsMatch(alias))
            throw MlflowException.Invalid($"Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores (_), and dashes (-).");
        if (Length(alias) > RegisteredModelAlias.MaxLength)
            throw MlflowException.Invalid($"'Registered model alias name' exceeds the maximum length of {RegisteredModelAlias.MaxLength} characters");
        return alias;
    }

    static string ValidTagKey(string? key)
    {
        if (key is null) throw MlflowException.Missing("key");
        MlflowValidation.Name("tag", key, "key");
        MlflowValidation.LengthLimit("key", MaxEntityKeyLength, key);
        return key;
    }

    static (string Key, string Value) ValidTag(string? key, string? value, bool version = false)
    {
        var valid = ValidTagKey(key);
        if (value is null)
        {
            if (version) throw MlflowException.Invalid("Tag value cannot be None");
            value = "";
        }
        MlflowValidation.LengthLimit("value", MaxTagValueLength, value);
        return (valid, value);
    }

    static List<(string Key, string Value)> ValidTags(IReadOnlyList<MlflowTag>? tags, bool version = false)
    {
        var valid = new Dictionary<string, string>(); // a key given twice: the last value, as MLflow's dict
        foreach (var tag in tags ?? [])
        {
            var (key, value) = ValidTag(tag.Key, tag.Value, version);
            valid[key] = value;
        }
        return valid.Select(t => (t.Key, t.Value)).ToList();
    }

    static string CanonicalStage(string stage) =>
        ModelVersion.Stages.FirstOrDefault(s => s.Equals(stage, StringComparison.OrdinalIgnoreCase))
            ?? throw MlflowException.Invalid($"Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived.");

    static string? NullIfEmpty(string? text) => string.IsNullOrEmpty(text) ? null : text;

    static MlflowException NotFound(string name) =>
        new(MlflowException.ResourceDoesNotExist, $"Registered Model with name={name} not found");

    static MlflowException AlreadyExists(string name) =>
        new(MlflowException.ResourceAlreadyExists, $"Registered Model (name={name}) already exists.");

    static string Target(string name) => $"registered model {name}";
    static string Target(string name, int version) => $"registered model {name} version {version}";

    static MlflowRegisteredModel ToDto(RegisteredModel m, IReadOnlyList<ModelVersion> latest) => new(
        m.Name, m.CreationTimeMs, m.LastUpdatedTimeMs, m.CreatedBy, NullIfEmpty(m.Description),
        latest.Count > 0 ? latest.Select(v => ToDto(m, v, [])).ToList() : null,
        m.Tags.Count > 0 ? m.Tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => new MlflowTag(t.Key, t.Value)).ToList() : null,
        m.Aliases.Count > 0 ? m.Aliases.OrderBy(a => a.Alias, StringComparer.Ordinal)
            .Select(a => new MlflowRegisteredModelAlias(a.Alias, a.Version.ToString(CultureInfo.InvariantCulture))).ToList() : null);

    static MlflowModelVersion ToDto(RegisteredModel m, ModelVersion v, IReadOnlyList<string> aliases) => new(
        m.Name, v.Version.ToString(CultureInfo.InvariantCulture), v.CreationTimeMs, v.LastUpdatedTimeMs, v.UserId, v.CurrentStage,
        v.Description ?? "", v.Source, v.RunUuid ?? "", v.Status, v.StatusMessage,
        v.Tags.Count > 0 ? v.Tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => new MlflowTag(t.Key, t.Value)).ToList() : null,
        v.RunLink ?? "", aliases.Count > 0 ? aliases : null, v.ModelId);
}
