using System.Globalization;
using System.Text.RegularExpressions;
using EmaLab.TrainingEngine;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>
/// How the run page shows system metrics (<c>system/…</c>: MLflow's <c>log_system_metrics</c> and the engine's own):
/// grouped as MLflow's system tab groups them — CPU, memory, disk, network, each GPU, time — each key one chart titled
/// in words with its unit.
/// </summary>
public static partial class SystemMetrics
{
    public sealed record Group(string Title, IReadOnlyList<string> Keys);

    /// <summary>The groups of <paramref name="keys"/> (system keys only), in MLflow's order, GPUs by device number.</summary>
    public static IReadOnlyList<Group> Groups(IEnumerable<string> keys) =>
        keys.Where(MetricKeys.IsSystem).Distinct().GroupBy(GroupOf)
            .OrderBy(g => g.Key.Order).ThenBy(g => g.Key.Device)
            .Select(g => new Group(g.Key.Title, g.OrderBy(k => k, StringComparer.Ordinal).ToList())).ToList();

    static (int Order, int Device, string Title) GroupOf(string key)
    {
        var name = key[MetricKeys.SystemPrefix.Length..];
        if (Gpu().Match(name) is { Success: true } gpu)
        {
            var device = int.Parse(gpu.Groups[1].Value, CultureInfo.InvariantCulture);
            return (4, device, $"GPU {device}");
        }
        if (name.Contains("steps_per_second") || name.EndsWith("_seconds", StringComparison.Ordinal)) return (0, 0, "Throughput and time");
        if (name.Contains("cpu")) return (1, 0, "CPU");
        if (name.Contains("memory")) return (2, 0, "Memory");
        if (name.Contains("disk")) return (3, 0, "Disk");
        if (name.Contains("network")) return (3, 1, "Network");
        return (5, 0, "Other");
    }

    /// <summary><c>system/gpu_0_memory_usage_megabytes</c> → "GPU 0 memory usage (MB)".</summary>
    public static string Title(string key)
    {
        var name = key.StartsWith(MetricKeys.SystemPrefix, StringComparison.Ordinal) ? key[MetricKeys.SystemPrefix.Length..] : key;
        string? unit = null;
        foreach (var (suffix, shown) in Units)
            if (name.EndsWith(suffix, StringComparison.Ordinal))
            {
                (name, unit) = (name[..^suffix.Length], shown);
                break;
            }
        var words = Gpu().Replace(name, m => $"GPU {m.Groups[1].Value} ").Replace('_', ' ').Replace("  ", " ").Trim();
        words = words.Replace("cpu", "CPU").Replace("rss", "RSS");
        return (char.ToUpperInvariant(words[0]) + words[1..]) + (unit is null ? "" : $" ({unit})");
    }

    static readonly (string Suffix, string Unit)[] Units =
    [
        ("_percentage", "%"), ("_megabytes", "MB"), ("_watts", "W"), ("_seconds", "s"),
    ];

    [GeneratedRegex(@"^gpu_(\d+)_?")]
    private static partial Regex Gpu();
}
