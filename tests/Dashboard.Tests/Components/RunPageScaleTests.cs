using System.Globalization;
using System.Text;
using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Data;
using Microsoft.Extensions.DependencyInjection;

namespace EmaLab.Dashboard.Tests;

/// <summary>
/// A script run that evaluates at every step (the 8 × 200,000 in small): the run page hands each chart about
/// <see cref="RunSeries.MaxPoints"/> points of every series, keeps each bucket's lowest and highest point, and draws the
/// exact points of a range a person zooms into.
/// </summary>
public sealed class RunPageScaleTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();
    const int Steps = 6_000;

    static double Accuracy(string track, int step) => 0.5 + 0.4 * step / Steps + (track == "raw" ? 0 : 0.01) + (step * 7919 % 101) * 1e-4;

    async Task<long> ScriptRunAsync()
    {
        var uuid = (await Api.MlflowAsync(_client, "runs/create", "{}")).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var lines = new List<string>();
        for (var step = 0; step < Steps; step++)
        {
            foreach (var track in new[] { "raw", "ema-0.99" })
                lines.Add(string.Create(CultureInfo.InvariantCulture,
                    $$"""{"key": "{{track}}/val_acc", "value": {{Accuracy(track, step):R}}, "timestamp": {{1000 + step}}, "step": {{step}}}"""));
            lines.Add(string.Create(CultureInfo.InvariantCulture, $$"""{"key": "loss", "value": {{2.0 / (step + 1):R}}, "timestamp": {{1000 + step}}, "step": {{step}}}"""));
        }
        foreach (var chunk in lines.Chunk(1000))
            await Api.MlflowAsync(_client, "runs/log-batch", $$"""{"run_id": "{{uuid}}", "metrics": [{{string.Join(",", chunk)}}]}""");
        return (await Api.GetAsync(_client, $"/api/runs?trackingId={uuid}")).GetProperty("items")[0].Id();
    }

    [Fact]
    public async Task Every_series_is_thinned_to_what_a_chart_shows_keeping_its_extremes_and_a_zoom_draws_the_exact_points()
    {
        PageServices.Use(this, factory.Services);
        var runId = await ScriptRunAsync();
        var cut = Render<RunDetail>(p => p.Add(d => d.Id, runId));
        var charts = cut.FindComponents<MetricChart>().ToDictionary(c => c.Instance.Id, c => c.Instance);
        Assert.Equal(["raw", "ema-0.99"], charts["chart-accuracy"].TraceNames);

        // Each series: at most MaxPoints of its 6,000 points, its lowest and highest among them, in step order.
        var raw = charts["chart-accuracy"].Series.Single(s => s.Name == "raw").Points;
        Assert.InRange(raw.Count, RunSeries.MaxPoints / 2, RunSeries.MaxPoints);
        var all = Enumerable.Range(0, Steps).Select(s => Accuracy("raw", s)).ToList();
        Assert.Equal(all.Max(), raw.Max(p => p.Value));
        Assert.Equal(all.Min(), raw.Min(p => p.Value));
        Assert.True(raw.Zip(raw.Skip(1)).All(pair => pair.First.Step < pair.Second.Step));
        Assert.Equal((0, Steps - 1), (raw[0].Step, raw[^1].Step));
        // The gap too (EMA − raw at each step, then thinned), and the train loss a script's run gives no total for.
        var gap = charts["chart-gap"].Series.Single().Points;
        Assert.InRange(gap.Count, 2, RunSeries.MaxPoints);
        Assert.All(gap, p => Assert.Equal(0.01, p.Value, 9));
        Assert.Equal(["raw (band low)", "raw (band high)", "raw (smoothed)"], charts["chart-train"].TraceNames);
        Assert.All(charts["chart-train"].Series, s => Assert.InRange(s.Points.Count, RunSeries.MaxPoints / 2, RunSeries.MaxPoints + 1));
        var handed = charts.Values.Sum(c => c.Series.Sum(s => s.Points.Count));
        Assert.True(handed < 8 * RunSeries.MaxPoints, $"{handed} points for 4 charts of 8 series");

        // A zoom into steps 1,000–1,200 draws every point there (and one each side, so the line reaches the edges).
        await cut.InvokeAsync(() => charts["chart-accuracy"].Zoomed(1000, 1200));
        Assert.True(charts["chart-accuracy"].ShowsWindow);
        var zoomed = ((Plotly.Blazor.Traces.Scatter)charts["chart-accuracy"].Traces[0]).X!.Select(Convert.ToInt64).ToList();
        Assert.Equal(Enumerable.Range(999, 203).Select(s => (long)s), zoomed);
        var values = ((Plotly.Blazor.Traces.Scatter)charts["chart-accuracy"].Traces[0]).Y!.Select(Convert.ToDouble).ToList();
        Assert.Equal(Enumerable.Range(999, 203).Select(s => Accuracy("raw", s)), values);
        // Zooming out (a double-click) draws the overview again.
        await cut.InvokeAsync(() => charts["chart-accuracy"].Zoomed(null, null));
        Assert.False(charts["chart-accuracy"].ShowsWindow);
        Assert.Equal(raw.Count, ((Plotly.Blazor.Traces.Scatter)charts["chart-accuracy"].Traces[0]).X!.Count);
    }
}
