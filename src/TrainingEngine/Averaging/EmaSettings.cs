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
/// (see docs/ema.md, the EMA contract).
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
    public IReadOnlyList<EmaRule> Rules(EmaRunShape? shape)
    {
        // The compact form is a track per decay that says nothing else: the run's own rule, named ema-<decay>.
        if (Tracks is null) return Decays.Select(d => new EmaTrackSettings { Decay = d }.Resolve(this, Field(nameof(Decays)), shape)).ToArray();
        var (rules, problems) = ResolveTracks(shape);
        return problems.Count > 0 ? throw problems[0] : rules.Select(r => r!).ToArray();
    }

    /// <summary>
    /// Each track's rule (null where the track has a problem), and one problem for each such track: a form shows every
    /// row's message at once, a preview such as the decay lens shows the rows that are complete. Generated names stay
    /// unique: a second identical rule becomes <c>name-2</c>.
    /// </summary>
    public (IReadOnlyList<EmaRule?> ByTrack, IReadOnlyList<InvalidSettingException> Problems) ResolveTracks(EmaRunShape? shape)
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
                var rule = (track ?? throw new InvalidSettingException(field, "A track is an object.")).Resolve(this, field, shape);
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
    public void Validate(EmaRunShape? shape)
    {
        if (Problems(shape).FirstOrDefault() is { } problem) throw problem;
    }

    /// <summary>Every rule broken, at most one per setting.</summary>
    public IEnumerable<InvalidSettingException> Problems(EmaRunShape? shape)
    {
        foreach (var problem in TrackProblems(shape)) yield return problem;
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

    IEnumerable<InvalidSettingException> TrackProblems(EmaRunShape? shape)
    {
        if (Tracks is null) yield break;
        var tracks = Field(nameof(Tracks));
        if (Tracks.Count == 0) yield return new InvalidSettingException(tracks, "At least one track is needed (or leave 'tracks' out to use 'decays').");
        else if (Tracks.Count > MaxDecays) yield return new InvalidSettingException(tracks, $"At most {MaxDecays} tracks can be shadowed in one run.");
        else
            foreach (var problem in ResolveTracks(shape).Problems) yield return problem;
    }
}

