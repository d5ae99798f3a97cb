using EmaLab.Dashboard.Data;

namespace EmaLab.Dashboard.Tracking;

/// <summary>One image a run logged by step (<c>mlflow.log_image(image, key=…, step=…)</c>, or the engine's own): its key and
/// track, its step and time, the full-size PNG and the small preview beside it, by their paths under the run's artifacts.</summary>
public sealed record LoggedImage(string Key, string Track, long Step, long TimestampMs, string Path, string? PreviewPath)
{
    /// <summary>The run that logged it (set where images of several runs are shown together: compare).</summary>
    public long RunId { get; init; }
}

/// <summary>
/// The images a run logged, read from its artifacts' file names as MLflow's client writes them
/// (mlflow/tracking/client.py, <c>log_image</c> with a key): <c>images/&lt;key&gt;+step+&lt;n&gt;+timestamp+&lt;ms&gt;+&lt;uuid&gt;.png</c>
/// and a small <c>…+compressed.webp</c> beside it, the key's slashes written <c>~</c>; clients before MLflow 3.5 wrote
/// <c>%</c> for <c>+</c> and <c>#</c> for <c>~</c>, which MLflow's UI still reads, and so does this. A key whose first segment
/// names a track (<c>ema-0.999/samples</c>, or a suffix of the run's <c>emalab.track_suffixes</c>) is that track's image,
/// so the tracks of one key show side by side.
/// </summary>
/// <summary>
/// The images a run logged by step, read from its artifact files' names (<see cref="ImageFileNames"/>). A key whose first
/// segment names a track (<c>ema-0.999/samples</c>, or a suffix of the run's <c>emalab.track_suffixes</c>) is that track's
/// image, so the tracks of one key show side by side.
/// </summary>
public static class LoggedImages
{
    /// <summary>The run's images from its artifact files; at one key, track and step the one logged last.</summary>
    public static IReadOnlyList<LoggedImage> Of(IEnumerable<MlflowFileInfo> files, IReadOnlyDictionary<string, string> trackSuffixes)
    {
        var named = files.Where(f => !f.IsDir).Select(f => (File: f.Path, Name: ImageFileNames.Parse(f.Path))).Where(f => f.Name is not null)
            .Select(f => (f.File, Name: f.Name!.Value)).ToList();
        var previews = named.Where(f => f.Name.Preview).GroupBy(f => f.Name.Stem).ToDictionary(g => g.Key, g => g.First().File);
        return named.Where(f => !f.Name.Preview)
            .Select(f =>
            {
                var (track, key) = ClientTrackKeys.Map(f.Name.LoggedKey, trackSuffixes);
                return new LoggedImage(key, track, f.Name.Step, f.Name.TimestampMs, f.File, previews.GetValueOrDefault(f.Name.Stem));
            })
            .GroupBy(i => (i.Key, i.Track, i.Step)).Select(g => g.MaxBy(i => i.TimestampMs)!)
            .OrderBy(i => i.Key, StringComparer.Ordinal).ThenBy(i => i.Step).ToList();
    }
}
