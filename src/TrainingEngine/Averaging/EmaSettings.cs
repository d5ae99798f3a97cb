using System.Globalization;
using System.Text.Json;

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
        var decays = Field(nameof(Decays));
        var outside = Decays.Where(d => !(d > 0 && d < 1)).ToList();
        if (Decays.Count == 0) yield return new InvalidSettingException(decays, "At least one decay is needed.");
        else if (Decays.Count > MaxDecays) yield return new InvalidSettingException(decays, $"At most {MaxDecays} decays can be shadowed in one run.");
        else if (outside.Count > 0)
            yield return new InvalidSettingException(decays, $"Decay {outside[0].ToString(CultureInfo.InvariantCulture)} is outside (0, 1).");
        else if (Decays.Distinct().Count() != Decays.Count) yield return new InvalidSettingException(decays, "The decays must be distinct.");
        if (Every < 1) yield return new InvalidSettingException(Field(nameof(Every)), "'every' must be at least 1.");
        if (StartStep < 0) yield return new InvalidSettingException(Field(nameof(StartStep)), "The start step must not be negative.");
        if (RecalibrationBatches < 1) yield return new InvalidSettingException(Field(nameof(RecalibrationBatches)), "At least one recalibration batch is needed.");
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
    /// How much of the shadow is still its initial value after <paramref name="totalSteps"/> steps:
    /// the product of the effective decays of the updates applied (0 under zero-debias, which divides it out).
    /// Near 1 means the average never forgets where it started, as 0.9999 over 2,000 steps without warm-up.
    /// </summary>
    public static double InitialWeightShare(double decay, EmaSettings settings, long totalSteps)
    {
        if (settings.ZeroDebias) return 0;
        var share = 1.0;
        for (var step = Math.Max(1, settings.StartStep); step <= totalSteps && share > 1e-12; step++)
            if (IsUpdateStep(step, settings)) share *= EffectiveDecay(decay, step, settings.Warmup);
        return share;
    }

    /// <summary>Whether the shadow is updated after <paramref name="step"/>.</summary>
    public static bool IsUpdateStep(long step, EmaSettings settings) => step >= settings.StartStep && step % settings.Every == 0;
}
