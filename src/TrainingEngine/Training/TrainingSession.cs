using System.Diagnostics;
using System.Globalization;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Data;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Training;

/// <summary>
/// One training run in memory: the live model and its optimizer, the EMA shadows, and a
/// <see cref="TrackEvaluator"/> holding the data and a separate evaluation model. Tracks (raw weights or one
/// EMA) are evaluated and exported through the evaluator, so reading a shadow never touches the live weights
/// or the optimizer. Not thread-safe: drive it from one (long-running) thread.
/// </summary>
public sealed class TrainingSession : IDisposable
{
    static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>How often the run records what it costs (<see cref="SystemSampler"/>; MLflow's default, 10 s); zero: never.</summary>
    public TimeSpan SystemMetricsInterval { get; set; } = TimeSpan.FromSeconds(10);
    SystemSampler? _system;
    TimeSpan _lastSystemSample;

    readonly BatchSchedule _batches;
    readonly nn.Module _model;
    readonly Optimizer _optimizer;
    readonly List<Action<long>> _afterStep = [];
    readonly Action<long, double> _optimizerStep;
    readonly Augmentation? _augmentation;
    float[] _augmented = [];

    TrainingSession(RunSpec spec, string runId)
    {
        Evaluator = new TrackEvaluator(spec);
        Spec = spec;
        RunId = runId;
        _batches = new BatchSchedule(Data.Train.Count, spec.BatchSize, spec.Seed);
        TotalSteps = spec.TotalSteps(_batches.BatchesPerEpoch);

        using (var generator = new Generator((ulong)spec.Seed))
            _model = ModelFactory.Create(Architecture, generator);
        _model.train();
        _optimizer = CreateOptimizer(spec, _model);
        if (spec.RandomCropPadding > 0 || spec.HorizontalFlip)
            _augmentation = new Augmentation(spec.RandomCropPadding, spec.HorizontalFlip, fill: Data.Normalization.Apply([0])[0]);
        Ema = new ExponentialMovingAverage(_model, spec.Ema, new EmaRunShape(spec.BatchSize, _batches.BatchesPerEpoch, TotalSteps), spec.Threads);

        if (spec.PostHoc is { } postHoc)
        {
            PostHocEma = ExponentialMovingAverage.PowerFunction(_model, postHoc.SigmaRels, spec.Ema.BnPolicy, spec.Threads);
            var every = postHoc.SnapshotInterval(TotalSteps);
            AddStepHook(step =>
            {
                PostHocEma.Update(step);
                if (SnapshotDirectory is { } directory && (step % every == 0 || step == TotalSteps)) PostHocSnapshots.Write(PostHocEma, postHoc.SigmaRels, directory, step);
            });
        }

        if (spec.SwitchEma is { } switchEma)
            Switch = new SwitchEma(switchEma, Ema, switchEma.Resolve(Ema.Shadows.Select(x => x.Rule).ToList())
                ?? throw new InvalidSettingException("switchEma.track", $"'{switchEma.Track}' is not one of this run's EMA tracks."));
        if (spec.EmaApplication == EmaApplication.Fused)
        {
            // The EMA is part of the step itself, as TF groups the EMA op into the train op.
            _optimizerStep = (step, learningRate) =>
            {
                _optimizer.Step(learningRate);
                UpdateAverages(step);
            };
        }
        else
        {
            _optimizerStep = (_, learningRate) => _optimizer.Step(learningRate);
            AddStepHook(UpdateAverages);
        }
    }

    public static TrainingSession Create(RunSpec spec, string runId = "") => new(spec, runId);

    /// <summary>The shadows' update after a step, then Switch EMA's copy into the trained weights when it is due.</summary>
    void UpdateAverages(long step)
    {
        Ema.Update(step);
        Switch?.AfterUpdate(step, _model);
    }

    /// <summary>Switch EMA, when the run has it: it changes the trained weights themselves.</summary>
    public SwitchEma? Switch { get; }

    public string RunId { get; }
    public RunSpec Spec { get; }
    /// <summary>Evaluates tracks; holds the run's data.</summary>
    public TrackEvaluator Evaluator { get; }
    public DatasetSplits Data => Evaluator.Data;
    public ModelArchitecture Architecture => Evaluator.Architecture;
    public ExponentialMovingAverage Ema { get; }
    /// <summary>The power-function EMAs of post-hoc EMA, when the run has them.</summary>
    public ExponentialMovingAverage? PostHocEma { get; }
    /// <summary>Where post-hoc snapshots are written (nothing is written while null).</summary>
    public string? SnapshotDirectory { get; set; }
    /// <summary>The last completed step (0 before training).</summary>
    public long Step { get; private set; }
    public long TotalSteps { get; }
    public int BatchesPerEpoch => _batches.BatchesPerEpoch;
    /// <summary>The live model (train mode). Exposed for tests and export; do not modify.</summary>
    public nn.Module LiveModel => _model;
    internal Optimizer Optimizer => _optimizer;
    public IReadOnlyList<string> Tracks => [MetricKeys.RawTrack, .. Ema.Shadows.Select(s => s.Track)];

    /// <summary>Registers a callback run after every optimizer step with the step number (TF's hook style).</summary>
    public void AddStepHook(Action<long> hook) => _afterStep.Add(hook);

    /// <summary>
    /// Trains until the planned last step, cancellation, divergence or <paramref name="stopAfterStep"/>.
    /// Evaluates every track at step 0 (on a fresh session), every eval interval and at the last step.
    /// </summary>
    public TrainingResult Train(ITrainingObserver observer, CancellationToken cancellationToken = default, long? stopAfterStep = null)
    {
        try
        {
            return TrainUntilStopped(observer, cancellationToken, stopAfterStep);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Cancelled inside an evaluation: the weights are those of the last completed step.
            return new TrainingResult(TrainingOutcome.Cancelled, Step, $"Cancelled at step {Step:N0}.", new Dictionary<string, EvalResult>());
        }
    }

    TrainingResult TrainUntilStopped(ITrainingObserver observer, CancellationToken cancellationToken, long? stopAfterStep)
    {
        set_num_threads(Spec.Threads);
        IReadOnlyDictionary<string, EvalResult> lastEvaluation = new Dictionary<string, EvalResult>();
        // Later calls continue a run trained in slices: only the first one announces the start (or the resume).
        if (!_progressClock.IsRunning)
        {
            _progressClock.Start();
            _lastReportStep = Step;
            if (Step == 0)
            {
                LogStart(observer);
                lastEvaluation = EvaluateAll(observer, cancellationToken);
            }
            else
            {
                observer.OnLog(TrainingLogLevel.Info, $"Resuming at step {Step:N0} of {TotalSteps:N0}.");
            }
        }

        while (Step < TotalSteps)
        {
            if (cancellationToken.IsCancellationRequested)
                return new TrainingResult(TrainingOutcome.Cancelled, Step, $"Cancelled at step {Step:N0}.", lastEvaluation);
            if (stopAfterStep is { } stop && Step >= stop)
                return new TrainingResult(TrainingOutcome.Paused, Step, null, lastEvaluation);

            var step = Step + 1;
            _trainingTime.Start();
            var loss = TrainStep(step);
            _trainingTime.Stop();
            if (!double.IsFinite(loss))
            {
                var message = $"Diverged at step {step:N0}: the training loss is {loss.ToString(CultureInfo.InvariantCulture)}.";
                observer.OnLog(TrainingLogLevel.Error, message);
                return new TrainingResult(TrainingOutcome.Diverged, step, message, lastEvaluation);
            }
            Step = step;
            observer.OnMetric(new MetricPoint(RunId, MetricKeys.RawTrack, MetricKeys.TrainLoss, step, loss));

            if (step % Spec.EvalInterval == 0 || step == TotalSteps)
            {
                observer.OnMetric(new MetricPoint(RunId, MetricKeys.RawTrack, MetricKeys.LearningRate, step, LearningRateAt(step)));
                lastEvaluation = EvaluateAll(observer, cancellationToken);
            }
            ReportProgress(observer, force: step == TotalSteps);
            ReportSystem(observer);
        }
        observer.OnLog(TrainingLogLevel.Info, $"Completed {TotalSteps:N0} steps.");
        return new TrainingResult(TrainingOutcome.Completed, Step, null, lastEvaluation);
    }

    void LogStart(ITrainingObserver observer)
    {
        var e = Spec.Ema;
        observer.OnLog(TrainingLogLevel.Info, string.Create(CultureInfo.InvariantCulture,
            $"Training {Architecture.Kind} ({ModelFactory.ParameterCount(_model):N0} parameters) on {Spec.Dataset} for {TotalSteps:N0} steps " +
            $"(batch {Spec.BatchSize}, {BatchesPerEpoch} batches an epoch, seed {Spec.Seed}, {Spec.Threads} thread(s)) with {Spec.Optimizer} " +
            $"lr={Spec.LearningRate} schedule={Spec.Schedule}{Recipe()}; EMA tracks {string.Join(", ", Ema.Shadows.Select(s => s.Track))} (shared: warm-up {(e.Warmup ? "on" : "off")}, " +
            $"zero-debias {(e.ZeroDebias ? "on" : "off")}, every {e.Every}, from step {e.StartStep}, batch norm {e.BnPolicy.ToString().ToLowerInvariant()}, " +
            $"{Spec.EmaApplication.ToString().ToLowerInvariant()} application)."));
        if (Evaluator.Diffusion is { } diffusion)
        {
            var d = diffusion.Settings;
            observer.OnLog(TrainingLogLevel.Info, string.Create(CultureInfo.InvariantCulture,
                $"Diffusion: {d.Schedule} noise schedule over {d.Timesteps:N0} timesteps, ε-prediction; samples by DDIM in {d.SamplingSteps} steps, " +
                $"{d.Samples:N0} scored {(d.QualityInterval is { } every ? $"every {every:N0} steps" : "at every evaluation")} and {d.FinalSamples:N0} at the last step."));
            if (!diffusion.ScoresFrechetDistance)
                observer.OnLog(TrainingLogLevel.Warning, $"No reference network covers {Spec.Dataset}: the samples' Fréchet distance is scored on " +
                    $"{FeatureNetwork.FashionMnistDataset} only. This run reports the denoising loss and keeps the sample grids.");
        }
        foreach (var shadow in Ema.Shadows)
        {
            var share = EmaMath.InitialWeightShare(shadow.Rule, TotalSteps);
            if (share > 0.1 && !double.IsNaN(shadow.Decay))
                observer.OnLog(TrainingLogLevel.Warning, string.Create(CultureInfo.InvariantCulture,
                    $"{shadow.Track}: after {TotalSteps:N0} steps the initial weights still make up {share:P0} of this average " +
                    $"(half-life {EmaMath.HalfLife(shadow.Decay):N0} steps); turn on warm-up or zero-debias, or pick a smaller decay."));
        }
    }

    /// <summary>The recipe's parts that are on, for the start line (", warm-up 500 steps, clip 1, ...").</summary>
    string Recipe()
    {
        var parts = new List<string>();
        if (Spec.WeightDecay > 0) parts.Add(string.Create(CultureInfo.InvariantCulture, $"weight decay {Spec.WeightDecay}{(Spec.DecayNormsAndBiases ? "" : " (not on norms and biases)")}"));
        if (Spec.LearningRateWarmup > 0) parts.Add($"warm-up {Spec.LearningRateWarmup:N0} steps");
        if (Spec.GradientClipNorm > 0) parts.Add(string.Create(CultureInfo.InvariantCulture, $"gradient norm clipped at {Spec.GradientClipNorm}"));
        if (Spec.LabelSmoothing > 0) parts.Add(string.Create(CultureInfo.InvariantCulture, $"label smoothing {Spec.LabelSmoothing}"));
        if (Spec.RandomCropPadding > 0) parts.Add($"random crop ±{Spec.RandomCropPadding} px");
        if (Spec.HorizontalFlip) parts.Add("horizontal flip");
        return string.Concat(parts.Select(p => ", " + p));
    }

    // Progress is throttled across calls to Train: a caller that trains in slices (to save bundles) still
    // reports every ProgressInterval, with the rate measured since the previous report.
    readonly Stopwatch _progressClock = new();
    TimeSpan _lastReportTime;
    long _lastReportStep;

    void ReportProgress(ITrainingObserver observer, bool force)
    {
        var now = _progressClock.Elapsed;
        var elapsed = (now - _lastReportTime).TotalSeconds;
        if (!force && elapsed < ProgressInterval.TotalSeconds) return;
        var rate = (Step - _lastReportStep) / Math.Max(elapsed, 1e-9);
        TimeSpan? remaining = rate > 0 ? TimeSpan.FromSeconds((TotalSteps - Step) / rate) : null;
        observer.OnProgress(new TrainingProgress(RunId, Step, TotalSteps, rate, remaining));
        _lastReportTime = now;
        _lastReportStep = Step;
    }

    /// <summary>The run's cost since the last sample, on the raw track at the current step, once every <see cref="SystemMetricsInterval"/>.</summary>
    void ReportSystem(ITrainingObserver observer)
    {
        if (SystemMetricsInterval <= TimeSpan.Zero) return;
        var now = _progressClock.Elapsed;
        if (_system is null)
        {
            (_system, _lastSystemSample) = (new SystemSampler(Step), now);
            return;
        }
        if (now - _lastSystemSample < SystemMetricsInterval) return;
        _lastSystemSample = now;
        foreach (var (key, value) in _system.Sample(Step)) observer.OnMetric(new MetricPoint(RunId, MetricKeys.RawTrack, key, Step, value));
    }

    double TrainStep(long step)
    {
        using var scope = NewDisposeScope();

        var indices = TrackEvaluator.Indices(_batches.IndicesOf(step));
        var x = Evaluator.TrainX.index_select(0, indices);
        if (_augmentation is not null) x = Augment(x, step);
        _optimizer.ZeroGrad();
        var loss = _model is DiffusionUNet denoiser ? DenoisingLoss(denoiser, x, step)
            : nn.functional.cross_entropy(((nn.Module<Tensor, Tensor>)_model).forward(x), Evaluator.TrainY.index_select(0, indices), label_smoothing: Spec.LabelSmoothing);
        loss.backward();
        var value = loss.item<float>();
        if (!float.IsFinite(value)) return value;
        if (Spec.GradientClipNorm > 0) _optimizer.ClipGradientNorm(Spec.GradientClipNorm);
        _optimizerStep(step, LearningRateAt(step));
        foreach (var hook in _afterStep) hook(step);
        return value;
    }

    /// <summary>
    /// DDPM's training loss for a batch of clean images: each noised at a timestep drawn uniformly from the schedule's, the
    /// U-Net's prediction of the noise scored by mean squared error (Ho et al.'s simple loss). The timesteps and noise come
    /// from a generator seeded by the run's seed and the step, so a resumed run draws what it would have drawn.
    /// </summary>
    Tensor DenoisingLoss(DiffusionUNet denoiser, Tensor clean, long step)
    {
        var schedule = Evaluator.Diffusion!.Schedule;
        using var generator = new Generator(DeterministicShuffle.Draw(Spec.Seed, stream: -3, index: step));
        var timesteps = randint(0, schedule.Timesteps, [clean.shape[0]], ScalarType.Int64, generator: generator);
        var noise = randn(clean.shape, generator: generator);
        return nn.functional.mse_loss(denoiser.forward(schedule.AddNoise(clean, noise, timesteps), timesteps), noise);
    }

    /// <summary>A batch's images augmented (a new tensor; <paramref name="x"/> belongs to the step's dispose scope).</summary>
    Tensor Augment(Tensor x, long step)
    {
        var count = (int)x.shape[0];
        var size = count * Data.Height * Data.Width;
        if (_augmented.Length != size) _augmented = new float[size];
        _augmentation!.Apply(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(x.bytes), _augmented, count, Data.Height, Data.Width, Spec.Seed, step);
        return tensor(_augmented, x.shape);
    }

    /// <summary>The learning rate used for the 1-based step (<see cref="RunSpec.LearningRateAt"/>).</summary>
    public double LearningRateAt(long step) => Spec.LearningRateAt(step, TotalSteps);

    /// <summary>Time in training steps since the previous evaluation (reported with each evaluation, then reset).</summary>
    readonly Stopwatch _trainingTime = new();

    /// <summary>
    /// Evaluates every track: on the spec's fixed subset of the held-out split at intermediate points, on all of it at the
    /// last step. Reports the evaluation's time beside the training time since the previous one (the run's time split).
    /// </summary>
    IReadOnlyDictionary<string, EvalResult> EvaluateAll(ITrainingObserver observer, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var subset = Step < TotalSteps;
        var results = new Dictionary<string, EvalResult>();
        var images = new List<TrainingImage>();
        if (Evaluator.Diffusion is { } diffusion)
        {
            // Sample quality where it is due (the last step's with more samples); each track's grid of the same samples' noise.
            var samples = !diffusion.Settings.ScoresSamplesAt(Step, TotalSteps) ? 0 : subset ? diffusion.Settings.Samples : diffusion.Settings.FinalSamples;
            foreach (var track in Tracks)
            {
                LoadTrack(track);
                var (result, grid) = Evaluator.EvaluateDenoiser(subset, samples, cancellationToken);
                results[track] = result;
                if (grid is not null) images.Add(new TrainingImage(RunId, track, DiffusionScorer.GridKey, Step, grid));
            }
        }
        else
        {
            // The last evaluation (every held-out image) also counts each track's confusion matrix.
            var classes = Architecture.Classes;
            foreach (var track in Tracks)
            {
                var confusion = subset ? null : new long[classes * classes];
                results[track] = Evaluate(track, subset, cancellationToken, confusion);
                if (confusion is not null) images.Add(new TrainingImage(RunId, track, ConfusionMatrixImage.Key, Step, ConfusionMatrixImage.Render(confusion, classes)));
            }
        }
        // What a bfloat16/float16 shadow loses: its distance to the float32 shadow of the same rule, when the run has one.
        var rules = Ema.Shadows.Select(s => s.Rule).ToList();
        var gaps = new List<MetricPoint>();
        for (var k = 0; k < rules.Count; k++)
            if (EmaRule.Float32Twin(rules[k], rules) is { } twin)
                gaps.Add(new MetricPoint(RunId, rules[k].Name, MetricKeys.Float32Gap, Step, Ema.RelativeDistance(k, rules.IndexOf(twin))));
        var evaluationSeconds = clock.Elapsed.TotalSeconds;

        // Reported only once every track is evaluated: a cancel during an evaluation leaves no partial step.
        foreach (var (track, result) in results)
        {
            observer.OnMetric(new MetricPoint(RunId, track, MetricKeys.EvalLoss, Step, result.Loss));
            if (!double.IsNaN(result.Accuracy)) observer.OnMetric(new MetricPoint(RunId, track, MetricKeys.EvalAccuracy, Step, result.Accuracy));
            if (!double.IsNaN(result.FrechetDistance)) observer.OnMetric(new MetricPoint(RunId, track, MetricKeys.EvalFrechetDistance, Step, result.FrechetDistance));
        }
        foreach (var gap in gaps) observer.OnMetric(gap);
        foreach (var image in images) observer.OnImage(image);
        observer.OnMetric(new MetricPoint(RunId, MetricKeys.RawTrack, MetricKeys.TrainingSeconds, Step, _trainingTime.Elapsed.TotalSeconds));
        observer.OnMetric(new MetricPoint(RunId, MetricKeys.RawTrack, MetricKeys.EvaluationSeconds, Step, evaluationSeconds));
        _trainingTime.Reset();

        (_evaluated, _evaluatedStep) = (subset ? null : results, Step);
        var scored = Evaluator.Diffusion?.ImagesScored(subset) ?? Evaluator.ImagesScored(subset);
        var of = scored < Data.Eval.Count ? $" (on {scored:N0} of {Data.Eval.Count:N0} held-out images)" : "";
        observer.OnLog(TrainingLogLevel.Info, $"Step {Step:N0}{of}: " + string.Join("; ", results.Select(r => $"{r.Key} {Describe(r.Value)}")));
        return results;
    }

    /// <summary>A track's scores for the log: accuracy and loss, or a denoiser's loss and (when scored) Fréchet distance.</summary>
    string Describe(EvalResult result) => Evaluator.Diffusion is not null
        ? string.Create(CultureInfo.InvariantCulture, $"denoising loss {result.Loss:G4}{(double.IsNaN(result.FrechetDistance) ? "" : $" FD {result.FrechetDistance:G4}")}")
        : string.Create(CultureInfo.InvariantCulture, $"accuracy {result.Accuracy.ToString("P2", CultureInfo.InvariantCulture)} loss {result.Loss:G4}");

    /// <summary>The last evaluation of every track when it scored the whole held-out split (the last step's), and its step.</summary>
    IReadOnlyDictionary<string, EvalResult>? _evaluated;
    long _evaluatedStep = -1;

    /// <summary>
    /// The track's evaluation on the whole held-out split at the current step, when training has just made it (the last
    /// step's): exporting the track then costs no second evaluation — for a diffusion run, no second set of samples.
    /// </summary>
    public EvalResult? FullEvaluationNow(string track) =>
        _evaluatedStep == Step && _evaluated?.GetValueOrDefault(track) is { } result ? result : null;

    /// <summary>Evaluates one track (<c>raw</c> or <c>ema-&lt;decay&gt;</c>) on the whole held-out split.</summary>
    public EvalResult Evaluate(string track) => Evaluate(track, subset: false, CancellationToken.None);

    EvalResult Evaluate(string track, bool subset, CancellationToken cancellationToken, long[]? confusion = null)
    {
        LoadTrack(track);
        return Evaluator.Evaluate(subset, cancellationToken, confusion);
    }

    /// <summary>
    /// Puts a track's weights into the evaluator's model and returns it (valid until the next load): the live
    /// state for <c>raw</c>, the shadow's value for an EMA (batch-norm statistics per the run's policy).
    /// </summary>
    public nn.Module LoadTrack(string track)
    {
        if (track == MetricKeys.RawTrack)
        {
            Evaluator.LoadRaw(_model);
        }
        else
        {
            var k = Ema.Shadows.ToList().FindIndex(s => s.Track == track);
            if (k < 0) throw new ArgumentException($"Unknown track '{track}'; this run has {string.Join(", ", Tracks)}.", nameof(track));
            Evaluator.LoadShadow(Ema, k);
        }
        return Evaluator.Model;
    }

    static Optimizer CreateOptimizer(RunSpec spec, nn.Module model) => spec.Optimizer switch
    {
        RunSpec.Sgd => new Sgd(model, spec.Momentum, spec.WeightDecay, spec.Threads, spec.DecayNormsAndBiases),
        RunSpec.Adam => new Optimization.Adam(model, spec.WeightDecay, decoupled: false, spec.Threads, spec.DecayNormsAndBiases),
        RunSpec.AdamW => new Optimization.Adam(model, spec.WeightDecay, decoupled: true, spec.Threads, spec.DecayNormsAndBiases),
        _ => throw new ArgumentException($"Unknown optimizer '{spec.Optimizer}'.", nameof(spec)),
    };

    /// <summary>Restores the state a resume bundle captured (used by <see cref="Checkpoints.ResumeBundle"/>).</summary>
    internal void RestoreStep(long step) => Step = step;

    public void Dispose()
    {
        Ema.Dispose();
        PostHocEma?.Dispose();
        _optimizer.Dispose();
        _model.Dispose();
        Evaluator.Dispose();
    }
}
