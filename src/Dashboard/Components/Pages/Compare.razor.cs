using System.Globalization;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Groups;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Tracking;
using EmaLab.TrainingEngine;
using Microsoft.AspNetCore.Components;

namespace EmaLab.Dashboard.Components.Pages;

public partial class Compare
{
    /// <summary>Run ids to preselect, comma-separated (the page keeps the address in sync).</summary>
    [SupplyParameterFromQuery(Name = "runs")] public string? RunIds { get; set; }
    /// <summary>The table's result columns (<c>track~summary</c>, comma-separated); by default each track's best and last.</summary>
    [SupplyParameterFromQuery(Name = "cols")] public string? ColumnList { get; set; }

    /// <summary>A result column: a track's held-out score summarized as chosen (each run reads its own score key: an accuracy, a Fréchet distance).</summary>
    internal sealed record ResultColumn(string Track, MetricSummary Summary, long Step = 0)
    {
        /// <summary>As a <see cref="MetricColumn"/> of the score part (its address form).</summary>
        public MetricColumn Metric => new("accuracy", Track, Summary, Step);
        /// <summary>As a column of one run's own score key, whose direction says which value is best.</summary>
        public MetricColumn MetricOf(string key) => new(key, Track, Summary, Step);
        public string Id => $"{Metric.SummaryAddress.Replace("at:", "at")}:{Track}";
        public string Address => $"{Track}~{Metric.SummaryAddress}";
        public static ResultColumn? Parse(string text) =>
            MetricColumn.Parse("accuracy~" + text) is { } column ? new(column.Track, column.Summary, column.Step) : null;
    }

    List<ResultColumn>? _chosen;

    /// <summary>A column of the table: the run, a parameter, or a summary of a track's score (<see cref="Result"/>).</summary>
    sealed record Column(string Id, string Title, bool Numeric, Func<Row, object?> Value)
    {
        public ResultColumn? Result { get; init; }
    }

    sealed record Row(Run Run, IReadOnlyDictionary<string, string> Parameters, Dictionary<string, TrackSummary> Accuracy)
    {
        /// <summary>The result columns' values, by column id.</summary>
        public Dictionary<string, double?> Results { get; } = [];
    }

    const int Newest = 100;
    List<Run> _runs = [];
    List<string> _allTracks = [];
    readonly HashSet<long> _selected = [];
    List<long> _selectedOrder = [];
    /// <summary>The part compared: each run shows its own key for it (the engine's eval/accuracy, a client's val_acc).</summary>
    string _key = "accuracy";
    Dictionary<long, MetricRoles> _roles = [];
    Dictionary<long, IReadOnlyDictionary<string, string>> _parameters = [];
    string _track = "";
    bool _allParameters;
    IReadOnlyList<ChartSeries> _series = [];
    List<Row> _rows = [];
    /// <summary>The selected runs trained with Switch EMA, and what it did (each run's spec read once per build).</summary>
    Dictionary<long, string> _switchNotes = [];
    List<Column> _columns = [];
    List<string> _differing = [];
    IReadOnlyList<ParallelCoordinates.Line> _lines = [];
    string _sortBy = "run";
    bool _descending = true;
    LiveEvents? _live;

    protected override async Task OnInitializedAsync()
    {
        var wanted = (RunIds ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(id => long.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : -1).Where(v => v > 0).ToList();
        // The newest runs to pick from, and the ones asked for even when older (a group's, the runs list's selection).
        // Only what the signed-in user may read, left out in the query.
        var (runs, roleTags, clientParams) = await Queries.ForCompareAsync(wanted, Newest, (await Access.AccessAsync()).Readable());
        _runs = runs;
        _allTracks = _runs.SelectMany(r => EmaTrack.InDisplayOrder(r.Tracks)).Select(t => t.Name).Distinct().ToList();
        // One read of the runs' series (their latest values) finds each client run's keys, not a count over its points.
        var series = await Queries.SeriesOfAsync(_runs.Select(r => r.Id).ToList());
        _roles = _runs.ToDictionary(r => r.Id, r => MetricRoles.For(r, roleTags.GetValueOrDefault(r.Id), series[r.Id]));
        _parameters = _runs.ToDictionary(r => r.Id, r => (IReadOnlyDictionary<string, string>)RunParameters.Of(r, clientParams[r.Id]));
        foreach (var id in wanted.Where(id => _runs.Any(r => r.Id == id))) _selected.Add(id);
        var chosen = (ColumnList ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(ResultColumn.Parse).OfType<ResultColumn>().Distinct().ToList();
        _chosen = chosen.Count > 0 ? chosen : null;
        if (_selected.Count == 0) foreach (var r in _runs.Where(r => r.Status == RunStatus.Completed).Take(2)) _selected.Add(r.Id);
        ReadImages();
        Build();
        _live = LiveEvents.Follow(Hub, null, TimeSpan.FromSeconds(1), batch => InvokeAsync(() => FollowAsync(batch)));
    }

    /// <summary>While a selected run trains, the chart and table follow it (redrawn at most once a second).</summary>
    async Task FollowAsync(IReadOnlyList<RunEvent> batch)
    {
        var mine = batch.Where(e => _selected.Contains(e.RunId) && e.Type is RunEventType.Metrics or RunEventType.Status).ToList();
        if (mine.Count == 0) return;
        var statusChanged = mine.Where(e => e.Type == RunEventType.Status).Select(e => e.RunId).Distinct().ToList();
        if (statusChanged.Count > 0)
        {
            await ReloadRunsAsync(statusChanged);
            ReadImages();
        }
        Build();
        StateHasChanged();
    }

    /// <summary>A run that changed status (finished, a post-hoc track added) is read again: its tracks and status.</summary>
    async Task ReloadRunsAsync(IEnumerable<long> ids)
    {
        foreach (var run in await Queries.WithTracksAsync(ids.ToList()))
        {
            var index = _runs.FindIndex(r => r.Id == run.Id);
            if (index >= 0) _runs[index] = run;
        }
    }

    string? KeyOf(long runId, string part) => _roles.GetValueOrDefault(runId) is not { } roles ? null
        : part switch { "accuracy" => roles.Score, "loss" => roles.Loss, _ => roles.Train };

    string ChartTitle() => $"{_key} ({string.Join(", ", _selectedOrder.Select(id => KeyOf(id, _key)).OfType<string>().Distinct())})";

    /// <summary>Best and final values of each run's own key for the part (best by the key's direction: a loss or a distance lowest).</summary>
    List<TrackSummary> Summaries(IReadOnlyList<long> ids, string part) =>
        ids.GroupBy(id => KeyOf(id, part)).Where(g => g.Key is not null)
           .SelectMany(g => Metrics.Summaries(g.ToList(), g.Key!, part != "accuracy" || MetricColumn.LowerIsBetter(g.Key!))).ToList();

    /// <summary>The score of the selected runs (those of one kind share it): what the score part is called, and which way is better.</summary>
    MetricRoles ScoreRoles => _selectedOrder.Select(id => _roles.GetValueOrDefault(id)).FirstOrDefault(r => r?.Score is not null) ?? MetricRoles.Engine;

    void Toggle(long id, bool on)
    {
        if (on) _selected.Add(id); else _selected.Remove(id);
        SyncAddress();
        ReadImages();
        Build();
    }

    bool Wanted(string track) => _track switch
    {
        "" => true,
        "raw" => track == MetricKeys.RawTrack,
        "ema" => track != MetricKeys.RawTrack,
        _ => track == _track,
    };

    /// <summary>Points the compare chart is given in all: its series share them (each at least a few hundred, at most <see cref="MetricQueries.DefaultMaxPoints"/>).</summary>
    internal const int ChartBudget = 64_000;

    /// <summary>
    /// One line per (run, track): colour by run, dash by track, so both read at a glance; each series thinned to its
    /// share of <see cref="ChartBudget"/> (the lowest and highest point of each bucket: spikes and spread survive), and
    /// the exact points of a range a person zooms into (<see cref="Window"/>). Then the table and the parallel coordinates.
    /// </summary>
    void Build()
    {
        _selectedOrder = _selected.Order().ToList();
        var selectedRuns = _runs.Where(r => _selected.Contains(r.Id)).OrderBy(r => r.Id).ToList();
        _switchNotes = selectedRuns.Select(r => (r.Id, Note: r.SwitchEmaNote())).Where(n => n.Note is not null).ToDictionary(n => n.Id, n => n.Note!);
        _series = ChartSeriesOf(window: null);
        // The images the selected runs logged (a key's same step side by side), of the tracks the chart shows.
        _images = _loggedImages.Where(i => Wanted(i.Track)).ToList();
        _imageColumns = _images.OrderBy(i => i.RunId).ThenBy(i => i.Track == MetricKeys.RawTrack ? 0 : 1).ThenBy(i => i.Track, StringComparer.Ordinal)
            .Select(ImageColumn).Distinct().ToList();

        var accuracy = Summaries(_selectedOrder, "accuracy");
        _rows = selectedRuns.Select(r => new Row(r, _parameters[r.Id], accuracy.Where(a => a.RunId == r.Id).ToDictionary(a => a.Track))).ToList();
        var all = _rows.Select(r => r.Parameters).ToList();
        _differing = RunParameters.Differing(all);
        var shownParameters = _allParameters ? all.SelectMany(p => p.Keys).Distinct().Order(StringComparer.Ordinal).ToList() : _differing;
        var tracksShown = _rows.SelectMany(r => EmaTrack.InDisplayOrder(r.Run.Tracks)).Select(t => t.Name).Distinct().Where(Wanted).ToList();
        var results = ResultColumns(tracksShown);
        foreach (var row in _rows)
            foreach (var column in results)
                row.Results[column.Id] = KeyOf(row.Run.Id, "accuracy") is { } key ? column.MetricOf(key).Of(Metrics.Read(row.Run.Id, column.Track, key, maxPoints: 0).Points) : null;
        _columns =
        [
            new Column("run", "Run", false, r => r.Run.Id),
            new Column("status", "Status", false, r => r.Run.Status.ToApi()),
            .. shownParameters.Select(p => new Column($"param:{p}", p, false, r => r.Parameters.GetValueOrDefault(p))),
            .. results.Select(c => new Column(c.Id, $"{ResultTitle(c)} {c.Track}", true, r => r.Results.GetValueOrDefault(c.Id)) { Result = c }),
        ];
        _lines = _rows.Where(r => r.Run.Status.IsFinished())
            .Select(r => new ParallelCoordinates.Line($"#{r.Run.Id}", r.Parameters,
                ScoreRoles.Best(r.Accuracy.Values.Where(s => s.Track != MetricKeys.RawTrack).Select(s => s.Best)) ?? double.NaN))
            .ToList();
    }

    IReadOnlyList<LoggedImage> _images = [];
    /// <summary>Every image the selected runs logged, read from their folders when the selection or a run's status changes
    /// (a run logs its images by its last evaluation), not at every live redraw.</summary>
    List<LoggedImage> _loggedImages = [];

    void ReadImages() => _loggedImages = _runs.Where(r => _selected.Contains(r.Id))
        .SelectMany(run => LoggedImages.Of(Artifacts.AllFiles(run), NoSuffixes).Select(i => i with { RunId = run.Id })).ToList();
    IReadOnlyList<string> _imageColumns = [];
    static readonly IReadOnlyDictionary<string, string> NoSuffixes = new Dictionary<string, string>();

    static string ImageColumn(LoggedImage image) => $"#{image.RunId} {image.Track}";

    /// <summary>An image file of one of the compared runs, as the browser downloads it (MLflow's artifact proxy path).</summary>
    string ImageUrl(LoggedImage image, string path) => ArtifactStore.DownloadPath(_runs.Single(r => r.Id == image.RunId), path);

    /// <summary>The chart's series, over every step or over a zoomed window of them.</summary>
    List<ChartSeries> ChartSeriesOf((long From, long To)? window)
    {
        var lines = new List<(Run Run, string Track, string Key, List<string> Tracks)>();
        foreach (var run in _runs.Where(r => _selected.Contains(r.Id)).OrderBy(r => r.Id))
        {
            if (KeyOf(run.Id, _key) is not { } key) continue;
            var tracks = EmaTrack.InDisplayOrder(run.Tracks).Select(t => t.Name).ToList();
            foreach (var track in _key == "train" ? [MetricKeys.RawTrack] : tracks.Where(Wanted)) lines.Add((run, track, key, tracks));
        }
        var share = Math.Clamp(ChartBudget / Math.Max(1, lines.Count), 400, MetricQueries.DefaultMaxPoints);
        return lines.Select(line =>
        {
            var (run, track, key, tracks) = line;
            // A Switch EMA run's raw weights are not plain training: its legend says so.
            var name = track == MetricKeys.RawTrack && _switchNotes.ContainsKey(run.Id) ? $"#{run.Id} raw (switch EMA)" : $"#{run.Id} {track}";
            var dash = track == MetricKeys.RawTrack ? null : (tracks.IndexOf(track) % 3) switch { 1 => "dash", 2 => "dot", _ => "dashdot" };
            // A post-hoc track is one evaluation at the run's end: a marker, not a line.
            var postHoc = track.StartsWith(TrackNames.PostHocPrefix, StringComparison.Ordinal);
            return new ChartSeries(name, TrackColors.ForIndex(_selectedOrder.IndexOf(run.Id)), Metrics.ForChart(run.Id, track, key, share, window), Dash: dash)
            {
                Markers = postHoc,
                LinesToo = !postHoc,
            };
        }).ToList();
    }

    IReadOnlyList<ChartSeries> Window(long from, long to) => ChartSeriesOf((from, to));

    /// <summary>The result columns shown: those chosen (of the tracks shown), else each track's best and last.</summary>
    List<ResultColumn> ResultColumns(IReadOnlyList<string> tracks) => _chosen is { } chosen
        ? chosen.Where(c => tracks.Contains(c.Track)).ToList()
        : tracks.SelectMany(t => new[] { new ResultColumn(t, MetricSummary.Best), new ResultColumn(t, MetricSummary.Last) }).ToList();

    static string ResultTitle(ResultColumn column) => column.Summary == MetricSummary.AtStep
        ? string.Create(CultureInfo.InvariantCulture, $"at step {column.Step:N0}") : MetricColumn.NameOf(column.Summary);

    /// <summary>A result column shows another summary (or the value at another step): the address keeps every column's choice.</summary>
    void ChangeResult(ResultColumn old, string? summary, string? step)
    {
        var changed = old with
        {
            Summary = Enum.TryParse<MetricSummary>(summary, out var s) ? s : old.Summary,
            Step = long.TryParse(step, NumberStyles.None, CultureInfo.InvariantCulture, out var at) ? at : old.Step,
        };
        var shown = _columns.Select(c => c.Result).OfType<ResultColumn>().ToList();
        _chosen = shown.Select(c => c == old ? changed : c).Distinct().ToList();
        if (_sortBy == new ResultColumn(old.Track, old.Summary, old.Step).Id) _sortBy = changed.Id;
        SyncAddress();
        Build();
    }

    void SyncAddress() =>
        Navigation.NavigateTo(Navigation.GetUriWithQueryParameters(new Dictionary<string, object?>
        {
            ["runs"] = string.Join(",", _selected.Order()),
            ["cols"] = _chosen is null ? null : string.Join(",", _chosen.Select(c => c.Address)),
        }), replace: true);

    void SortBy(string column)
    {
        // A result column sorts best first: an accuracy descending, a distance ascending.
        _descending = _sortBy == column ? !_descending : _columns.Any(c => c.Id == column && c.Result is not null) && !ScoreRoles.LowerIsBetter;
        _sortBy = column;
    }

    /// <summary>Numbers sort as numbers (a parameter too, when every value is one); empty cells last.</summary>
    IEnumerable<Row> SortedRows()
    {
        var column = _columns.FirstOrDefault(c => c.Id == _sortBy) ?? _columns[0];
        static double? Number(object? v) => v switch
        {
            double d => d,
            long l => l,
            string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
            _ => null,
        };
        var values = _rows.Select(r => (Row: r, Value: column.Value(r))).ToList();
        var numeric = values.All(v => v.Value is null || Number(v.Value) is not null);
        var present = values.Where(v => v.Value is not null);
        var ordered = numeric
            ? (_descending ? present.OrderByDescending(v => Number(v.Value)) : present.OrderBy(v => Number(v.Value)))
            : (_descending ? present.OrderByDescending(v => v.Value!.ToString(), StringComparer.Ordinal)
                : present.OrderBy(v => v.Value!.ToString(), StringComparer.Ordinal));
        return ordered.Concat(values.Where(v => v.Value is null)).Select(v => v.Row);
    }

    string Show(Column column, Row row) => column.Value(row) switch
    {
        null => "–",
        double d when column.Numeric => d.ToString(ScoreRoles.LowerIsBetter ? "G4" : "P2", CultureInfo.InvariantCulture),
        var v => v.ToString() ?? "",
    };

    string CsvLink()
    {
        var lines = new List<string> { CsvText.Row(_columns.Select(c => (object?)c.Title)) };
        lines.AddRange(SortedRows().Select(r => CsvText.Row(_columns.Select(c => c.Id == "run" ? $"#{r.Run.Id} {r.Run.Name}" : c.Value(r)))));
        return "data:text/csv;charset=utf-8," + Uri.EscapeDataString(string.Join("\n", lines) + "\n");
    }

    public void Dispose()
    {
        _live?.Dispose();
    }
}
