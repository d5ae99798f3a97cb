using EmaLab.Dashboard.Metrics;
using System.Collections.Concurrent;
using System.Globalization;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Hosting;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Formats;
using TorchSharp;
using EmaLab.TrainingEngine.Training;
using Microsoft.EntityFrameworkCore;
using EmaLab.TrainingEngine;

namespace EmaLab.Dashboard.Runs;

/// <summary>
/// One reconstructed EMA: its track, width, the classic decay of the same width, and its evaluation — the run's score (a
/// classifier's accuracy, a diffusion run's Fréchet distance: <see cref="PostHocOverview.ScoreKey"/>) and held-out loss;
/// NaN for a client's run until its script has evaluated the reconstruction and logged the result.
/// </summary>
public sealed record PostHocResult(string Track, double SigmaRel, double EquivalentDecay, long Step, double Score, double Loss,
    string? ScoreKey = MetricKeys.EvalAccuracy)
{
    /// <summary>Its evaluation in words: "accuracy 91.20 %, loss 0.2413", "eval/fd 12.31, loss 0.0412" (a lower-is-better score as itself).</summary>
    public string Evaluation()
    {
        var loss = $"loss {Loss.ToString("G4", CultureInfo.InvariantCulture)}";
        return ScoreKey switch
        {
            null => loss,
            MetricKeys.EvalAccuracy => $"accuracy {Score.ToString("P2", CultureInfo.InvariantCulture)}, {loss}",
            _ when MetricColumn.LowerIsBetter(ScoreKey) => $"{ScoreKey} {Score.ToString("G4", CultureInfo.InvariantCulture)}, {loss}",
            _ => $"{ScoreKey} {Score.ToString("P2", CultureInfo.InvariantCulture)}, {loss}",
        };
    }
}

/// <summary>Progress of a background sweep over σ_rel.</summary>
public sealed record SweepStatus(int Total, int Done, bool Running, string? Error);

/// <summary>
/// Post-hoc EMA: reconstructs a σ_rel (or a classic decay, by its equivalent σ_rel at the last snapshot) from the run's
/// snapshots and stores it as a track with a checkpoint. An engine run's reconstruction is evaluated here (metrics through
/// the metric pipeline); a client's is evaluated by its script, which downloads the checkpoint and logs
/// <c>posthoc-&lt;σ_rel&gt;/&lt;key&gt;</c>. Torch work runs on its own thread.
/// </summary>
public sealed class PostHocService(
    IDbContextFactory<EmaLabDbContext> dbFactory,
    DataPaths paths,
    MetricQueries metrics,
    MetricPipeline pipeline,
    CheckpointStore checkpoints,
    RunEventHub hub,
    IExperimentPermissions permissions,
    ILogger<PostHocService> logger)
{
    public const int MaxSweepPoints = 50;
    readonly ConcurrentDictionary<long, SweepStatus> _sweeps = new();
    // One reconstruction at a time: they are CPU-bound, and a slider release during a sweep must not race it on a track's row.
    readonly SemaphoreSlim _gate = new(1, 1);

    public static string TrackName(double sigmaRel) => TrackNames.PostHoc(sigmaRel);

    public SweepStatus? SweepOf(long runId) => _sweeps.GetValueOrDefault(runId);

    /// <summary>The step reconstructions are made at: the run's last snapshot (null without snapshots).</summary>
    public long? LastSnapshotStep(Run run) => PostHocSnapshots.Steps(paths.SnapshotDirectory(run)) is { Count: > 0 } steps ? steps[^1] : null;

    /// <summary>The profiles the run's snapshots hold: the engine run's spec, or a client's first snapshot.</summary>
    public IReadOnlyList<double> SnapshotSigmaRels(Run run)
    {
        if (run.SpecJson is not null) return run.EngineSpec().PostHoc?.SigmaRels ?? [];
        return PostHocSnapshots.FirstHeader(paths.SnapshotDirectory(run)) is { } header ? PostHocSnapshots.SigmaRelsOf(header) ?? [] : [];
    }

    /// <summary>Why the run cannot be reconstructed, or null when it can.</summary>
    public async Task<(Run? Run, string? Problem)> CheckAsync(long runId, CancellationToken cancellationToken = default)
    {
        var run = await RunAsync(runId, cancellationToken);
        return run is null ? (null, null) : (run, ReconstructionProblem(run));
    }

    async Task<Run?> RunAsync(long runId, CancellationToken cancellationToken)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        return await db.Runs.AsNoTracking().Include(r => r.Tracks).SingleOrDefaultAsync(r => r.Id == runId, cancellationToken);
    }

    /// <summary>Why the run's post-hoc EMA cannot be reconstructed now, or null when it can (the API and the panel both ask here).</summary>
    public string? ReconstructionProblem(Run run)
    {
        var runId = run.Id;
        if (run.Origin == RunOrigin.Client)
            return LastSnapshotStep(run) is null
                ? $"Run {runId} has no post-hoc snapshots: log them from the script with emalab.PostHocProfiles (artifacts posthoc/snapshot-<step>.safetensors)."
                : null;
        if (run.EngineSpec().PostHoc is null) return $"Run {runId} was trained without post-hoc EMA; clone it with \"postHoc\" set.";
        if (!run.Status.IsFinished()) return $"Run {runId} is {run.Status.ToApi()}; reconstruct once it has stopped.";
        if (LastSnapshotStep(run) is null) return $"Run {runId} has no post-hoc snapshots yet.";
        return null;
    }

    /// <summary>
    /// The run a caller may reconstruct on: it exists (<see cref="NotFoundException"/>), the caller may EDIT its experiment
    /// (<see cref="PermissionDeniedException"/>), and its snapshots allow it (<see cref="ConflictException"/>).
    /// </summary>
    async Task<Run> ReconstructableAsync(long runId, Caller caller, CancellationToken cancellationToken)
    {
        var run = await EditableAsync(runId, caller, cancellationToken);
        if (ReconstructionProblem(run) is { } problem) throw new ConflictException(problem);
        return run;
    }

    /// <summary>The run, once it exists and the caller may EDIT its experiment (post-hoc results are stored as tracks).</summary>
    async Task<Run> EditableAsync(long runId, Caller caller, CancellationToken cancellationToken)
    {
        var run = await RunAsync(runId, cancellationToken)
            ?? throw new NotFoundException($"Run {runId.ToString(CultureInfo.InvariantCulture)} does not exist.");
        await permissions.RequireAsync(caller, run.ExperimentId, ExperimentPermissionLevel.Edit, cancellationToken);
        return run;
    }

    /// <summary>
    /// Reconstructs the EMA of a σ_rel, or of a classic decay by its σ_rel at the last snapshot, evaluates it and stores it as
    /// a track. Inputs outside what post-hoc EMA reconstructs are refused naming the field, before any work.
    /// </summary>
    public async Task<PostHocResult> ReconstructAsync(long runId, PostHocRequest request, Caller caller, CancellationToken cancellationToken = default)
    {
        if (request.SigmaRel is null == request.Decay is null) throw new RequestValidationException("sigmaRel", "Give either sigmaRel or decay.");
        if (request.SigmaRel is { } s && !PowerFunctionProfile.IsSupported(s))
            throw new RequestValidationException("sigmaRel", PowerFunctionProfile.SupportedRange);
        if (request.Decay is { } d && !(d > 0 && d < 1)) throw new RequestValidationException("decay", "decay must be in (0, 1).");
        var run = await ReconstructableAsync(runId, caller, cancellationToken);
        var step = LastSnapshotStep(run)!.Value;
        var sigma = request.SigmaRel ?? PowerFunctionProfile.SigmaRelOfDecay(request.Decay!.Value, step);
        if (!(sigma <= PowerFunctionProfile.MaxSigmaRel))
            throw new RequestValidationException("decay",
                $"decay {request.Decay} is wider than the whole run (σ_rel {sigma:F3} at step {step}); the widest average is the uniform one.");
        if (!PowerFunctionProfile.IsSupported(sigma))
            throw new RequestValidationException("decay",
                $"decay {request.Decay} is narrower than post-hoc EMA reconstructs (σ_rel {sigma:G3} at step {step}; {PowerFunctionProfile.SupportedRange})");
        return (await ReconstructAsync(run, [sigma]))[0];
    }

    /// <summary>Reconstructs, evaluates and stores each σ_rel; returns their results in order. For callers that checked the
    /// caller and the σ_rels (a group's reconstruction, a sweep).</summary>
    internal Task<List<PostHocResult>> ReconstructAsync(Run run, IReadOnlyList<double> sigmaRels, Action<int>? progress = null) =>
        Task.Factory.StartNew(() =>
            Reconstruct(run, sigmaRels, progress), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    List<PostHocResult> Reconstruct(Run run, IReadOnlyList<double> sigmaRels, Action<int>? progress)
    {
        _gate.Wait();
        try
        {
            return ReconstructEach(run, sigmaRels, progress);
        }
        finally
        {
            _gate.Release();
        }
    }

    List<PostHocResult> ReconstructEach(Run run, IReadOnlyList<double> sigmaRels, Action<int>? progress)
    {
        var directory = paths.SnapshotDirectory(run);
        var step = LastSnapshotStep(run)!.Value;
        var tracked = SnapshotSigmaRels(run);
        // An engine run's reconstructions are scored here, with only the evaluation model and the data (no live model,
        // optimizer or EMA is built); a script's are scored by the script.
        using var evaluator = run.SpecJson is null ? null : new TrackEvaluator(run.EngineSpec());
        var results = new List<PostHocResult>();
        foreach (var sigma in sigmaRels)
        {
            var state = PostHocSnapshots.Reconstruct(directory, tracked, sigma);
            try
            {
                var result = new PostHocResult(TrackName(sigma), sigma, PowerFunctionProfile.DecayOfSigmaRel(sigma, step), step, double.NaN, double.NaN);
                results.Add(evaluator is null ? StoreForScript(run, result, state) : EvaluateAndStore(run, evaluator, result, state));
            }
            finally { foreach (var t in state.Values) t.Dispose(); }
            progress?.Invoke(results.Count);
        }
        if (evaluator is not null) pipeline.FlushAsync().GetAwaiter().GetResult();
        hub.Publish(new RunEvent(RunEventType.PostHoc, run.Id) { Step = results.Count, Message = string.Join(",", results.Select(r => r.Track)) });
        return results;
    }

    /// <summary>An engine run's reconstruction, evaluated: its checkpoint and track row together, then its metrics.</summary>
    PostHocResult EvaluateAndStore(Run run, TrackEvaluator evaluator, PostHocResult reconstructed, Dictionary<string, torch.Tensor> state)
    {
        evaluator.LoadAveraged(state, reconstructed.Track);
        var evaluation = evaluator.Evaluate();
        // A classifier is scored by its accuracy, a diffusion model by its samples' Fréchet distance (the key its runs chart).
        var (scoreKey, score) = evaluator.Diffusion is null ? (MetricKeys.EvalAccuracy, evaluation.Accuracy) : (MetricKeys.EvalFrechetDistance, evaluation.FrechetDistance);
        var result = reconstructed with { Score = score, Loss = evaluation.Loss, ScoreKey = double.IsNaN(score) ? null : scoreKey };
        var label = new CheckpointLabel(run.Id.ToString(CultureInfo.InvariantCulture), result.Track, result.Step, evaluation);
        checkpoints.Save(run.Id, result.Step, evaluator, [(result.Track, stream => CheckpointExport.Export(evaluator, label, stream))], db =>
            RecordTrack(db, run.Id, result));
        if (!double.IsNaN(score)) pipeline.WriteMetric(run.Id, new MetricPoint("", result.Track, scoreKey, result.Step, score));
        pipeline.WriteMetric(run.Id, new MetricPoint("", result.Track, MetricKeys.EvalLoss, result.Step, result.Loss));
        return result;
    }

    /// <summary>
    /// A script's reconstruction, stored as the track's checkpoint (the model's state_dict names, float32) for the script to
    /// download, evaluate and log; its evaluation stays NaN until then.
    /// </summary>
    PostHocResult StoreForScript(Run run, PostHocResult result, Dictionary<string, torch.Tensor> state)
    {
        var tensors = state.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, p.Value)).ToList();
        var metadata = new Dictionary<string, string>
        {
            [CheckpointExport.Keys.Track] = result.Track,
            [CheckpointExport.Keys.Step] = result.Step.ToString(CultureInfo.InvariantCulture),
            [CheckpointExport.Keys.RunId] = run.Uuid,
            ["sigma_rel"] = result.SigmaRel.ToString("R", CultureInfo.InvariantCulture),
        };
        checkpoints.Save(run.Id, result.Step, SafeTensors.ApproximateBytes(tensors),
            [(result.Track, stream => SafeTensors.Write(stream, tensors, metadata))], db => RecordTrack(db, run.Id, result));
        return result;
    }

    static void RecordTrack(EmaLabDbContext db, long runId, PostHocResult result)
    {
        var track = db.Tracks.SingleOrDefault(t => t.RunId == runId && t.Name == result.Track);
        if (track is null) db.Tracks.Add(track = new EmaTrack { RunId = runId, Name = result.Track });
        track.SigmaRel = result.SigmaRel;
        track.Decay = result.EquivalentDecay;
    }

    /// <summary>The steps of the run's raw checkpoints and the LAWAs they allow (an engine run's, once it has stopped).</summary>
    public async Task<LawaOptions> LawaOptionsAsync(Run run, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var kept = await db.Checkpoints.AsNoTracking().Where(c => c.RunId == run.Id && c.Track == TrackNames.Raw)
            .Select(c => c.Step).Distinct().OrderBy(s => s).ToListAsync(cancellationToken);
        string? problem = null;
        if (run.SpecJson is null) problem = $"Run {run.Id} was logged by a script: LAWA after the fact averages the engine's raw checkpoints.";
        else if (!run.Status.IsFinished()) problem = $"Run {run.Id} is {run.Status.ToApi()}; average its checkpoints once it has stopped.";
        var choices = PostHocLawa.Choices(kept);
        if (problem is null && choices.Count == 0)
            problem = $"Run {run.Id} kept raw weights at {(kept.Count == 0 ? "no step" : "step " + string.Join(", ", kept))}: LAWA needs two after step 0 (set checkpointEvery).";
        return new LawaOptions(kept, choices, problem);
    }

    /// <summary>
    /// LAWA of the run's raw checkpoints: the mean of k of them ν steps apart ending at the last, evaluated and stored as
    /// the track <c>posthoc-lawa-k…-every…</c> with a checkpoint, placed on the σ_rel axis at the spread of its copies.
    /// A k or ν the kept checkpoints do not allow is refused naming the field.
    /// </summary>
    public async Task<PostHocResult> ReconstructLawaAsync(long runId, LawaRequest request, Caller caller, CancellationToken cancellationToken = default)
    {
        if (request.Checkpoints is not { } k) throw new RequestValidationException("checkpoints", "checkpoints (k, at least 2) is required.");
        if (request.Every is not { } every || every < 1)
            throw new RequestValidationException("every", "every (ν, the steps between copies) is required and at least 1.");
        var run = await EditableAsync(runId, caller, cancellationToken);
        var options = await LawaOptionsAsync(run, cancellationToken);
        if (options.Problem is not null) throw new ConflictException(options.Problem);
        if (PostHocLawa.Problem(options.KeptSteps, k, every) is { } problem) throw new RequestValidationException(problem.Field, problem.Reason);
        return await ReconstructLawaAsync(run, options, k, every);
    }

    Task<PostHocResult> ReconstructLawaAsync(Run run, LawaOptions options, int checkpoints, long every) =>
        Task.Factory.StartNew(() =>
        {
            _gate.Wait();
            try
            {
                var last = options.KeptSteps.Max();
                var steps = PostHocLawa.StepsOf(last, checkpoints, every);
                var sigma = PostHocLawa.SigmaRel(steps, last);
                var copies = new List<SafeTensorsContent>();
                try
                {
                    Dictionary<long, string> files;
                    using (var db = dbFactory.CreateDbContext())
                        files = db.Checkpoints.AsNoTracking().Where(c => c.RunId == run.Id && c.Track == TrackNames.Raw && steps.Contains(c.Step))
                            .ToDictionary(c => c.Step, c => c.RelativePath);
                    foreach (var step in steps) copies.Add(SafeTensors.Read(paths.Absolute(files[step])));
                    var state = PostHocLawa.Mean(copies.Select(c => c.Tensors).ToList());
                    try
                    {
                        using var evaluator = new TrackEvaluator(run.EngineSpec());
                        var result = new PostHocResult(TrackNames.PostHocLawa(checkpoints, every), sigma, PowerFunctionProfile.DecayOfSigmaRel(sigma, last), last,
                            double.NaN, double.NaN);
                        result = EvaluateAndStore(run, evaluator, result, state);
                        pipeline.FlushAsync().GetAwaiter().GetResult();
                        hub.Publish(new RunEvent(RunEventType.PostHoc, run.Id) { Step = 1, Message = result.Track });
                        return result;
                    }
                    finally { foreach (var t in state.Values) t.Dispose(); }
                }
                finally { foreach (var c in copies) c.Dispose(); }
            }
            finally { _gate.Release(); }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>
    /// Starts a background sweep of <see cref="SweepRequest.Count"/> σ_rel values spaced evenly in log scale; a range outside
    /// what post-hoc EMA reconstructs is refused naming the field, a sweep of the run already running is a conflict.
    /// </summary>
    public async Task<SweepStatus> StartSweepAsync(long runId, SweepRequest request, Caller caller, CancellationToken cancellationToken = default)
    {
        if (!PowerFunctionProfile.IsSupported(request.From)) throw new RequestValidationException("from", PowerFunctionProfile.SupportedRange);
        if (!(PowerFunctionProfile.IsSupported(request.To) && request.To > request.From))
            throw new RequestValidationException("to", "to must be above from; " + PowerFunctionProfile.SupportedRange);
        if (request.Count is < 2 or > MaxSweepPoints) throw new RequestValidationException("count", $"count must be from 2 to {MaxSweepPoints}.");
        var run = await ReconstructableAsync(runId, caller, cancellationToken);
        if (!StartSweep(run, request.From, request.To, request.Count)) throw new ConflictException($"A sweep of run {runId} is already running.");
        return SweepOf(runId)!;
    }

    bool StartSweep(Run run, double from, double to, int count)
    {
        var status = new SweepStatus(count, 0, true, null);
        if (_sweeps.TryGetValue(run.Id, out var existing) && existing.Running) return false;
        _sweeps[run.Id] = status;
        var sigmas = Enumerable.Range(0, count).Select(i => count == 1 ? from : from * Math.Pow(to / from, (double)i / (count - 1))).ToList();
        _ = ReconstructAsync(run, sigmas, done =>
        {
            _sweeps[run.Id] = status with { Done = done };
            hub.Publish(new RunEvent(RunEventType.Sweep, run.Id) { Step = done, TotalSteps = count });
        }).ContinueWith(t =>
        {
            var error = t.Exception?.GetBaseException();
            if (error is not null) logger.LogError(error, "Post-hoc sweep of run {RunId} failed", run.Id);
            _sweeps[run.Id] = _sweeps[run.Id] with { Running = false, Error = error?.Message };
            hub.Publish(new RunEvent(RunEventType.Sweep, run.Id) { Step = _sweeps[run.Id].Done, TotalSteps = count, Message = error?.Message });
        }, TaskScheduler.Default);
        return true;
    }

    /// <summary>Everything the post-hoc panel and API show: results, the sweep, the run's classic EMAs on the σ_rel axis, snapshot storage.</summary>
    public async Task<PostHocOverview> OverviewAsync(Run run, CancellationToken cancellationToken = default)
    {
        // The sweep's state first, then what it stored: a sweep seen finished has its results in what is read after it
        // (read the other way round, a sweep ending in between was shown done with its last results missing).
        var sweep = SweepOf(run.Id);
        var directory = paths.SnapshotDirectory(run);
        var steps = PostHocSnapshots.Steps(directory);
        var end = steps.Count > 0 ? steps[^1] : run.Step;
        var (tags, roles, accuracy, loss) = await EvaluationsAsync(run, cancellationToken);
        // An engine run's rules are its spec's; a script's, those its companion recorded (emalab.tracks), if any.
        var rules = run.SpecJson is not null ? run.EngineSpec().EmaRules() : ClientTrackRules.Parse(tags.GetValueOrDefault(TagNames.Tracks)) ?? [];
        var tracked = end < 1 ? [] : rules.Select(rule =>
        {
            var a = accuracy.FirstOrDefault(s => s.Track == rule.Name);
            var l = loss.FirstOrDefault(s => s.Track == rule.Name);
            // A run with no score (a diffusion run where no reference network covers the data) is placed by its loss alone.
            return (a is null && roles.Score is not null) || l is null ? null
                : new TrackedOnSigmaAxis(rule.Name, double.IsNaN(rule.Decay) ? null : rule.Decay, SigmaRelOf(run.Id, rule, end), a?.Final ?? double.NaN, l.Final);
        }).OfType<TrackedOnSigmaAxis>().ToList();
        List<EmaTrack> postHoc;
        await using (var db = await dbFactory.CreateDbContextAsync(cancellationToken))
            postHoc = await db.Tracks.AsNoTracking().Where(t => t.RunId == run.Id && t.SigmaRel != null).ToListAsync(cancellationToken);
        // LAWA of checkpoints is not a point of the σ_rel reconstructions: it is placed among the run's tracks.
        var lawas = postHoc.Where(t => t.Name.StartsWith(TrackNames.PostHocLawaPrefix, StringComparison.Ordinal)).ToList();
        foreach (var lawa in lawas)
            if (accuracy.FirstOrDefault(s => s.Track == lawa.Name) is var a && (a is not null || roles.Score is null)
                && loss.FirstOrDefault(s => s.Track == lawa.Name) is { } l)
                tracked.Add(new TrackedOnSigmaAxis(lawa.Name, null, lawa.SigmaRel!.Value, a?.Final ?? double.NaN, l.Final));
        return new PostHocOverview(sweep, Results(run, postHoc.Except(lawas), roles, accuracy, loss), tracked,
            SnapshotSigmaRels(run), steps.Count, PostHocSnapshots.SizeBytes(directory), roles.Score, roles.LowerIsBetter);
    }

    /// <summary>The run's tags and metric roles, and the best and final score and loss of its tracks under the keys its roles name.</summary>
    async Task<(Dictionary<string, string> Tags, MetricRoles Roles, List<TrackSummary> Score, List<TrackSummary> Loss)> EvaluationsAsync(Run run,
        CancellationToken cancellationToken)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var tags = await db.RunTags.AsNoTracking().Where(t => t.RunId == run.Id && t.Key.StartsWith(TagNames.EmaLabPrefix))
            .ToDictionaryAsync(t => t.Key, t => t.Value, cancellationToken);
        var roles = MetricRoles.For(run, tags.GetValueOrDefault(TagNames.MetricRoles), metrics);
        var score = roles.Score is { } scoreKey ? metrics.Summaries([run.Id], scoreKey, roles.LowerIsBetter) : [];
        var loss = roles.Loss is { } lossKey ? metrics.Summaries([run.Id], lossKey, lowerIsBetter: true) : [];
        return (tags, roles, score, loss);
    }

    /// <summary>A track's σ_rel at the run's end, kept: it runs the rule's schedule over every step, and the panel asks on each refresh.</summary>
    double SigmaRelOf(long runId, EmaRule rule, long end)
    {
        if (_sigmaRels.Count > 10_000) _sigmaRels.Clear(); // a bound, not an eviction policy: recomputing is cheap enough
        return _sigmaRels.GetOrAdd((runId, rule.Name, end), _ => EmaMath.SigmaRel(rule, end));
    }

    readonly ConcurrentDictionary<(long RunId, string Track, long End), double> _sigmaRels = new();

    /// <summary>
    /// The run's σ_rel reconstructions with their evaluations from the run's summaries (<see cref="EvaluationsAsync"/>); a
    /// script's reconstruction is listed with NaN until the script has logged its evaluation.
    /// </summary>
    static List<PostHocResult> Results(Run run, IEnumerable<EmaTrack> tracks, MetricRoles roles, List<TrackSummary> score, List<TrackSummary> loss)
    {
        var client = run.Origin == RunOrigin.Client;
        return tracks.Select(t =>
        {
            var a = score.FirstOrDefault(s => s.Track == t.Name);
            var l = loss.FirstOrDefault(s => s.Track == t.Name);
            if (!client && ((a is null && roles.Score is not null) || l is null)) return null;
            return new PostHocResult(t.Name, t.SigmaRel!.Value, t.Decay ?? double.NaN, a?.FinalStep ?? l?.FinalStep ?? 0,
                a?.Final ?? double.NaN, l?.Final ?? double.NaN, roles.Score);
        }).OfType<PostHocResult>().OrderBy(r => r.SigmaRel).ToList();
    }
}
