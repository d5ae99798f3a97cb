using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Tests;

public class LiveEventTests
{
    [Fact]
    public async Task Events_reach_the_subscribers_of_their_run_and_streams_are_capped()
    {
        var hub = new RunEventHub();
        using var one = hub.Subscribe(1);
        using var all = hub.Subscribe();
        hub.Publish(new RunEvent(RunEventType.Progress, 2) { Step = 5 });
        hub.Publish(new RunEvent(RunEventType.Progress, 1) { Step = 7 });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Equal(7, (await one.Reader.ReadAsync(timeout.Token)).Step);
        var first5 = (await all.Reader.ReadAsync(timeout.Token)).Step;
        var then7 = (await all.Reader.ReadAsync(timeout.Token)).Step;
        Assert.Equal((5L, 7L), (first5!.Value, then7!.Value));

        var first = hub.TrySubscribeStream(1, maxPerRun: 1, maxTotal: 2);
        Assert.NotNull(first);
        Assert.Null(hub.TrySubscribeStream(1, maxPerRun: 1, maxTotal: 2));
        var other = hub.TrySubscribeStream(2, maxPerRun: 1, maxTotal: 2);
        Assert.NotNull(other);
        Assert.Null(hub.TrySubscribeStream(3, maxPerRun: 1, maxTotal: 2));
        first!.Dispose();
        first.Dispose(); // twice: released once
        using var again = hub.TrySubscribeStream(1, maxPerRun: 1, maxTotal: 2);
        Assert.NotNull(again);
        other!.Dispose();
    }

    [Fact]
    public void Event_kinds_have_their_wire_names()
    {
        Assert.Equal(["metrics", "progress", "status", "log", "posthoc", "sweep", "deleted"], Enum.GetValues<RunEventType>().Select(WireNames.Of));
        var options = new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web) { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
        var json = System.Text.Json.JsonSerializer.Serialize(new RunEvent(RunEventType.PostHoc, 3) { Points = [new MetricRow("raw", "train/loss", 1, double.NaN)] }, options);
        Assert.Contains("\"type\":\"posthoc\"", json);
        Assert.Equal(RunEventType.PostHoc, System.Text.Json.JsonSerializer.Deserialize<RunEvent>(json, options)!.Type);
        // The same names in the database and the API: read back whatever their case.
        Assert.Equal(("completed", RunStatus.Completed, RunOrigin.Client), (RunStatus.Completed.ToApi(), WireNames.Parse<RunStatus>("COMPLETED"), WireNames.Parse<RunOrigin>("client")));
        Assert.Contains("\"value\":\"NaN\"", json);
    }
}
