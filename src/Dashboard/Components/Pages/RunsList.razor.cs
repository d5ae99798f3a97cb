using System.Globalization;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine;
using Microsoft.AspNetCore.Components;

namespace EmaLab.Dashboard.Components.Pages;

public partial class RunsList
{
    public const int PageSize = 200;

    /// <summary>The filters as the form edits them (text: the selects' values); the address carries them, so a filtered list can be shared.</summary>
    internal sealed class Filters
    {
        public string? Search { get; set; }
        public string? Status { get; set; }
        public string? Experiment { get; set; }
        public string? Dataset { get; set; }
        public string? Model { get; set; }
        public string? Group { get; set; }
        public string? Tag { get; set; }

        public bool IsEmpty => new[] { Search, Status, Experiment, Dataset, Model, Group, Tag }.All(string.IsNullOrEmpty);

        public RunFilter ToFilter() => new(Search,
            Enum.TryParse<RunStatus>(Status, ignoreCase: true, out var s) ? s : null,
            long.TryParse(Experiment, NumberStyles.None, CultureInfo.InvariantCulture, out var e) ? e : null,
            Dataset, Model, Group, Tag);

        public Dictionary<string, object?> ToQuery() => new()
        {
            ["q"] = Blank(Search), ["status"] = Blank(Status), ["experiment"] = Blank(Experiment), ["dataset"] = Blank(Dataset),
            ["model"] = Blank(Model), ["group"] = Blank(Group), ["tag"] = Blank(Tag),
        };

        static string? Blank(string? value) => string.IsNullOrEmpty(value) ? null : value;
    }

    [SupplyParameterFromQuery(Name = "q")] public string? Search { get; set; }
    [SupplyParameterFromQuery(Name = "status")] public string? Status { get; set; }
    [SupplyParameterFromQuery(Name = "experiment")] public string? ExperimentFilter { get; set; }
    [SupplyParameterFromQuery(Name = "dataset")] public string? Dataset { get; set; }
    [SupplyParameterFromQuery(Name = "model")] public string? Model { get; set; }
    [SupplyParameterFromQuery(Name = "group")] public string? Group { get; set; }
    [SupplyParameterFromQuery(Name = "tag")] public string? Tag { get; set; }
    [SupplyParameterFromQuery(Name = "page")] public int? Page { get; set; }
    /// <summary>Metric columns (<see cref="MetricColumn.ToAddress"/>, comma-separated), the one sorted by, and its direction.</summary>
    [SupplyParameterFromQuery(Name = "cols")] public string? ColumnList { get; set; }
    [SupplyParameterFromQuery(Name = "sort")] public string? Sort { get; set; }
    [SupplyParameterFromQuery(Name = "dir")] public string? Direction { get; set; }

    List<MetricColumn> _columns = [];
    MetricColumn? _sortColumn;
    bool _descending = true;
    Dictionary<MetricColumn, Dictionary<long, double>> _values = [];
    List<(string Key, string Track)> _choices = [];
    string? _newSeries;
    MetricSummary _newSummary = MetricSummary.Best;
    long _newStep;

    Filters _filter = new();
    int _page = 1;
    int _total;
    int PageCount => Math.Max(1, (_total + PageSize - 1) / PageSize);
    readonly HashSet<long> _selected = [];
    IReadOnlyList<string> _groups = [];
    IReadOnlyList<string> _tags = [];

    sealed class Row(Run run)
    {
        public Run Run { get; set; } = run;
        public ActiveRuns.LiveProgress? Live { get; set; }
        public long Step => Live?.Progress.Step ?? Run.Step;
        public double? BestRaw { get; set; }
        /// <summary>The key whose best the row shows (the engine's eval/accuracy, or a client run's accuracy key).</summary>
        public string? AccuracyKey { get; set; }
        /// <summary>Whether the row's score is lower-is-better (a diffusion run's Fréchet distance), so its best is its lowest.</summary>
        public bool LowerIsBetter { get; set; }
        public string? Source { get; set; }
        public string? User { get; set; }
        public string? Group { get; set; }
        /// <summary>The run's own tags (not mlflow.* or emalab.*), the first few.</summary>
        public IReadOnlyList<(string Key, string Value)> UserTags { get; set; } = [];
        public TrackSummary? BestEma { get; set; }
        /// <summary>The run's track colours, as its page shows them.</summary>
        public TrackPalette Palette => field ??= TrackPalette.ForRun(Run);
    }

    List<Row>? _rows;
    Dictionary<long, string> _experiments = [];
    long? _confirmDelete;
    /// <summary>The registered versions of the run whose deletion is being confirmed (the dialog says their files stay).</summary>
    int _registeredFromDeleted;
    EmaLab.Dashboard.Security.ExperimentAccess _access = EmaLab.Dashboard.Security.ExperimentAccess.Nothing;
    string? _message;
    LiveEvents? _live;

    protected override async Task OnInitializedAsync()
    {
        _filter = new Filters { Search = Search, Status = Status, Experiment = ExperimentFilter, Dataset = Dataset, Model = Model, Group = Group,
            Tag = Tag };
        _page = Math.Max(1, Page ?? 1);
        _columns = MetricColumn.ParseList(ColumnList);
        _sortColumn = MetricColumn.Parse(Sort ?? "") is { } sort && _columns.Contains(sort) ? sort : null;
        _descending = Direction != "asc";
        await LoadAsync();
        _live = LiveEvents.Follow(Hub, null, TimeSpan.FromMilliseconds(250), batch => InvokeAsync(() => FollowAsync(batch)));
    }

    /// <summary>Reads the page's runs; with <paramref name="choices"/> also what the filters and the column picker offer
    /// (a sort or a column's new summary changes neither: those clicks skip two queries over every readable run).</summary>
    async Task LoadAsync(bool choices = true)
    {
        // Only what the signed-in user may read (the API's rule: lists never show the rest).
        _access = await Access.AccessAsync();
        _experiments = (await Queries.ExperimentNamesAsync()).Where(e => _access.On(e.Key).CanRead()).ToDictionary();
        // The same read as GET /api/runs; past the last page (runs were deleted meanwhile) the list shows the last one.
        var filter = _filter.ToFilter() with { Readable = _access.Readable() };
        var order = _sortColumn is { } sort ? new MetricOrder(sort, _descending) : null;
        var listed = await Queries.PageAsync(filter, _page, PageSize, order);
        if (listed.Runs.Count == 0 && _page > listed.LastPage) listed = await Queries.PageAsync(filter, listed.LastPage, PageSize, order);
        if (choices) _choices = await Queries.ColumnChoicesAsync(filter);
        var ids = listed.Runs.Select(r => r.Id).ToList();
        _values = [];
        foreach (var column in _columns) _values[column] = await Queries.ColumnValuesAsync(ids, column);
        (_total, _page) = (listed.Total, listed.Page);
        if (choices)
        {
            var offered = await Queries.FilterChoicesAsync(_access.Readable());
            (_groups, _tags) = (offered.Groups, offered.UserTags);
        }
        var runs = listed.Runs;
        // A client's run has its own accuracy key (MetricRoles); its source is MLflow's mlflow.source.name tag.
        // One read of the page's series (their latest values) instead of one count over each client run's points.
        var series = await Queries.SeriesOfAsync(runs.Select(r => r.Id).ToList());
        var keys = runs.ToDictionary(r => r.Id, r =>
            MetricRoles.For(r, r.Tags.FirstOrDefault(t => t.Key == TagNames.MetricRoles)?.Value, series[r.Id]).Score);
        var summaries = keys.Values.OfType<string>().Distinct()
            .SelectMany(key => Metrics.Summaries(runs.Where(r => keys[r.Id] == key).Select(r => r.Id).ToList(), key, MetricColumn.LowerIsBetter(key))).ToList();
        _rows = runs.Select(r =>
        {
            var mine = summaries.Where(s => s.RunId == r.Id).ToList();
            var lower = keys[r.Id] is { } key && MetricColumn.LowerIsBetter(key);
            var emas = mine.Where(s => s.Track != MetricKeys.RawTrack);
            return new Row(r)
            {
                AccuracyKey = keys[r.Id],
                LowerIsBetter = lower,
                Source = r.Tags.FirstOrDefault(t => t.Key == TagNames.SourceName)?.Value is { } path ? Path.GetFileName(path) : null,
                User = r.Tags.FirstOrDefault(t => t.Key == TagNames.User)?.Value,
                Group = r.Tags.FirstOrDefault(t => t.Key == TagNames.Group)?.Value,
                UserTags = r.Tags.Where(t => TagNames.IsUser(t.Key))
                    .OrderBy(t => t.Key, StringComparer.Ordinal).Take(4).Select(t => (t.Key, t.Value.Length > 24 ? t.Value[..24] + "…" : t.Value))
                        .ToList(),
                Live = Active.ProgressOf(r.Id),
                BestRaw = mine.FirstOrDefault(s => s.Track == MetricKeys.RawTrack)?.Best,
                BestEma = lower ? emas.MinBy(s => s.Best) : emas.MaxBy(s => s.Best),
            };
        }).ToList();
    }

    /// <summary>Live updates: progress and accuracy in place, a reload when a run changes status; redrawn at most 4 times a second.</summary>
    async Task FollowAsync(IReadOnlyList<RunEvent> batch)
    {
        var reload = false;
        foreach (var e in batch)
        {
            if (e.Type is RunEventType.Status or RunEventType.Deleted) reload = true;
            else if (e.Type is RunEventType.Progress or RunEventType.Metrics) reload |= !Apply(e);
        }
        if (reload) await LoadAsync();
        StateHasChanged();
    }

    /// <summary>Applies a live event (progress, or its eval accuracies) to its row; false when the run is not on the page yet.</summary>
    bool Apply(RunEvent e)
    {
        var row = _rows?.FirstOrDefault(r => r.Run.Id == e.RunId);
        if (row is null) return false;
        if (e.Type == RunEventType.Progress) row.Live = Active.ProgressOf(e.RunId) ?? row.Live;
        foreach (var p in e.Points ?? [])
        {
            if (p.Key != row.AccuracyKey || !double.IsFinite(p.Value)) continue;
            bool Better(double value, double? than) => than is not { } t || (row.LowerIsBetter ? value < t : value > t);
            if (p.Track == MetricKeys.RawTrack) { if (Better(p.Value, row.BestRaw)) row.BestRaw = p.Value; }
            else if (Better(p.Value, row.BestEma?.Best))
                row.BestEma = new TrackSummary(e.RunId, p.Track, p.Value, p.Step, p.Value, p.Step);
        }
        return true;
    }

    /// <summary>A changed filter starts again at the first page, and the address follows (replace: no history entry per keystroke).</summary>
    async Task FilterChangedAsync()
    {
        _page = 1;
        SyncAddress();
        await LoadAsync();
    }

    async Task GoToAsync(int page)
    {
        _page = Math.Clamp(page, 1, PageCount);
        SyncAddress();
        await LoadAsync();
    }

    async Task AddColumnAsync()
    {
        if (_newSeries?.Split('~') is not [var key, var track]) return;
        var column = new MetricColumn(key, track, _newSummary, _newSummary == MetricSummary.AtStep ? Math.Max(0, _newStep) : 0);
        if (!_columns.Contains(column)) _columns.Add(column);
        _newSeries = null;
        SyncAddress();
        await LoadAsync(choices: false);
    }

    Task ChangeSummaryAsync(MetricColumn column, string? value) =>
        Enum.TryParse<MetricSummary>(value, out var summary) ? ReplaceColumnAsync(column, column with { Summary = summary }) : Task.CompletedTask;

    Task ChangeStepAsync(MetricColumn column, string? value) =>
        long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var step) ? ReplaceColumnAsync(column, column with { Step = step }) : Task.CompletedTask;

    /// <summary>A column's new summary: its values and, when it is the one sorted by, the order follow (read again from the database).</summary>
    async Task ReplaceColumnAsync(MetricColumn old, MetricColumn changed)
    {
        var index = _columns.IndexOf(old);
        if (index < 0) return;
        _columns[index] = changed;
        if (_sortColumn == old) _sortColumn = changed;
        SyncAddress();
        await LoadAsync(choices: false);
    }

    async Task RemoveColumnAsync(MetricColumn column)
    {
        _columns.Remove(column);
        if (_sortColumn == column) _sortColumn = null;
        SyncAddress();
        await LoadAsync(choices: false);
    }

    /// <summary>Sorts by a column (the best first: descending for a higher-is-better metric), the other way on a second click.</summary>
    async Task SortByAsync(MetricColumn column)
    {
        _descending = _sortColumn == column ? !_descending : !column.LowerBetter;
        _sortColumn = column;
        _page = 1;
        SyncAddress();
        await LoadAsync(choices: false);
    }

    /// <summary>A summary's name in a column's picker: its best says which way the column's key is better.</summary>
    static string SummaryName(MetricSummary summary, MetricColumn? of = null) =>
        summary == MetricSummary.Best && of is not null ? of.BestName : MetricColumn.NameOf(summary);

    double? ValueOf(MetricColumn column, long runId) =>
        _values.TryGetValue(column, out var values) && values.TryGetValue(runId, out var value) ? value : null;

    static string Number(double value) => value.ToString("G5", CultureInfo.InvariantCulture);

    void SyncAddress()
    {
        var query = _filter.ToQuery();
        query["page"] = _page == 1 ? null : _page;
        query["cols"] = _columns.Count == 0 ? null : string.Join(",", _columns.Select(c => c.ToAddress()));
        query["sort"] = _sortColumn?.ToAddress();
        query["dir"] = _sortColumn is null || _descending ? null : "asc";
        Navigation.NavigateTo(Navigation.GetUriWithQueryParameters(query), replace: true);
    }

    void Select(long id, bool on)
    {
        if (on) _selected.Add(id); else _selected.Remove(id);
    }

    string ShownText()
    {
        if (_total == 0) return "No run matches these filters.";
        var first = (_page - 1) * PageSize + 1;
        return _total <= PageSize ? $"{_total:N0} run{(_total == 1 ? "" : "s")}" : $"Runs {first:N0}–{first + _rows!.Count - 1:N0} of {_total:N0}";
    }

    Task CancelAsync(long id) => Safely(async () => Report((await RunService.CancelAsync(id, await Access.ActingAsync())).Item2));
    Task ResumeAsync(long id) => Safely(async () => Report((await RunService.ResumeAsync(id, await Access.ActingAsync())).Item2));

    async Task ConfirmDeleteAsync(long id, string trackingId)
    {
        _registeredFromDeleted = (await Registry.OfRunAsync(trackingId)).Count;
        _confirmDelete = id;
    }

    Task DeleteAsync(long id) => Safely(async () =>
    {
        _confirmDelete = null;
        var outcome = await RunService.DeleteAsync(id, await Access.ActingAsync());
        if (outcome == RunService.Outcome.Accepted)
            Report($"Run {id} is stopping; it is removed once its current step ends.");
        await LoadAsync();
    });

    void Report(string? problem) => _message = problem;

    /// <summary>An action that fails shows why; it never ends the page's circuit.</summary>
    async Task Safely(Func<Task> action)
    {
        try { await action(); }
        catch (RefusalException e) { _message = e.Message; }
        catch (Exception e) { _message = $"That did not work: {e.Message}"; }
    }

    /// <summary>A row's score: an accuracy as a percentage, a lower-is-better score (a Fréchet distance) as itself.</summary>
    static string Score(Row row, double? value) => value is not { } v ? "–"
        : row.LowerIsBetter ? "FD " + v.ToString("G4", CultureInfo.InvariantCulture) : v.ToString("P1", CultureInfo.InvariantCulture);

    public void Dispose()
    {
        _live?.Dispose();
    }
}
