using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace EmaLab.TrainingEngine.Averaging;

/// <summary>What happens to batch-norm running statistics (buffers) in an EMA copy of the model.</summary>
public enum BatchNormPolicy
{
    /// <summary>Average the running mean/variance like weights, with the same decay.</summary>
    Average,
    /// <summary>Take the live model's running statistics as they are.</summary>
    Copy,
    /// <summary>Before evaluating or exporting an EMA, recompute the statistics with forward passes in train mode (as <c>torch.optim.swa_utils.update_bn</c>).</summary>
    Recalibrate,
}

/// <summary>
/// How the EMA shadows of one run behave, following <c>tf.train.ExponentialMovingAverage</c>
/// (see docs: the EMA contract in the README).
/// </summary>
public sealed record EmaSettings
{
    public const int MaxDecays = 8;

    /// <summary>One shadow per decay, all fed by the same trajectory of weights.</summary>
    public IReadOnlyList<double> Decays { get; init; } = [0.99, 0.999];
    /// <summary>TF's <c>num_updates</c>: the effective decay is <c>min(d, (1 + n) / (10 + n))</c>, n = global step.</summary>
    public bool Warmup { get; init; }
    /// <summary>Shadows start at zero and are read as <c>s / (1 − Π d_eff)</c>.</summary>
    public bool ZeroDebias { get; init; }
    /// <summary>Update only on steps that are multiples of this.</summary>
    public int Every { get; init; } = 1;
    /// <summary>No averaging before this step: until then the shadow equals the live weights.</summary>
    public long StartStep { get; init; }
    public BatchNormPolicy BnPolicy { get; init; } = BatchNormPolicy.Average;
    /// <summary>Training batches run in train mode to recompute batch-norm statistics under <see cref="BatchNormPolicy.Recalibrate"/>.</summary>
    public int RecalibrationBatches { get; init; } = 16;
    /// <summary>
    /// Tracks with their own rules (presets of other libraries, SWA, low-precision shadows). When given they replace
    /// <see cref="Decays"/>; a track without a preset follows the shared settings above unless it overrides them.
    /// </summary>
    public IReadOnlyList<EmaTrackSettings>? Tracks { get; init; }

    /// <summary>How many shadows the run keeps (one per track, or per decay), without resolving their rules.</summary>
    [JsonIgnore] public int ShadowCount => Tracks?.Count ?? Decays.Count;

    /// <summary>Every shadow's complete rule, in order: the <see cref="Tracks"/> when given, else one per decay. Throws on invalid settings.</summary>
    public IReadOnlyList<EmaRule> Rules()
    {
        // The compact form is a track per decay that says nothing else: the run's own rule, named ema-<decay>.
        if (Tracks is null) return Decays.Select(d => new EmaTrackSettings { Decay = d }.Resolve(this, Field(nameof(Decays)))).ToArray();
        var (rules, problems) = ResolveTracks();
        return problems.Count > 0 ? throw problems[0] : rules.Select(r => r!).ToArray();
    }

    /// <summary>
    /// Each track's rule (null where the track has a problem), and one problem for each such track: a form shows every
    /// row's message at once, a preview such as the decay lens shows the rows that are complete. Generated names stay
    /// unique: a second identical rule becomes <c>name-2</c>.
    /// </summary>
    public (IReadOnlyList<EmaRule?> ByTrack, IReadOnlyList<InvalidSettingException> Problems) ResolveTracks()
    {
        var byTrack = new List<EmaRule?>();
        var rules = new List<EmaRule>();
        var problems = new List<InvalidSettingException>();
        for (var i = 0; i < (Tracks?.Count ?? 0); i++)
        {
            var field = $"ema.tracks[{i}]";
            var track = Tracks![i];
            try
            {
                var rule = (track ?? throw new InvalidSettingException(field, "A track is an object.")).Resolve(this, field);
                if (track.Name is null)
                {
                    var name = rule.Name;
                    for (var n = 2; rules.Any(r => r.Name == name); n++) name = $"{rule.Name}-{n}";
                    rule = rule with { Name = name };
                }
                if (EmaTrackSettings.NameProblem(rule.Name) is { } problem)
                    throw new InvalidSettingException(field + ".name", track.Name is null ? problem + " Give the track a shorter name." : problem);
                if (rules.Any(r => r.Name == rule.Name)) throw new InvalidSettingException(field + ".name", $"Two tracks are named '{rule.Name}'.");
                rules.Add(rule);
                byTrack.Add(rule);
            }
            catch (InvalidSettingException e)
            {
                problems.Add(e);
                byTrack.Add(null);
            }
        }
        return (byTrack, problems);
    }

    public static string TrackName(double decay) => TrackNames.Ema(decay);

    static string Field(string property) => "ema." + JsonNamingPolicy.CamelCase.ConvertName(property);

    /// <summary>Throws <see cref="InvalidSettingException"/> naming the offending setting (e.g. <c>ema.decays</c>).</summary>
    public void Validate()
    {
        if (Problems().FirstOrDefault() is { } problem) throw problem;
    }

    /// <summary>Every rule broken, at most one per setting.</summary>
    public IEnumerable<InvalidSettingException> Problems()
    {
        foreach (var problem in TrackProblems()) yield return problem;
        // With tracks the decays are not used, so their (default) value is not checked.
        if (Tracks is null && DecaysProblem() is { } decaysProblem) yield return new InvalidSettingException(Field(nameof(Decays)), decaysProblem);
        if (Every < 1) yield return new InvalidSettingException(Field(nameof(Every)), "'every' must be at least 1.");
        if (StartStep < 0) yield return new InvalidSettingException(Field(nameof(StartStep)), "The start step must not be negative.");
        if (RecalibrationBatches < 1) yield return new InvalidSettingException(Field(nameof(RecalibrationBatches)), "At least one recalibration batch is needed.");
    }

    string? DecaysProblem()
    {
        var outside = Decays.Where(d => !(d > 0 && d < 1)).ToList();
        if (Decays.Count == 0) return "At least one decay is needed.";
        if (Decays.Count > MaxDecays) return $"At most {MaxDecays} decays can be shadowed in one run.";
        if (outside.Count > 0) return $"Decay {outside[0].ToString(CultureInfo.InvariantCulture)} is outside (0, 1).";
        if (Decays.Distinct().Count() != Decays.Count) return "The decays must be distinct.";
        return null;
    }

    IEnumerable<InvalidSettingException> TrackProblems()
    {
        if (Tracks is null) yield break;
        var tracks = Field(nameof(Tracks));
        if (Tracks.Count == 0) yield return new InvalidSettingException(tracks, "At least one track is needed (or leave 'tracks' out to use 'decays').");
        else if (Tracks.Count > MaxDecays) yield return new InvalidSettingException(tracks, $"At most {MaxDecays} tracks can be shadowed in one run.");
        else
            foreach (var problem in ResolveTracks().Problems) yield return problem;
    }
}

/// <summary>The decay arithmetic shared by the engine and the UI (half-life, window, warm-up curve).</summary>
public static class EmaMath
{
    /// <summary>The decay actually applied at global step <paramref name="step"/> (TF's <c>num_updates</c> warm-up when enabled).</summary>
    public static double EffectiveDecay(double decay, long step, bool warmup) =>
        warmup ? Math.Min(decay, (1.0 + step) / (10.0 + step)) : decay;

    /// <summary>Steps after which a weight's contribution has halved: ln 0.5 / ln d.</summary>
    public static double HalfLife(double decay) => Math.Log(0.5) / Math.Log(decay);

    /// <summary>The effective averaging window 1 / (1 − d), in updates.</summary>
    public static double Window(double decay) => 1.0 / (1.0 - decay);

    /// <summary>
    /// How much of the shadow is still its initial value after <paramref name="totalSteps"/> steps (0 under zero-debias,
    /// which divides it out): near 1, the average never forgets where it started, as 0.9999 over 2,000 steps without
    /// warm-up. Runs the rule's schedule: a copy of the live weights (before the start, or a library's first update)
    /// restarts the shadow, and each average keeps d of what it held.
    /// </summary>
    public static double InitialWeightShare(EmaRule rule, long totalSteps)
    {
        if (rule.ZeroDebias) return 0;
        var share = 1.0;
        // Copies only happen early (before the start, the update-after steps, the first update): past them a tiny share stays tiny.
        var lastCopy = Math.Max(rule.StartStep + 1, rule.UpdateAfterStep + 2) * Math.Max(1, rule.Every) + 1;
        foreach (var (step, next) in Schedule(rule, totalSteps))
        {
            if (next.Action is ShadowAction.FollowLive or ShadowAction.Copy) share = 1;
            else if (next.Action == ShadowAction.Average) share *= next.Decay;
            if (share < 1e-12 && step > lastCopy) return share;
        }
        return share;
    }

    /// <summary>
    /// The equivalent σ_rel of a track read at <paramref name="step"/> (EDM2's measure of an average's length): the
    /// standard deviation of the weight it gives each step's weights (the initial weights at step 0), relative to
    /// <paramref name="step"/>. Computed from the rule's own schedule, so warm-up, every-N, copies, zero-debias and
    /// SWA's uniform average all count; for a plain EMA long past its window it is √d / (1 − d) / t
    /// (<see cref="PowerFunctionProfile.SigmaRelOfDecay"/>); a uniform average of the whole run gives 1/√12.
    /// </summary>
    public static double SigmaRel(EmaRule rule, long step)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        // Unnormalised moments Σ a_τ, Σ a_τ·τ, Σ a_τ·τ² of the profile (steps in units of the end step, for precision).
        double mass = rule.ZeroDebias ? 0 : 1, first = 0, second = 0;
        foreach (var (t, next) in Schedule(rule, step))
        {
            var tau = (double)t / step;
            if (next.Action is ShadowAction.FollowLive or ShadowAction.Copy) (mass, first, second) = (1, tau, tau * tau);
            else if (next.Action == ShadowAction.Average)
            {
                var d = next.Decay;
                (mass, first, second) = (d * mass + (1 - d), d * first + (1 - d) * tau, d * second + (1 - d) * tau * tau);
            }
        }
        if (mass <= 0) return 0;
        var mean = first / mass;
        return Math.Sqrt(Math.Max(0, second / mass - mean * mean));
    }

    /// <summary>
    /// The first step at which the rule averages with its nominal decay (d, or d^N when adjusted to an update every N
    /// steps): a warm-up or a late start gets there later, and a decay the warm-up never reaches within
    /// <paramref name="steps"/> gives null — TF's <c>min(d, (1+t)/(10+t))</c> reaches 0.999 only at step 8,990. Null for
    /// SWA, whose uniform average has no one decay. Within 1e-7, the rounding of a float32 rule (TensorFlow's) to its decay.
    /// </summary>
    public static long? NominalDecayFrom(EmaRule rule, long steps)
    {
        if (rule.Preset == EmaPresets.Swa) return null;
        var nominal = rule.AdjustDecay ? Math.Pow(rule.Decay, rule.Every) : rule.Decay;
        foreach (var (step, next) in Schedule(rule, steps))
            if (next.Action == ShadowAction.Average && Math.Abs(next.Decay - nominal) <= 1e-7) return step;
        return null;
    }

    /// <summary>
    /// The last step up to which two rules do the same thing at every step — the same action, and the same decay when
    /// they average — so that their tracks are one track until then (0 when they differ from step 1). Two decays under
    /// TF's warm-up, 0.99 and 0.999, are identical until step 890 (where 0.99 caps the first): the warm-up, not the decay, sets both.
    /// </summary>
    public static long IdenticalUntil(EmaRule a, EmaRule b, long steps)
    {
        using var first = Schedule(a, steps).GetEnumerator();
        using var second = Schedule(b, steps).GetEnumerator();
        long same = 0;
        while (first.MoveNext() && second.MoveNext())
        {
            var (x, y) = (first.Current.Next, second.Current.Next);
            if (x.Action != y.Action || x.Action == ShadowAction.Average && Math.Abs(x.Decay - y.Decay) > 1e-12) return same;
            same = first.Current.Step;
        }
        return same;
    }

    /// <summary>What the rule does at each step 1..<paramref name="steps"/>, with the update count the rule keeps.</summary>
    public static IEnumerable<(long Step, ShadowStep Next)> Schedule(EmaRule rule, long steps)
    {
        long updates = 0;
        for (var step = 1L; step <= steps; step++)
        {
            var next = EmaSchedule.Next(rule, step, updates);
            if (next.Action is ShadowAction.Copy or ShadowAction.Average) updates++;
            yield return (step, next);
        }
    }
}
