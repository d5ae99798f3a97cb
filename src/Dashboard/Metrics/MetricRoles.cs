using System.Text.Json;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine;

namespace EmaLab.Dashboard.Metrics;

/// <summary>
/// Which of a run's metric keys play the parts the pages are built on: the held-out accuracy (higher is better; the
/// EMA − raw gap and "best" are computed on it), the held-out loss, and the training loss (raw only). The engine's
/// runs use <c>eval/accuracy</c>, <c>eval/loss</c>, <c>train/loss</c>. A client's run names its own in the tag
/// <c>emalab.metrics</c> (<c>{"accuracy": "val_acc", "loss": "val_loss", "train": "loss"}</c>); parts it leaves out
/// are inferred from the keys it logged: the accuracy is a key containing "acc", the held-out loss a key containing
/// "loss" that an EMA track has too, the training loss a "loss" key only raw has — each preferring the key more tracks share,
/// and never a system metric (<c>system/…</c>).
/// </summary>
public sealed record MetricRoles(string? Accuracy, string? Loss, string? Train)
{
    public static readonly MetricRoles Engine = new(MetricKeys.EvalAccuracy, MetricKeys.EvalLoss, MetricKeys.TrainLoss);

    /// <summary>The roles for <paramref name="run"/>, given its tag value (if any); a client's series are read only when needed.</summary>
    public static MetricRoles For(Run run, string? tag, MetricQueries metrics) =>
        run.Origin == RunOrigin.Engine ? Engine : For(run, tag, metrics.ListSeries(run.Id).Select(s => (s.Track, s.Key)));

    /// <summary>The roles for <paramref name="run"/>, given its tag value (if any) and the (track, key) series it has.</summary>
    public static MetricRoles For(Run run, string? tag, IEnumerable<(string Track, string Key)> series)
    {
        if (run.Origin == RunOrigin.Engine) return Engine;
        var named = Parse(tag);
        // System metrics (system/…) are what a run cost, never a result a track is ranked by.
        var byKey = series.Where(s => !MetricKeys.IsSystem(s.Key)).GroupBy(s => s.Key).ToDictionary(g => g.Key, g => g.Select(s => s.Track).ToHashSet());
        string? Pick(Func<string, HashSet<string>, bool> fits) =>
            byKey.Where(k => fits(k.Key, k.Value)).OrderByDescending(k => k.Value.Count).ThenBy(k => k.Key.Length)
                .ThenBy(k => k.Key, StringComparer.Ordinal)
                 .Select(k => k.Key).FirstOrDefault();
        static bool Has(string key, string part) => key.Contains(part, StringComparison.OrdinalIgnoreCase);
        var accuracy = named?.Accuracy ?? Pick((k, _) => Has(k, "acc"));
        var loss = named?.Loss ?? Pick((k, tracks) => Has(k, "loss") && tracks.Any(t => t != TrackNames.Raw));
        var train = named?.Train ?? Pick((k, tracks) => Has(k, "loss") && tracks.All(t => t == TrackNames.Raw) && k != loss);
        return new MetricRoles(accuracy, loss, train);
    }

    /// <summary>What is wrong with a value of the tag, or null (the tracking API refuses a bad value by name).</summary>
    public static string? Problem(string tag)
    {
        try
        {
            var map = JsonSerializer.Deserialize<Dictionary<string, string>>(tag);
            var unknown = map?.Keys.FirstOrDefault(k => k is not ("accuracy" or "loss" or "train"));
            return unknown is null ? null
                : $"Tag '{TagNames.MetricRoles}' names the keys for 'accuracy', 'loss' and 'train'; '{unknown}' is none of them.";
        }
        catch (JsonException e)
        {
            return $"Tag '{TagNames.MetricRoles}' must be a JSON object such as {{\"accuracy\": \"val_acc\", \"loss\": \"val_loss\", \"train\": \"loss\"}}: {e.Message}";
        }
    }

    static MetricRoles? Parse(string? tag)
    {
        if (string.IsNullOrWhiteSpace(tag)) return null;
        try
        {
            var map = JsonSerializer.Deserialize<Dictionary<string, string>>(tag) ?? [];
            return new MetricRoles(map.GetValueOrDefault("accuracy"), map.GetValueOrDefault("loss"), map.GetValueOrDefault("train"));
        }
        catch (JsonException)
        {
            return null; // a tag that is not such a map is ignored: the keys are inferred instead
        }
    }
}
