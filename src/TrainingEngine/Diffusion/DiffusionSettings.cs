namespace EmaLab.TrainingEngine.Diffusion;

/// <summary>
/// How a diffusion run (model <c>unet</c>) trains and is scored: its noise schedule over <see cref="Timesteps"/> steps,
/// and the sample-quality evaluation — the Fréchet distance of <see cref="Samples"/> DDIM samples (<see cref="SamplingSteps"/>
/// steps each, from noise that is the same for every track and evaluation) to the held-out images, every
/// <see cref="QualityInterval"/> steps and at the last step with <see cref="FinalSamples"/>.
/// </summary>
public sealed record DiffusionSettings
{
    public const string LinearSchedule = "linear";
    public const string CosineSchedule = "cosine";
    public static IReadOnlyList<string> Schedules { get; } = [LinearSchedule, CosineSchedule];

    public const int MaxTimesteps = 4000;
    /// <summary>
    /// Fewer samples than this fit a 64-dimensional Gaussian badly (its covariance is singular below 65); the distance's
    /// spread at each N is measured in docs/training.md.
    /// </summary>
    public const int MinSamples = 100;
    public const int MaxSamples = 10_000;

    public string Schedule { get; init; } = LinearSchedule;
    public int Timesteps { get; init; } = 1000;
    /// <summary>K: the DDIM steps of each sample the evaluation draws (10: half the cost of 20, measured in the bench).</summary>
    public int SamplingSteps { get; init; } = 10;
    /// <summary>N at the intermediate sample-quality evaluations.</summary>
    public int Samples { get; init; } = 500;
    /// <summary>N at the last step's evaluation (and for an exported or reconstructed track).</summary>
    public int FinalSamples { get; init; } = 2000;
    /// <summary>Steps between sample-quality evaluations (a multiple of the evaluation interval); null: at every evaluation after step 0.</summary>
    public long? QualityInterval { get; init; }

    /// <summary>
    /// The Fréchet distance's floor measured on the Fashion-MNIST reference network (docs/training.md): held-out images
    /// against 10,000 training images — a true distance of about 0 — scored with N images.
    /// </summary>
    static readonly (int Samples, double Distance)[] MeasuredFloor = [(500, 0.45), (1000, 0.18), (2000, 0.078), (5000, 0.039), (10_000, 0.020)];

    /// <summary>
    /// What the distance reads at <paramref name="samples"/> images when there is nothing to find (interpolated log-log
    /// between the measured counts, extended along the end segments): a difference smaller than this is noise.
    /// </summary>
    public static double FloorAt(int samples)
    {
        var i = Math.Clamp(Array.FindIndex(MeasuredFloor, m => m.Samples >= samples), 1, MeasuredFloor.Length - 1);
        var ((n0, d0), (n1, d1)) = (MeasuredFloor[i - 1], MeasuredFloor[i]);
        var slope = Math.Log(d1 / d0) / Math.Log((double)n1 / n0);
        return d0 * Math.Exp(slope * Math.Log((double)samples / n0));
    }

    public NoiseSchedule NoiseSchedule() => Schedule == CosineSchedule ? Diffusion.NoiseSchedule.Cosine(Timesteps) : Diffusion.NoiseSchedule.Linear(Timesteps);

    /// <summary>Whether the evaluation at <paramref name="step"/> of <paramref name="totalSteps"/> scores the samples (never at step 0: every track is the initial network there).</summary>
    public bool ScoresSamplesAt(long step, long totalSteps) => step > 0 && (step == totalSteps || QualityInterval is not { } every || step % every == 0);

    /// <summary>Every rule broken, at most one per setting, named by its JSON path (<c>diffusion.samples</c>).</summary>
    public IEnumerable<InvalidSettingException> Problems(int evalInterval)
    {
        if (Schedule is null || !Schedules.Contains(Schedule))
            yield return new InvalidSettingException("diffusion.schedule", $"Unknown noise schedule '{Schedule}'; choose one of {string.Join(", ", Schedules)}.");
        var timestepsOk = Timesteps is >= 2 and <= MaxTimesteps;
        if (!timestepsOk) yield return new InvalidSettingException("diffusion.timesteps", $"The noise schedule needs 2 to {MaxTimesteps:N0} timesteps.");
        if (SamplingSteps < 1 || (timestepsOk && SamplingSteps > Timesteps))
            yield return new InvalidSettingException("diffusion.samplingSteps", $"DDIM takes from 1 to {(timestepsOk ? Timesteps : MaxTimesteps):N0} steps (the schedule's timesteps).");
        if (Samples is < MinSamples or > MaxSamples)
            yield return new InvalidSettingException("diffusion.samples", $"Score from {MinSamples} to {MaxSamples:N0} samples (fewer fit the features' Gaussian badly).");
        if (FinalSamples is < MinSamples or > MaxSamples || FinalSamples < Samples)
            yield return new InvalidSettingException("diffusion.finalSamples", $"The last evaluation scores from {Math.Max(MinSamples, Samples):N0} to {MaxSamples:N0} samples (at least as many as the others).");
        if (QualityInterval is { } every && (every < 1 || every % evalInterval != 0))
            yield return new InvalidSettingException("diffusion.qualityInterval", $"Sample quality is scored at evaluations: its interval must be a multiple of the evaluation interval ({evalInterval:N0} steps).");
    }
}
