using System.Globalization;
using System.Text.Json.Nodes;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.Dashboard.Components.Pages;

/// <summary>
/// What the new-run form edits. It is turned into the same JSON the REST API takes and checked by the
/// same <see cref="RunRequest.Parse"/>, so the form and the API share one set of rules and messages.
/// </summary>
public sealed class RunForm
{
    public string Name { get; set; } = "";
    public string Dataset { get; set; } = DatasetCatalog.Mnist10k;
    public string Model { get; set; } = "cnn";
    public string Optimizer { get; set; } = RunSpec.Adam;
    public string LearningRate { get; set; } = "0.001";
    public string Schedule { get; set; } = RunSpec.NoSchedule;
    public int BatchSize { get; set; } = 64;
    public long Steps { get; set; } = 1500;
    public long Seed { get; set; } = 1;
    public int EvalInterval { get; set; } = 100;
    public int Threads { get; set; } = Math.Clamp(Environment.ProcessorCount, 1, 2);
    public long? CheckpointEvery { get; set; } = 500;
    public long ExperimentId { get; set; } = Experiment.DefaultId;

    /// <summary>The shadows, one row per track of <c>ema.tracks</c>.</summary>
    public List<TrackRow> Tracks { get; set; } = [TrackRow.Of(EmaPresets.EmaLab, ("decay", "0.99")), TrackRow.Of(EmaPresets.EmaLab, ("decay", "0.999"))];
    // The run's shared settings: what an EMA Lab row takes where it says nothing (the compact form's settings).
    public bool Warmup { get; set; } = true;
    public bool ZeroDebias { get; set; }
    public int Every { get; set; } = 1;
    public long StartStep { get; set; }
    public string BnPolicy { get; set; } = "average";

    /// <summary>Post-hoc EMA: power-function profiles snapshotted during training.</summary>
    public bool PostHoc { get; set; } = true;
    public string PostHocSigmaRels { get; set; } = "0.05, 0.10";
    public long? SnapshotEvery { get; set; }

    public static RunForm From(Run run)
    {
        var spec = run.EngineSpec();
        return new RunForm
        {
            Name = run.Name + " (clone)",
            Dataset = spec.Dataset,
            Model = spec.Model,
            Optimizer = spec.Optimizer,
            LearningRate = spec.LearningRate.ToString("R", CultureInfo.InvariantCulture),
            Schedule = spec.Schedule,
            BatchSize = spec.BatchSize,
            Steps = spec.PlannedSteps(),
            Seed = spec.Seed,
            EvalInterval = spec.EvalInterval,
            Threads = spec.Threads,
            CheckpointEvery = run.CheckpointEvery,
            ExperimentId = run.ExperimentId,
            // A compact run's decays become EMA Lab rows with the same rules (and names).
            Tracks = spec.Ema.Tracks?.Select(TrackRow.From).ToList()
                ?? spec.Ema.Decays.Select(d => TrackRow.Of(EmaPresets.EmaLab, ("decay", d.ToString("R", CultureInfo.InvariantCulture)))).ToList(),
            Warmup = spec.Ema.Warmup,
            ZeroDebias = spec.Ema.ZeroDebias,
            Every = spec.Ema.Every,
            StartStep = spec.Ema.StartStep,
            BnPolicy = spec.Ema.BnPolicy.ToString().ToLowerInvariant(),
            PostHoc = spec.PostHoc is not null,
            PostHocSigmaRels = spec.PostHoc is { } p ? string.Join(", ", p.SigmaRels.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) : "0.05, 0.10",
            SnapshotEvery = spec.PostHoc?.SnapshotEvery,
        };
    }

    /// <summary>The shared settings as typed (clamped to valid values: the lens previews while the person types).</summary>
    public EmaSettings SharedEma() => new() { Warmup = Warmup, ZeroDebias = ZeroDebias, Every = Math.Max(1, Every), StartStep = Math.Max(0, StartStep) };

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
        return (SharedEma() with { Tracks = tracks }).ResolveTracks().ByTrack;
    }

    /// <summary>
    /// The request the API would receive, validated by the API's rules; throws <see cref="RequestValidationException"/>
    /// with every problem by field. Text that is not a number is reported as such, in place of what the API says about the gap.
    /// </summary>
    public RunRequest ToRequest()
    {
        var typos = new Dictionary<string, string>();
        var tracks = new JsonArray();
        for (var i = 0; i < Tracks.Count; i++) tracks.Add(Tracks[i].ToJson($"ema.tracks[{i}]", SharedEma(), typos));
        var lr = double.TryParse(LearningRate, NumberStyles.Float, CultureInfo.InvariantCulture, out var rate) ? rate : (double?)null;
        if (lr is null) typos["learningRate"] = $"'{LearningRate}' is not a number.";
        var body = new JsonObject
        {
            ["name"] = Name,
            ["dataset"] = Dataset,
            ["model"] = Model,
            ["optimizer"] = Optimizer,
            ["schedule"] = Schedule,
            ["batchSize"] = BatchSize,
            ["steps"] = Steps,
            ["seed"] = Seed,
            ["evalInterval"] = EvalInterval,
            ["threads"] = Threads,
            ["ema"] = new JsonObject
            {
                ["tracks"] = tracks,
                ["warmup"] = Warmup,
                ["zeroDebias"] = ZeroDebias,
                ["every"] = Every,
                ["startStep"] = StartStep,
                ["bnPolicy"] = BnPolicy,
            },
        };
        if (lr is not null) body["learningRate"] = lr;
        body["experimentId"] = ExperimentId;
        if (CheckpointEvery is { } every) body["checkpointEvery"] = every;
        if (PostHoc)
        {
            var sigmas = new JsonArray();
            foreach (var text in PostHocSigmaRels.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var sigma)) sigmas.Add(sigma);
                else typos["postHoc.sigmaRels"] = $"'{text}' is not a number; σ_rel is in (0, 0.2887], e.g. 0.05.";
            var postHoc = new JsonObject { ["sigmaRels"] = sigmas };
            if (SnapshotEvery is { } snapshots) postHoc["snapshotEvery"] = snapshots;
            body["postHoc"] = postHoc;
        }
        try
        {
            var request = RunRequest.Parse(body);
            return typos.Count == 0 ? request : throw new RequestValidationException(typos.ToDictionary(t => t.Key, t => new[] { t.Value }));
        }
        catch (RequestValidationException refused) when (typos.Count > 0)
        {
            var errors = typos.ToDictionary(t => t.Key, t => new[] { t.Value });
            foreach (var (field, messages) in refused.Errors) errors.TryAdd(field, messages);
            throw new RequestValidationException(errors);
        }
    }
}
