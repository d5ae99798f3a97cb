using System.Globalization;
using System.Text.Json;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Runs;
using EmaLab.Dashboard.Tracking;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;
using EmaLab.TrainingEngine;
using Microsoft.AspNetCore.Components;
using Microsoft.JSInterop;

namespace EmaLab.Dashboard.Components.Pages;

public partial class RunDetail
{
    [Parameter] public long Id { get; set; }

    Run? _run;
    bool _missing;
    ExperimentPermissionLevel _level;
    ActiveRuns.LiveProgress? _live;
    string _specJson = "";
    double _smoothing = 0.6;
    IReadOnlyList<Checkpoint> _checkpoints = [];
    IReadOnlyList<RunLogEntry> _log = [];
    List<TrackSummary> _accuracySummary = [], _lossSummary = [];
    IReadOnlyList<ChartSeries> _accuracy = [], _loss = [], _train = [], _gap = [];
    MetricChart? _accuracyChart, _lossChart, _trainChart, _gapChart;
    SystemPanel? _system;

    // The charts' series: history and live points through the same rules (RunSeries).
    RunSeries? _series;
    LiveEvents? _events;

    // Trained tracks only: post-hoc reconstructions have one point each and live in their own panel.
    IEnumerable<string> Tracks => _run is null ? [] : EmaTrack.InDisplayOrder(_run.Tracks).Where(t => t.SigmaRel is null).Select(t => t.Name);
    bool _hasPostHoc;
    IReadOnlyList<EmaRule> _rules = [];
    TrackPalette _palette = TrackPalette.Of([]);
    MetricRoles _roles = MetricRoles.Engine;
    string _experimentName = "";
    IReadOnlyDictionary<string, string> _tags = new Dictionary<string, string>();
    IReadOnlyList<(string Key, string Value)> _params = [];
    IReadOnlyList<EmaLab.Dashboard.Tracking.MlflowFileInfo> _artifacts = [];
    IReadOnlyList<EmaLab.Dashboard.Tracking.LoggedModelService.RunModel> _models = [];
    /// <summary>The versions registered from this run (the checkpoints section lists them).</summary>
    IReadOnlyList<(string Name, ModelVersion Version)> _versions = [];

    /// <summary>The browser tab shows how far a training run is, so it can be watched from another tab.</summary>
    string TabTitle() => TabTitle(_run, _live?.Progress.Step);

    internal static string TabTitle(Run? run, long? liveStep)
    {
        if (run is null) return "Run · EMA Lab";
        var step = liveStep ?? run.Step;
        return run.Status == RunStatus.Running && run.TotalSteps > 0
            ? $"{Math.Floor(100.0 * step / run.TotalSteps):0} % · {run.Name} · EMA Lab"
            : $"{run.Name} · EMA Lab";
    }

    /// <summary>An engine run's chart titles name the part; a client's name its own keys.</summary>
    /// <summary>An engine diffusion run (model unet): scored by its samples' Fréchet distance and its denoising loss.</summary>
    bool _diffusion;
    string? _scoreNote;

    string ScoreChartTitle => _diffusion ? "Sample quality: Fréchet distance to held-out images (lower is better)" : "Eval accuracy";

    string RoleTitle(string? key, string engineTitle) => _run?.Origin == RunOrigin.Client ? key ?? engineTitle : engineTitle;

    long? _shownId;
    string? _evaluationNote;
    string? _switchNote;
    RunTimeSplit? _timeSplit;

    internal static string? JoinNotes(string? a, string? b) => a is null ? b : b is null ? a : $"{a} {b}";

    static string Seconds(double seconds) => seconds < 10
        ? seconds.ToString("0.0", CultureInfo.InvariantCulture) + " s" : ProgressBar.FormatDuration(seconds);

    /// <summary>Which held-out images the evaluation charts' points score, when the run scores a subset before its last step.</summary>
    internal static string? EvaluationNote(RunSpec spec, long totalSteps)
    {
        if (spec.EvalSubset is not (> 0 and var subset)) return null;
        int scored;
        try { scored = EmaLab.TrainingEngine.Data.DatasetCatalog.Describe(spec.Dataset).EvalCount; }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException) { return null; } // its dataset is gone
        return subset >= scored ? null
            : $"Before step {totalSteps:N0} each point scores a fixed subset of {subset:N0} of the {scored:N0} held-out images; the last step scores all {scored:N0}.";
    }

    /// <summary>What a diffusion run's Fréchet distance points score, and the smallest difference that is not noise at their sample count.</summary>
    internal static string? SampleQualityNote(RunSpec spec)
    {
        if (spec.DiffusionOrDefault() is not { } d) return null;
        if (!EmaLab.TrainingEngine.Diffusion.FeatureNetwork.Covers(spec.Dataset))
            return $"No reference network covers {spec.Dataset}: its samples are shown, not scored; tracks rank by the denoising loss.";
        string Floor(int n) => EmaLab.TrainingEngine.Diffusion.DiffusionSettings.FloorAt(n).ToString("0.00", CultureInfo.InvariantCulture);
        return $"Each point scores {d.Samples:N0} DDIM samples ({d.SamplingSteps} steps) drawn from the same noise for every track, the last step " +
               $"{d.FinalSamples:N0}; with nothing to find the distance reads about {Floor(d.Samples)} at {d.Samples:N0} samples and {Floor(d.FinalSamples)} at " +
               $"{d.FinalSamples:N0}: smaller differences are noise.";
    }

    protected override async Task OnParametersSetAsync()
    {
        if (_shownId == Id) return;
        _shownId = Id;
        // Subscribe before reading the history so no point falls between the two (duplicates are harmless).
        _events?.Dispose();
        _events = LiveEvents.Subscribe(Hub, Id);
        await LoadRunAsync();
        if (_run is null) return;
        LoadHistory();
        _events.Start(TimeSpan.FromMilliseconds(500), batch => InvokeAsync(() => FollowAsync(batch)));
    }

    async Task LoadRunAsync()
    {
        // The API's reads of the run, its checkpoints and its log; a run the signed-in user may not read is shown as missing
        // (as the API's 403 says nothing of what it holds).
        var access = await Access.AccessAsync();
        var view = await Queries.ViewAsync(Id, access.Readable());
        _run = view?.Run;
        _missing = view is null;
        if (view is null || _run is null) return;
        _level = access.On(_run.ExperimentId);
        _live = view.Progress;
        _specJson = _run.SpecJson is null ? ""
            : JsonSerializer.Serialize(JsonDocument.Parse(_run.SpecJson), new JsonSerializerOptions { WriteIndented = true });
        var spec = _run.SpecJson is null ? null : _run.EngineSpec();
        _hasPostHoc = view.HasPostHoc;
        _rules = spec?.EmaRules() ?? [];
        _switchNote = _run.SwitchEmaNote() is { } switched ? switched + ": the raw curves are of this training, not of plain training." : null;
        _evaluationNote = JoinNotes(spec is null ? null : EvaluationNote(spec, _run.TotalSteps), _switchNote);
        // A diffusion run's distance always compares with every held-out image: the subset note is the loss chart's.
        _scoreNote = spec is not null && SampleQualityNote(spec) is { } quality ? JoinNotes(quality, _switchNote) : _evaluationNote;
        _timeSplit = _run.Origin == RunOrigin.Engine ? Metrics.TimeSplit(Id) : null;
        _palette = TrackPalette.ForRun(_run, _rules);
        (_checkpoints, _log, _experimentName, _tags, _params) = (view.Checkpoints, view.Log, view.ExperimentName, view.Tags, view.Params);
        _seriesKeys = view.Series;
        _batchSize = view.BatchSize;
        // Any metric the run logged on its raw weights can be a chart's x axis (not a system metric: sampled on its own clock).
        _axisKeys = view.Series.Where(s => s.Track == MetricKeys.RawTrack && !MetricKeys.IsSystem(s.Key)).Select(s => s.Key).Distinct()
            .Order(StringComparer.Ordinal).ToList();
        _axisValues.Clear();
        _roles = RolesOf(_run);
        _diffusion = spec?.Model == EmaLab.TrainingEngine.Models.ModelArchitecture.UNet;
        // A script's artifacts, and the images either kind of run logged by step (the engine writes its own in MLflow's form).
        var files = Artifacts.AllFiles(_run);
        _images = LoggedImages.Of(files, TrackSuffixes());
        _artifacts = _run.Origin == RunOrigin.Client ? files.Where(f => ImageFileNames.Parse(f.Path) is null).ToList() : [];
        _models = await LoggedModels.OfRunAsync(_run);
        _versions = await Registry.OfRunAsync(_run.Uuid);
        _accuracySummary = _roles.Score is { } accuracy ? Metrics.Summaries([Id], accuracy, _roles.LowerIsBetter) : [];
        _lossSummary = _roles.Loss is { } lossKey ? Metrics.Summaries([Id], lossKey, lowerIsBetter: true) : [];
    }

    async Task ReloadVersionsAsync(EmaLab.Dashboard.Tracking.MlflowModelVersion registered)
    {
        _versions = await Registry.OfRunAsync(_run!.Uuid);
        _models = await LoggedModels.OfRunAsync(_run);
    }

    void LoadHistory()
    {
        _series = new RunSeries(Tracks.ToList(), _run!.TotalSteps, _smoothing, _roles);
        var history = _series.Load(Metrics, Id);
        _accuracy = RunSeries.Series(history.Accuracy, Tracks, _palette);
        _loss = RunSeries.Series(history.Loss, Tracks, _palette);
        _train = RunSeries.TrainSeries(history.Train);
        _gap = RunSeries.Series(history.Gap, Tracks.Where(t => t != MetricKeys.RawTrack), _palette);
    }

    /// <summary>The charts' series over a zoomed step range, by the same rules as the whole run (every point once they fit).</summary>
    RunSeries.Batch Window(long from, long to) =>
        new RunSeries(Tracks.ToList(), _run!.TotalSteps, _smoothing, _roles, (from, to)).Load(Metrics, Id);

    void SetSmoothing(ChangeEventArgs e)
    {
        if (!double.TryParse(e.Value?.ToString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var value)) return;
        _smoothing = Math.Clamp(value, 0, 0.99);
        // The new smoothing is applied to the history and continues live from there (the series parameters change: the charts redraw).
        LoadHistory();
    }

    /// <summary>Live points go to the charts in batches (every half second) with extendTraces, never a full redraw.</summary>
    async Task FollowAsync(IReadOnlyList<RunEvent> batch)
    {
        var points = new List<MetricRow>();
        var statusChanged = false;
        foreach (var e in batch)
        {
            if (e.Type is RunEventType.Status or RunEventType.Deleted) statusChanged = true;
            if (e.Type is RunEventType.Log or RunEventType.Progress) { _live = Active.ProgressOf(Id) ?? _live; continue; }
            if (e.Type == RunEventType.Metrics) points.AddRange(e.Points!);
        }
        // On the circuit's context, so a history reload (new smoothing) never interleaves with live points.
        try
        {
            var accuracyArrived = false;
            // A client's run grows: a new track, or a key that fills a part the page had no key for, redraws from the history.
            var rolesMissing = _roles.Score is null || _roles.Loss is null || _roles.Train is null;
            var arrived = points.Select(p => (p.Track, p.Key)).Distinct().Where(s => !_seriesKeys.Contains(s)).ToList();
            if (arrived.Count > 0) _seriesKeys = [.. _seriesKeys, .. arrived];
            if (_run is { Origin: RunOrigin.Client } && _series is not null && points.Count > 0
                && (points.Any(p => !_series.Tracks.Contains(p.Track)) || rolesMissing && !_roles.Equals(RolesOf(_run))))
            {
                await LoadRunAsync();
                LoadHistory();
                points.Clear();
            }
            if (points.Any(p => p.Track == MetricKeys.RawTrack && MetricKeys.IsSystem(p.Key)))
                _system?.Refresh(points.Where(p => p.Track == MetricKeys.RawTrack).Select(p => p.Key));
            if (_series is not null)
            {
                var applied = _series.Apply(points);
                accuracyArrived = applied.Accuracy.Count > 0;
                // A run that has doubled since the page read it is read again, thinned for its new length (the charts redraw).
                if (_series.Outgrown) LoadHistory();
                else
                {
                    await Extend(_accuracyChart, applied.Accuracy);
                    await Extend(_lossChart, applied.Loss);
                    if (_trainChart is not null) await _trainChart.ExtendAsync(applied.Train, RunSeries.NewTrainSeries);
                    await Extend(_gapChart, applied.Gap);
                }
            }
            if (accuracyArrived && !statusChanged) await LoadRunAsync();
        }
        catch (Exception e) when (e is not JSDisconnectedException)
        {
            // One slow or failed chart call (a JS interop timeout on a busy machine) must not end live
            // updates: the status and the table still refresh, and the next batch tries the charts again.
            Logger.LogWarning(e, "Run {RunId}: live points did not reach the page's charts", Id);
        }
        if (statusChanged)
        {
            await LoadRunAsync();
            // A run that has ended shows what was stored: the charts are read again once, so a live point that a failed
            // chart call dropped is not missing from the final picture.
            if (_run is { } ended && ended.Status.IsFinished()) LoadHistory();
        }
        StateHasChanged();
    }

    Task Extend(MetricChart? chart, Dictionary<string, List<MetricValue>> points) =>
        chart is null ? Task.CompletedTask : chart.ExtendAsync(points, name => _palette.Series(name, []));

    IReadOnlyList<LoggedImage> _images = [];
    (string Path, ArtifactPreview Preview)? _preview;

    /// <summary>Shows an artifact in place (read now, at most a preview's bytes); a second click on the same one closes it.</summary>
    void ShowPreview(string path) =>
        _preview = _preview?.Path == path || _run is null ? null
            : (path, Artifacts.RunFile(_run, path) is { } file ? ArtifactPreview.Of(file) : new ArtifactPreview.None("the file is gone"));

    /// <summary>The gallery's columns: the run's tracks in their order, then any track only an image names.</summary>
    IReadOnlyList<string> ImageColumns => Tracks.Concat(_images.Select(i => i.Track)).Distinct().ToList();

    IReadOnlyDictionary<string, string> TrackSuffixes()
    {
        try { return ClientTrackKeys.ParseSuffixes(_tags.GetValueOrDefault(TagNames.TrackSuffixes)); }
        catch (MlflowException) { return new Dictionary<string, string>(); } // refused when set: an old value is read as none
    }

    /// <summary>An artifact file of this run as the browser downloads it (MLflow's artifact proxy path, each segment escaped: names hold '+' and '~').</summary>
    string ArtifactUrl(string path) => ArtifactStore.DownloadPath(_run!, path);

    MetricRoles RolesOf(Run run) => MetricRoles.For(run, _tags.GetValueOrDefault(TagNames.MetricRoles), _seriesKeys);

    IReadOnlyList<(string Track, string Key)> _seriesKeys = [];
    long? _batchSize;
    IReadOnlyList<string> _axisKeys = [];
    readonly Dictionary<string, IReadOnlyDictionary<long, double>> _axisValues = [];

    /// <summary>A raw metric's values by step, for a chart's x axis (the last value logged at a step), read once per page view.</summary>
    IReadOnlyDictionary<long, double> AxisValues(string key)
    {
        if (_axisValues.TryGetValue(key, out var known)) return known;
        var byStep = new Dictionary<long, double>();
        foreach (var point in Metrics.Read(Id, MetricKeys.RawTrack, key, maxPoints: 0).Points)
            if (double.IsFinite(point.Value)) byStep[point.Step] = point.Value;
        return _axisValues[key] = byStep;
    }

    Task CancelAsync() => ActAsync(async () => await RunService.CancelAsync(Id, await Access.ActingAsync()));
    Task ResumeAsync() => ActAsync(async () => await RunService.ResumeAsync(Id, await Access.ActingAsync()));

    /// <summary>Runs a cancel or resume and shows what came of it; a failure is shown, never thrown into the circuit.</summary>
    async Task ActAsync(Func<Task<(RunService.Outcome, string?)>> action)
    {
        try { _actionMessage = (await action()).Item2; }
        catch (RefusalException e) { _actionMessage = e.Message; }
        catch (Exception e) { _actionMessage = $"That did not work: {e.Message}"; }
        await LoadRunAsync();
    }

    string? _actionMessage;

    public void Dispose()
    {
        _events?.Dispose();
    }
}
