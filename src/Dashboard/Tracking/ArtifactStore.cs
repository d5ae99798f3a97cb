using System.Globalization;
using System.Text.RegularExpressions;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Formats;
using Microsoft.EntityFrameworkCore;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// MLflow's artifact proxy (<c>/api/2.0/mlflow-artifacts/artifacts/…</c>, mlflow/server/handlers.py): a run's artifact
/// URI is <c>mlflow-artifacts:/&lt;experiment&gt;/&lt;run_id&gt;/artifacts</c>, which the client turns into that path, and its
/// files live in the run's folder (<c>runs/&lt;id&gt;/artifacts/</c>). A <c>.safetensors</c> file is checked (a bad header is
/// refused with the reason, and not kept) and listed as a checkpoint of the track its metadata (<c>track</c>) or its
/// name says; any other file is kept as a plain artifact.
/// </summary>
public sealed partial class ArtifactStore(IDbContextFactory<EmaLabDbContext> dbFactory, DataPaths paths, Runs.RunLifecycle lifecycle,
    Microsoft.Extensions.Options.IOptions<EmaLabOptions> options)
{
    readonly long _reserveBytes = (long)options.Value.Limits.DiskReserveMegabytes << 20;

    /// <summary>A run's or a logged model's artifacts: the owner, its artifact root folder and the path under it.</summary>
    public sealed record Location(Run? Run, LoggedModel? Model, string Root, string RelativePath);

    [GeneratedRegex(@"^(\d+)/([0-9a-f]{32})/artifacts(?:/(.*))?$")]
    private static partial Regex ArtifactPath();

    [GeneratedRegex(@"^(\d+)/models/(m-[0-9a-f]{32})/artifacts(?:/(.*))?$")]
    private static partial Regex ModelArtifactPath();

    string ModelRoot(LoggedModel model) => paths.LoggedModelDirectory(model);

    /// <summary>A path under a logged model's artifact root (<c>…/logged-models/{id}/artifacts/directories</c>).</summary>
    public async Task<Location> ResolveModelAsync(string modelId, string? relativePath, CancellationToken ct)
    {
        var safe = SafePath(relativePath ?? "");
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var model = await LoggedModelService.FindAsync(db, modelId, ct);
        return new Location(null, model, ModelRoot(model), safe);
    }

    [GeneratedRegex(@"step[-_]?(\d+)")]
    private static partial Regex StepInName();

    /// <summary>Resolves <c>&lt;experiment&gt;/&lt;run_id&gt;/artifacts/&lt;path&gt;</c> to a known run, refusing
    /// unsafe paths as MLflow does.</summary>
    public async Task<Location> ResolveAsync(string? path, CancellationToken ct)
    {
        var safe = SafePath(path ?? "");
        if (ModelArtifactPath().Match(safe) is { Success: true } modelPath)
        {
            var located = await ResolveModelAsync(modelPath.Groups[2].Value, modelPath.Groups[3].Value, ct);
            if (located.Model!.ExperimentId.ToString(CultureInfo.InvariantCulture) != modelPath.Groups[1].Value)
                throw new MlflowException(MlflowException.ResourceDoesNotExist,
                    $"Logged model {located.Model.Id} is not in experiment {modelPath.Groups[1].Value}.");
            return located;
        }
        if (ArtifactPath().Match(safe) is not { Success: true } match)
            throw MlflowException.Invalid($"Artifact path '{path}' is not '<experiment_id>/<run_id>/artifacts/<path>' (the run's artifact_uri).");
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var uuid = match.Groups[2].Value;
        var run = await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Uuid == uuid, ct)
            ?? throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Run with id={uuid} not found");
        if (run.ExperimentId.ToString(CultureInfo.InvariantCulture) != match.Groups[1].Value)
            throw new MlflowException(MlflowException.ResourceDoesNotExist, $"Run {uuid} is not in experiment {match.Groups[1].Value}.");
        return new Location(run, null, Root(run), match.Groups[3].Value);
    }

    /// <summary>
    /// mlflow/utils/uri.py <c>validate_path_is_safe</c> as a Linux server applies it: decoded once more, no '#', no '..'
    /// segment, not absolute (POSIX, or Windows: <c>C:\</c>, <c>C:/</c>, <c>\\server</c>); ':' and '\' are ordinary
    /// characters of a name there (<c>epoch:3.txt</c>). Empty and '.' segments are dropped, as the file system would.
    /// </summary>
    internal static string SafePath(string path)
    {
        var decoded = Uri.UnescapeDataString(path);
        if (decoded.Contains('#') || decoded.Contains('\0') || decoded.StartsWith('/') || decoded.StartsWith(@"\\", StringComparison.Ordinal)
            || decoded.Length >= 3 && char.IsAsciiLetter(decoded[0]) && decoded[1] == ':' && decoded[2] is '/' or '\\'
            || decoded.Split('/').Contains(".."))
            throw MlflowException.Invalid("Invalid path");
        return string.Join('/', decoded.Split('/').Where(part => part is not ("" or ".")));
    }

    string Root(Run run) => paths.ClientArtifactsDirectory(run.Id);

    static string FullPath(Location location) => Path.GetFullPath(Path.Combine(location.Root, location.RelativePath));

    /// <summary>Stores an upload: written to a temporary file, checked, then moved into place, so a refused or broken
    /// upload leaves nothing.</summary>
    public async Task UploadAsync(Location location, Stream body, long? length, CancellationToken ct)
    {
        if (location.RelativePath.Length == 0) throw MlflowException.Invalid("An artifact upload needs a file name after 'artifacts/'.");
        if (location.Run is { Origin: not RunOrigin.Client } engineRun)
            throw MlflowException.Invalid($"Run {engineRun.Uuid} is trained by EMA Lab's engine; its checkpoints are its own.");
        if (location.Run is { } run) TrackingService.RequireActive(run);
        var target = FullPath(location);
        // The upload must leave the disk reserve free (training runs need it), as a run's checkpoints must.
        try { DiskSpace.Require(target, (length ?? 0) + _reserveBytes, $"artifact {location.RelativePath}"); }
        catch (IOException e) { throw new MlflowException(MlflowException.ResourceExhausted, e.Message); }
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var temporary = target + $".{Guid.NewGuid():N}.partial";
        try
        {
            try
            {
                await using var file = File.Create(temporary);
                await body.CopyToAsync(file, ct);
            }
            catch (IOException e) when (e is not EndOfStreamException && DiskSpace.FreeBytes(temporary) < _reserveBytes)
            {
                throw new MlflowException(MlflowException.ResourceExhausted,
                    $"The disk filled while storing artifact {location.RelativePath}: {e.Message}");
            }
            SafeTensorsHeader? header = null;
            if (target.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            {
                await using var file = File.OpenRead(temporary);
                try { header = SafeTensors.ReadHeader(file, Path.GetFileName(target), file.Length); }
                catch (InvalidDataException e) { throw MlflowException.Invalid($"Not a valid safetensors file: {e.Message}"); }
            }
            var snapshot = location.Run is not null && IsPostHocSnapshot(location.RelativePath);
            if (snapshot) CheckSnapshot(location, header!);
            File.Move(temporary, target, overwrite: true);
            if (header is not null && location.Run is not null && !snapshot) await RecordCheckpointAsync(location.Run, target, header, ct);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>Where a client's post-hoc snapshots go (<c>posthoc/snapshot-000001200.safetensors</c>), as the engine keeps its own.</summary>
    public const string PostHocFolder = "posthoc";


    static bool IsPostHocSnapshot(string relativePath) =>
        relativePath.StartsWith(PostHocFolder + "/snapshot-", StringComparison.Ordinal) && relativePath.EndsWith(".safetensors", StringComparison.Ordinal);

    /// <summary>A snapshot joins the run's others only whole and consistent (its header, read before it is kept, says so).</summary>
    void CheckSnapshot(Location location, SafeTensorsHeader header)
    {
        var name = Path.GetFileName(location.RelativePath);
        var problem = SnapshotName().Match(location.RelativePath) is not { Success: true } m
            ? $"a snapshot is named {PostHocFolder}/snapshot-<step, 9 digits>.safetensors"
            : PostHocSnapshots.Problem(header, long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture),
                PostHocSnapshots.FirstHeader(paths.SnapshotDirectory(location.Run!), except: name));
        if (problem is not null) throw MlflowException.Invalid($"Post-hoc snapshot {location.RelativePath} refused: {problem}");
    }

    [GeneratedRegex(@"^posthoc/snapshot-(\d{9})\.safetensors$")]
    private static partial Regex SnapshotName();

    /// <summary>
    /// A checkpoint of the track its metadata names (<c>track</c>, as EMA Lab's own exports write it), else of the track
    /// its file name is (<c>ema-0.999.safetensors</c>) or ends with by the run's suffix map (<c>model_ema.safetensors</c>);
    /// a file that names no track stays a plain artifact. Its step is the metadata's <c>step</c>, a <c>step123</c> in
    /// the name, or the last step the run logged.
    /// </summary>
    async Task RecordCheckpointAsync(Run run, string file, SafeTensorsHeader header, CancellationToken ct)
    {
        await using var db = await dbFactory.CreateDbContextAsync(ct);
        var stem = Path.GetFileNameWithoutExtension(file);
        var suffixes = ClientTrackKeys.ParseSuffixes(await db.RunTags.Where(t => t.RunId == run.Id && t.Key == TagNames.TrackSuffixes)
            .Select(t => t.Value).SingleOrDefaultAsync(ct));
        var track = header.Metadata.GetValueOrDefault(CheckpointExport.Keys.Track) is { } named && ClientTrackKeys.IsTrackName(named) ? named
            : ClientTrackKeys.IsTrackName(stem) ? stem
            : ClientTrackKeys.Map(stem, suffixes) is var (mapped, rest) && mapped != TrackNames.Raw && rest.Length > 0 ? mapped
            : null;
        if (track is null) return;
        // A step too large for a long (step99999999999999999999) names no step: the file is still the track's checkpoint.
        var step = header.Metadata.GetValueOrDefault(CheckpointExport.Keys.Step) is { } text
            && long.TryParse(text, CultureInfo.InvariantCulture, out var s) ? s
            : StepInName().Match(stem) is { Success: true } m
                && long.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var inName) ? inName
            : await db.LatestMetrics.Where(x => x.RunId == run.Id).MaxAsync(x => (long?)x.Step, ct) ?? 0;
        var relative = Path.GetRelativePath(paths.Root, file);
        db.Checkpoints.RemoveRange(db.Checkpoints.Where(c => c.RunId == run.Id && c.RelativePath == relative));
        db.Checkpoints.Add(CheckpointStore.Describe(run.Id, track, step, relative, file));
        if (!await db.Tracks.AnyAsync(t => t.RunId == run.Id && t.Name == track, ct))
            db.Tracks.Add(new EmaTrack { RunId = run.Id, Name = track, Decay = ClientTrackKeys.DecayOf(track) });
        await db.SaveChangesAsync(ct);
        lifecycle.Changed(run.Id, run.Status);
    }

    /// <summary>The file to download, or null.</summary>
    public string? FileOf(Location location) =>
        FullPath(location) is var path && File.Exists(path) && !path.EndsWith(".partial", StringComparison.Ordinal) ? path : null;

    /// <summary>The entries of a folder (relative to it), as MLflow lists them; a folder that does not exist lists nothing.</summary>
    public IReadOnlyList<MlflowFileInfo> List(Location location, bool fullPaths)
    {
        var folder = FullPath(location);
        if (!Directory.Exists(folder)) return [];
        string Name(string entry) => fullPaths ? Path.GetRelativePath(location.Root, entry).Replace('\\', '/') : Path.GetFileName(entry);
        return Directory.EnumerateDirectories(folder).Select(d => new MlflowFileInfo(Name(d), true, null))
            .Concat(Directory.EnumerateFiles(folder).Where(f => !f.EndsWith(".partial", StringComparison.Ordinal))
                .Select(f => new MlflowFileInfo(Name(f), false, new FileInfo(f).Length)))
            .OrderBy(f => f.Path, StringComparer.Ordinal).ToList();
    }

    /// <summary>Where a browser downloads a file of a run's artifacts: MLflow's artifact proxy path, relative to the site, each
    /// segment escaped (logged images' names hold '+' and '~').</summary>
    public static string DownloadPath(Run run, string relativePath) =>
        $"api/2.0/mlflow-artifacts/artifacts/{run.ExperimentId}/{run.Uuid}/artifacts/{string.Join('/', relativePath.Split('/').Select(Uri.EscapeDataString))}";

    /// <summary>A file of a run's artifacts by its path relative to the artifact root (as <see cref="AllFiles(Run)"/> lists it), or null.</summary>
    public string? RunFile(Run run, string relativePath)
    {
        var location = new Location(run, null, Root(run), relativePath);
        // Inside the run's artifacts only (the path comes from a page, not through SafePath).
        return FullPath(location).StartsWith(Path.GetFullPath(location.Root) + Path.DirectorySeparatorChar, StringComparison.Ordinal) ? FileOf(location) : null;
    }

    /// <summary>Every file of a run's artifacts (for its page), by path relative to the artifact root.</summary>
    public IReadOnlyList<MlflowFileInfo> AllFiles(Run run) => FilesUnder(Root(run));

    /// <summary>Every file of a logged model's artifacts, by path relative to its artifact root.</summary>
    public IReadOnlyList<MlflowFileInfo> AllFiles(LoggedModel model) => FilesUnder(ModelRoot(model));

    static IReadOnlyList<MlflowFileInfo> FilesUnder(string root)
    {
        if (!Directory.Exists(root)) return [];
        return Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Where(f => !f.EndsWith(".partial", StringComparison.Ordinal))
            .Select(f => new MlflowFileInfo(Path.GetRelativePath(root, f).Replace('\\', '/'), false, new FileInfo(f).Length))
            .OrderBy(f => f.Path, StringComparer.Ordinal).ToList();
    }
}

public sealed record MlflowFileInfo(string Path, bool IsDir, long? FileSize);
