using System.Globalization;
using Microsoft.Extensions.Options;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.Dashboard.Data;

/// <summary>Where everything lives under the data directory: <c>emalab.db</c> and <c>runs/{id}/</c> (resume bundles, checkpoints).</summary>
public sealed class DataPaths
{
    public DataPaths(IOptions<EmaLabOptions> options, IHostEnvironment environment)
    {
        Root = options.Value.ResolveDataDirectory(environment.ContentRootPath);
        Directory.CreateDirectory(Root);
        DatabasePath = Path.Combine(Root, "emalab.db");
        ConnectionString = $"Data Source={DatabasePath};Pooling=True;Default Timeout={options.Value.StoreTimeoutSeconds}";
    }

    public string Root { get; }
    public string DatabasePath { get; }
    public string ConnectionString { get; }

    public string RunDirectory(long runId) => Path.Combine(Root, "runs", runId.ToString(CultureInfo.InvariantCulture));
    /// <summary>The run's post-hoc EMA snapshots.</summary>
    public string PostHocDirectory(long runId) => Path.Combine(RunDirectory(runId), "posthoc");

    /// <summary>Bundles are named by step: the database names the one whose metrics are all committed.</summary>
    public string BundlePath(long runId, long step) => Path.Combine(RunDirectory(runId), $"resume-{step}.zip");

    /// <summary>Deletes the run's bundles older than <paramref name="keepStep"/> (all of them when null).</summary>
    public void DeleteBundles(long runId, long? keepStep = null)
    {
        var folder = RunDirectory(runId);
        if (!Directory.Exists(folder)) return;
        foreach (var file in Directory.EnumerateFiles(folder, "resume-*.zip"))
        {
            var name = Path.GetFileNameWithoutExtension(file);
            if (long.TryParse(name["resume-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var step) && (keepStep is null || step < keepStep))
                File.Delete(file);
        }
    }

    /// <summary>Removes files a crash left half-written (<c>*.partial</c>: bundles, checkpoints, snapshots); returns how many.</summary>
    public int DeletePartialFiles()
    {
        var runs = Path.Combine(Root, "runs");
        if (!Directory.Exists(runs)) return 0;
        var partial = Directory.GetFiles(runs, "*" + TrainingEngine.Formats.AtomicFile.PartialSuffix, SearchOption.AllDirectories);
        foreach (var file in partial) File.Delete(file);
        return partial.Length;
    }

    /// <summary>Relative to <see cref="Root"/>, as stored in the database.</summary>
    public static string CheckpointRelativePath(long runId, string track, long step) =>
        Path.Combine("runs", runId.ToString(CultureInfo.InvariantCulture), "checkpoints", $"{track}-step{step}.safetensors");

    public string Absolute(string relativePath) => Path.Combine(Root, relativePath);
}
