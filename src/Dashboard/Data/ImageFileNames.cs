using System.Globalization;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// The file names of images logged by step, as MLflow's client writes them under a run's artifacts
/// (mlflow/tracking/client.py, <c>log_image</c> with a key): <c>images/&lt;key&gt;+step+&lt;n&gt;+timestamp+&lt;ms&gt;+&lt;uuid&gt;.png</c>
/// and a small <c>…+compressed.webp</c> beside it, the key's slashes written <c>~</c>. Clients before MLflow 3.5 wrote
/// <c>%</c> for <c>+</c> and <c>#</c> for <c>~</c>; MLflow's UI still reads those (ImageReducer.ts), and so does this.
/// The engine names the images it logs the same way, so one reader reads both.
/// </summary>
public static class ImageFileNames
{
    public const string Folder = "images/";
    static readonly char[] Delimiters = ['%', '+']; // MLflow's UI tries '%' first

    /// <summary>A name as the client writes it: the logged key, step, timestamp, the stem an image shares with its preview, and whether it is the preview.</summary>
    public readonly record struct Name(string LoggedKey, long Step, long TimestampMs, string Stem, bool Preview);

    /// <summary>The parts of an artifact path under <c>images/</c>, or null for any other file.</summary>
    public static Name? Parse(string path)
    {
        if (!path.StartsWith(Folder, StringComparison.Ordinal)) return null;
        var file = path[Folder.Length..];
        var dot = file.LastIndexOf('.');
        if (file.Contains('/') || dot <= 0) return null;
        var (stem, extension) = (file[..dot], file[(dot + 1)..]);
        if (extension is not ("png" or "webp" or "jpg" or "jpeg")) return null;
        var delimiter = Delimiters.FirstOrDefault(d => stem.Contains(d));
        if (delimiter == default) return null;
        var parts = stem.Split(delimiter);
        if (parts.Length < 6 || parts[1] != "step" || parts[3] != "timestamp"
            || !long.TryParse(parts[2], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var step)
            || !long.TryParse(parts[4], NumberStyles.None, CultureInfo.InvariantCulture, out var timestamp)) return null;
        var preview = parts.Length > 6 && parts[6] == "compressed";
        return new Name(parts[0].Replace('~', '/').Replace('#', '/'), step, timestamp, string.Join(delimiter, parts.Take(6)), preview);
    }

    /// <summary>The artifact path of a PNG logged under <paramref name="loggedKey"/> (MLflow's current form).</summary>
    public static string For(string loggedKey, long step, long timestampMs, Guid id) =>
        string.Create(CultureInfo.InvariantCulture, $"{Folder}{loggedKey.Replace('/', '~')}+step+{step}+timestamp+{timestampMs}+{id}.png");
}
