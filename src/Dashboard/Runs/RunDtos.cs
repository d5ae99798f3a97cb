using EmaLab.TrainingEngine;
using System.Text.Json;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Runs;

/// <summary>A track: <c>raw</c>, a classic EMA (<see cref="Decay"/>), or a post-hoc reconstruction (<see
/// cref="SigmaRel"/>, with the decay of the same width).</summary>
public sealed record TrackDto(string Name, double? Decay, double? SigmaRel);

/// <summary>Live progress of a running run; <see cref="ReportedAt"/> is when the trainer reported it.</summary>
public sealed record ProgressDto(long Step, long TotalSteps, double StepsPerSecond, double? EtaSeconds, DateTimeOffset ReportedAt);

public sealed record RunDto(
    long Id, string Name, string Status, long Step, long TotalSteps, string? Error,
    JsonElement? Spec, long? CheckpointEvery, IReadOnlyList<TrackDto> Tracks,
    DateTimeOffset CreatedAt, DateTimeOffset? StartedAt, DateTimeOffset? FinishedAt,
    long? BundleStep, bool Resumable, ProgressDto? Progress, string Origin, long ExperimentId, string TrackingId,
    string? Group, string? Notes, IReadOnlyDictionary<string, string> Tags, string? CreatedBy)
{
    /// <summary>The run as the API shows it; its tags must be loaded (<c>Include(r => r.Tags)</c>) for group, notes, tags and who
    /// created it (<see cref="TagNames.User"/>: the account on a server with accounts, what a script said otherwise).</summary>
    public static RunDto From(Run run, ActiveRuns.LiveProgress? live) => new(
        run.Id, run.Name, run.Status.ToApi(), live?.Progress.Step ?? run.Step, run.TotalSteps, run.Error,
        run.SpecJson is null ? null : JsonDocument.Parse(run.SpecJson).RootElement.Clone(), run.CheckpointEvery,
        EmaTrack.InDisplayOrder(run.Tracks).Select(t => new TrackDto(t.Name, t.Decay, t.SigmaRel)).ToList(),
        run.CreatedAt, run.StartedAt, run.FinishedAt, run.BundleStep,
        run.CanResume,
        live is null ? null : new ProgressDto(live.Progress.Step, live.Progress.TotalSteps, live.Progress.StepsPerSecond,
            live.Progress.EstimatedRemaining?.TotalSeconds, live.ReportedAt),
        WireNames.Of(run.Origin), run.ExperimentId, run.Uuid,
        RunAnnotations.Group(run.Tags), RunAnnotations.Notes(run.Tags), RunAnnotations.UserTags(run.Tags),
        run.Tags.FirstOrDefault(t => t.Key == TagNames.User)?.Value);
}

public sealed record RunPage(IReadOnlyList<RunDto> Items, int Total, int Page, int PageSize);

public sealed record CheckpointDto(long Id, long RunId, string Track, long Step, long SizeBytes, string Sha256, DateTimeOffset CreatedAt,
    string DownloadUrl)
{
    public static CheckpointDto From(Checkpoint c) =>
        new(c.Id, c.RunId, c.Track, c.Step, c.SizeBytes, c.Sha256, c.CreatedAt, $"/api/checkpoints/{c.Id}/download");
}

public sealed record LogEntryDto(DateTimeOffset Time, string Level, string Message)
{
    public static LogEntryDto From(RunLogEntry entry) => new(DateTimeOffset.FromUnixTimeMilliseconds(entry.WallTimeMs), entry.Level, entry.Message);
}

public sealed record ModelInfo(string Name, string Description, IReadOnlyList<int> DefaultSizes);

public sealed record PostHocRequest(double? SigmaRel, double? Decay);

public sealed record SweepRequest(double From = 0.02, double To = 0.25, int Count = 12);

/// <summary>LAWA of the run's stored raw checkpoints: k of them, <c>every</c> steps apart, ending at the last one.</summary>
public sealed record LawaRequest(int? Checkpoints, long? Every);

/// <summary>
/// What LAWA after the fact can average for a run: the steps whose raw weights were kept (<c>checkpointEvery</c> and the
/// last step), the spacings and counts they allow, and why none, when so.
/// </summary>
public sealed record LawaOptions(IReadOnlyList<long> KeptSteps, IReadOnlyList<EmaLab.TrainingEngine.Averaging.LawaChoice> Choices, string? Problem);

/// <summary>
/// A track of the run placed on the σ_rel axis at its equivalent width at the end of the run (the standard deviation
/// of the weight its rule gave each step, <see cref="EmaLab.TrainingEngine.Averaging.EmaMath.SigmaRel"/>); its
/// final evaluation (its score under <see cref="PostHocOverview.ScoreKey"/>, NaN when the run has none, and its loss).
/// <see cref="Decay"/> is null for SWA.
/// </summary>
public sealed record TrackedOnSigmaAxis(string Track, double? Decay, double SigmaRel, double Score, double Loss);

/// <param name="ScoreKey">The metric the results' and tracks' score is (<c>eval/accuracy</c>, a diffusion run's <c>eval/fd</c>, a script's own key), null when the run has none.</param>
/// <param name="LowerIsBetter">Whether a lower score is better (a Fréchet distance), so the best reconstruction is the lowest.</param>
public sealed record PostHocOverview(SweepStatus? Sweep, IReadOnlyList<PostHocResult> Results, IReadOnlyList<TrackedOnSigmaAxis> Tracked,
    IReadOnlyList<double> SnapshotSigmaRels, int Snapshots, long SnapshotBytes, string? ScoreKey = MetricKeys.EvalAccuracy, bool LowerIsBetter = false);
