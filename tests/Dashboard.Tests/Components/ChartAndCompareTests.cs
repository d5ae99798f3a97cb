using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using Microsoft.AspNetCore.Components;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Plotly.Blazor.Traces;

namespace EmaLab.Dashboard.Tests;

/// <summary>The chart's options (focus, log, smoothing) and the compare page's table and parallel coordinates, with bUnit.</summary>
public sealed class ChartAndCompareTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    void UseAppServices() => PageServices.Use(this, factory.Services);

    /// <summary>An accuracy curve that learns fast (0.1 → 0.9 in the first steps) and then creeps from 0.90 to 0.95.</summary>
    static List<MetricValue> Learning() =>
        [.. Enumerable.Range(0, 101).Select(i => new MetricValue(i * 10, i < 5 ? 0.1 + 0.2 * i : 0.90 + 0.05 * (i - 5) / 95.0))];

    [Fact]
    public void The_y_axis_focuses_on_the_last_half_of_the_steps_until_full_range_or_log_is_chosen()
    {
        UseAppServices();
        var cut = Render<MetricChart>(p => p.Add(c => c.Id, "c").Add(c => c.Title, "t").Add(c => c.LogToggle, true)
            .Add(c => c.Series, [new ChartSeries("raw", "#000", Learning())]));
        var (low, high) = cut.Instance.YRange!.Value;
        // Steps 500 … 1000 (the last half) hold 0.9237 … 0.95: the range is theirs plus 8 %, not [0.1, 0.95].
        var (first, last) = (0.90 + 0.05 * 45 / 95.0, 0.95);
        Assert.Equal(first - 0.08 * (last - first), low, 9);
        Assert.Equal(last + 0.08 * (last - first), high, 9);

        cut.Find("input.full-range").Change(true);
        Assert.Null(cut.Instance.YRange);
        cut.Find("input.full-range").Change(false);
        Assert.NotNull(cut.Instance.YRange);
        cut.Find("input.log-y").Change(true);
        Assert.Null(cut.Instance.YRange);
        Assert.Empty(cut.FindAll("input.full-range")); // a log axis fits itself
    }

    [Fact]
    public async Task Live_points_extend_the_traces_and_move_the_focus_with_the_last_half_of_the_steps()
    {
        UseAppServices();
        var all = Learning();
        var cut = Render<MetricChart>(p => p.Add(c => c.Id, "c").Add(c => c.Title, "t")
            .Add(c => c.Series, [new ChartSeries("raw", "#000", all.Take(11).ToList())]));
        // Steps 0 … 100: the last half (50 … 100) is still learning.
        Assert.True(cut.Instance.YRange!.Value.Low < 0.9);

        await cut.InvokeAsync(() => cut.Instance.ExtendAsync(new Dictionary<string, List<MetricValue>> { ["raw"] = all.Skip(11).ToList() }, n => new ChartSeries(n, "#000", [])));
        Assert.Contains(JSInterop.Invocations, i => i.Identifier == "extendTraces");
        var (first, last) = (0.90 + 0.05 * 45 / 95.0, 0.95);
        Assert.Equal(first - 0.08 * (last - first), cut.Instance.YRange!.Value.Low, 9);
        Assert.Contains(JSInterop.Invocations, i => i.Identifier == "relayout");
    }

    [Fact]
    public async Task Live_points_before_the_first_plot_redraw_instead_of_extending_traces_the_browser_does_not_have()
    {
        UseAppServices();
        // Plotly.Blazor's first plot still on its way (as while the browser loads Plotly's script).
        var plotly = JSInterop.SetupModule("./_content/Plotly.Blazor/plotly-interop-7.2.0.js");
        var firstPlot = plotly.SetupVoid("newPlot", _ => true);
        var all = Learning();
        var cut = Render<MetricChart>(p => p.Add(c => c.Id, "c").Add(c => c.Title, "t")
            .Add(c => c.Series, [new ChartSeries("raw", "#000", all.Take(11).ToList())]));
        var early = cut.InvokeAsync(() => cut.Instance.ExtendAsync(new Dictionary<string, List<MetricValue>> { ["raw"] = all.Skip(11).Take(10).ToList() }, n => new ChartSeries(n, "#000", [])));
        firstPlot.SetVoidResult();
        await early;
        Assert.Equal(["newPlot", "react"], plotly.Invocations.Select(i => i.Identifier).Where(i => i != "importScript"));
        Assert.Equal(21, ((Plotly.Blazor.Traces.Scatter)cut.Instance.Traces[0]).Y.Count);

        // Plotted: later points extend the traces.
        await cut.InvokeAsync(() => cut.Instance.ExtendAsync(new Dictionary<string, List<MetricValue>> { ["raw"] = all.Skip(21).ToList() }, n => new ChartSeries(n, "#000", [])));
        Assert.Contains(plotly.Invocations, i => i.Identifier == "extendTraces");
    }

    [Fact]
    public void Smoothing_draws_the_debiased_ema_of_the_points_and_leaves_bands_and_markers_alone()
    {
        UseAppServices();
        var points = Learning();
        IReadOnlyList<ChartSeries> series =
        [
            .. ChartSeries.Band("raw", "#000", points, points),
            new ChartSeries("raw", "#000", points),
            new ChartSeries("posthoc-0.1", "#888", [new MetricValue(1000, 0.96)]) { Markers = true, LinesToo = false },
        ];
        var cut = Render<MetricChart>(p => p.Add(c => c.Id, "c").Add(c => c.Title, "t").Add(c => c.Series, series));
        cut.Find("input.smoothing").Change("0.6");

        var smoother = new Smoothing.State(0.6);
        var expected = points.Select(p => smoother.Next(p).Value).ToList();
        var traces = cut.Instance.Traces.Cast<Scatter>().ToList();
        Assert.Equal(expected, traces[2].Y.Cast<double>());
        Assert.Equal(points.Select(p => p.Value), traces[0].Y.Cast<double>()); // band edges keep their values
        Assert.Equal([0.96], traces[3].Y.Cast<double>());
        Assert.Empty(cut.FindAll("select.x-axis")); // these points have no wall time
    }

    [Fact]
    public void Points_with_wall_times_can_be_drawn_over_relative_time()
    {
        UseAppServices();
        var points = new List<MetricValue> { new(1, 0.5) { WallTimeMs = 10_000 }, new(2, 0.6) { WallTimeMs = 12_500 }, new(3, 0.7) { WallTimeMs = 16_000 } };
        var cut = Render<MetricChart>(p => p.Add(c => c.Id, "c").Add(c => c.Title, "t").Add(c => c.Series, [new ChartSeries("raw", "#000", points)]));
        cut.Find("select.x-axis").Change(nameof(MetricChart.XAxisMode.RelativeTime));
        Assert.Equal([0.0, 2.5, 6.0], ((Scatter)cut.Instance.Traces[0]).X.Cast<double>());
    }

    [Fact]
    public void The_x_axis_can_be_samples_seen_or_another_metric_of_the_run()
    {
        UseAppServices();
        var points = new List<MetricValue> { new(10, 0.5), new(20, 0.6), new(30, 0.7) };
        IReadOnlyDictionary<long, double> LearningRate(string key) =>
            key == "train/lr" ? new Dictionary<long, double> { [10] = 0.003, [30] = 0.001 } : throw new ArgumentException(key);
        var cut = Render<MetricChart>(p => p.Add(c => c.Id, "c").Add(c => c.Title, "t").Add(c => c.Series, [new ChartSeries("raw", "#000", points)])
            .Add(c => c.BatchSize, 128L).Add(c => c.AxisKeys, ["train/lr"]).Add(c => c.MetricAxis, LearningRate));
        Assert.Equal(["Step", "SamplesSeen", "metric:train/lr"], cut.FindAll("select.x-axis option").Select(o => o.GetAttribute("value")));

        cut.Find("select.x-axis").Change(nameof(MetricChart.XAxisMode.SamplesSeen));
        Assert.Equal([1280L, 2560L, 3840L], ((Scatter)cut.Instance.Traces[0]).X.Cast<long>());
        Assert.Equal("samples seen", ((Plotly.Blazor.Layout)cut.FindComponent<Plotly.Blazor.PlotlyChart>().Instance.Layout).XAxis[0].Title.Text);

        // Against the learning rate: a point where the learning rate was logged at its step, placed at that value.
        cut.Find("select.x-axis").Change("metric:train/lr");
        var trace = (Scatter)cut.Instance.Traces[0];
        Assert.Equal([0.003, 0.001], trace.X.Cast<double>());
        Assert.Equal([0.5, 0.7], trace.Y.Cast<double>());
        Assert.Equal("train/lr", ((Plotly.Blazor.Layout)cut.FindComponent<Plotly.Blazor.PlotlyChart>().Instance.Layout).XAxis[0].Title.Text);
    }

    [Fact]
    public async Task Compare_shows_only_the_parameters_that_differ_sorts_by_a_result_and_draws_parallel_coordinates()
    {
        UseAppServices();
        var body = Api.DigitsRun(steps: 40, evalInterval: 20);
        body["name"] = "compare grid";
        body["learningRate"] = new JsonArray(0.0005, 0.003);
        body["optimizer"] = new JsonArray("adam", "sgd");
        var ids = (await (await _client.PostAsJsonAsync("/api/groups", body)).Content.ReadFromJsonAsync<JsonElement>())
            .GetProperty("runIds").EnumerateArray().Select(i => i.GetInt64()).ToList();
        foreach (var id in ids) await Api.WaitForFinishAsync(_client, id);

        Services.GetRequiredService<NavigationManager>().NavigateTo($"compare?runs={string.Join(",", ids)}");
        var cut = Render<Compare>();
        var headings = cut.FindAll("[data-testid=compare-table] th").Select(th => th.GetAttribute("data-column")).ToList();
        Assert.Equal(["run", "status", "param:learningRate", "param:optimizer", "best:raw", "last:raw", "best:ema-0.9", "last:ema-0.9", "best:ema-0.99", "last:ema-0.99"], headings);

        cut.Find("#all-parameters").Change(true);
        Assert.Contains("param:batchSize", cut.FindAll("[data-testid=compare-table] th").Select(th => th.GetAttribute("data-column")));
        cut.Find("#all-parameters").Change(false);

        // Sorted by the final accuracy of ema-0.99, best first: the order of the API's own values.
        cut.Find("th[data-column='last:ema-0.99']").Click();
        var finals = new Dictionary<long, double>();
        foreach (var id in ids)
            finals[id] = (await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/accuracy&track=ema-0.99"))[0].GetProperty("points").EnumerateArray().Last().GetProperty("value").GetDouble();
        var shown = cut.FindAll("[data-testid=compare-table] tbody tr").Select(r => long.Parse(r.GetAttribute("data-run-id")!)).ToList();
        Assert.Equal(finals.OrderByDescending(f => f.Value).Select(f => f.Key), shown);

        // The column shows the value at step 20 instead: the address keeps the choice, the sort follows the column.
        cut.Find("th[data-column='last:ema-0.99'] select.column-summary").Change("AtStep");
        cut.Find("th[data-column='at0:ema-0.99'] input.column-step").Change("20");
        var navigation = Services.GetRequiredService<NavigationManager>();
        Assert.Contains("cols=raw~best,raw~last,ema-0.9~best,ema-0.9~last,ema-0.99~best,ema-0.99~at:20", Uri.UnescapeDataString(navigation.Uri));
        var atTwenty = new Dictionary<long, double>();
        foreach (var id in ids)
            atTwenty[id] = (await Api.GetAsync(_client, $"/api/runs/{id}/metrics?key=eval/accuracy&track=ema-0.99"))[0].GetProperty("points").EnumerateArray()
                .Single(p => p.GetProperty("step").GetInt64() == 20).GetProperty("value").GetDouble();
        var sortedAtTwenty = cut.FindAll("[data-testid=compare-table] tbody tr").Select(r => long.Parse(r.GetAttribute("data-run-id")!)).ToList();
        Assert.Equal(atTwenty.OrderByDescending(f => f.Value).Select(f => f.Key), sortedAtTwenty);
        Assert.Equal("descending", cut.Find("th[data-column='at20:ema-0.99']").GetAttribute("aria-sort"));
        // The page opened at that address shows the same columns.
        var again = Render<Compare>();
        Assert.Contains("at20:ema-0.99", again.FindAll("[data-testid=compare-table] th").Select(th => th.GetAttribute("data-column")));

        var parallel = cut.FindComponent<ParallelCoordinates>().Instance;
        Assert.Equal(["learningRate", "optimizer"], parallel.Dimensions);
        Assert.Equal(4, parallel.Lines.Count);
    }

    [Fact]
    public async Task The_compare_chart_follows_a_selected_run_while_it_trains()
    {
        UseAppServices();
        var id = (await Api.CreateAsync(_client, Api.DigitsRun(steps: 200_000, evalInterval: 100))).Id();
        await Api.WaitForAsync(_client, id, r => r.GetProperty("step").GetInt64() >= 100);
        Services.GetRequiredService<NavigationManager>().NavigateTo($"compare?runs={id}");
        var cut = Render<Compare>();
        var chart = cut.FindComponents<MetricChart>().Single(c => c.Instance.Id == "chart-compare").Instance;
        int Points() => ((Scatter)chart.Traces[chart.TraceNames.ToList().IndexOf($"#{id} raw")]).Y.Count;
        var first = Points();
        cut.WaitForAssertion(() => Assert.True(Points() >= first + 3, $"{first} → {Points()} points"), TimeSpan.FromSeconds(30));
        await _client.PostAsync($"/api/runs/{id}/cancel", null);
    }
}
