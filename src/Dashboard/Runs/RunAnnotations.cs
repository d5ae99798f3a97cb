using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// What a person writes on a run: its name, notes and tags. They are the tracking API's own: notes are MLflow's
/// <c>mlflow.note.content</c> tag and tags are run tags, so an MLflow client sees what the pages edit and the other
/// way round. A tag may be a bare label (<c>baseline</c>, an empty value) or a key and value (<c>owner: ana</c>).
/// </summary>
public static class RunAnnotations
{
    public const int MaxTags = 50;

    public static IReadOnlyDictionary<string, string> UserTags(IEnumerable<RunTag> tags) =>
        new SortedDictionary<string, string>(tags.Where(t => TagNames.IsUser(t.Key)).ToDictionary(t => t.Key, t => t.Value), StringComparer.Ordinal);

    public static string? Notes(IEnumerable<RunTag> tags) => tags.FirstOrDefault(t => t.Key == TagNames.Notes)?.Value;

    public static string? Group(IEnumerable<RunTag> tags) => tags.FirstOrDefault(t => t.Key == TagNames.Group)?.Value;

    /// <summary>Why <paramref name="key"/> cannot be a user tag (MLflow's rules for names, and not a system prefix), or null.</summary>
    public static string? TagKeyProblem(string key)
    {
        if (string.IsNullOrWhiteSpace(key)) return "A tag needs a name.";
        if (MlflowLimits.Length(key) > MlflowLimits.MaxEntityKeyLength)
            return $"Tag '{MlflowLimits.Truncate(key, 20)}…' is longer than {MlflowLimits.MaxEntityKeyLength} characters.";
        if (MlflowLimits.NameProblem(key) is { } problem) return $"Tag '{key}': {problem}";
        if (!TagNames.IsUser(key)) return $"Tag '{key}' is the system's (mlflow.* and emalab.* are set by the tracking API and EMA Lab).";
        return null;
    }
}

/// <summary>
/// <c>PATCH /api/runs/{id}</c>: what to change; a field left out stays as it is. <see cref="Tags"/> replaces the run's
/// user tags (system tags stay); an empty <see cref="Notes"/> removes the notes.
/// </summary>
public sealed record RunUpdate(string? Name = null, string? Notes = null, Dictionary<string, string>? Tags = null)
{
    public void Validate()
    {
        var errors = new Dictionary<string, string[]>();
        if (Name is not null && (Name.Trim().Length == 0 || Name.Trim().Length > RunRequest.MaxNameLength))
            errors["name"] = [$"The name must have 1 to {RunRequest.MaxNameLength} characters."];
        if (Notes is not null && MlflowLimits.Length(Notes) > MlflowLimits.MaxTagValueLength)
            errors["notes"] = [$"Notes may have at most {MlflowLimits.MaxTagValueLength:N0} characters."];
        if (Tags is not null)
        {
            if (Tags.Count > RunAnnotations.MaxTags) errors["tags"] = [$"A run may have at most {RunAnnotations.MaxTags} tags."];
            foreach (var (key, value) in Tags)
            {
                if (RunAnnotations.TagKeyProblem(key) is { } problem) errors[$"tags.{key}"] = [problem];
                else if (value is null) errors[$"tags.{key}"] = [$"Tag '{key}' needs a value (\"\" for a bare label)."];
                else if (MlflowLimits.Length(value) > MlflowLimits.MaxTagValueLength)
                    errors[$"tags.{key}"] = [$"Tag '{key}' has a value over {MlflowLimits.MaxTagValueLength:N0} characters."];
            }
        }
        if (errors.Count > 0) throw new RequestValidationException(errors);
    }
}
