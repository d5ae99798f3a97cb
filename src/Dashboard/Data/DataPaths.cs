using System.Globalization;
using Microsoft.Extensions.Options;
using EmaLab.TrainingEngine.Formats;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// Where everything lives: <c>emalab.db</c> in the data directory, and the runs' files (<c>runs/{id}/</c>: resume bundles,
/// checkpoints, snapshots, artifacts) under the artifact directory, which is the data directory unless configured.
/// </summary>
public sealed class DataPaths
{
    public DataPaths(IOptions<EmaLabOptions> options, IHostEnvironment environment)
    {
        var dataDirectory = options.Value.ResolveDataDirectory(environment.ContentRootPath);
        Root = options.Value.ResolveArtifactDirectory(environment.ContentRootPath);
        // A shared folder that is not mounted must stop the process here, not fail runs one by one later.
        try
        {
            Directory.CreateDirectory(dataDirectory);
            Directory.CreateDirectory(Root);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"The data directory '{dataDirectory}' or the artifact directory '{Root}' cannot be created or reached: {e.Message}", e);
        }
        DatabasePath = Path.Combine(dataDirectory, "emalab.db");
        // Under the artifact directory, so every worker of a deployment trains on what was uploaded to the web role.
        DatasetsDirectory = Path.Combine(Root, "datasets");
        Directory.CreateDirectory(DatasetsDirectory);
        TrainingEngine.Data.DatasetCatalog.AddDirectory(DatasetsDirectory);
        ConnectionString = $"Data Source={DatabasePath};Pooling=True;Default Timeout={options.Value.Metrics.StoreTimeoutSeconds}";
    }

    /// <summary>The artifact directory: every path the database records is relative to it.</summary>
    public string Root { get; }
    public string DatabasePath { get; }
    /// <summary>Uploaded datasets, one folder each (<see cref="TrainingEngine.Data.DatasetFolder"/>).</summary>
    public string DatasetsDirectory { get; }
    public string ConnectionString { get; }

    public string RunDirectory(long runId) => Path.Combine(Root, "runs", runId.ToString(CultureInfo.InvariantCulture));
    /// <summary>The post-hoc EMA snapshots the engine takes of a run it trains.</summary>
    public string PostHocDirectory(long runId) => Path.Combine(RunDirectory(runId), "posthoc");

    /// <summary>A logged model's files: under its source run's folder (deleted with it — unless a registered version
    /// promotes it: the run's deletion moves it out first, see <see cref="RegisteredModelDirectory"/>), else under <c>models/</c>.</summary>
    public string LoggedModelDirectory(LoggedModel model) => model.SourceRunId is { } run
        ? Path.Combine(RunDirectory(run), "models", model.Id, "artifacts")
        : RegisteredModelDirectory(model.Id);

    /// <summary>Where a logged model's files are when no run holds them: <c>models/&lt;id&gt;/artifacts</c>.</summary>
    public string RegisteredModelDirectory(string modelId) => Path.Combine(Root, "models", modelId, "artifacts");

    /// <summary>A client run's artifacts (MLflow's artifact proxy stores them here).</summary>
    public string ClientArtifactsDirectory(long runId) => Path.Combine(RunDirectory(runId), "artifacts");

    /// <summary>Where a run's post-hoc snapshots are: the engine's, or those a client uploaded as artifacts <c>posthoc/…</c>.</summary>
    public string SnapshotDirectory(Run run) =>
        run.Origin == RunOrigin.Client ? Path.Combine(ClientArtifactsDirectory(run.Id), "posthoc") : PostHocDirectory(run.Id);

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
            if (long.TryParse(name["resume-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var step)
                && (keepStep is null || step < keepStep))
                File.Delete(file);
        }
    }

    /// <summary>
    /// Removes files a crash left half-written (<c>*.partial</c>: bundles, checkpoints, snapshots) and dataset uploads it
    /// cut short (<c>datasets/.incoming-*</c>) that were last written before <paramref name="writtenBefore"/>; returns
    /// how many. Another process sharing the folder may be writing newer ones.
    /// </summary>
    public int DeletePartialFiles(DateTime writtenBefore)
    {
        var count = 0;
        var runs = Path.Combine(Root, "runs");
        if (Directory.Exists(runs))
        {
            var partial = Directory.GetFiles(runs, "*" + TrainingEngine.Formats.AtomicFile.PartialSuffix, SearchOption.AllDirectories)
                .Where(file => File.GetLastWriteTimeUtc(file) < writtenBefore).ToList();
            foreach (var file in partial) File.Delete(file);
            count += partial.Count;
        }
        // Dataset uploads a crash cut short: their folder, once nothing in it has been written since.
        foreach (var folder in Directory.GetDirectories(DatasetsDirectory, ".incoming-*"))
        {
            var lastWrite = Directory.EnumerateFiles(folder).Select(File.GetLastWriteTimeUtc).Append(Directory.GetLastWriteTimeUtc(folder)).Max();
            if (lastWrite >= writtenBefore) continue;
            Directory.Delete(folder, recursive: true);
            count++;
        }
        return count;
    }

    /// <summary>Relative to <see cref="Root"/>, as stored in the database.</summary>
    public static string CheckpointRelativePath(long runId, string track, long step) =>
        Path.Combine("runs", runId.ToString(CultureInfo.InvariantCulture), "checkpoints", $"{track}-step{step}.safetensors");

    public string Absolute(string relativePath) => Path.Combine(Root, relativePath);
}
