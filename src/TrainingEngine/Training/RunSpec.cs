using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;

namespace EmaLab.TrainingEngine.Training;

/// <summary>How the EMA update is applied in the training loop; both give bit-identical shadows.</summary>
public enum EmaApplication
{
    /// <summary>A callback after the optimizer step (TF's <c>SessionRunHook</c> style).</summary>
    Hook,
    /// <summary>Inside the optimizer step, as TF groups the EMA op into the train op.</summary>
    Fused,
}

/// <summary>Everything that defines a training run. Validated by <see cref="Validate"/>, whose errors name the field.</summary>
public sealed record RunSpec
{
    public const string Sgd = "sgd";
    public const string Adam = "adam";
    public const string AdamW = "adamw";
    public static IReadOnlyList<string> Optimizers { get; } = [Sgd, Adam, AdamW];

    public const string NoSchedule = "none";
    public const string Cosine = "cosine";
    public const string StepSchedule = "step";
    public static IReadOnlyList<string> Schedules { get; } = [NoSchedule, Cosine, StepSchedule];

    public const long MaxSteps = 1_000_000;
    public const int MaxThreads = 64;

    public string Dataset { get; init; } = DatasetCatalog.Digits8x8;
    public string Model { get; init; } = ModelArchitecture.Mlp;
    /// <summary>MLP hidden widths (default 256, 256).</summary>
    public int[]? Hidden { get; init; }
    /// <summary>CNN channels per conv block (default 16, 32); ResNet channels per stage (default 16, 32, 64); U-Net widths per level (default 32, 64).</summary>
    public int[]? Channels { get; init; }
    /// <summary>ResNet basic blocks per stage (default 3: ResNet-20); U-Net residual blocks per level (default 1).</summary>
    public int? Blocks { get; init; }
    /// <summary>The U-Net's self-attention at its lowest resolution (default on).</summary>
    public bool? Attention { get; init; }
    /// <summary>A diffusion run's noise schedule and sample-quality evaluation (model <c>unet</c> only; null: the defaults).</summary>
    public DiffusionSettings? Diffusion { get; init; }

    /// <summary>The diffusion settings a <c>unet</c> run uses (its own or the defaults); null for a classifier.</summary>
    public DiffusionSettings? DiffusionOrDefault() => Model == ModelArchitecture.UNet ? Diffusion ?? new DiffusionSettings() : null;

    public string Optimizer { get; init; } = Adam;
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>SGD momentum.</summary>
    public double Momentum { get; init; } = 0.9;
    public double WeightDecay { get; init; }
    /// <summary>False exempts biases and batch-norm γ/β (parameters of fewer than 2 dimensions) from weight decay, as timm and nanoGPT do.</summary>
    public bool DecayNormsAndBiases { get; init; } = true;
    /// <summary>none, cosine (to zero at the last step) or step (× <see cref="StepGamma"/> every <see cref="StepSize"/> steps).</summary>
    public string Schedule { get; init; } = NoSchedule;
    public int StepSize { get; init; } = 1000;
    public double StepGamma { get; init; } = 0.1;
    /// <summary>Steps of linear learning-rate warm-up (lr·t/W for t ≤ W) before the schedule, which then runs over the remaining steps.</summary>
    public long LearningRateWarmup { get; init; }
    /// <summary>The largest joint L2 norm of the gradients (<c>clip_grad_norm_</c>); 0 does not clip.</summary>
    public double GradientClipNorm { get; init; }
    /// <summary>The training loss's label smoothing (<c>cross_entropy(label_smoothing=)</c>); evaluation losses are never smoothed.</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>Random crop: each training image shifted by up to this many pixels each way (0 = off).</summary>
    public int RandomCropPadding { get; init; }
    /// <summary>Each training image mirrored left-right with probability ½.</summary>
    public bool HorizontalFlip { get; init; }
    public const int MaxCropPadding = 16;

    public int BatchSize { get; init; } = 64;
    /// <summary>Either <see cref="Steps"/> or <see cref="Epochs"/>; steps win when both are given.</summary>
    public long? Steps { get; init; }
    public int? Epochs { get; init; }
    public long Seed { get; init; } = 1;
    public int EvalInterval { get; init; } = 50;
    /// <summary>
    /// At most this many held-out images scored at the intermediate evaluations: a fixed subset, the same for every run of
    /// the dataset (<see cref="TrackEvaluator.SubsetOf"/>), or all of a smaller split (so one setting suits every dataset).
    /// The evaluation at the last step always scores the whole split. Null or 0 (the default, which stored specs keep)
    /// scores the whole split every time.
    /// </summary>
    public int? EvalSubset { get; init; }
    /// <summary>torch.set_num_threads for this run (process-wide in libtorch).</summary>
    public int Threads { get; init; } = 1;

    public EmaSettings Ema { get; init; } = new();
    /// <summary>Post-hoc EMA (power-function profiles and snapshots); null when off.</summary>
    public PostHocSettings? PostHoc { get; init; }
    public EmaApplication EmaApplication { get; init; } = EmaApplication.Hook;
    /// <summary>Switch EMA: every N steps the trained weights become one track's (null when off).</summary>
    public SwitchEmaSettings? SwitchEma { get; init; }

    public ModelArchitecture ArchitectureFor(DatasetSplits data) => new()
    {
        Kind = Model,
        Height = data.Height,
        Width = data.Width,
        Classes = data.ClassCount,
        Hidden = Model == ModelArchitecture.Mlp ? Hidden ?? ModelArchitecture.DefaultHidden : [],
        Channels = Model is ModelArchitecture.Cnn or ModelArchitecture.ResNet or ModelArchitecture.UNet ? Channels ?? ModelArchitecture.DefaultChannelsOf(Model) : [],
        Blocks = Model is ModelArchitecture.ResNet or ModelArchitecture.UNet ? Blocks ?? ModelArchitecture.DefaultBlocksOf(Model) : 0,
        Attention = Model == ModelArchitecture.UNet && (Attention ?? true),
    };

    /// <summary>
    /// The learning rate used for the 1-based step of a run of <paramref name="totalSteps"/>: a linear warm-up over the
    /// first <see cref="LearningRateWarmup"/> steps, then the schedule over the remaining ones. A pure function of the
    /// step, so resuming needs no scheduler state (and the new-run form's lens draws what training will use).
    /// </summary>
    public double LearningRateAt(long step, long totalSteps)
    {
        if (step <= LearningRateWarmup) return LearningRate * step / LearningRateWarmup;
        var (t, length) = (step - LearningRateWarmup, totalSteps - LearningRateWarmup);
        return Schedule switch
        {
            Cosine => LearningRate * 0.5 * (1 + Math.Cos(Math.PI * (t - 1) / length)),
            StepSchedule => LearningRate * Math.Pow(StepGamma, (t - 1) / StepSize),
            _ => LearningRate,
        };
    }

    public long TotalSteps(int batchesPerEpoch) => Steps ?? (long)(Epochs ?? 1) * batchesPerEpoch;

    /// <summary>The run's length in steps (loads the dataset to count its batches).</summary>
    public long PlannedSteps() => TotalSteps(new BatchSchedule(DatasetCatalog.Load(Dataset).Train.Count, BatchSize, Seed).BatchesPerEpoch);

    /// <summary>The batch size and epoch length the EMA rules counted in samples or epochs need (loads the dataset to count its batches).</summary>
    public EmaRunShape EmaShape() => ShapeFor(DatasetCatalog.Load(Dataset).Train.Count);

    /// <summary>The shape for a training split of <paramref name="trainCount"/> samples; its length is 0 while steps or epochs are invalid.</summary>
    EmaRunShape ShapeFor(int trainCount)
    {
        var batchesPerEpoch = Math.Max(1, trainCount / BatchSize);
        return new(BatchSize, batchesPerEpoch, Steps is null or (>= 1 and <= MaxSteps) && Epochs is null or >= 1 ? TotalSteps(batchesPerEpoch) : 0);
    }

    /// <summary>Every EMA track's complete rule for this run (throws <see cref="InvalidSettingException"/> on invalid settings).</summary>
    public IReadOnlyList<EmaRule> EmaRules() => Ema.Rules(EmaShape());

    /// <summary>
    /// Checks every field and throws <see cref="InvalidSettingException"/> whose Field is the field's
    /// JSON path (e.g. <c>learningRate</c>, <c>ema.decays</c>). Nothing is loaded but the dataset sizes.
    /// </summary>
    public void Validate()
    {
        if (Problems().FirstOrDefault() is { } problem) throw problem;
    }

    /// <summary>Every rule the spec breaks, at most one per field, in field order (for forms and problem details that list them all).</summary>
    public IEnumerable<InvalidSettingException> Problems()
    {
        var missing = MissingFields().ToList();
        return missing.Count > 0 ? missing : BrokenRules();
    }

    /// <summary>JSON null where a value, object or list belongs (the declared types are non-null; only JSON breaks them).</summary>
    IEnumerable<InvalidSettingException> MissingFields()
    {
        var missing = new List<InvalidSettingException>();
        if (Dataset is null) missing.Add(Invalid("dataset", "'dataset' is required."));
        if (Model is null) missing.Add(Invalid("model", "'model' is required."));
        if (Optimizer is null) missing.Add(Invalid("optimizer", "'optimizer' is required."));
        if (Schedule is null) missing.Add(Invalid("schedule", "'schedule' must be a string."));
        if (Ema is null) missing.Add(Invalid("ema", "'ema' must be an object."));
        else if (Ema.Decays is null) missing.Add(Invalid("ema.decays", "'ema.decays' must be a list of numbers."));
        return missing;
    }

    IEnumerable<InvalidSettingException> BrokenRules()
    {
        var datasetKnown = DatasetCatalog.Contains(Dataset);
        long? plannedSteps = null; // known once the dataset, batch size and length are valid
        EmaRunShape? shape = null; // known once the dataset and batch size are valid
        var modelKnown = ModelArchitecture.Kinds.Contains(Model);
        if (!datasetKnown)
            yield return Invalid("dataset", DatasetCatalog.MissingReason(Dataset) ?? $"Unknown dataset '{Dataset}'; choose one of {string.Join(", ", DatasetCatalog.Names)}.");
        if (!modelKnown) yield return Invalid("model", $"Unknown model '{Model}'; choose one of {string.Join(", ", ModelArchitecture.Kinds)}.");
        if (!Optimizers.Contains(Optimizer))
            yield return Invalid("optimizer", $"Unknown optimizer '{Optimizer}'; choose one of {string.Join(", ", Optimizers)}.");
        if (!double.IsFinite(LearningRate) || LearningRate <= 0 || LearningRate > 10)
            yield return Invalid("learningRate", "The learning rate must be a finite number in (0, 10].");
        if (!double.IsFinite(Momentum) || Momentum < 0 || Momentum >= 1) yield return Invalid("momentum", "Momentum must be in [0, 1).");
        if (!double.IsFinite(WeightDecay) || WeightDecay < 0 || WeightDecay > 1) yield return Invalid("weightDecay", "Weight decay must be in [0, 1].");
        if (!Schedules.Contains(Schedule))
            yield return Invalid("schedule", $"Unknown schedule '{Schedule}'; choose one of {string.Join(", ", Schedules)}.");
        if (StepSize < 1) yield return Invalid("stepSize", "The schedule's step size must be at least 1.");
        if (!double.IsFinite(StepGamma) || StepGamma <= 0 || StepGamma > 1) yield return Invalid("stepGamma", "The schedule's gamma must be in (0, 1].");
        if (!double.IsFinite(GradientClipNorm) || GradientClipNorm < 0)
            yield return Invalid("gradientClipNorm", "The gradient clipping norm must be a finite number ≥ 0 (0 does not clip).");
        if (!double.IsFinite(LabelSmoothing) || LabelSmoothing < 0 || LabelSmoothing >= 1)
            yield return Invalid("labelSmoothing", "Label smoothing must be in [0, 1).");
        else if (LabelSmoothing > 0 && Model == ModelArchitecture.UNet)
            yield return Invalid("labelSmoothing", "Label smoothing is for classifiers; a diffusion U-Net predicts noise, not labels.");
        if (Diffusion is not null && Model != ModelArchitecture.UNet)
            yield return Invalid("diffusion", $"Diffusion settings are for model '{ModelArchitecture.UNet}'; '{Model}' is a classifier.");
        if (Attention is not null && Model != ModelArchitecture.UNet)
            yield return Invalid("attention", $"Attention is a setting of model '{ModelArchitecture.UNet}'.");
        if (RandomCropPadding < 0 || RandomCropPadding > MaxCropPadding)
            yield return Invalid("randomCropPadding", $"The random crop's padding must be from 0 (off) to {MaxCropPadding} pixels.");

        if (datasetKnown)
        {
            var data = DatasetCatalog.Load(Dataset);
            var batchOk = BatchSize >= 1 && BatchSize <= data.Train.Count;
            if (!batchOk)
                yield return Invalid("batchSize", $"The batch size must be from 1 to {data.Train.Count} (the size of {Dataset}'s training split).");
            if (Steps is { } steps && (steps < 1 || steps > MaxSteps))
                yield return Invalid("steps", $"Steps must be from 1 to {MaxSteps:N0}.");
            if (Steps is null && batchOk && Epochs is { } epochs && (epochs < 1 || (long)epochs * (data.Train.Count / BatchSize) > MaxSteps))
                yield return Invalid("epochs", $"Epochs must be at least 1 and give at most {MaxSteps:N0} steps.");
            if (modelKnown)
                foreach (var problem in ArchitectureFor(data).Problems()) yield return problem;
            if (batchOk)
            {
                shape = ShapeFor(data.Train.Count);
                if (shape.Value.TotalSteps > 0) plannedSteps = shape.Value.TotalSteps;
            }
        }
        if (LearningRateWarmup < 0 || (plannedSteps is { } planned && LearningRateWarmup >= planned))
            yield return Invalid("learningRateWarmup", plannedSteps is { } total
                ? $"The learning-rate warm-up must be from 0 to {total - 1:N0} steps (the run has {total:N0})."
                : "The learning-rate warm-up must be at least 0 steps.");
        if (EvalInterval < 1) yield return Invalid("evalInterval", "The evaluation interval must be at least 1 step.");
        if (EvalSubset < 0) yield return Invalid("evalSubset", "The evaluation subset must be a number of images ≥ 1, or 0 for all of them.");
        if (Threads < 1 || Threads > MaxThreads) yield return Invalid("threads", $"Threads must be from 1 to {MaxThreads}.");
        if (Model == ModelArchitecture.UNet)
            foreach (var problem in DiffusionOrDefault()!.Problems(Math.Max(1, EvalInterval))) yield return problem;
        foreach (var problem in Ema.Problems(shape)) yield return problem;
        if (PostHoc is not null)
            foreach (var problem in PostHoc.Problems(plannedSteps)) yield return problem;
        if (SwitchEma is not null)
            foreach (var problem in SwitchEma.Problems(TryRules(shape))) yield return problem;
    }

    /// <summary>The EMA rules, or null while they are invalid (their problems are reported under <c>ema.*</c>).</summary>
    IReadOnlyList<EmaRule>? TryRules(EmaRunShape? shape)
    {
        try { return Ema.Rules(shape); }
        catch (InvalidSettingException) { return null; }
    }

    static InvalidSettingException Invalid(string field, string message) => new(field, message);

    public static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        // Counters such as the last effective decay are NaN before a shadow's first update.
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        // Optional settings left out stay out (a track's unset fields mean "the preset's default").
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        TypeInfoResolver = new DefaultJsonTypeInfoResolver { Modifiers = { OmitDecaysReplacedByTracks } },
    };

    /// <summary>With tracks the compact decays are not used: writing their default would suggest the run shadows them.</summary>
    static void OmitDecaysReplacedByTracks(JsonTypeInfo info)
    {
        if (info.Type != typeof(EmaSettings)) return;
        foreach (var property in info.Properties.Where(p => p.Name == "decays"))
            property.ShouldSerialize = (settings, _) => ((EmaSettings)settings).Tracks is null;
    }

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public static RunSpec FromJson(string json) =>
        JsonSerializer.Deserialize<RunSpec>(json, JsonOptions) ?? throw new InvalidDataException("The run specification JSON is empty.");
}
