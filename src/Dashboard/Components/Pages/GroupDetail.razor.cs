using System.Globalization;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Groups;
using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Metrics;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine;
using Microsoft.AspNetCore.Components;

namespace EmaLab.Dashboard.Components.Pages;

public partial class GroupDetail
{
    [Parameter] public string Name { get; set; } = "";
    [SupplyParameterFromQuery] public long? Experiment { get; set; }

    GroupService.GroupData? _data;
    TrackPalette _palette = TrackPalette.Of([]);
    GroupAnalysis? _analysis;
    bool _missing;
    string _experimentName = "";
    string _metric = "accuracy";
    Band _band = Band.StandardDeviation;
    Dictionary<string, IReadOnlyList<ChartSeries>> _overlay = [];
    List<(string Track, IReadOnlyList<ChartSeries> Series)> _perTrack = [];
    int _postHocRuns;
    string _sigmaText = "0.1";
    int? _reconstructing;
    string? _postHocMessage;
    bool _postHocError;
    LiveEvents? _live;

    long ExperimentId => Experiment ?? EmaLab.Dashboard.Data.Experiment.DefaultId;
    int Active => _analysis?.Runs.Count(r => r.Status is "queued" or "running") ?? 0;

    protected override async Task OnParametersSetAsync()
    {
        _experimentName = await Queries.ExperimentNameAsync(ExperimentId) ?? $"#{ExperimentId}";
        _live ??= LiveEvents.Subscribe(Hub);
        await LoadAsync();
        _live.Start(TimeSpan.FromSeconds(2), FollowAsync);
    }

    ExperimentPermissionLevel _level;

    async Task LoadAsync()
    {
        _level = (await Access.AccessAsync()).On(ExperimentId);
        _data = _level.CanRead() ? await Groups.LoadAsync(ExperimentId, Name) : null; // not readable: shown as missing
        _missing = _data is null;
        if (_data is null) return;
        _postHocRuns = _data.Members.Count(m => m.Run.SpecJson is not null && m.Run.EngineSpec().PostHoc is not null);
        Rebuild();
    }

    /// <summary>While runs of the group train, the page re-reads them at most every two seconds (curves and statistics fill live).</summary>
    Task FollowAsync(IReadOnlyList<RunEvent> batch) =>
        _data is { } data && batch.Any(e => data.Members.Any(m => m.Run.Id == e.RunId))
            ? InvokeAsync(async () => { await LoadAsync(); StateHasChanged(); })
            : Task.CompletedTask;

    void Rebuild()
    {
        if (_data is null) return;
        _analysis = Groups.Analyze(_data, _metric);
        var configurations = _data.Members.Select(m => m.Configuration).Distinct().ToList();
        var tracks = _data.Members.SelectMany(m => EmaTrack.InDisplayOrder(m.Run.Tracks)).Select(t => t.Name).Distinct().ToList();
        var curves = configurations.SelectMany(c => tracks.Select(t => (c, t)))
            .ToDictionary(k => k, k => Groups.Curve(_data, k.c, k.t, _metric, _band));

        // The members of a group train the same tracks: the first one's palette is the one its run page shows.
        _palette = TrackPalette.ForRun(_data.Members[0].Run);
        _overlay = configurations.ToDictionary(c => c, c =>
            (IReadOnlyList<ChartSeries>)tracks.SelectMany(t => Draw(t, _palette[t], curves[(c, t)])).ToList());
        _perTrack = configurations.Count < 2 ? [] : tracks.Select(t => (t, (IReadOnlyList<ChartSeries>)configurations
            .SelectMany((c, i) => Draw(c, new TrackStyle(TrackColors.ForIndex(i), null), curves[(c, t)])).ToList())).ToList();
    }

    /// <summary>A mean line with its band; a post-hoc track (one evaluation at the end) is a marker with an error bar's worth of band.</summary>
    static IEnumerable<ChartSeries> Draw(string name, TrackStyle style, List<BandPoint> curve)
    {
        if (curve.Count == 0) yield break;
        foreach (var edge in ChartSeries.Band(name, style.Color, curve.Select(p => new MetricValue(p.Step, p.Lower)).ToList(),
            curve.Select(p => new MetricValue(p.Step, p.Upper)).ToList()))
            yield return edge;
        yield return new ChartSeries(name, style.Color, curve.Select(p => new MetricValue(p.Step, p.Mean)).ToList(),
            Dash: style.Dash) { Markers = curve.Count == 1 };
    }

    async Task ReconstructAsync()
    {
        if (_data is null) return;
        if (!double.TryParse(_sigmaText, NumberStyles.Float, CultureInfo.InvariantCulture, out var sigma))
        {
            (_postHocMessage, _postHocError) = ($"σ_rel: {PowerFunctionProfile.SupportedRange}", true);
            return;
        }
        _reconstructing = 0;
        _postHocMessage = null;
        try
        {
            var outcomes = await Groups.ReconstructAsync(_data, sigma, await Access.ActingAsync(), done => InvokeAsync(() => { _reconstructing = done; StateHasChanged(); }));
            var made = outcomes.Count(o => o.Result is not null);
            var skipped = outcomes.Where(o => o.Problem is not null).Select(o => o.Problem).ToList();
            (_postHocMessage, _postHocError) = ($"Reconstructed {TrackNames.PostHoc(sigma)} on {Count("run", made)}." + (skipped.Count > 0
                ? " Skipped: " + string.Join(" ", skipped) : ""), made == 0);
            await LoadAsync();
        }
        catch (RefusalException e)
        {
            (_postHocMessage, _postHocError) = (e is RequestValidationException ? $"σ_rel: {e.Message}" : e.Message, true);
        }
        catch (Exception e)
        {
            (_postHocMessage, _postHocError) = ($"The reconstruction failed: {e.Message}", true);
        }
        finally
        {
            _reconstructing = null;
        }
    }

    ValueFormat Units => ValueFormat.For(_analysis!.HigherIsBetter);

    /// <summary>An accuracy as a percentage (its gaps are in points), a loss or a distance as itself.</summary>
    string Format(double value) => Units.Number(value) + (_analysis!.HigherIsBetter ? " %" : "");

    string Interval(double mean, double halfWidth) => double.IsNaN(halfWidth) ? Format(mean) : $"{Format(mean)} ± {Units.Number(halfWidth)}";

    string Gap(PairedComparison? gap) => gap is null ? "" : Units.Interval(gap.Difference.Mean, gap.Difference.ConfidenceHalfWidth, signed: true);

    static string P(PairedComparison? gap) =>
        gap is null || double.IsNaN(gap.PValue) ? "" : gap.PValue < 0.001 ? "< 0.001" : gap.PValue.ToString("0.000", CultureInfo.InvariantCulture);

    string Summary()
    {
        var a = _analysis!;
        var varied = a.Varied.Count > 0 ? $" (varying {string.Join(", ", a.Varied)})" : "";
        var active = Active > 0 ? $", {Active} training or queued" : "";
        return $"{Count("run", a.Runs.Count)} · {Count("configuration", a.Configurations.Count)}{varied} · {a.Runs.Count(r => r.Status == "completed")} completed{active}";
    }

    static string Count(string noun, int n) => $"{n} {noun}{(n == 1 ? "" : "s")}";

    string CompareLink() => $"compare?runs={string.Join(",", _analysis!.Runs.Select(r => r.Id))}";

    string CsvLink() => $"api/groups/{Uri.EscapeDataString(Name)}/runs.csv?experiment={ExperimentId}";

    public void Dispose() => _live?.Dispose();

    /// <summary>The checkpoint a group's "Register the winner" registers: the best seed's latest of the best track.</summary>
    Checkpoint? _registering;
    string? _registerProblem;

    async Task RegisterWinnerAsync(long run, string track)
    {
        _registerProblem = null;
        _registering = (await Queries.CheckpointsAsync(run))?.Where(c => c.Track == track).MaxBy(c => c.Step);
        if (_registering is null)
            _registerProblem = $"Run #{run} has no checkpoint of {track}: an engine run saves its tracks' checkpoints when it completes; a script's are the .safetensors files it logs.";
    }
}
