namespace EmaLab.TrainingEngine.Averaging;

/// <summary>
/// The names of a track's settings as JSON, the API's error fields, the presets' setting lists and the new-run form spell
/// them: the camel case of <see cref="EmaTrackSettings"/>' properties (a test holds each one to its property).
/// </summary>
public static class EmaFields
{
    public const string Decay = "decay";
    public const string Warmup = "warmup";
    public const string InvGamma = "invGamma";
    public const string Power = "power";
    public const string MinDecay = "minDecay";
    public const string UpdateAfterStep = "updateAfterStep";
    public const string StartStep = "startStep";
    public const string Every = "every";
    public const string AdjustDecay = "adjustDecay";
    public const string Init = "init";
    public const string ZeroDebias = "zeroDebias";
    public const string Dtype = "dtype";
    public const string HalfLifeSamples = "halfLifeSamples";
    public const string HalfLifeKimg = "halfLifeKimg";
    public const string RampupRatio = "rampupRatio";
    public const string EmaPower = "emaPower";
    public const string BiasPower = "biasPower";
    public const string Lag = "lag";
    public const string Multiplier = "multiplier";
    public const string MinEmaMultiplier = "minEmaMultiplier";
    public const string Checkpoints = "checkpoints";
    public const string Epochs = "epochs";
    public const string WarmupEpochs = "warmupEpochs";
}
