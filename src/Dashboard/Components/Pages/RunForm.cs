using System.Globalization;
using System.Text.Json.Nodes;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Components.Pages;

/// <summary>
/// What the new-run form edits. It is turned into the same JSON the REST API takes and checked by the
/// same <see cref="RunRequest.Parse"/>, so the form and the API share one set of rules and messages.
/// </summary>
public sealed class RunForm
{
    public string Name { get; set; } = "";
    // The defaults are the run the README measures as a seed group: a ResNet-8 on Fashion-MNIST for 1,200 steps, about two
    // minutes on 2 cores, where the EMA's gain is real (mnist-10k, the previous default, leaves it within noise).
    public string Dataset { get; set; } = DatasetCatalog.Contains(DatasetCatalog.FashionMnist) ? DatasetCatalog.FashionMnist : DatasetCatalog.Mnist10k;
    public string Model { get; set; } = ModelArchitecture.ResNet;
    public string Optimizer { get; set; } = RunSpec.Adam;
    // The architecture's width and depth (empty: the model's defaults, shown as placeholders).
    /// <summary>MLP hidden widths, comma-separated.</summary>
    public string Hidden { get; set; } = "";
    /// <summary>CNN channels per conv block or ResNet channels per stage, comma-separated.</summary>
    public string Channels { get; set; } = "";
    /// <summary>ResNet basic blocks per stage, or U-Net residual blocks per level.</summary>
    public int? Blocks { get; set; } = 1;
    /// <summary>The U-Net's self-attention at its lowest resolution.</summary>
    public bool Attention { get; set; } = true;
    // A diffusion run's (model unet) noise schedule and sample-quality evaluation (DiffusionSettings), its defaults.
    public string NoiseSchedule { get; set; } = DiffusionSettings.LinearSchedule;
    public int Timesteps { get; set; } = new DiffusionSettings().Timesteps;
    public int SamplingSteps { get; set; } = new DiffusionSettings().SamplingSteps;
    public int Samples { get; set; } = new DiffusionSettings().Samples;
    public int FinalSamples { get; set; } = new DiffusionSettings().FinalSamples;
    /// <summary>Steps between sample-quality evaluations; empty: every evaluation.</summary>
    public long? QualityInterval { get; set; }
    public string LearningRate { get; set; } = "0.003";
    public string Schedule { get; set; } = RunSpec.NoSchedule;
    // The training recipe (augmentation, label smoothing, warm-up, clipping, weight decay): numbers kept as typed text,
    // so that "0,1" is reported by field instead of silently read as something else.
    public string WeightDecay { get; set; } = "0";
    public bool DecayNormsAndBiases { get; set; } = true;
    public long LearningRateWarmup { get; set; } = 100;
    public string GradientClipNorm { get; set; } = "0";
    public string LabelSmoothing { get; set; } = "0";
    public int RandomCropPadding { get; set; }
    public bool HorizontalFlip { get; set; }
    public int BatchSize { get; set; } = 128;
    public long Steps { get; set; } = 1200;
    public long Seed { get; set; } = 1;
    public int EvalInterval { get; set; } = 100;
    /// <summary>Held-out images scored at intermediate evaluations (the last one scores all); empty: all every time.</summary>
    public int? EvalSubset { get; set; } = 2000;
    public int Threads { get; set; } = Math.Clamp(Environment.ProcessorCount, 1, 2);
    public long? CheckpointEvery { get; set; } = 400;
    public long ExperimentId { get; set; } = Experiment.DefaultId;

    /// <summary>
    /// Launch a group instead of one run: then <see cref="Seeds"/>, <see cref="LearningRate"/> and <see cref="BatchSizes"/>
    /// take lists and <see cref="Optimizers"/>/<see cref="Models"/> several choices, and the form sends the cross product.
    /// </summary>
    public bool IsGroup { get; set; }
    /// <summary>Seeds of a group: numbers and ranges, <c>1-5</c> or <c>1, 2, 7</c>.</summary>
    public string Seeds { get; set; } = "1-3";
    public string BatchSizes { get; set; } = "128";
    public HashSet<string> Optimizers { get; set; } = [RunSpec.Adam];
    public HashSet<string> Models { get; set; } = [ModelArchitecture.ResNet];

    /// <summary>The shadows, one row per track of <c>ema.tracks</c>.</summary>
    public List<TrackRow> Tracks { get; set; } = [TrackRow.Of(EmaPresets.EmaLab, (EmaFields.Decay, "0.99")),
        TrackRow.Of(EmaPresets.EmaLab, (EmaFields.Decay, "0.995"))];
    // The run's shared settings: what an EMA Lab row takes where it says nothing (the compact form's settings).
    // The default tracks are zero-debiased without a warm-up, so they differ from the first step: under TF's warm-up
    // (1 + t)/(10 + t) both decays would apply the warm-up's value until step 890 and 0.995 would be reached only at step
    // 1,790 of 1,200; without either, ema-0.995 would still hold 0.24 % of the random initial weights at the end. In the
    // README's seed group both beat raw (0.999, whose 1,000-step window is most of the run, did not).
    public bool Warmup { get; set; }
    public bool ZeroDebias { get; set; } = true;
    public int Every { get; set; } = 1;
    public long StartStep { get; set; }
    public string BnPolicy { get; set; } = "average";

    /// <summary>Post-hoc EMA: power-function profiles snapshotted during training.</summary>
    public bool PostHoc { get; set; } = true;
    public string PostHocSigmaRels { get; set; } = "0.05, 0.10";
    /// <summary>Switch EMA: every <see cref="SwitchEmaEvery"/> steps the trained weights become a track's (it changes training).</summary>
    public bool SwitchEma { get; set; }
    /// <summary>The track switched to; empty: the first row's.</summary>
    public string SwitchEmaTrack { get; set; } = "";
    public int SwitchEmaEvery { get; set; } = 500;
    /// <summary>A group's runs with and without Switch EMA: two configurations of the same seeds.</summary>
    public bool SwitchEmaBoth { get; set; }
    public long? SnapshotEvery { get; set; }

    /// <summary>
    /// The README's measured diffusion run: a U-Net (widths 16, 32; 163,985 parameters) on Fashion-MNIST for 1,200 steps,
    /// about 8 minutes on 2 cores, its samples scored every 400 steps and at the end, three zero-debiased EMAs and post-hoc
    /// profiles — the run whose 5 seeds the README's verdict reports.
    /// </summary>
    public static RunForm DiffusionDefault(long experimentId) => new()
    {
        Name = "diffusion on fashion-mnist",
        Dataset = DatasetCatalog.FashionMnist, Model = ModelArchitecture.UNet, Channels = "16, 32", Blocks = 1, Attention = true,
        LearningRate = "0.002", LearningRateWarmup = 100, BatchSize = 64, Steps = 1200, EvalInterval = 200, EvalSubset = 2000,
        SamplingSteps = 10, Samples = 500, FinalSamples = 2000, QualityInterval = 400, CheckpointEvery = null, ExperimentId = experimentId,
        Tracks = [.. new[] { "0.99", "0.995", "0.999" }.Select(d => TrackRow.Of(EmaPresets.EmaLab, (EmaFields.Decay, d)))],
        BatchSizes = "64", Models = [ModelArchitecture.UNet],
    };

    public static RunForm From(Run run)
    {
        var spec = run.EngineSpec();
        return new RunForm
        {
            Name = run.Name + " (clone)",
            Dataset = spec.Dataset,
            Model = spec.Model,
            Optimizer = spec.Optimizer,
            Hidden = spec.Hidden is { } hidden ? string.Join(", ", hidden) : "",
            Channels = spec.Channels is { } channels ? string.Join(", ", channels) : "",
            Blocks = spec.Blocks,
            Attention = spec.Attention ?? true,
            NoiseSchedule = spec.DiffusionOrDefault()?.Schedule ?? DiffusionSettings.LinearSchedule,
            Timesteps = spec.DiffusionOrDefault()?.Timesteps ?? new DiffusionSettings().Timesteps,
            SamplingSteps = spec.DiffusionOrDefault()?.SamplingSteps ?? new DiffusionSettings().SamplingSteps,
            Samples = spec.DiffusionOrDefault()?.Samples ?? new DiffusionSettings().Samples,
            FinalSamples = spec.DiffusionOrDefault()?.FinalSamples ?? new DiffusionSettings().FinalSamples,
            QualityInterval = spec.DiffusionOrDefault()?.QualityInterval,
            LearningRate = spec.LearningRate.ToString("R", CultureInfo.InvariantCulture),
            Schedule = spec.Schedule,
            WeightDecay = spec.WeightDecay.ToString("R", CultureInfo.InvariantCulture),
            DecayNormsAndBiases = spec.DecayNormsAndBiases,
            LearningRateWarmup = spec.LearningRateWarmup,
            GradientClipNorm = spec.GradientClipNorm.ToString("R", CultureInfo.InvariantCulture),
            LabelSmoothing = spec.LabelSmoothing.ToString("R", CultureInfo.InvariantCulture),
            RandomCropPadding = spec.RandomCropPadding,
            HorizontalFlip = spec.HorizontalFlip,
            BatchSize = spec.BatchSize,
            Steps = spec.PlannedSteps(),
            Seed = spec.Seed,
            EvalInterval = spec.EvalInterval,
            EvalSubset = spec.EvalSubset,
            Threads = spec.Threads,
            CheckpointEvery = run.CheckpointEvery,
            ExperimentId = run.ExperimentId,
            // A compact run's decays become EMA Lab rows with the same rules (and names).
            Tracks = spec.Ema.Tracks?.Select(TrackRow.From).ToList()
                ?? spec.Ema.Decays.Select(d => TrackRow.Of(EmaPresets.EmaLab, (EmaFields.Decay, d.ToString("R", CultureInfo.InvariantCulture))))
                    .ToList(),
            Warmup = spec.Ema.Warmup,
            ZeroDebias = spec.Ema.ZeroDebias,
            Every = spec.Ema.Every,
            StartStep = spec.Ema.StartStep,
            BnPolicy = WireNames.Of(spec.Ema.BnPolicy),
            PostHoc = spec.PostHoc is not null,
            PostHocSigmaRels = spec.PostHoc is { } p ? string.Join(", ", p.SigmaRels.Select(v => v.ToString("R", CultureInfo.InvariantCulture)))
                : "0.05, 0.10",
            SnapshotEvery = spec.PostHoc?.SnapshotEvery,
            SwitchEma = spec.SwitchEma is not null,
            SwitchEmaTrack = spec.SwitchEma?.Track ?? "",
            SwitchEmaEvery = spec.SwitchEma?.Every ?? 500,
        };
    }

    /// <summary>
    /// The batch size, epoch length and run length the rows counted in samples or epochs need, as the run's spec will
    /// compute them; null while the dataset or batch size is invalid.
    /// </summary>
    public EmaRunShape? Shape() =>
        DatasetCatalog.Contains(Dataset) && BatchSize >= 1 && BatchSize <= DatasetCatalog.Load(Dataset).Train.Count
            ? new RunSpec { Dataset = Dataset, BatchSize = BatchSize, Steps = Steps }.EmaShape() : null;

    /// <summary>The shared settings as typed (clamped to valid values: the lens previews while the person types).</summary>
    public EmaSettings SharedEma() =>
        new() { Warmup = Warmup, ZeroDebias = ZeroDebias, Every = Math.Max(1, Every), StartStep = Math.Max(0, StartStep) };

    /// <summary>
    /// The optimisation settings as typed, one per learning rate that reads (a group's list), for the lens to draw the
    /// learning rate step by step; a warm-up out of range is left out rather than refused while the person types.
    /// </summary>
    public IReadOnlyList<RunSpec> LearningRatePreview()
    {
        var warmup = LearningRateWarmup > 0 && LearningRateWarmup < Steps ? LearningRateWarmup : 0;
        var schedule = RunSpec.Schedules.Contains(Schedule) ? Schedule : RunSpec.NoSchedule;
        var rates = IsGroup ? LearningRate.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : [LearningRate];
        return rates.Select(r => Number(r) is [var value] ? (double)value : double.NaN)
            .Where(r => double.IsFinite(r) && r > 0).Distinct().Take(6)
            .Select(r => new RunSpec { LearningRate = r, Schedule = schedule, LearningRateWarmup = warmup, Model = IsGroup && Models.Count == 1 ? Models.First() : Model }).ToList();
    }

    /// <summary>
    /// Each row's rule as it stands, null for a row that is not complete or valid yet: the decay lens and the rows'
    /// generated names preview what they can while the person types.
    /// </summary>
    public IReadOnlyList<EmaRule?> RowRules()
    {
        var typos = new Dictionary<string, string>();
        var tracks = new List<EmaTrackSettings>();
        foreach (var row in Tracks)
        {
            var json = row.ToJson("", SharedEma(), typos);
            EmaTrackSettings? track = null;
            if (typos.Count == 0)
                try { track = RequestJson.Deserialize<EmaTrackSettings>(json); }
                catch (RequestValidationException) { }
            typos.Clear();
            tracks.Add(track!); // a missing track resolves to null with a problem, keeping the rows' positions
        }
        return (SharedEma() with { Tracks = tracks }).ResolveTracks(Shape()).ByTrack;
    }

    /// <summary>
    /// The request the API would receive, validated by the API's rules; throws <see cref="RequestValidationException"/>
    /// with every problem by field. Text that is not a number is reported as such, in place of what the API says about the gap.
    /// </summary>
    public RunRequest ToRequest() => Parsed(RunRequest.Parse);

    /// <summary>The group the form describes (its lists → the cross product), validated as the API validates <c>POST /api/groups</c>.</summary>
    public Groups.GroupRequest ToGroupRequest() => Parsed(Groups.GroupRequest.Parse);

    T Parsed<T>(Func<JsonObject, T> parse)
    {
        var typos = new Dictionary<string, string>();
        var body = Body(typos);
        try
        {
            var request = parse(body);
            return typos.Count == 0 ? request : throw new RequestValidationException(typos.ToDictionary(t => t.Key, t => new[] { t.Value }));
        }
        catch (RequestValidationException refused) when (typos.Count > 0)
        {
            var errors = typos.ToDictionary(t => t.Key, t => new[] { t.Value });
            foreach (var (field, messages) in refused.Errors) errors.TryAdd(field, messages);
            throw new RequestValidationException(errors);
        }
    }

    /// <summary>The JSON body the API would receive; text that is not a number goes to <paramref name="typos"/> by field.</summary>
    JsonObject Body(Dictionary<string, string> typos)
    {
        var tracks = new JsonArray();
        for (var i = 0; i < Tracks.Count; i++) tracks.Add(Tracks[i].ToJson($"ema.tracks[{i}]", SharedEma(), typos));
        var body = new JsonObject
        {
            ["name"] = Name,
            ["dataset"] = Dataset,
            ["model"] = Model,
            ["optimizer"] = Optimizer,
            ["schedule"] = Schedule,
            ["decayNormsAndBiases"] = DecayNormsAndBiases,
            ["learningRateWarmup"] = LearningRateWarmup,
            ["randomCropPadding"] = RandomCropPadding,
            ["horizontalFlip"] = HorizontalFlip,
            ["batchSize"] = BatchSize,
            ["steps"] = Steps,
            ["seed"] = Seed,
            ["evalInterval"] = EvalInterval,
            ["evalSubset"] = EvalSubset,
            ["threads"] = Threads,
            ["ema"] = new JsonObject
            {
                ["tracks"] = tracks,
                [EmaFields.Warmup] = Warmup,
                [EmaFields.ZeroDebias] = ZeroDebias,
                [EmaFields.Every] = Every,
                [EmaFields.StartStep] = StartStep,
                ["bnPolicy"] = BnPolicy,
            },
        };
        if (SwitchEma)
        {
            var switchEma = new JsonObject { [EmaFields.Every] = SwitchEmaEvery };
            if (SwitchEmaTrack.Trim() is { Length: > 0 } track) switchEma["track"] = track;
            // A group compares the same seeds with and without it: the setting becomes an axis.
            body["switchEma"] = IsGroup && SwitchEmaBoth ? new JsonArray(null, switchEma) : switchEma;
        }
        if (IsGroup)
        {
            body["seed"] = List(Seeds, "seed", typos, SeedRange, "a seed or a range such as 1-5");
            body["learningRate"] = List(LearningRate, "learningRate", typos, Number, "a number");
            body["batchSize"] = List(BatchSizes, "batchSize", typos, Integer, "a whole number");
            body["optimizer"] = new JsonArray(RunSpec.Optimizers.Where(Optimizers.Contains).Select(o => (JsonNode)o).ToArray());
            body["model"] = new JsonArray(ModelArchitecture.Kinds.Where(Models.Contains).Select(m => (JsonNode)m).ToArray());
        }
        else if (Number(LearningRate) is [var rate]) body["learningRate"] = rate;
        else typos["learningRate"] = $"'{LearningRate}' is not a number.";
        foreach (var (field, text) in new[] { ("weightDecay", WeightDecay), ("gradientClipNorm", GradientClipNorm), ("labelSmoothing", LabelSmoothing) })
            if (Number(text) is [var value]) body[field] = value;
            else typos[field] = $"'{text}' is not a number.";
        // Only the chosen models' fields go (a group's models may share channels: a CNN's and a ResNet's both read them).
        var models = IsGroup ? Models : [Model];
        if (models.Contains(ModelArchitecture.Mlp)) Widths(body, "hidden", Hidden, typos);
        if (models.Contains(ModelArchitecture.Cnn) || models.Contains(ModelArchitecture.ResNet) || models.Contains(ModelArchitecture.UNet))
            Widths(body, "channels", Channels, typos);
        if ((models.Contains(ModelArchitecture.ResNet) || models.Contains(ModelArchitecture.UNet)) && Blocks is { } blocks) body["blocks"] = blocks;
        // The U-Net's own settings go only where every run is one (a classifier refuses them by name).
        if (models.Count > 0 && models.All(m => m == ModelArchitecture.UNet))
        {
            body["attention"] = Attention;
            var diffusion = new JsonObject
            {
                ["schedule"] = NoiseSchedule, ["timesteps"] = Timesteps, ["samplingSteps"] = SamplingSteps,
                ["samples"] = Samples, ["finalSamples"] = FinalSamples,
            };
            if (QualityInterval is { } quality) diffusion["qualityInterval"] = quality;
            body["diffusion"] = diffusion;
        }
        body["experimentId"] = ExperimentId;
        if (CheckpointEvery is { } every) body["checkpointEvery"] = every;
        if (PostHoc)
        {
            var sigmas = List(PostHocSigmaRels, "postHoc.sigmaRels", typos, Number, "a number; σ_rel is in (0, 0.2887], e.g. 0.05");
            var postHoc = new JsonObject { ["sigmaRels"] = sigmas };
            if (SnapshotEvery is { } snapshots) postHoc["snapshotEvery"] = snapshots;
            body["postHoc"] = postHoc;
        }
        return body;
    }

    /// <summary>Layer widths ("64, 128") as one list value; nothing typed sends nothing (the model's default).</summary>
    static void Widths(JsonObject body, string field, string text, Dictionary<string, string> typos)
    {
        var widths = List(text, field, typos, Integer, "a whole number; give widths such as 16, 32, 64");
        // Empty and no typo: there was no item at all.
        if (widths.Count > 0 || typos.ContainsKey(field)) body[field] = widths;
    }

    /// <summary>
    /// A comma-separated list read item by item; an item that does not read is reported under <paramref name="field"/>
    /// as not being <paramref name="expected"/>.
    /// </summary>
    static JsonArray List(string text, string field, Dictionary<string, string> typos, Func<string, JsonNode[]?> read, string expected)
    {
        var list = new JsonArray();
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            if (read(item) is { } values) foreach (var value in values) list.Add(value);
            else typos[field] = $"'{item}' is not {expected}.";
        return list;
    }

    static JsonNode[]? Number(string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) ? [JsonValue.Create(value)] : null;

    static JsonNode[]? Integer(string text) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) ? [JsonValue.Create(value)] : null;

    /// <summary><c>7</c> or <c>1-5</c> (at most a group's worth of seeds, so a typo such as 1-100000 stays a message).</summary>
    static JsonNode[]? SeedRange(string text)
    {
        var dash = text.IndexOf('-', 1);
        if (dash < 0) return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seed) ? [JsonValue.Create(seed)] : null;
        if (!long.TryParse(text[..dash].Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var from)
            || !long.TryParse(text[(dash + 1)..].Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var to)
            || to < from || to - from >= Groups.GroupRequest.MaxRuns) return null;
        var seeds = new List<JsonNode>();
        for (var s = from; s <= to; s++) seeds.Add(JsonValue.Create(s));
        return [.. seeds];
    }
}
