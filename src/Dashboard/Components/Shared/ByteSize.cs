using System.Globalization;

namespace EmaLab.Dashboard.Components.Shared;

/// <summary>A file size as people read it: "512 B", "3.4 KiB", "61 KiB", "1.2 MiB" (two significant figures at least, so
/// that a small file never shows as 0).</summary>
public static class ByteSize
{
    static readonly string[] Units = ["B", "KiB", "MiB", "GiB", "TiB"];

    public static string Format(long bytes)
    {
        double size = bytes;
        var unit = 0;
        while (Math.Abs(size) >= 1024 && unit < Units.Length - 1)
        {
            size /= 1024;
            unit++;
        }
        var digits = unit == 0 || Math.Abs(size) >= 10 ? "F0" : "F1";
        return $"{size.ToString(digits, CultureInfo.InvariantCulture)} {Units[unit]}";
    }
}
