using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// Which runs a list shows (the runs page and <c>GET /api/runs</c> alike): a name search and filters by status, experiment,
/// dataset, model, group and tag, all combined. An engine run's dataset and model are its spec's; a client's, its
/// <c>dataset</c>/<c>model</c> params. A tag filter is a key (<c>baseline</c>) or a key and value (<c>owner=ana</c>).
/// <c>TrackingId</c> finds the run an MLflow client knows by its <c>run_id</c>.
/// </summary>
public sealed record RunFilter(
    string? Search = null, RunStatus? Status = null, long? Experiment = null, string? Dataset = null, string? Model = null,
    string? Group = null, string? Tag = null, string? TrackingId = null, ReadableExperiments? Readable = null)
{
    public IQueryable<Run> Apply(IQueryable<Run> runs, EmaLabDbContext db)
    {
        runs = runs.Where(r => !r.Deleted); // deleted through the tracking API (restorable there): not listed
        if (Readable is { } readable)
        {
            // Only what the caller may read: lists never show the rest.
            var allowed = readable.Allowed.ToList();
            var denied = readable.Denied.ToList();
            runs = readable.ByDefault ? runs.Where(r => !denied.Contains(r.ExperimentId)) : runs.Where(r => allowed.Contains(r.ExperimentId));
        }
        if (!string.IsNullOrWhiteSpace(Search))
        {
            var text = Search.Trim().ToLower();
            runs = runs.Where(r => r.Name.ToLower().Contains(text));
        }
        if (Status is { } status) runs = runs.Where(r => r.Status == status);
        if (Experiment is { } experiment) runs = runs.Where(r => r.ExperimentId == experiment);
        if (!string.IsNullOrEmpty(TrackingId)) runs = runs.Where(r => r.Uuid == TrackingId);
        if (!string.IsNullOrEmpty(Dataset)) runs = WithSetting(runs, db, "dataset", Dataset);
        if (!string.IsNullOrEmpty(Model)) runs = WithSetting(runs, db, "model", Model);
        if (!string.IsNullOrEmpty(Group)) runs = runs.Where(r => db.RunTags.Any(t => t.RunId == r.Id && t.Key == TagNames.Group && t.Value == Group));
        if (!string.IsNullOrEmpty(Tag))
        {
            var equals = Tag.IndexOf('=');
            var (key, value) = equals < 0 ? (Tag, null) : (Tag[..equals], Tag[(equals + 1)..]);
            runs = runs.Where(r => db.RunTags.Any(t => t.RunId == r.Id && t.Key == key && (value == null || t.Value == value)));
        }
        return runs;
    }

    /// <summary>
    /// The spec is stored as the engine writes it (compact camelCase JSON), so <c>"dataset":"mnist-10k"</c> appears in it
    /// exactly when that is its dataset: one text match that both databases run without a JSON function.
    /// </summary>
    static IQueryable<Run> WithSetting(IQueryable<Run> runs, EmaLabDbContext db, string field, string value)
    {
        var pattern = $"\"{field}\":{System.Text.Json.JsonSerializer.Serialize(value)}";
        return runs.Where(r =>
            r.SpecJson != null ? r.SpecJson.Contains(pattern) : db.Params.Any(p => p.RunId == r.Id && p.Key == field && p.Value == value));
    }
}
