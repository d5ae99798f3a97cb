using System.Text.Json;
using EmaLab.Dashboard.Data;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine;

namespace EmaLab.Dashboard.Metrics;

/// <summary>
/// Which of a run's metric keys play the parts the pages are built on: the held-out score tracks are ranked by (the
/// EMA − raw gap and "best" are computed on it; higher is better for an accuracy, lower for a distance such as FID —
/// <see cref="LowerIsBetter"/>), the held-out loss, and the training loss (raw only). The engine's classifiers use
/// <c>eval/accuracy</c>, <c>eval/loss</c>, <c>train/loss</c>; its diffusion runs <c>eval/fd</c> (the samples' Fréchet
/// distance, where a reference network covers the dataset), the denoising <c>eval/loss</c> and <c>train/loss</c>. A
/// client's run names its own in the tag <c>emalab.metrics</c> (<c>{"accuracy": "val_acc", "loss": "val_loss", "train":
/// "loss"}</c>, or <c>"score": "fid"</c> for a score that is not an accuracy); parts it leaves out are inferred from the
/// keys it logged: the score is a key containing "acc" (else one containing "fid"), the held-out loss a key containing
/// "loss" that an EMA track has too, the training loss a "loss" key only raw has — each preferring the key more tracks
/// share, and never a system metric (<c>system/…</c>).
/// </summary>
public sealed record MetricRoles(string? Score, string? Loss, string? Train)
{
    public static readonly MetricRoles Engine = new(MetricKeys.EvalAccuracy, MetricKeys.EvalLoss, MetricKeys.TrainLoss);

    /// <summary>An engine diffusion run's: sample quality where the dataset has a reference network, else no score (the denoising loss still ranks).</summary>
    public static MetricRoles EngineDiffusion(string dataset) =>
        new(FeatureNetwork.Covers(dataset) ? MetricKeys.EvalFrechetDistance : null, MetricKeys.EvalLoss, MetricKeys.TrainLoss);

    /// <summary>Whether a lower score is better (a distance, an error), from its key (<see cref="IsLowerBetter"/>).</summary>
    public bool LowerIsBetter => Score is { } key && IsLowerBetter(key);

    /// <summary>A metric whose key names a loss, an error, a distance: lower is better. Anything else (accuracy, a score): higher.</summary>
    public static bool IsLowerBetter(string key)
    {
        var name = key.ToLowerInvariant();
        return new[] { "loss", "err", "perplexity", "fid", "fd", "mse", "mae", "nll", "distance" }.Any(name.Contains);
    }

    /// <summary>What the score is, for headings: "held-out accuracy", "sample quality (FD)", or a lower-is-better score's key.</summary>
    public string ScoreTitle => Score switch
    {
        null => "score",
        MetricKeys.EvalFrechetDistance => "sample quality (FD)",
        _ when LowerIsBetter => Score,
        _ => "held-out accuracy",
    };

    /// <summary>The best of <paramref name="values"/> by the score's direction (null when there are none).</summary>
    public double? Best(IEnumerable<double> values)
    {
        var list = values.Where(v => !double.IsNaN(v)).ToList();
        return list.Count == 0 ? null : LowerIsBetter ? list.Min() : list.Max();
    }

    /// <summary>The roles for <paramref name="run"/>, given its tag value (if any); a client's series are read only when needed.</summary>
    public static MetricRoles For(Run run, string? tag, MetricQueries metrics) =>
        run.Origin == RunOrigin.Engine ? OfEngine(run) : For(run, tag, metrics.ListSeries(run.Id).Select(s => (s.Track, s.Key)));

    /// <summary>An engine run's roles: a classifier's, or a diffusion run's by its dataset.</summary>
    static MetricRoles OfEngine(Run run) =>
        run.SpecJson is not null && run.EngineSpec() is { Model: ModelArchitecture.UNet } spec ? EngineDiffusion(spec.Dataset) : Engine;

    /// <summary>The roles for <paramref name="run"/>, given its tag value (if any) and the (track, key) series it has.</summary>
    public static MetricRoles For(Run run, string? tag, IEnumerable<(string Track, string Key)> series)
    {
        if (run.Origin == RunOrigin.Engine) return OfEngine(run);
        var named = Parse(tag);
        // System metrics (system/…) are what a run cost, never a result a track is ranked by.
        var byKey = series.Where(s => !MetricKeys.IsSystem(s.Key)).GroupBy(s => s.Key).ToDictionary(g => g.Key, g => g.Select(s => s.Track).ToHashSet());
        string? Pick(Func<string, HashSet<string>, bool> fits) =>
            byKey.Where(k => fits(k.Key, k.Value)).OrderByDescending(k => k.Value.Count).ThenBy(k => k.Key.Length)
                .ThenBy(k => k.Key, StringComparer.Ordinal)
                 .Select(k => k.Key).FirstOrDefault();
        static bool Has(string key, string part) => key.Contains(part, StringComparison.OrdinalIgnoreCase);
        var score = named?.Score ?? Pick((k, _) => Has(k, "acc")) ?? Pick((k, _) => Has(k, "fid"));
        var loss = named?.Loss ?? Pick((k, tracks) => Has(k, "loss") && tracks.Any(t => t != TrackNames.Raw));
        var train = named?.Train ?? Pick((k, tracks) => Has(k, "loss") && tracks.All(t => t == TrackNames.Raw) && k != loss);
        return new MetricRoles(score, loss, train);
    }

    /// <summary>What is wrong with a value of the tag, or null (the tracking API refuses a bad value by name).</summary>
    public static string? Problem(string tag)
    {
        try
        {
            var map = JsonSerializer.Deserialize<Dictionary<string, string>>(tag);
            var unknown = map?.Keys.FirstOrDefault(k => k is not ("accuracy" or "score" or "loss" or "train"));
            if (unknown is not null) return $"Tag '{TagNames.MetricRoles}' names the keys for 'accuracy' (or 'score'), 'loss' and 'train'; '{unknown}' is none of them.";
            return map!.ContainsKey("accuracy") && map.ContainsKey("score")
                ? $"Tag '{TagNames.MetricRoles}' names one score: 'accuracy' or 'score', not both." : null;
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
            return new MetricRoles(map.GetValueOrDefault("score") ?? map.GetValueOrDefault("accuracy"), map.GetValueOrDefault("loss"), map.GetValueOrDefault("train"));
        }
        catch (JsonException)
        {
            return null; // a tag that is not such a map is ignored: the keys are inferred instead
        }
    }
}
