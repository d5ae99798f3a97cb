namespace EmaLab.Dashboard.Tracking;

// The messages of mlflow/protos/model_registry.proto that EMA Lab serves (fields by their proto names; unset fields left
// out, as MLflow's server writes them).

/// <summary>A registered model: its newest version of each stage, tags and aliases, left out when empty.</summary>
public sealed record MlflowRegisteredModel(string Name, long CreationTimestamp, long LastUpdatedTimestamp, string? UserId,
    string? Description, IReadOnlyList<MlflowModelVersion>? LatestVersions, IReadOnlyList<MlflowTag>? Tags,
    IReadOnlyList<MlflowRegisteredModelAlias>? Aliases);

public sealed record MlflowRegisteredModelAlias(string Alias, string Version);

/// <summary>A model version: <c>version</c> is a string on the wire; description, run id and run link are "" when unset, as
/// MLflow's server answers.</summary>
public sealed record MlflowModelVersion(string Name, string Version, long CreationTimestamp, long LastUpdatedTimestamp, string? UserId,
    string CurrentStage, string? Description, string Source, string? RunId, string Status, string? StatusMessage,
    IReadOnlyList<MlflowTag>? Tags, string? RunLink, IReadOnlyList<string>? Aliases, string? ModelId);

public sealed record CreateRegisteredModelRequest(string? Name, IReadOnlyList<MlflowTag>? Tags, string? Description);
public sealed record RegisteredModelNameRequest(string? Name);
public sealed record RenameRegisteredModelRequest(string? Name, string? NewName);
public sealed record UpdateRegisteredModelRequest(string? Name, string? Description);
public sealed record GetLatestVersionsRequest(string? Name, IReadOnlyList<string>? Stages);
public sealed record RegisteredModelTagRequest(string? Name, string? Key, string? Value);
public sealed record CreateModelVersionRequest(string? Name, string? Source, string? RunId, IReadOnlyList<MlflowTag>? Tags, string? RunLink,
    string? Description, string? ModelId);
public sealed record ModelVersionRequest(string? Name, string? Version);
public sealed record UpdateModelVersionRequest(string? Name, string? Version, string? Description);
public sealed record TransitionStageRequest(string? Name, string? Version, string? Stage, bool? ArchiveExistingVersions);
public sealed record ModelVersionTagRequest(string? Name, string? Version, string? Key, string? Value);
public sealed record AliasRequest(string? Name, string? Alias, string? Version);
/// <summary>Both searches (GET with a query string; <c>order_by</c> repeated).</summary>
public sealed record RegistrySearchRequest(string? Filter, long? MaxResults, IReadOnlyList<string>? OrderBy, string? PageToken);
