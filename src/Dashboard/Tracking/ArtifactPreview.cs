using System.Text;
using System.Text.Json;
using EmaLab.TrainingEngine.Formats;
using Markdig;
using Markdig.Syntax;
using Markdig.Syntax.Inlines;

namespace EmaLab.Dashboard.Tracking;

/// <summary>
/// What the run page shows of an artifact without downloading it: an image as itself; text, JSON (pretty-printed) and
/// Markdown (rendered with raw HTML escaped and links only to http, https and mailto: no script runs); an MLflow
/// <c>log_table</c> file and CSV as a table of the first rows; a <c>.safetensors</c> file as its header (tensor names,
/// dtypes, shapes, metadata). Reads at most <see cref="MaxBytes"/> of a file (the header of a safetensors file, at most
/// 16 MiB as its format allows), and says when it showed only the start.
/// </summary>
public abstract record ArtifactPreview
{
    public const int MaxBytes = 256 * 1024;
    public const int MaxRows = 100;
    const int MaxColumns = 50;

    public sealed record Image : ArtifactPreview;
    public sealed record Text(string Content, bool Truncated) : ArtifactPreview;
    public sealed record Json(string Pretty, bool Truncated) : ArtifactPreview;
    public sealed record Markdown(string Html, bool Truncated) : ArtifactPreview;
    public sealed record Table(IReadOnlyList<string> Columns, IReadOnlyList<IReadOnlyList<string>> Rows, int TotalRows, bool Truncated) : ArtifactPreview;
    public sealed record Tensors(IReadOnlyList<SafeTensorsEntry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataBytes) : ArtifactPreview;
    /// <summary>No preview: the reason in words (a binary file, one that cannot be read as its kind).</summary>
    public sealed record None(string Reason) : ArtifactPreview;

    static readonly HashSet<string> ImageExtensions = [".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg"];
    static readonly HashSet<string> TextExtensions =
        [".txt", ".log", ".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh", ".xml", ".html", ".htm", ".js", ".ts", ".cs", ".ipynb", ".diff", ".patch", ""];

    /// <summary>Whether a file of this name has a preview at all (the page offers the button only then).</summary>
    public static bool Offered(string path)
    {
        var extension = Path.GetExtension(path).ToLowerInvariant();
        return ImageExtensions.Contains(extension) || TextExtensions.Contains(extension)
            || extension is ".json" or ".md" or ".markdown" or ".csv" or ".tsv" or ".safetensors";
    }

    public static ArtifactPreview Of(string file)
    {
        var extension = Path.GetExtension(file).ToLowerInvariant();
        try
        {
            if (ImageExtensions.Contains(extension)) return new Image();
            if (extension == ".safetensors")
            {
                using var stream = File.OpenRead(file);
                var header = SafeTensors.ReadHeader(stream, Path.GetFileName(file), stream.Length);
                return new Tensors(header.Tensors, header.Metadata, header.DataBytes);
            }
            var (text, truncated) = ReadStart(file);
            if (text.Contains('\0')) return new None("a binary file");
            return extension switch
            {
                ".json" => JsonPreview(text, truncated),
                ".md" or ".markdown" => new Markdown(RenderMarkdown(text), truncated),
                ".csv" => CsvPreview(text, ',', truncated),
                ".tsv" => CsvPreview(text, '\t', truncated),
                _ => new Text(text, truncated),
            };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            return new None(e.Message);
        }
    }

    static (string Text, bool Truncated) ReadStart(string file)
    {
        using var stream = File.OpenRead(file);
        var buffer = new byte[(int)Math.Min(stream.Length, MaxBytes)];
        stream.ReadExactly(buffer);
        var truncated = stream.Length > MaxBytes;
        var text = new UTF8Encoding(false, false).GetString(buffer);
        // A cut through a multi-byte character leaves a replacement character at the end: drop it.
        return (truncated ? text.TrimEnd('\uFFFD') : text, truncated);
    }

    /// <summary>MLflow's <c>log_table</c> (<c>{"columns": [...], "data": [[...], ...]}</c>) as a table; any other JSON pretty-printed.</summary>
    static ArtifactPreview JsonPreview(string text, bool truncated)
    {
        if (truncated) return new Json(text, true);
        try
        {
            using var document = JsonDocument.Parse(text);
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("columns", out var columns) && columns.ValueKind == JsonValueKind.Array
                && root.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Array
                && data.EnumerateArray().All(r => r.ValueKind == JsonValueKind.Array))
            {
                var names = columns.EnumerateArray().Select(Cell).Take(MaxColumns).ToList();
                var rows = data.EnumerateArray().Take(MaxRows).Select(r => (IReadOnlyList<string>)r.EnumerateArray().Take(MaxColumns).Select(Cell).ToList()).ToList();
                var total = data.GetArrayLength();
                return new Table(names, rows, total, total > MaxRows);
            }
            return new Json(JsonSerializer.Serialize(root, new JsonSerializerOptions { WriteIndented = true }), false);
        }
        catch (JsonException e)
        {
            return new None($"not valid JSON: {e.Message}");
        }
    }

    static string Cell(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString()!,
        JsonValueKind.Null => "",
        _ => value.GetRawText(),
    };

    /// <summary>A CSV file's header and first rows (RFC 4180 quoting: commas, quotes and line breaks inside quoted fields).</summary>
    static ArtifactPreview CsvPreview(string text, char separator, bool truncated)
    {
        var records = new List<List<string>>();
        var field = new StringBuilder();
        var record = new List<string>();
        var quoted = false;
        var total = 0;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else field.Append(c);
            }
            else if (c == '"' && field.Length == 0) quoted = true;
            else if (c == separator) { record.Add(field.ToString()); field.Clear(); }
            else if (c is '\n' or '\r')
            {
                if (c == '\r' && i + 1 < text.Length && text[i + 1] == '\n') i++;
                record.Add(field.ToString());
                field.Clear();
                total++;
                if (records.Count <= MaxRows) records.Add(record);
                record = [];
            }
            else field.Append(c);
        }
        if (field.Length > 0 || record.Count > 0)
        {
            record.Add(field.ToString());
            total++;
            if (records.Count <= MaxRows) records.Add(record);
        }
        if (records.Count == 0) return new Text("", truncated);
        var header = records[0].Take(MaxColumns).ToList();
        var rows = records.Skip(1).Take(MaxRows).Select(r => (IReadOnlyList<string>)r.Take(MaxColumns).ToList()).ToList();
        return new Table(header, rows, total - 1, truncated || total - 1 > MaxRows);
    }

    static readonly MarkdownPipeline Pipeline = new MarkdownPipelineBuilder().UsePipeTables().UseAutoLinks().DisableHtml().Build();

    /// <summary>
    /// Markdown to HTML that runs no script: raw HTML is escaped (shown as text), and a link or image whose address is not
    /// http, https, mailto or relative (<c>javascript:</c>, <c>data:</c>, <c>vbscript:</c>) loses its address.
    /// </summary>
    public static string RenderMarkdown(string markdown)
    {
        var document = Markdig.Markdown.Parse(markdown, Pipeline);
        foreach (var link in document.Descendants<LinkInline>())
            if (!SafeUrl(link.Url)) link.Url = "#";
        foreach (var link in document.Descendants<AutolinkInline>())
            if (!SafeUrl(link.Url)) link.Url = "#";
        return document.ToHtml(Pipeline);
    }

    static bool SafeUrl(string? url)
    {
        if (string.IsNullOrWhiteSpace(url)) return true;
        var trimmed = new string(url.Where(c => !char.IsWhiteSpace(c) && !char.IsControl(c)).ToArray());
        var colon = trimmed.IndexOf(':');
        var slash = trimmed.IndexOfAny(['/', '?', '#']);
        if (colon < 0 || slash >= 0 && slash < colon) return true; // relative: no scheme
        var scheme = trimmed[..colon].ToLowerInvariant();
        return scheme is "http" or "https" or "mailto";
    }
}
