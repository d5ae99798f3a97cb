using System.Globalization;

namespace EmaLab.TrainingEngine.Data;

/// <summary>
/// Reads labelled images stored as CSV (gzip-compressed or plain): one sample a line, the pixel
/// values first, the integer class label last. Blank lines are skipped; a header line is not
/// expected (the UCI digits file has none).
/// </summary>
public static class CsvImageReader
{
    public static (byte[] Pixels, byte[] Labels) Read(Stream raw, string name, int pixelsPerRow)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pixelsPerRow, 1);
        using var reader = new StreamReader(MaybeGzip.Open(raw));
        var pixels = new List<byte>();
        var labels = new List<byte>();
        var lineNumber = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var fields = line.Split(',');
            if (fields.Length != pixelsPerRow + 1)
                throw new InvalidDataException(
                    $"{name}: line {lineNumber} has {fields.Length} values; expected {pixelsPerRow + 1} ({pixelsPerRow} pixels then the label)");
            for (var i = 0; i < fields.Length; i++)
            {
                if (!double.TryParse(fields[i], NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
                    || value < 0 || value > 255 || value != Math.Floor(value))
                    throw new InvalidDataException(
                        $"{name}: line {lineNumber}, value {i + 1} is '{fields[i]}'; expected an integer from 0 to 255");
                if (i < pixelsPerRow) pixels.Add((byte)value);
                else labels.Add((byte)value);
            }
        }
        if (labels.Count == 0) throw new InvalidDataException($"{name}: no samples in the file");
        return (pixels.ToArray(), labels.ToArray());
    }

    public static (byte[] Pixels, byte[] Labels) Read(string path, int pixelsPerRow)
    {
        using var stream = File.OpenRead(path);
        return Read(stream, path, pixelsPerRow);
    }
}
