using System.Text.Json;
using System.Globalization;
using System.Text.Json.Nodes;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
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

    /// <summary>Kept as text so that what the person typed is shown back with its message.</summary>
    public List<string> Decays { get; set; } = ["0.99", "0.999"];
    public bool Warmup { get; set; } = true;
    public bool ZeroDebias { get; set; }
    public int Every { get; set; } = 1;
    public long StartStep { get; set; }
    public string BnPolicy { get; set; } = "average";
    /// <summary>A cloned run's <c>ema.tracks</c> (JSON), kept as they are: the form edits the compact decays only.</summary>
    public string? TracksJson { get; set; }

    /// <summary>Post-hoc EMA: power-function profiles snapshotted during training.</summary>
    public bool PostHoc { get; set; } = true;
    public string PostHocSigmaRels { get; set; } = "0.05, 0.10";
    public long? SnapshotEvery { get; set; }

    public static RunForm From(Run run)
    {
        var spec = RunSpec.FromJson(run.SpecJson);
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
            Decays = spec.Ema.Decays.Select(d => d.ToString("R", CultureInfo.InvariantCulture)).ToList(),
            Warmup = spec.Ema.Warmup,
            ZeroDebias = spec.Ema.ZeroDebias,
            Every = spec.Ema.Every,
            StartStep = spec.Ema.StartStep,
            BnPolicy = spec.Ema.BnPolicy.ToString().ToLowerInvariant(),
            TracksJson = spec.Ema.Tracks is { } tracks ? JsonSerializer.Serialize(tracks, RunSpec.JsonOptions) : null,
            PostHoc = spec.PostHoc is not null,
            PostHocSigmaRels = spec.PostHoc is { } p ? string.Join(", ", p.SigmaRels.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) : "0.05, 0.10",
            SnapshotEvery = spec.PostHoc?.SnapshotEvery,
        };
    }

    /// <summary>The decays that parse as numbers (for the lens, which shows what it can while typing).</summary>
    public IReadOnlyList<double> ParsedDecays() =>
        Decays.Select(d => double.TryParse(d, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : double.NaN)
              .Where(v => v is > 0 and < 1).Distinct().ToList();

    /// <summary>The request the API would receive, validated by the API's rules; throws <see cref="RequestValidationException"/>.</summary>
    public RunRequest ToRequest()
    {
        var decays = new JsonArray();
        foreach (var text in Decays)
        {
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d))
                throw new RequestValidationException("ema.decays", $"'{text}' is not a number; a decay is in (0, 1), e.g. 0.999.");
            decays.Add(d);
        }
        if (!double.TryParse(LearningRate, NumberStyles.Float, CultureInfo.InvariantCulture, out var lr))
            throw new RequestValidationException("learningRate", $"'{LearningRate}' is not a number.");
        var body = new JsonObject
        {
            ["name"] = Name,
            ["dataset"] = Dataset,
            ["model"] = Model,
            ["optimizer"] = Optimizer,
            ["learningRate"] = lr,
            ["schedule"] = Schedule,
            ["batchSize"] = BatchSize,
            ["steps"] = Steps,
            ["seed"] = Seed,
            ["evalInterval"] = EvalInterval,
            ["threads"] = Threads,
            ["ema"] = new JsonObject
            {
                ["decays"] = decays,
                ["warmup"] = Warmup,
                ["zeroDebias"] = ZeroDebias,
                ["every"] = Every,
                ["startStep"] = StartStep,
                ["bnPolicy"] = BnPolicy,
            },
        };
        if (TracksJson is not null) body["ema"]!["tracks"] = JsonNode.Parse(TracksJson);
        if (CheckpointEvery is { } every) body["checkpointEvery"] = every;
        if (PostHoc)
        {
            var sigmas = new JsonArray();
            foreach (var text in PostHocSigmaRels.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                sigmas.Add(double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var sigma)
                    ? sigma : throw new RequestValidationException("postHoc.sigmaRels", $"'{text}' is not a number; σ_rel is in (0, 0.2887], e.g. 0.05."));
            var postHoc = new JsonObject { ["sigmaRels"] = sigmas };
            if (SnapshotEvery is { } snapshots) postHoc["snapshotEvery"] = snapshots;
            body["postHoc"] = postHoc;
        }
        return RunRequest.Parse(body);
    }
}
