using System.Globalization;

namespace EmaLab.TrainingEngine.Formats;

/// <summary>Free disk space where a file is about to go, so that a write that cannot fit fails early with a reason instead of filling the disk.</summary>
public static class DiskSpace
{
    /// <summary>Bytes available to this process on the file system holding <paramref name="path"/> (a file or folder, existing or not).</summary>
    public static long FreeBytes(string path)
    {
        var directory = Path.GetFullPath(path);
        while (!Directory.Exists(directory)) directory = Path.GetDirectoryName(directory) ?? Path.GetPathRoot(directory)!;
        return new DriveInfo(directory).AvailableFreeSpace;
    }

    /// <summary>Throws an <see cref="IOException"/> saying what does not fit when fewer than <paramref name="bytes"/> are free for <paramref name="path"/>.</summary>
    public static void Require(string path, long bytes, string what)
    {
        var free = FreeBytes(path);
        if (free < bytes)
            throw new IOException($"Not enough free disk space for {what}: it needs about {Format(bytes)} and {Format(free)} are free under {Path.GetDirectoryName(Path.GetFullPath(path))}.");
    }

    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (double)(1L << 30)).ToString("F1", CultureInfo.InvariantCulture) + " GB",
        >= 1L << 20 => (bytes / (double)(1L << 20)).ToString("F1", CultureInfo.InvariantCulture) + " MB",
        _ => (bytes / 1024.0).ToString("F0", CultureInfo.InvariantCulture) + " KB",
    };
}
