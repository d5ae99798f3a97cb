using System.Globalization;
using Microsoft.Extensions.Options;

namespace EmaLab.Dashboard.Runs;

/// <summary>Where everything lives under the data directory: <c>emalab.db</c> and <c>runs/{id}/</c> (resume bundle, checkpoints).</summary>
public sealed class DataPaths
{
    public DataPaths(IOptions<EmaLabOptions> options, IHostEnvironment environment)
    {
        Root = options.Value.ResolveDataDirectory(environment.ContentRootPath);
        Directory.CreateDirectory(Root);
        DatabasePath = Path.Combine(Root, "emalab.db");
        ConnectionString = $"Data Source={DatabasePath};Pooling=True";
    }

    public string Root { get; }
    public string DatabasePath { get; }
    public string ConnectionString { get; }

    public string RunDirectory(long runId) => Path.Combine(Root, "runs", runId.ToString(CultureInfo.InvariantCulture));
    public string BundlePath(long runId) => Path.Combine(RunDirectory(runId), "resume.zip");

    /// <summary>Relative to <see cref="Root"/>, as stored in the database.</summary>
    public static string CheckpointRelativePath(long runId, string track, long step) =>
        Path.Combine("runs", runId.ToString(CultureInfo.InvariantCulture), "checkpoints", $"{track}-step{step}.safetensors");

    public string Absolute(string relativePath) => Path.Combine(Root, relativePath);
}
