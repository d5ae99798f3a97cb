namespace EmaLab.TrainingEngine.Checkpoints;

/// <summary>
/// Writes a file so that a crash leaves either the old file or the complete new one: the bytes go to
/// <c>&lt;path&gt;.partial</c>, are flushed to the disk, and the file is renamed into place. A failed write
/// removes its partial file; partial files left by a crash are removed at the next start.
/// </summary>
public static class AtomicFile
{
    public const string PartialSuffix = ".partial";

    public static void Write(string path, Action<Stream> write)
    {
        var temporary = path + PartialSuffix;
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }
}
