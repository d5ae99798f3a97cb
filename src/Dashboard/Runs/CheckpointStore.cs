using System.Security.Cryptography;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Training;
using Microsoft.EntityFrameworkCore;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.Dashboard.Runs;

/// <summary>Exports tracks of a session as checkpoint files under the run's folder and records them (the one place that does).</summary>
public sealed class CheckpointStore(IDbContextFactory<EmaLabDbContext> dbFactory, DataPaths paths)
{
    /// <summary>Exports <paramref name="tracks"/> of a training session at its step (see the overload below).</summary>
    public void Save(long runId, TrainingSession session, IEnumerable<string> tracks) =>
        Save(runId, session.Step, session.Evaluator,
            tracks.Select(track => (track, (Action<Stream>)(stream => CheckpointExport.Export(session, track, stream)))));

    /// <summary>The row of a checkpoint file that is in place: its size and SHA-256 read from the file.</summary>
    public static Checkpoint Describe(long runId, string track, long step, string relativePath, string path)
    {
        string sha256;
        using (var stream = File.OpenRead(path)) sha256 = Convert.ToHexStringLower(SHA256.HashData(stream));
        return new Checkpoint
        {
            RunId = runId, Track = track, Step = step, RelativePath = relativePath,
            SizeBytes = new FileInfo(path).Length, Sha256 = sha256, CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    /// <summary>
    /// Writes one checkpoint file per track at <paramref name="step"/>, replacing files and rows of the same track and
    /// step. Files are written atomically (flushed, then renamed into place); <paramref name="recordAlso"/> adds
    /// rows to the same transaction. All or nothing: when anything fails, the new files are removed and no row is written.
    /// </summary>
    public void Save(long runId, long step, TrackEvaluator evaluator, IEnumerable<(string Track, Action<Stream> Export)> files,
        Action<EmaLabDbContext>? recordAlso = null) =>
        // Every track's file holds one copy of the model's state.
        Save(runId, step, SafeTensors.ApproximateBytes(evaluator.Model.state_dict().Select(p => (p.Key, p.Value))), files, recordAlso);

    /// <summary>Writes each track's file (about <paramref name="fileBytes"/> each) and its row, all or nothing.</summary>
    public void Save(long runId, long step, long fileBytes, IEnumerable<(string Track, Action<Stream> Export)> files,
        Action<EmaLabDbContext>? recordAlso = null)
    {
        var written = new List<string>();
        try
        {
            using var db = dbFactory.CreateDbContext();
            foreach (var (track, export) in files)
            {
                var relative = DataPaths.CheckpointRelativePath(runId, track, step);
                var path = paths.Absolute(relative);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                AtomicFile.Write(path, fileBytes, export);
                written.Add(path);
                db.Checkpoints.RemoveRange(db.Checkpoints.Where(c => c.RunId == runId && c.Track == track && c.Step == step));
                db.Checkpoints.Add(Describe(runId, track, step, relative, path));
            }
            recordAlso?.Invoke(db);
            db.SaveChanges();
        }
        catch
        {
            foreach (var path in written) File.Delete(path);
            throw;
        }
    }
}
