using System.Globalization;
using Bunit;
using EmaLab.Dashboard.Components.Pages;
using EmaLab.Dashboard.Components.Shared;
using EmaLab.Dashboard.Metrics;

namespace EmaLab.Dashboard.Tests;

/// <summary>System metrics (<c>system/…</c>) as MLflow's <c>log_system_metrics</c> logs them: their own section, never a track's result.</summary>
public sealed class SystemMetricsTests(EmaLabFactory factory) : BunitContext, IClassFixture<EmaLabFactory>
{
    readonly HttpClient _client = factory.CreateClient();

    // What mlflow.start_run(log_system_metrics=True) logs on a machine with one GPU (mlflow/system_metrics/metrics/*.py).
    static readonly string[] MlflowKeys =
    [
        "system/cpu_utilization_percentage", "system/system_memory_usage_megabytes", "system/system_memory_usage_percentage",
        "system/disk_usage_percentage", "system/disk_usage_megabytes", "system/disk_available_megabytes",
        "system/network_receive_megabytes", "system/network_transmit_megabytes",
        "system/gpu_0_memory_usage_percentage", "system/gpu_0_memory_usage_megabytes", "system/gpu_0_utilization_percentage",
        "system/gpu_0_power_usage_watts", "system/gpu_0_power_usage_percentage",
    ];

    [Fact]
    public async Task A_scripts_system_metrics_get_their_own_section_grouped_as_mlflow_groups_them_and_never_a_tracks_chart()
    {
        PageServices.Use(this, factory.Services);
        var uuid = (await Api.MlflowAsync(_client, "runs/create", "{}")).GetProperty("run").GetProperty("info").GetProperty("run_id").GetString();
        var metrics = new List<string>();
        for (var step = 0; step < 5; step++)
        {
            metrics.AddRange(MlflowKeys.Select(key => string.Create(CultureInfo.InvariantCulture,
                $$"""{"key": "{{key}}", "value": {{10 + step}}, "timestamp": {{1000 + step * 10_000}}, "step": {{step}}}""")));
            foreach (var track in new[] { "raw", "ema-0.99" })
                metrics.Add(string.Create(CultureInfo.InvariantCulture, $$"""{"key": "{{track}}/val_acc", "value": {{0.5 + step * 0.1}}, "timestamp": 1, "step": {{step}}}"""));
        }
        await Api.MlflowAsync(_client, "runs/log-batch", $$"""{"run_id": "{{uuid}}", "metrics": [{{string.Join(",", metrics)}}]}""");
        var runId = (await Api.GetAsync(_client, $"/api/runs?trackingId={uuid}")).GetProperty("items")[0].Id();

        var cut = Render<RunDetail>(p => p.Add(d => d.Id, runId));
        var section = cut.Find("[data-testid=system-metrics]");
        Assert.Equal(["CPU", "Memory", "Disk", "Network", "GPU 0"], section.QuerySelectorAll(".system-group").Select(h => h.TextContent));
        var charts = cut.FindComponents<MetricChart>().Select(c => c.Instance).ToList();
        var system = charts.Where(c => c.Id.StartsWith("chart-system-", StringComparison.Ordinal)).ToList();
        Assert.Equal(MlflowKeys.Length, system.Count);
        Assert.Contains(system, c => c.Title == "GPU 0 power usage (W)");
        Assert.Contains(system, c => c.Title == "CPU utilization (%)");
        Assert.All(system, c => Assert.Equal(5, c.Series.Single().Points.Count));
        // The tracks' charts hold the tracks' results alone: the accuracy is val_acc; no system key is any chart's track.
        var accuracy = charts.Single(c => c.Id == "chart-accuracy");
        Assert.Equal(["raw", "ema-0.99"], accuracy.TraceNames);
        Assert.DoesNotContain(charts.Where(c => !system.Contains(c)), c => c.TraceNames.Any(n => n.Contains("system")));
    }

    [Fact]
    public void A_system_key_is_never_a_role_even_when_its_name_says_acc_or_loss()
    {
        var run = new EmaLab.Dashboard.Data.Run { Name = "script", Uuid = EmaLab.Dashboard.Data.Run.NewUuid(), Origin = EmaLab.Dashboard.Data.RunOrigin.Client };
        (string, string)[] series = [("raw", "system/network_packet_loss"), ("raw", "system/accelerator_utilization_percentage"), ("raw", "loss")];
        Assert.Equal(new MetricRoles(null, null, "loss"), MetricRoles.For(run, null, series));
    }

    [Fact]
    public void System_keys_read_as_words_with_their_unit()
    {
        Assert.Equal("GPU 0 memory usage (MB)", SystemMetrics.Title("system/gpu_0_memory_usage_megabytes"));
        Assert.Equal("Steps per second", SystemMetrics.Title(EmaLab.TrainingEngine.MetricKeys.StepsPerSecond));
        Assert.Equal("Process memory RSS (MB)", SystemMetrics.Title(EmaLab.TrainingEngine.MetricKeys.ProcessMemoryMegabytes));
        Assert.Equal(["Throughput and time", "CPU", "GPU 0", "GPU 1"],
            SystemMetrics.Groups(["system/gpu_1_utilization_percentage", "system/gpu_0_utilization_percentage", "system/process_cpu_utilization_percentage",
                "system/steps_per_second", "val_acc"]).Select(g => g.Title));
    }
}
