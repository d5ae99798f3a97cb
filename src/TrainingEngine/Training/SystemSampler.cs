using System.Diagnostics;
using System.Globalization;

namespace EmaLab.TrainingEngine.Training;

/// <summary>
/// What a run costs, sampled as MLflow's <c>log_system_metrics</c> samples a script (every 10 s by default): the
/// training process's CPU share and resident memory, the steps per second since the last sample, and — where Linux's
/// <c>/proc</c> tells them — the machine's CPU and memory use under MLflow's own keys, so an engine run and a script
/// run read alike. The process figures are the whole process's: runs that train at once in one process share them.
/// </summary>
public sealed class SystemSampler
{
    readonly Stopwatch _clock = Stopwatch.StartNew();
    TimeSpan _lastWall, _lastCpu = Environment.CpuUsage.TotalTime;
    long _lastStep;
    (ulong Busy, ulong Total)? _lastMachine = MachineCpu();

    public SystemSampler(long step) => _lastStep = step;

    /// <summary>The figures since the previous sample (or the sampler's start), as (key, value) at <paramref name="step"/>.</summary>
    public IReadOnlyList<(string Key, double Value)> Sample(long step)
    {
        var wall = _clock.Elapsed;
        var seconds = Math.Max((wall - _lastWall).TotalSeconds, 1e-9);
        var cpu = Environment.CpuUsage.TotalTime;
        var figures = new List<(string, double)>
        {
            (MetricKeys.StepsPerSecond, (step - _lastStep) / seconds),
            (MetricKeys.ProcessCpuPercent, 100 * (cpu - _lastCpu).TotalSeconds / seconds / Environment.ProcessorCount),
            (MetricKeys.ProcessMemoryMegabytes, Environment.WorkingSet / 1e6),
        };
        var machine = MachineCpu();
        if (machine is { } now && _lastMachine is { } before && now.Total > before.Total)
            figures.Add((MetricKeys.CpuPercent, 100.0 * (now.Busy - before.Busy) / (now.Total - before.Total)));
        if (MachineMemory() is { } memory)
        {
            figures.Add((MetricKeys.SystemMemoryMegabytes, memory.UsedMegabytes));
            figures.Add((MetricKeys.SystemMemoryPercent, 100 * memory.UsedMegabytes / memory.TotalMegabytes));
        }
        (_lastWall, _lastCpu, _lastStep, _lastMachine) = (wall, cpu, step, machine);
        return figures;
    }

    /// <summary>The machine's busy and total CPU time (jiffies) from the first line of /proc/stat; null elsewhere.</summary>
    static (ulong Busy, ulong Total)? MachineCpu()
    {
        try
        {
            using var reader = new StreamReader("/proc/stat");
            var fields = reader.ReadLine()?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields is not { Length: > 5 } || fields[0] != "cpu") return null;
            var values = fields.Skip(1).Take(8).Select(f => ulong.Parse(f, CultureInfo.InvariantCulture)).ToArray();
            var idle = values[3] + values[4]; // idle and iowait
            var total = values.Aggregate(0UL, (sum, v) => sum + v);
            return (total - idle, total);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException) { return null; }
    }

    /// <summary>The machine's memory in use (total − available, as MLflow's psutil reads it) from /proc/meminfo; null elsewhere.</summary>
    static (double UsedMegabytes, double TotalMegabytes)? MachineMemory()
    {
        try
        {
            double? total = null, available = null;
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length < 2) continue;
                if (parts[0] == "MemTotal:") total = double.Parse(parts[1], CultureInfo.InvariantCulture) * 1024 / 1e6;
                else if (parts[0] == "MemAvailable:") available = double.Parse(parts[1], CultureInfo.InvariantCulture) * 1024 / 1e6;
                if (total is not null && available is not null) return (total.Value - available.Value, total.Value);
            }
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { return null; }
    }
}
