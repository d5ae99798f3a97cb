using EmaLab.Dashboard.Data;
using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// <b>Where a page reads runs.</b> The reads the pages need besides metrics (<see cref="MetricQueries"/>), groups and a
/// client's logged models, so that no page holds a database context.
/// </summary>
public sealed class RunQueries(IDbContextFactory<EmaLabDbContext> dbFactory)
{
    /// <summary>Experiment names by id, oldest first; deleted ones only when asked for (a group of a deleted experiment still names it).</summary>
    public async Task<Dictionary<long, string>> ExperimentNamesAsync(bool withDeleted = false)
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        return await db.Experiments.AsNoTracking().Where(e => withDeleted || !e.Deleted).OrderBy(e => e.Id).ToDictionaryAsync(e => e.Id, e => e.Name);
    }

    public async Task<string?> ExperimentNameAsync(long id)
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        return await db.Experiments.Where(e => e.Id == id).Select(e => e.Name).SingleOrDefaultAsync();
    }

    /// <summary>One page of the runs list: its runs with their tracks and tags, how many match, and what the filters offer.</summary>
    /// <param name="Page">The page shown: the one asked for, or the last when fewer runs match now.</param>
    /// <param name="Groups">Every group in use; <paramref name="UserTags"/>: every user tag in use, as a label and as key=value —
    /// on the runs the filter's reader may read (a group's or a tag's name says something of runs the reader may not see).</param>
    public sealed record RunsPage(IReadOnlyList<Run> Runs, int Total, int Page, IReadOnlyList<RunTag> Tags,
        IReadOnlyList<string> Groups, IReadOnlyList<string> UserTags);

    public async Task<RunsPage> ListAsync(RunFilter filter, int page, int pageSize)
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        var query = filter.Apply(db.Runs.AsNoTracking(), db);
        var total = await query.CountAsync();
        page = Math.Clamp(page, 1, Math.Max(1, (total + pageSize - 1) / pageSize));
        var runs = await query.OrderByDescending(r => r.Id).Skip((page - 1) * pageSize).Take(pageSize).Include(r => r.Tracks).ToListAsync();
        var ids = runs.Select(r => r.Id).ToList();
        var tags = await db.RunTags.AsNoTracking().Where(t => ids.Contains(t.RunId)).ToListAsync();
        var readable = new RunFilter(Readable: filter.Readable).Apply(db.Runs.AsNoTracking(), db).Select(r => r.Id);
        var inUse = await db.RunTags.AsNoTracking().Where(t => readable.Contains(t.RunId))
            .Where(t => t.Key == TagNames.Group || !(t.Key.StartsWith("mlflow.") || t.Key.StartsWith("emalab.")))
            .Select(t => new { t.Key, t.Value }).Distinct().Take(1000).ToListAsync();
        var groups = inUse.Where(t => t.Key == TagNames.Group).Select(t => t.Value).Distinct().Order(StringComparer.Ordinal).ToList();
        var userTags = inUse.Where(t => TagNames.IsUser(t.Key)).SelectMany(t => t.Value.Length == 0 ? [t.Key] : new[] { t.Key, $"{t.Key}={t.Value}" })
            .Distinct().Order(StringComparer.Ordinal).ToList();
        return new RunsPage(runs, total, page, tags, groups, userTags);
    }

    /// <summary>
    /// Runs to compare: the <paramref name="newest"/> newest, and those asked for even when older; with their tracks,
    /// metric-role tags and params.
    /// </summary>
    public sealed record CompareRuns(List<Run> Runs, IReadOnlyDictionary<long, string> RoleTags, ILookup<long, RunParam> Params);

    public async Task<CompareRuns> ForCompareAsync(IReadOnlyCollection<long> wanted, int newest)
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        var runs = await db.Runs.AsNoTracking().Include(r => r.Tracks).Where(r => !r.Deleted)
            .Where(r => wanted.Contains(r.Id) || r.Id >= db.Runs.OrderByDescending(x => x.Id).Skip(newest - 1).Select(x => x.Id).FirstOrDefault())
            .OrderByDescending(r => r.Id).ToListAsync();
        var ids = runs.Select(r => r.Id).ToList();
        var roleTags = await db.RunTags.AsNoTracking().Where(t => ids.Contains(t.RunId) && t.Key == TagNames.MetricRoles)
            .ToDictionaryAsync(t => t.RunId, t => t.Value);
        var parameters = (await db.Params.AsNoTracking().Where(p => ids.Contains(p.RunId)).ToListAsync()).ToLookup(p => p.RunId);
        return new CompareRuns(runs, roleTags, parameters);
    }

    /// <summary>Runs with their tracks (a run that changed status is read again).</summary>
    public async Task<List<Run>> WithTracksAsync(IReadOnlyCollection<long> ids)
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        return await db.Runs.AsNoTracking().Include(r => r.Tracks).Where(r => ids.Contains(r.Id)).ToListAsync();
    }

    /// <summary>What a run's page shows besides the run and its metrics: checkpoints, log, experiment, tags and params.</summary>
    public sealed record RunPage(IReadOnlyList<Checkpoint> Checkpoints, IReadOnlyList<RunLogEntry> Log, string ExperimentName,
        IReadOnlyDictionary<string, string> Tags, IReadOnlyList<(string Key, string Value)> Params);

    public async Task<RunPage> PageOfAsync(Run run)
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        var checkpoints = await db.Checkpoints.AsNoTracking().Where(c => c.RunId == run.Id).ToListAsync();
        var log = await db.RunLog.AsNoTracking().Where(l => l.RunId == run.Id).OrderBy(l => l.Id).ToListAsync();
        var experiment = await db.Experiments.Where(e => e.Id == run.ExperimentId).Select(e => e.Name).SingleAsync();
        var tags = await db.RunTags.AsNoTracking().Where(t => t.RunId == run.Id).ToDictionaryAsync(t => t.Key, t => t.Value);
        var parameters = (await db.Params.AsNoTracking().Where(p => p.RunId == run.Id).OrderBy(p => p.Key).ToListAsync())
            .Select(p => (p.Key, p.Value)).ToList();
        return new RunPage(checkpoints, log, experiment, tags, parameters);
    }
}
