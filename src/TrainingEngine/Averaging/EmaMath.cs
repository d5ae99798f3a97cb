
namespace EmaLab.TrainingEngine.Averaging;

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
            // LAWA's mean holds copies taken after the start, none of them the initial weights.
            if (next.Action == ShadowAction.Snapshot) return 0;
            if (next.Action is ShadowAction.FollowLive or ShadowAction.Copy or ShadowAction.Anchor) share = 1;
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
        // BEMA: its EMA's moments and θ₀'s place apart from the weights read (which add α at θ_t and −α at θ₀).
        double emaFirst = 0, emaSecond = 0, anchor = 0;
        var copies = new Queue<double>(); // LAWA: the places of the copies its mean holds
        foreach (var (t, next) in Schedule(rule, step))
        {
            var tau = (double)t / step;
            if (rule.IsBema)
            {
                if (next.Action == ShadowAction.Anchor) (emaFirst, emaSecond, anchor) = (tau, tau * tau, tau);
                if (next.Action == ShadowAction.Copy) (emaFirst, emaSecond) = (tau, tau * tau);
                if (next.Action == ShadowAction.Average)
                    (emaFirst, emaSecond) = (next.Decay * emaFirst + (1 - next.Decay) * tau, next.Decay * emaSecond + (1 - next.Decay) * tau * tau);
                if (next.Action is ShadowAction.Copy or ShadowAction.Average)
                    (mass, first, second) = (1, emaFirst + next.Bias * (tau - anchor), emaSecond + next.Bias * (tau * tau - anchor * anchor));
                continue;
            }
            if (next.Action == ShadowAction.Snapshot)
            {
                copies.Enqueue(tau);
                if (copies.Count > rule.Checkpoints) copies.Dequeue();
                (mass, first, second) = (1, copies.Average(), copies.Average(c => c * c));
                continue;
            }
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
        // What the schedule does not show: BEMA of one source reads other weights than plain averaging, and a LAWA mean
        // of k copies is one of fewer copies only until it holds more than the fewer.
        if (a.IsBema != b.IsBema || a.Preset == EmaPresets.Lawa != (b.Preset == EmaPresets.Lawa)) return 0;
        // Copies after which two LAWA means differ: never for the same k, else once the smaller k is exceeded.
        var copiesAlike = a.Preset == EmaPresets.Lawa && a.Checkpoints != b.Checkpoints ? Math.Min(a.Checkpoints, b.Checkpoints) : long.MaxValue;
        using var first = Schedule(a, steps).GetEnumerator();
        using var second = Schedule(b, steps).GetEnumerator();
        long same = 0, copies = 0;
        while (first.MoveNext() && second.MoveNext())
        {
            var (x, y) = (first.Current.Next, second.Current.Next);
            if (x.Action != y.Action || x.Action == ShadowAction.Average && Math.Abs(x.Decay - y.Decay) > 1e-12) return same;
            // BEMA's bias weight is part of what it reads (NaN for the other rules on both sides).
            if (!(x.Bias.Equals(y.Bias) || Math.Abs(x.Bias - y.Bias) <= 1e-12)) return same;
            if (x.Action == ShadowAction.Snapshot && ++copies > copiesAlike) return same;
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
            if (next.Action is ShadowAction.Copy or ShadowAction.Average or ShadowAction.Snapshot) updates++;
            yield return (step, next);
        }
    }
}
