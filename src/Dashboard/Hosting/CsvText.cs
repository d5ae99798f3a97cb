using System.Globalization;

namespace EmaLab.Dashboard.Hosting;

/// <summary>CSV rows as RFC 4180 writes them (a field with a comma, quote or line break is quoted, quotes doubled); numbers round-trip.</summary>
public static class CsvText
{
    public static string Row(params IEnumerable<object?> fields) => string.Join(',', fields.Select(Field));

    static string Field(object? value)
    {
        var text = value switch
        {
            null => "",
            double d => double.IsNaN(d) ? "" : d.ToString("R", CultureInfo.InvariantCulture),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? "",
        };
        return text.AsSpan().IndexOfAny(",\"\r\n") < 0 ? text : $"\"{text.Replace("\"", "\"\"")}\"";
    }
}
