namespace EmaLab.TrainingEngine.Formats;

/// <summary>
/// Writes a file so that a crash leaves either the old file or the complete new one: the bytes go to
/// <c>&lt;path&gt;.partial</c>, are flushed to the disk, and the file is renamed into place. A failed write
/// removes its partial file; partial files left by a crash are removed at the next start. A write whose
/// expected size does not fit on the disk is refused before it starts.
/// </summary>
public static class AtomicFile
{
    public const string PartialSuffix = ".partial";

    public static void Write(string path, long expectedBytes, Action<Stream> write)
    {
        DiskSpace.Require(path, expectedBytes, Path.GetFileName(path));
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
