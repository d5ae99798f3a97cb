using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.TrainingEngine.Averaging;
using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// <b>Where runs are read</b>, by the pages and the REST API alike (one rule for each read): a run, a page of runs, a run's
/// checkpoints, log and whole view, runs to compare. Metrics are <see cref="MetricQueries"/>'; groups and a client's logged
/// models have their own services. No page and no handler holds a database context for these.
/// </summary>
public sealed class RunQueries(IDbContextFactory<EmaLabDbContext> dbFactory, ActiveRuns active, DataPaths paths)
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

    /// <summary>One run with its tracks and tags, as the API and the run's page show it; null when there is no such run.</summary>
    public async Task<Run?> FindAsync(long id, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        return await db.Runs.AsNoTracking().Include(r => r.Tracks).Include(r => r.Tags).AsSplitQuery()
            .SingleOrDefaultAsync(r => r.Id == id, cancellationToken);
    }

    /// <summary>A page of runs matching a filter, newest first, with their tracks and tags, and how many match.</summary>
    /// <param name="Page">The page read: 1-based; past the last one it is empty (the runs list then shows the last page).</param>
    public sealed record RunsPage(IReadOnlyList<Run> Runs, int Total, int Page, int PageSize)
    {
        /// <summary>The last page that has runs (1 when none match).</summary>
        public int LastPage => Math.Max(1, (Total + PageSize - 1) / PageSize);
    }

    public async Task<RunsPage> PageAsync(RunFilter filter, int page, int pageSize, MetricOrder? order = null, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var query = filter.Apply(db.Runs.AsNoTracking(), db);
        var total = await query.CountAsync(cancellationToken);
        // Newest first, or by a metric column's summary — in the query, so the page holds the runs that sort first of all of them.
        var ordered = order is null ? query.OrderByDescending(r => r.Id) : order.Apply(query, db);
        var runs = await ordered.Skip((page - 1) * pageSize).Take(pageSize)
            .Include(r => r.Tracks).Include(r => r.Tags).AsSplitQuery().ToListAsync(cancellationToken);
        return new RunsPage(runs, total, page, pageSize);
    }

    /// <summary>A metric column's value for each of <paramref name="runIds"/> that has one (a page's runs: one query per column).</summary>
    public async Task<Dictionary<long, double>> ColumnValuesAsync(IReadOnlyCollection<long> runIds, MetricColumn column, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var (key, track, step) = (column.Key, column.Track, column.Step);
        var series = db.Metrics.AsNoTracking().Where(m => runIds.Contains(m.RunId) && m.Key == key && m.Track == track);
        var values = column.Computed switch
        {
            MetricSummary.Last => await db.LatestMetrics.AsNoTracking().Where(l => runIds.Contains(l.RunId) && l.Key == key && l.Track == track)
                .Select(l => new { l.RunId, l.Value }).ToListAsync(cancellationToken),
            MetricSummary.Min => await series.GroupBy(m => m.RunId).Select(g => new { RunId = g.Key, Value = g.Min(m => m.Value) }).ToListAsync(cancellationToken),
            MetricSummary.Max => await series.GroupBy(m => m.RunId).Select(g => new { RunId = g.Key, Value = g.Max(m => m.Value) }).ToListAsync(cancellationToken),
            // The value logged last at the step, as the sort reads it.
            _ => (await series.Where(m => m.Step == step).Select(m => new { m.RunId, m.Value, m.WallTimeMs }).ToListAsync(cancellationToken))
                .GroupBy(m => m.RunId).Select(g => g.MaxBy(m => m.WallTimeMs)!).Select(m => new { m.RunId, m.Value }).ToList(),
        };
        return values.Where(v => v.Value is not null).ToDictionary(v => v.RunId, v => v.Value!.Value);
    }

    /// <summary>The (track, key) series each of <paramref name="runIds"/> has, from the latest values (one row per series: no count over points).</summary>
    public async Task<ILookup<long, (string Track, string Key)>> SeriesOfAsync(IReadOnlyCollection<long> runIds, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var rows = await db.LatestMetrics.AsNoTracking().Where(l => runIds.Contains(l.RunId)).Select(l => new { l.RunId, l.Track, l.Key })
            .ToListAsync(cancellationToken);
        return rows.ToLookup(r => r.RunId, r => (r.Track, r.Key));
    }

    /// <summary>The (key, track) series the runs a filter finds have, for a table's metric columns: system metrics last, at most 500.</summary>
    public async Task<List<(string Key, string Track)>> ColumnChoicesAsync(RunFilter filter, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var runs = filter.Apply(db.Runs.AsNoTracking(), db).Select(r => r.Id);
        var series = await db.LatestMetrics.AsNoTracking().Where(l => runs.Contains(l.RunId)).Select(l => new { l.Key, l.Track }).Distinct()
            .OrderBy(s => s.Key).ThenBy(s => s.Track).Take(500).ToListAsync(cancellationToken);
        return series.Select(s => (s.Key, s.Track)).OrderBy(s => EmaLab.TrainingEngine.MetricKeys.IsSystem(s.Key)).ToList();
    }

    /// <summary>What the runs list's filters offer: every group and every user tag in use (as a label and as key=value) on
    /// the runs the reader may read — a group's or a tag's name says something of runs the reader may not see.</summary>
    public sealed record FilterChoices(IReadOnlyList<string> Groups, IReadOnlyList<string> UserTags);

    public async Task<FilterChoices> FilterChoicesAsync(ReadableExperiments? readable, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var runs = new RunFilter(Readable: readable).Apply(db.Runs.AsNoTracking(), db).Select(r => r.Id);
        var inUse = await db.RunTags.AsNoTracking().Where(t => runs.Contains(t.RunId))
            .Where(t => t.Key == TagNames.Group || !(t.Key.StartsWith(TagNames.MlflowPrefix) || t.Key.StartsWith(TagNames.EmaLabPrefix)))
            .Select(t => new { t.Key, t.Value }).Distinct().Take(1000).ToListAsync(cancellationToken);
        var groups = inUse.Where(t => t.Key == TagNames.Group).Select(t => t.Value).Distinct().Order(StringComparer.Ordinal).ToList();
        var userTags = inUse.Where(t => TagNames.IsUser(t.Key)).SelectMany(t => t.Value.Length == 0 ? [t.Key] : new[] { t.Key, $"{t.Key}={t.Value}" })
            .Distinct().Order(StringComparer.Ordinal).ToList();
        return new FilterChoices(groups, userTags);
    }

    /// <summary>
    /// Runs to compare: the <paramref name="newest"/> newest the reader may read, and those asked for even when older; with
    /// their tracks, metric-role tags and params. What the reader may not read is left out in the query, before the newest
    /// are counted, so older readable runs fill the list.
    /// </summary>
    public sealed record CompareRuns(List<Run> Runs, IReadOnlyDictionary<long, string> RoleTags, ILookup<long, RunParam> Params);

    public async Task<CompareRuns> ForCompareAsync(IReadOnlyCollection<long> wanted, int newest, ReadableExperiments? readable)
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        var candidates = new RunFilter(Readable: readable).Apply(db.Runs.AsNoTracking(), db).Where(r => !r.Deleted);
        var runs = await candidates.Include(r => r.Tracks)
            .Where(r => wanted.Contains(r.Id) || r.Id >= candidates.OrderByDescending(x => x.Id).Skip(newest - 1).Select(x => x.Id).FirstOrDefault())
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

    /// <summary>The run's checkpoints by step, then track; null when there is no such run.</summary>
    public async Task<IReadOnlyList<Checkpoint>?> CheckpointsAsync(long runId, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        if (!await db.Runs.AnyAsync(r => r.Id == runId, cancellationToken)) return null;
        return await CheckpointsOf(db, runId, cancellationToken);
    }

    static Task<List<Checkpoint>> CheckpointsOf(EmaLabDbContext db, long runId, CancellationToken cancellationToken) =>
        db.Checkpoints.AsNoTracking().Where(c => c.RunId == runId).OrderBy(c => c.Step).ThenBy(c => c.Track).ToListAsync(cancellationToken);

    /// <summary>A checkpoint and its run's name (for the downloaded file's name); null when there is no such checkpoint.</summary>
    public async Task<(Checkpoint Checkpoint, string RunName)?> CheckpointFileAsync(long checkpointId, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var found = await db.Checkpoints.AsNoTracking().Where(c => c.Id == checkpointId)
            .Join(db.Runs, c => c.RunId, r => r.Id, (c, r) => new { Checkpoint = c, r.Name }).SingleOrDefaultAsync(cancellationToken);
        return found is null ? null : (found.Checkpoint, found.Name);
    }

    /// <summary>The run's log in the order it was written; null when there is no such run.</summary>
    public async Task<IReadOnlyList<RunLogEntry>?> LogAsync(long runId, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        if (!await db.Runs.AnyAsync(r => r.Id == runId, cancellationToken)) return null;
        return await LogOf(db, runId, cancellationToken);
    }

    static Task<List<RunLogEntry>> LogOf(EmaLabDbContext db, long runId, CancellationToken cancellationToken) =>
        db.RunLog.AsNoTracking().Where(l => l.RunId == runId).OrderBy(l => l.Id).ToListAsync(cancellationToken);

    /// <summary>
    /// A run as its page shows it besides metrics: the run (tracks, tags), its live progress in this process, its
    /// experiment's name, tags and params by key, checkpoints and log — read with the same rules as the API's
    /// <c>/api/runs/{id}</c>, <c>/checkpoints</c> and <c>/log</c>; and whether it has post-hoc EMA (an engine run trained
    /// with it, or a script's run once it has uploaded snapshots).
    /// </summary>
    public sealed record RunView(Run Run, ActiveRuns.LiveProgress? Progress, string ExperimentName, IReadOnlyDictionary<string, string> Tags,
        IReadOnlyList<(string Key, string Value)> Params, IReadOnlyList<Checkpoint> Checkpoints, IReadOnlyList<RunLogEntry> Log, bool HasPostHoc,
        IReadOnlyList<(string Track, string Key)> Series)
    {
        /// <summary>The batch size: an engine run's spec's, or the one a script logged as a param (<c>batch_size</c> and its spellings).</summary>
        public long? BatchSize => Run.SpecJson is not null ? Run.EngineSpec().BatchSize
            : Params.Where(p => p.Key.Replace("-", "_").ToLowerInvariant() is "batch_size" or "batchsize" or "train_batch_size" or "per_device_train_batch_size")
                .Select(p => long.TryParse(p.Value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var b) && b > 0 ? b : (long?)null)
                .FirstOrDefault(b => b is not null);
    }

    /// <summary>The run's view; null when there is no such run or the reader may not read it.</summary>
    public async Task<RunView?> ViewAsync(long id, ReadableExperiments? readable, CancellationToken cancellationToken = default)
    {
        var run = await FindAsync(id, cancellationToken);
        if (run is null || readable is not null && !readable.CanRead(run.ExperimentId)) return null;
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var experiment = await db.Experiments.Where(e => e.Id == run.ExperimentId).Select(e => e.Name).SingleAsync(cancellationToken);
        var parameters = (await db.Params.AsNoTracking().Where(p => p.RunId == id).OrderBy(p => p.Key).ToListAsync(cancellationToken))
            .Select(p => (p.Key, p.Value)).ToList();
        var hasPostHoc = run.Origin == RunOrigin.Client
            ? PostHocSnapshots.Steps(paths.SnapshotDirectory(run)).Count > 0
            : run.SpecJson is not null && run.EngineSpec().PostHoc is not null;
        // The (track, key) series it has, from the latest values (one row each: no count over every point).
        var series = (await db.LatestMetrics.AsNoTracking().Where(l => l.RunId == id).Select(l => new { l.Track, l.Key }).ToListAsync(cancellationToken))
            .Select(l => (l.Track, l.Key)).ToList();
        return new RunView(run, active.ProgressOf(id), experiment, run.Tags.ToDictionary(t => t.Key, t => t.Value), parameters,
            await CheckpointsOf(db, id, cancellationToken), await LogOf(db, id, cancellationToken), hasPostHoc, series);
    }
}
