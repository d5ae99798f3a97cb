using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// A registered model (MLflow's model registry, <c>registered_models</c>): a name a team promotes versions under. Keyed by
/// a number of its own so a rename touches one row; the name is unique.
/// </summary>
public sealed class RegisteredModel
{
    /// <summary>MLflow's column is 256 characters.</summary>
    public const int MaxNameLength = 256;

    public long Id { get; set; }
    public required string Name { get; set; }
    public long CreationTimeMs { get; set; }
    public long LastUpdatedTimeMs { get; set; }
    public string? Description { get; set; }
    /// <summary>Who created it (an account's name; null without accounts), shown on the Models page.</summary>
    public string? CreatedBy { get; set; }
    /// <summary>The highest version number ever given: the next version takes one more, in one statement (so two
    /// registrations at once never take the same number, and a deleted number is never given again).</summary>
    public int LastVersion { get; set; }
    public List<RegisteredModelTag> Tags { get; set; } = [];
    public List<RegisteredModelAlias> Aliases { get; set; } = [];
    public List<ModelVersion> Versions { get; set; } = [];
}

public sealed class RegisteredModelTag
{
    public long RegisteredModelId { get; set; }
    public required string Key { get; set; }
    public required string Value { get; set; }
}

/// <summary>A name (<c>champion</c>) that points at one version; setting it again moves it (one row per alias).</summary>
public sealed class RegisteredModelAlias
{
    public const int MaxLength = 255;

    public long RegisteredModelId { get; set; }
    public required string Alias { get; set; }
    public int Version { get; set; }
}

/// <summary>
/// A version of a registered model: numbered from 1 per model, never renumbered (a deleted version keeps its number, its
/// fields redacted as MLflow's SQL store does). <see cref="Source"/> is what the client gave; <see cref="StorageLocation"/>
/// where its files are (a logged model's artifact root for <c>models:/m-…</c>). Where it came from in EMA Lab's terms —
/// the run, the track and the step — is kept beside MLflow's fields for the Models page.
/// </summary>
public sealed class ModelVersion
{
    /// <summary>MLflow's stages, in its order; <see cref="DeletedStage"/> marks a deleted version.</summary>
    public static readonly string[] Stages = ["None", "Staging", "Production", "Archived"];
    public const string DeletedStage = "Deleted_Internal";

    public long Id { get; set; }
    public long RegisteredModelId { get; set; }
    public int Version { get; set; }
    public long CreationTimeMs { get; set; }
    public long LastUpdatedTimeMs { get; set; }
    public string? Description { get; set; }
    /// <summary>Who registered it (an account's name; null without accounts).</summary>
    public string? UserId { get; set; }
    public string CurrentStage { get; set; } = "None";
    public required string Source { get; set; }
    public string? StorageLocation { get; set; }
    /// <summary>MLflow's run id as given (empty when none).</summary>
    public string? RunUuid { get; set; }
    public string? RunLink { get; set; }
    public string Status { get; set; } = "READY";
    public string? StatusMessage { get; set; }
    /// <summary>The logged model (<c>m-…</c>) the version promotes, when it promotes one.</summary>
    public string? ModelId { get; set; }
    /// <summary>The track the weights are (<c>raw</c>, <c>ema-0.999</c>, <c>posthoc-0.05</c>…), when known.</summary>
    public string? Track { get; set; }
    /// <summary>The training step of the weights, when known.</summary>
    public long? Step { get; set; }
    public List<ModelVersionTag> Tags { get; set; } = [];

    public bool Deleted => CurrentStage == DeletedStage;
}

public sealed class ModelVersionTag
{
    public long ModelVersionId { get; set; }
    public required string Key { get; set; }
    public required string Value { get; set; }
}

/// <summary>A user's permission on one registered model (MLflow's auth app's <c>registered_model_permissions</c>).</summary>
public sealed class RegisteredModelPermission
{
    public long RegisteredModelId { get; set; }
    public required string UserId { get; set; }
    public ExperimentPermissionLevel Permission { get; set; }
}
