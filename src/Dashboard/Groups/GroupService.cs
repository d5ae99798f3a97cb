using EmaLab.TrainingEngine.Averaging;
using EmaLab.Dashboard.Metrics;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine;
using Microsoft.EntityFrameworkCore;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Groups;

/// <summary>A group as the list shows it.</summary>
public sealed record GroupSummary(string Name, long ExperimentId, int Runs, int Active, int Completed, int Failed, DateTimeOffset CreatedAt);

/// <summary>A run of a group: its configuration (what sets it apart, seed aside) and its seed.</summary>
public sealed record GroupRun(long Id, string Name, string Status, string Configuration, string? Seed, long Step, long TotalSteps, string Origin);

/// <summary>
/// One track of a configuration over its finished seeds: the final (latest, <see cref="Data.LatestValues"/>) and the best
/// value (each seed's own best), and — for an EMA — the paired gap to raw, EMA − raw of the same seed at the same step:
/// at the last step where both have a value (<see cref="FinalGapSteps"/>: one step, or a range when seeds stopped at
/// different steps), and at the track's best step (<see cref="BestStep"/>: the evaluation where its mean over the seeds
/// is best), with a verdict on the final gap. A step where only one of the two has a value is never paired.
/// </summary>
public sealed record TrackStatistics(
    string Track, int Seeds, SampleSummary Final, SampleSummary Best, PairedComparison? FinalGap, StepRange? FinalGapSteps,
    PairedComparison? BestGap, long? BestStep, string? Verdict);

/// <summary>The steps a paired gap was taken at over the seeds (one step when <see cref="From"/> = <see cref="To"/>).</summary>
public sealed record StepRange(long From, long To)
{
    public override string ToString() => From == To ? From.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)
        : $"{From.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)}–{To.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)}";
}

/// <summary>The runs of a group that differ only in their seed, and what they show together. <see cref="WinnerRun"/> is the
/// finished seed whose final value of the best track is best: the run whose checkpoint of that track the page registers.</summary>
public sealed record GroupConfiguration(
    string Label, IReadOnlyDictionary<string, string> Parameters, IReadOnlyList<long> RunIds, int Finished, int Unusable,
    IReadOnlyList<TrackStatistics> Tracks, string? BestTrack, long? WinnerRun = null);

/// <summary>Everything the group page and <c>GET /api/groups/{name}</c> show, for one metric.</summary>
public sealed record GroupAnalysis(
    string Name, long ExperimentId, string Metric, bool HigherIsBetter, IReadOnlyList<string> Varied,
    IReadOnlyList<GroupRun> Runs, IReadOnlyList<GroupConfiguration> Configurations);

/// <summary>One step of a configuration's mean curve: mean and band over the seeds that reached it.</summary>
public readonly record struct BandPoint(long Step, double Mean, double Lower, double Upper, int Count);

/// <summary>The band drawn around a mean curve.</summary>
public enum Band { StandardDeviation, MinMax }

/// <summary>
/// Reads groups and works out their statistics: configurations (runs equal in every parameter but the seed), mean
/// curves with bands, and the paired EMA − raw comparison of <see cref="PairedComparison"/> per configuration.
/// </summary>
public sealed class GroupService(IDbContextFactory<EmaLabDbContext> dbFactory, MetricQueries metrics, PostHocService postHoc,
    IExperimentPermissions permissions)
{
    /// <summary>The parts a group is judged on: held-out accuracy (higher is better) or held-out loss.</summary>
    public static IReadOnlyList<string> Metrics { get; } = ["accuracy", "loss"];

    /// <summary>A group's runs as loaded once: parameters and metric roles, for the analysis and the curves.</summary>
    public sealed record GroupData(string Name, long ExperimentId, IReadOnlyList<Member> Members, IReadOnlyList<string> Varied)
    {
        /// <summary>The roles of the first run that has a score (a group's runs are one kind of model): what "the score" is here.</summary>
        public MetricRoles Roles => Members.Select(m => m.Roles).FirstOrDefault(r => r.Score is not null) ?? MetricRoles.Engine;
    }

    public sealed record Member(Run Run, IReadOnlyDictionary<string, string> Parameters, MetricRoles Roles, string Configuration);

    public async Task<List<GroupSummary>> ListAsync(long? experimentId, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var members = await (from tag in db.RunTags.AsNoTracking()
                             join run in db.Runs.AsNoTracking() on tag.RunId equals run.Id
                             where tag.Key == TagNames.Group && !run.Deleted && (experimentId == null || run.ExperimentId == experimentId)
                             select new { tag.Value, run.ExperimentId, run.Status, run.CreatedAt }).ToListAsync(cancellationToken);
        return members.GroupBy(m => (m.ExperimentId, m.Value))
            .Select(g => new GroupSummary(g.Key.Value, g.Key.ExperimentId, g.Count(),
                g.Count(m => !m.Status.IsFinished()), g.Count(m => m.Status == RunStatus.Completed),
                g.Count(m => m.Status is RunStatus.Failed or RunStatus.Diverged), g.Min(m => m.CreatedAt)))
            .OrderByDescending(g => g.CreatedAt).ToList();
    }

    /// <summary>The group's runs in id order with their parameters, or null when no run carries the name in the experiment.</summary>
    public async Task<GroupData?> LoadAsync(long experimentId, string name, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var ids = db.RunTags.Where(t => t.Key == TagNames.Group && t.Value == name).Select(t => t.RunId);
        var runs = await db.Runs.AsNoTracking().Include(r => r.Tracks)
            .Where(r => ids.Contains(r.Id) && r.ExperimentId == experimentId && !r.Deleted).OrderBy(r => r.Id).ToListAsync(cancellationToken);
        if (runs.Count == 0) return null;
        var runIds = runs.Select(r => r.Id).ToList();
        var clientParams = (await db.Params.AsNoTracking().Where(p => runIds.Contains(p.RunId)).ToListAsync(cancellationToken))
            .ToLookup(p => p.RunId);
        var roleTags = await db.RunTags.AsNoTracking().Where(t => runIds.Contains(t.RunId) && t.Key == TagNames.MetricRoles)
            .ToDictionaryAsync(t => t.RunId, t => t.Value, cancellationToken);

        var parameters = runs.Select(r => (IReadOnlyDictionary<string, string>)RunParameters.Of(r, clientParams[r.Id])).ToList();
        var varied = RunParameters.Differing(parameters).Where(k => !RunParameters.IsSeed(k)).ToList();
        var members = runs.Select((run, i) => new Member(run, parameters[i], MetricRoles.For(run, roleTags.GetValueOrDefault(run.Id), metrics),
            varied.Count == 0 ? "all runs" : string.Join(' ', varied.Select(k => $"{k}={parameters[i].GetValueOrDefault(k) ?? "—"}")))).ToList();
        return new GroupData(name, experimentId, members, varied);
    }

    static string? KeyFor(MetricRoles roles, string metric) => metric == "loss" ? roles.Loss : roles.Score;

    /// <summary>A loss is lower-better; the score as its key says (an accuracy higher, a Fréchet distance lower).</summary>
    public static bool HigherIsBetter(GroupData group, string metric) =>
        metric != "loss" && !group.Roles.LowerIsBetter;

    /// <summary>
    /// Configurations in order of first appearance, each with its tracks' statistics over the seeds that finished
    /// (completed runs with a finite value; a diverged or failed seed is counted as unusable, never averaged in).
    /// </summary>
    public GroupAnalysis Analyze(GroupData group, string metric)
    {
        var higherIsBetter = HigherIsBetter(group, metric);
        var configurations = new List<GroupConfiguration>();
        foreach (var configuration in group.Members.GroupBy(m => m.Configuration))
        {
            var finished = configuration.Where(m => m.Run.Status == RunStatus.Completed).ToList();
            var unusable = configuration.Count(m => m.Run.Status is RunStatus.Failed or RunStatus.Diverged);
            // Best and final value of every track of every finished seed (each run reads its own key for the part).
            var values = finished.GroupBy(m => KeyFor(m.Roles, metric)).Where(g => g.Key is not null)
                .SelectMany(g => metrics.Summaries(g.Select(m => m.Run.Id).ToList(), g.Key!, lowerIsBetter: !higherIsBetter))
                .Where(s => double.IsFinite(s.Final) && double.IsFinite(s.Best))
                .ToDictionary(s => (s.RunId, s.Track));
            var trackOrder = finished.SelectMany(m => EmaTrack.InDisplayOrder(m.Run.Tracks)).Select(t => t.Name).Distinct().ToList();
            var tracks = new List<TrackStatistics>();
            foreach (var track in trackOrder)
            {
                var seeds = finished.Where(m => values.ContainsKey((m.Run.Id, track))).Select(m => m.Run.Id).ToList();
                if (seeds.Count == 0) continue;
                var final = SampleSummary.Of(seeds.Select(id => values[(id, track)].Final).ToList());
                var best = SampleSummary.Of(seeds.Select(id => values[(id, track)].Best).ToList());
                var gaps = new PairedGaps(null, null, null, null);
                string? verdict = null;
                var paired = seeds.Where(id => values.ContainsKey((id, TrackNames.Raw))).ToList();
                if (track != TrackNames.Raw && paired.Count > 0)
                {
                    var keys = finished.ToDictionary(m => m.Run.Id, m => KeyFor(m.Roles, metric)!);
                    gaps = Gaps(paired.Select(id => (id, keys[id])).ToList(), track, higherIsBetter);
                    verdict = gaps.Final?.Verdict(track, TrackNames.Raw, higherIsBetter, ValueFormat.For(higherIsBetter));
                }
                tracks.Add(new TrackStatistics(track, seeds.Count, final, best, gaps.Final, gaps.FinalSteps, gaps.Best, gaps.BestStep, verdict));
            }
            // Only a track every finished seed has can be the best (one lucky seed with a post-hoc track proves nothing).
            var complete = tracks.Where(t => t.Seeds == finished.Count).ToList();
            var bestTrack = complete.Count == 0 ? null
                : (higherIsBetter ? complete.MaxBy(t => t.Final.Mean) : complete.MinBy(t => t.Final.Mean))!.Track;
            var winners = bestTrack is null ? [] : values.Values.Where(v => v.Track == bestTrack).ToList();
            long? winnerRun = winners.Count == 0 ? null : (higherIsBetter ? winners.MaxBy(v => v.Final) : winners.MinBy(v => v.Final))!.RunId;
            var first = configuration.First();
            configurations.Add(new GroupConfiguration(configuration.Key,
                group.Varied.ToDictionary(k => k, k => first.Parameters.GetValueOrDefault(k) ?? ""),
                configuration.Select(m => m.Run.Id).ToList(), finished.Count, unusable, tracks, bestTrack, winnerRun));
        }
        var runs = group.Members.Select(m => new GroupRun(m.Run.Id, m.Run.Name, m.Run.Status.ToApi(), m.Configuration,
            m.Parameters.FirstOrDefault(p => RunParameters.IsSeed(p.Key)).Value, m.Run.Step, m.Run.TotalSteps, WireNames.Of(m.Run.Origin))).ToList();
        return new GroupAnalysis(group.Name, group.ExperimentId, metric, higherIsBetter, group.Varied, runs, configurations);
    }

    sealed record PairedGaps(PairedComparison? Final, StepRange? FinalSteps, PairedComparison? Best, long? BestStep);

    /// <summary>
    /// Two means whose difference is below this share of their size are a tie (a mean of seeds summed in another order
    /// differs in its last bits): the earliest of the tied steps is the best step.
    /// </summary>
    public const double BestStepTolerance = 1e-9;

    /// <summary>
    /// The paired gaps of a track to raw over the seeds, each seed's values paired at one step where both have a finite value
    /// (the latest at that step). Final: each seed's last such step. Best step: among the steps every seed has for both,
    /// the one where the track's mean over the seeds is best (chosen once for all seeds, as early stopping on the mean curve
    /// would; ties within <see cref="BestStepTolerance"/> go to the earliest step); there each seed's track minus its raw.
    /// </summary>
    PairedGaps Gaps(IReadOnlyList<(long RunId, string Key)> seeds, string track, bool higherIsBetter)
    {
        // A step's value is the latest one logged at it (a series is read in step, then time order).
        Dictionary<long, double> ByStep(long runId, string t, string key) => metrics.Read(runId, t, key, maxPoints: 0).Points
            .GroupBy(p => p.Step).Where(g => double.IsFinite(g.Last().Value)).ToDictionary(g => g.Key, g => g.Last().Value);
        var series = seeds.Select(s => (Track: ByStep(s.RunId, track, s.Key), Raw: ByStep(s.RunId, TrackNames.Raw, s.Key))).ToList();
        var lastShared = series.Select(s => s.Track.Keys.Intersect(s.Raw.Keys).DefaultIfEmpty(-1).Max()).ToList();
        var pairedSeeds = Enumerable.Range(0, series.Count).Where(i => lastShared[i] >= 0).ToList();
        PairedComparison? final = null;
        StepRange? finalSteps = null;
        if (pairedSeeds.Count > 0)
        {
            final = PairedComparison.Of(pairedSeeds.Select(i => series[i].Track[lastShared[i]]).ToList(),
                pairedSeeds.Select(i => series[i].Raw[lastShared[i]]).ToList());
            finalSteps = new StepRange(pairedSeeds.Min(i => lastShared[i]), pairedSeeds.Max(i => lastShared[i]));
        }
        var steps = series.Select(s => s.Track.Keys.Intersect(s.Raw.Keys)).Aggregate((a, b) => a.Intersect(b)).Order().ToList();
        if (steps.Count == 0) return new PairedGaps(final, finalSteps, null, null);
        var means = steps.ToDictionary(step => step, step => series.Average(s => s.Track[step]));
        var bestMean = higherIsBetter ? means.Values.Max() : means.Values.Min();
        var best = steps.First(step => Math.Abs(means[step] - bestMean) <= BestStepTolerance * Math.Max(1, Math.Abs(bestMean)));
        return new PairedGaps(final, finalSteps,
            PairedComparison.Of(series.Select(s => s.Track[best]).ToList(), series.Select(s => s.Raw[best]).ToList()), best);
    }

    /// <summary>
    /// The mean curve of one track over the runs of a configuration, with its band, at every step some run reached
    /// (running runs included, so the page fills live). Each run reads its own key for the metric.
    /// </summary>
    public List<BandPoint> Curve(GroupData group, string configuration, string track, string metric, Band band)
    {
        var byStep = new SortedDictionary<long, List<double>>();
        foreach (var member in group.Members.Where(m => m.Configuration == configuration))
        {
            if (KeyFor(member.Roles, metric) is not { } key) continue;
            foreach (var point in metrics.Read(member.Run.Id, track, key, maxPoints: 0).Points)
            {
                if (!double.IsFinite(point.Value)) continue;
                if (!byStep.TryGetValue(point.Step, out var list)) byStep[point.Step] = list = [];
                list.Add(point.Value);
            }
        }
        return byStep.Select(p => Point(p.Key, p.Value, band)).ToList();
    }

    static BandPoint Point(long step, List<double> values, Band band)
    {
        var mean = values.Average();
        if (band == Band.MinMax) return new BandPoint(step, mean, values.Min(), values.Max(), values.Count);
        var deviation = values.Count < 2 ? 0 : Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
        return new BandPoint(step, mean, mean - deviation, mean + deviation, values.Count);
    }

    /// <summary>What became of one run when a σ_rel was reconstructed across the group.</summary>
    public sealed record PostHocOutcome(long RunId, PostHocResult? Result, string? Problem);

    /// <summary>
    /// Reconstructs the same σ_rel on every run of the group that can be (finished engine runs with snapshots), so the
    /// post-hoc track joins the statistics on every seed; the others are listed with the reason.
    /// </summary>
    public async Task<List<PostHocOutcome>> ReconstructAsync(GroupData group, double sigmaRel, Caller caller, Action<int>? progress = null)
    {
        if (!PowerFunctionProfile.IsSupported(sigmaRel)) throw new RequestValidationException("sigmaRel", PowerFunctionProfile.SupportedRange);
        await permissions.RequireAsync(caller, group.ExperimentId, ExperimentPermissionLevel.Edit);
        var outcomes = new List<PostHocOutcome>();
        foreach (var member in group.Members)
        {
            var (run, problem) = await postHoc.CheckAsync(member.Run.Id);
            if (run is null) continue; // deleted meanwhile
            outcomes.Add(problem is not null ? new PostHocOutcome(run.Id, null, problem)
                : new PostHocOutcome(run.Id, (await postHoc.ReconstructAsync(run, [sigmaRel]))[0], null));
            progress?.Invoke(outcomes.Count);
        }
        return outcomes;
    }
}
