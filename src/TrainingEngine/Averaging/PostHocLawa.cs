using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>A LAWA that a run's kept weights allow: copies <see cref="Every"/> steps apart, up to <see cref="MaxCheckpoints"/> of them.</summary>
public sealed record LawaChoice(long Every, int MaxCheckpoints);

/// <summary>
/// LAWA after the fact: the uniform mean of the k latest stored weights ν steps apart, ending at the last one kept
/// (Kaddour 2022; Sanyal et al.'s <c>lawa.py</c> averages saved checkpoints so). Which k and ν are possible depends only
/// on the steps kept: every copy L − jν (j &lt; k) must be one of them.
/// </summary>
public static class PostHocLawa
{
    /// <summary>
    /// Each spacing that pairs the last kept step with another, with how many copies that far apart end at the last one
    /// (two at least), by spacing. Step 0 (the initial weights) is not a copy: LAWA averages trained weights.
    /// </summary>
    public static IReadOnlyList<LawaChoice> Choices(IReadOnlyCollection<long> keptSteps)
    {
        var steps = keptSteps.Where(s => s > 0).ToHashSet();
        if (steps.Count < 2) return [];
        var last = steps.Max();
        var choices = new List<LawaChoice>();
        foreach (var every in steps.Where(s => s < last).Select(s => last - s).Distinct().Order())
        {
            var k = 1;
            while (steps.Contains(last - k * every)) k++;
            if (k >= 2) choices.Add(new LawaChoice(every, k));
        }
        return choices;
    }

    /// <summary>The steps of the copies, oldest first: L − (k − 1)ν, …, L.</summary>
    public static IReadOnlyList<long> StepsOf(long last, int checkpoints, long every) =>
        Enumerable.Range(0, checkpoints).Select(j => last - (checkpoints - 1 - j) * every).ToList();

    /// <summary>
    /// Why k copies ν apart are not in <paramref name="keptSteps"/> (naming what is possible), under the request field
    /// it is about (<c>checkpoints</c> or <c>every</c>), or null when they are.
    /// </summary>
    public static InvalidSettingException? Problem(IReadOnlyCollection<long> keptSteps, int checkpoints, long every)
    {
        var choices = Choices(keptSteps);
        if (choices.Count == 0) return new("checkpoints", "LAWA needs at least two stored raw checkpoints after step 0.");
        if (checkpoints < 2) return new("checkpoints", "LAWA averages at least 2 checkpoints.");
        if (choices.FirstOrDefault(c => c.Every == every) is { } choice)
            return checkpoints <= choice.MaxCheckpoints ? null
                : new("checkpoints", $"With every {every:N0}, at most {choice.MaxCheckpoints} of the kept checkpoints are that far apart.");
        return new("every", $"No kept checkpoints are {every:N0} steps apart from the last one; possible: {Describe(choices)}.");
    }

    /// <summary><c>every 400: k ≤ 3; every 800: k ≤ 2</c>.</summary>
    public static string Describe(IReadOnlyList<LawaChoice> choices) =>
        string.Join("; ", choices.Select(c => $"every {c.Every:N0}: k ≤ {c.MaxCheckpoints}"));

    /// <summary>
    /// The mean of the copies (state dicts, oldest first), folded as <c>lawa.py</c> folds them: m + (c − m)/n for float
    /// tensors; other tensors (counters) are the latest copy's.
    /// </summary>
    public static Dictionary<string, Tensor> Mean(IReadOnlyList<IReadOnlyDictionary<string, Tensor>> oldestFirst)
    {
        var latest = oldestFirst[^1];
        var mean = new Dictionary<string, Tensor>();
        foreach (var (name, value) in latest)
        {
            if (value.dtype != ScalarType.Float32)
            {
                mean[name] = value.clone();
                continue;
            }
            var copies = oldestFirst.Select(c => c.TryGetValue(name, out var t) && t.shape.SequenceEqual(value.shape) && MultiDecayLerp.Supports(t) ? t
                : throw new InvalidDataException($"A checkpoint has no {name} of the latest one's shape.")).ToArray();
            var output = empty_like(copies[0]);
            MultiDecayLerp.RunningMean(copies, output);
            mean[name] = output;
        }
        return mean;
    }

    /// <summary>The equivalent σ_rel of the uniform mean of weights at <paramref name="steps"/>, read at <paramref name="last"/>.</summary>
    public static double SigmaRel(IReadOnlyList<long> steps, long last)
    {
        var taus = steps.Select(s => (double)s / last).ToList();
        var mean = taus.Average();
        return Math.Sqrt(taus.Average(t => (t - mean) * (t - mean)));
    }
}
