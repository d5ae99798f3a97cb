using EmaLab.TrainingEngine.Averaging;
using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>
/// Each preset against a direct re-implementation of its library's update loop, written with the same torch ops
/// the library calls (lerp_, sub_, mul/add on float32 tensors, decays as Python floats or float32 tensors), on a
/// scripted weight sequence: the engine's shadows must be identical bit for bit at every step.
/// </summary>
public class EmaPresetTests
{
    const int Steps = 160;
    const int Size = 1003; // not a multiple of the vector width: the tail runs too

    /// <summary>A one-tensor "model" the test moves step by step.</summary>
    sealed class Weights : nn.Module
    {
        public readonly TorchSharp.Modules.Parameter W;

        public Weights(Tensor initial) : base(nameof(Weights))
        {
            W = new TorchSharp.Modules.Parameter(initial.clone());
            register_parameter("w", W);
        }
    }

    /// <summary>A random walk with steps of very different sizes, so rounding differences would show.</summary>
    static List<Tensor> Trajectory(int seed)
    {
        using var generator = new Generator((ulong)seed);
        var w = randn([Size], generator: generator);
        var list = new List<Tensor> { w };
        for (var t = 1; t <= Steps; t++)
        {
            var scale = t % 7 == 0 ? 1.0 : 0.01;
            list.Add(list[^1] + randn([Size], generator: generator) * scale);
        }
        return list; // list[0] is the initial weights, list[t] the weights after step t
    }

    /// <summary>Runs the engine with one track (or, without one, <paramref name="run"/>'s compact form) and returns the value read after every step.</summary>
    static List<Tensor> Engine(EmaTrackSettings? track, List<Tensor> trajectory, EmaSettings? run = null, EmaRunShape? shape = null)
    {
        using var model = new Weights(trajectory[0]);
        using var reader = new Weights(zeros(Size));
        using var ema = new ExponentialMovingAverage(model, track is null ? run! : (run ?? new EmaSettings()) with { Tracks = [track] }, shape);
        var read = new List<Tensor>();
        for (var t = 1; t <= Steps; t++)
        {
            using (no_grad()) model.W.copy_(trajectory[t]);
            ema.Update(t);
            ema.WriteInto(0, reader);
            read.Add(reader.W.detach().clone());
        }
        return read;
    }

    static void AssertSame(List<Tensor> reference, List<Tensor> engine, string preset)
    {
        for (var t = 1; t <= Steps; t++)
            TensorAssert.Identical(reference[t - 1], engine[t - 1], $"{preset}: the shadow differs from the library's loop after step {t}");
    }

    [Fact]
    public void Timm_ModelEmaV3_with_and_without_warmup()
    {
        var trajectory = Trajectory(1);
        foreach (var (warmup, after) in new[] { (false, 0L), (true, 0L), (true, 12L) })
        {
            // ModelEmaV3.get_decay(step) in Python floats; train.py calls update(model, step=num_updates) after each optimizer step.
            double GetDecay(long step)
            {
                step = Math.Max(0, step - after - 1);
                if (step <= 0) return 0.0;
                if (!warmup) return 0.995;
                var decay = 1 - Math.Pow(1 + step / 1.0, -(2.0 / 3.0));
                return Math.Max(Math.Min(decay, 0.995), 0.0);
            }
            var ema = trajectory[0].clone(); // deepcopy(model)
            var reference = new List<Tensor>();
            for (var t = 1; t <= Steps; t++)
            {
                ema.lerp_(trajectory[t], tensor((float)(1.0 - GetDecay(t))));
                reference.Add(ema.clone());
            }
            var track = new EmaTrackSettings { Preset = EmaPresets.Timm, Decay = 0.995, Warmup = warmup ? EmaWarmup.Power : null, UpdateAfterStep = after };
            AssertSame(reference, Engine(track, trajectory), $"timm warmup={warmup} after={after}");
        }
    }

    [Fact]
    public void Diffusers_EMAModel_with_and_without_warmup()
    {
        var trajectory = Trajectory(2);
        foreach (var (warmup, after) in new[] { (false, 0L), (true, 0L), (false, 9L) })
        {
            double GetDecay(long optimizationStep)
            {
                var step = Math.Max(0, optimizationStep - after - 1);
                if (step <= 0) return 0.0;
                var value = warmup ? 1 - Math.Pow(1 + step / 1.0, -(2.0 / 3.0)) : (1.0 + step) / (10.0 + step);
                value = Math.Min(value, 0.99);
                return Math.Max(value, 0.0);
            }
            var shadow = trajectory[0].clone(); // p.clone().detach() at construction
            var reference = new List<Tensor>();
            for (var optimizationStep = 1; optimizationStep <= Steps; optimizationStep++)
            {
                var oneMinusDecay = 1 - GetDecay(optimizationStep);
                shadow.sub_((shadow - trajectory[optimizationStep]) * oneMinusDecay);
                reference.Add(shadow.clone());
            }
            var track = new EmaTrackSettings { Preset = EmaPresets.Diffusers, Decay = 0.99, Warmup = warmup ? EmaWarmup.Power : null, UpdateAfterStep = after };
            AssertSame(reference, Engine(track, trajectory), $"diffusers warmup={warmup} after={after}");
        }
    }

    [Fact]
    public void Ema_pytorch_EMA_with_its_defaults_and_float32_decays()
    {
        var trajectory = Trajectory(3);
        // Its defaults are update_after_step=100, update_every=10; the run is shorter, so scale them down too.
        foreach (var (after, every) in new[] { (100L, 10), (20L, 3) })
        {
            const double beta = 0.9999, invGamma = 1.0, power = 2.0 / 3.0, minValue = 0.0;
            var stepBuffer = tensor(0L);
            var ema = trajectory[0].clone();
            var initted = false;
            var reference = new List<Tensor>();
            for (var t = 1; t <= Steps; t++)
            {
                var model = trajectory[t];
                var step = stepBuffer.item<long>();
                stepBuffer.add_(1);
                if (!initted) { ema.copy_(model); initted = true; }
                else if (step % every == 0)
                {
                    if (step <= after) ema.copy_(model);
                    else
                    {
                        // get_current_decay on the step buffer: float32 tensors throughout, then .item().
                        var epoch = (stepBuffer - after - 1).clamp(min: 0.0);
                        var value = 1 - (1 + epoch / invGamma).pow(-power);
                        var decay = (double)value.clamp(minValue, beta).item<float>();
                        ema.lerp_(model, tensor((float)(1.0 - decay)));
                    }
                }
                reference.Add(ema.clone());
            }
            var track = new EmaTrackSettings { Preset = EmaPresets.EmaPytorch, Decay = beta, UpdateAfterStep = after, Every = every };
            AssertSame(reference, Engine(track, trajectory), $"ema-pytorch after={after} every={every}");
        }
    }

    [Fact]
    public void Keras_use_ema()
    {
        var trajectory = Trajectory(4);
        var average = zeros(Size); // add_variable_from_reference: zeros, overwritten by the first step
        var reference = new List<Tensor>();
        for (var iterations = 0; iterations < Steps; iterations++)
        {
            var momentum = tensor(iterations != 0 ? 1f : 0f) * 0.99;
            average = momentum * average + (1 - momentum) * trajectory[iterations + 1];
            reference.Add(average.clone());
        }
        AssertSame(reference, Engine(new EmaTrackSettings { Preset = EmaPresets.Keras }, trajectory), "keras");
    }

    [Fact]
    public void AveragedModel_with_get_ema_multi_avg_fn()
    {
        var trajectory = Trajectory(5);
        const double decay = 0.99;
        var averaged = trajectory[0].clone();
        long nAveraged = 0;
        var reference = new List<Tensor>();
        for (var t = 1; t <= Steps; t++)
        {
            if (nAveraged == 0) averaged.copy_(trajectory[t]);
            else averaged.lerp_(trajectory[t], tensor((float)(1 - decay)));
            nAveraged++;
            reference.Add(averaged.clone());
        }
        AssertSame(reference, Engine(new EmaTrackSettings { Preset = EmaPresets.AveragedModel, Decay = decay }, trajectory), "averaged-model");
    }

    [Fact]
    public void Lightning_EMAWeightAveraging_every_n_steps_from_a_start()
    {
        var trajectory = Trajectory(6);
        const double decay = 0.98;
        const long startingAt = 10;
        const int every = 4;
        var averaged = trajectory[0].clone();
        long nAveraged = 0;
        var reference = new List<Tensor>();
        for (var globalStep = 1; globalStep <= Steps; globalStep++)
        {
            var stepIdx = globalStep - 1;
            if (stepIdx >= startingAt && stepIdx % every == 0)
            {
                if (nAveraged == 0) averaged.copy_(trajectory[globalStep]);
                else averaged.copy_(decay * averaged + (1 - decay) * trajectory[globalStep]);
                nAveraged++;
            }
            reference.Add(averaged.clone());
        }
        var track = new EmaTrackSettings { Preset = EmaPresets.Lightning, Decay = decay, StartStep = startingAt, Every = every };
        AssertSame(reference, Engine(track, trajectory), "lightning");
    }

    [Fact]
    public void Swa_is_the_uniform_average_from_its_start()
    {
        var trajectory = Trajectory(7);
        var averaged = trajectory[0].clone();
        var nAveraged = tensor(0L);
        var reference = new List<Tensor>();
        for (var t = 1; t <= Steps; t++)
        {
            if (t >= 40 && t % 2 == 0)
            {
                if (nAveraged.item<long>() == 0) averaged.copy_(trajectory[t]);
                else averaged.lerp_(trajectory[t], tensor((1 / (nAveraged + 1)).item<float>()));
                nAveraged.add_(1);
            }
            reference.Add(averaged.clone());
        }
        AssertSame(reference, Engine(new EmaTrackSettings { Preset = EmaPresets.Swa, StartStep = 40, Every = 2 }, trajectory), "swa");

        // And it is the mean of the weights it saw, to float rounding.
        var seen = Enumerable.Range(40, Steps - 39).Where(t => t % 2 == 0).Select(t => trajectory[t]).ToList();
        var mean = stack(seen).mean([0]);
        Assert.True((mean - reference[^1]).abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public void TensorFlow_ExponentialMovingAverage_with_num_updates_and_zero_debias()
    {
        var trajectory = Trajectory(8);
        foreach (var (numUpdates, zeroDebias) in new[] { (false, false), (true, false), (false, true), (true, true) })
        {
            const double decayValue = 0.97;
            var variable = trajectory[0].clone(); // the shadow starts as the variable's initial value
            var biased = zeros(Size);
            var localStep = tensor(0f);
            var reference = new List<Tensor>();
            for (var globalStep = 1; globalStep <= Steps; globalStep++)
            {
                var value = trajectory[globalStep];
                var decay = tensor((float)decayValue);
                if (numUpdates)
                {
                    var n = tensor((float)globalStep);
                    decay = minimum(decay, (1f + n) / (10f + n));
                }
                var oneMinus = 1f - decay; // assign_moving_average: decay = 1.0 - decay, float32
                if (!zeroDebias) variable.sub_((variable - value) * oneMinus);
                else
                {
                    biased.sub_((biased - value) * oneMinus);
                    localStep.add_(1);
                    var biasFactor = 1f - (1f - oneMinus).pow(localStep);
                    variable = biased / biasFactor;
                }
                reference.Add(variable.clone());
            }
            var track = new EmaTrackSettings { Preset = EmaPresets.TensorFlow, Decay = decayValue, Warmup = numUpdates ? EmaWarmup.Tf : null, ZeroDebias = zeroDebias };
            AssertSame(reference, Engine(track, trajectory), $"tensorflow num_updates={numUpdates} zero_debias={zeroDebias}");
        }
    }

    [Fact]
    public void Trl_BEMACallback_with_update_after_and_a_floor_on_beta()
    {
        var trajectory = Trajectory(10);
        // TRL's defaults (update_freq 400) scaled to this run: every 6 steps; update_after 0 (θ₀ = the initial weights) and 12.
        foreach (var (after, minimum, lag, multiplier) in new[] { (0L, 0.0, 10L, 1.0), (12L, 0.0, 10L, 1.0), (0L, 0.3, 2L, 0.5) })
        {
            const int updateFreq = 6;
            const double emaPower = 0.5, biasPower = 0.2;
            var theta0 = trajectory[0].clone(); // on_train_begin: θ₀ and the EMA clone the parameters
            var ema = trajectory[0].clone();
            var running = trajectory[0].clone(); // the running model is a copy of the model at the start
            var reference = new List<Tensor>();
            for (var step = 1; step <= Steps; step++)
            {
                var thetat = trajectory[step];
                if (step >= after)
                {
                    if (step == after) { theta0.copy_(thetat); ema.copy_(thetat); }
                    else if ((step - after) % updateFreq == 0)
                    {
                        var x = lag + multiplier * step;
                        var beta = Math.Max(Math.Pow(x, -emaPower), minimum);
                        var alpha = Math.Pow(x, -biasPower);
                        ema.mul_(1 - beta).add_(thetat, alpha: beta);
                        running.copy_(ema + alpha * (thetat - theta0));
                    }
                }
                reference.Add(running.clone());
            }
            var track = new EmaTrackSettings
            {
                Preset = EmaPresets.TrlBema, Every = updateFreq, UpdateAfterStep = after, MinEmaMultiplier = minimum, Lag = lag, Multiplier = multiplier,
            };
            AssertSame(reference, Engine(track, trajectory), $"trl-bema after={after} min={minimum}");
        }
    }

    [Fact]
    public void Bema_as_its_authors_run_it_including_no_ema_and_no_bias()
    {
        var trajectory = Trajectory(11);
        foreach (var (after, emaPower, etaPower, gamma, minimum) in new[] { (0L, 0.5, 0.2, 1.0, 0.0), (20L, 0.5, 0.2, 0.8, 0.25), (0L, 0.0, 0.2, 1.0, 0.0), (3L, 0.5, 0.0, 1.0, 0.0) })
        {
            const int updateFreq = 7;
            const long scalingLag = 10;
            // abblock/bema core_online.py (2025-12-03): the three buffers clone the parameters at on_train_begin.
            var theta0 = trajectory[0].clone();
            var ema = trajectory[0].clone();
            var bema = trajectory[0].clone();
            long lastUpdateStep = -1;
            var reference = new List<Tensor>();
            for (var t = 1; t <= Steps; t++)
            {
                var p = trajectory[t];
                if (t >= after && t != lastUpdateStep && (t - lastUpdateStep) % updateFreq == 0)
                {
                    var te = Math.Max(0, t - scalingLag);
                    var doEma = emaPower > 0;
                    var doBema = etaPower > 0;
                    var beta = doEma ? gamma * Math.Pow(1.0 + te, -emaPower) : 0.0;
                    if (doEma && minimum > 0) beta = Math.Max(beta, minimum);
                    var alpha = doBema ? gamma * Math.Pow(1.0 + te, -etaPower) : 0.0;
                    if (doEma) ema.mul_(1 - beta).add_(p, alpha: beta);
                    else ema = p.clone();
                    if (doBema)
                    {
                        var biasCorrection = p - theta0;
                        bema.copy_(ema + alpha * biasCorrection);
                    }
                    else bema.copy_(ema);
                    lastUpdateStep = t;
                }
                reference.Add(bema.clone());
            }
            var track = new EmaTrackSettings
            {
                Preset = EmaPresets.Bema, Every = updateFreq, UpdateAfterStep = after, EmaPower = emaPower, BiasPower = etaPower,
                Multiplier = gamma, MinEmaMultiplier = minimum, Lag = scalingLag,
            };
            AssertSame(reference, Engine(track, trajectory), $"bema after={after} κ={emaPower} η={etaPower}");
        }
    }

    /// <summary>A parameter and a batch-norm-like running variance that falls towards zero.</summary>
    sealed class WithStatistic : nn.Module
    {
        public readonly TorchSharp.Modules.Parameter W;
        public readonly Tensor RunningVar;

        public WithStatistic(Tensor initial) : base(nameof(WithStatistic))
        {
            W = new TorchSharp.Modules.Parameter(initial.clone());
            RunningVar = ones(Size);
            register_parameter("w", W);
            register_buffer("running_var", RunningVar);
        }
    }

    [Fact]
    public void Bema_corrects_parameters_only_and_averages_batch_norm_statistics_as_the_run_asks()
    {
        var trajectory = Trajectory(18);
        using var model = new WithStatistic(trajectory[0]);
        using var reader = new WithStatistic(zeros(Size));
        var settings = new EmaSettings { BnPolicy = BatchNormPolicy.Average, Tracks = [new EmaTrackSettings { Preset = EmaPresets.TrlBema, Every = 2 }] };
        using var ema = new ExponentialMovingAverage(model, settings, null);
        var statisticEma = ones(Size);
        for (var t = 1; t <= Steps; t++)
        {
            using (no_grad())
            {
                model.W.copy_(trajectory[t]);
                model.RunningVar.fill_(Math.Pow(0.9, t)); // falls from 1 towards 0, as a variance may
            }
            ema.Update(t);
            if (t % 2 == 0)
            {
                var beta = Math.Pow(10 + t, -0.5);
                statisticEma.mul_(1 - beta).add_(model.RunningVar, alpha: beta);
            }
        }
        ema.WriteInto(0, reader);
        // θ₀'s variance was 1 and θ_t's is ~0: the bias term would push the read variance below zero.
        TensorAssert.Identical(statisticEma, reader.RunningVar, "the statistic is read as its EMA");
        Assert.True(reader.RunningVar.min().item<float>() > 0);
        Assert.False(reader.W.detach().equal(zeros(Size)).all().item<bool>());
    }

    [Fact]
    public void Lawa_is_the_mean_of_the_latest_k_checkpoints_as_lawa_py_folds_them()
    {
        var trajectory = Trajectory(12);
        foreach (var (k, every) in new[] { (5, 10), (3, 7), (1, 4) })
        {
            var checkpoints = new List<Tensor>();
            var reference = new List<Tensor>();
            for (var t = 1; t <= Steps; t++)
            {
                if (t % every == 0) checkpoints.Add(trajectory[t].clone());
                if (checkpoints.Count == 0) { reference.Add(trajectory[t].clone()); continue; } // no average yet: the weights themselves
                // Sanyal et al.'s lawa.py: the first of the k latest loaded as the average, then uni_update with n = 2, 3, …
                var latest = checkpoints.TakeLast(k).ToList();
                var average = latest[0].clone();
                for (var n = 2; n <= latest.Count; n++) average = average + (latest[n - 1] - average) / n;
                reference.Add(average);
            }
            AssertSame(reference, Engine(new EmaTrackSettings { Preset = EmaPresets.Lawa, Checkpoints = k, Every = every }, trajectory), $"lawa k={k} every={every}");

            // And it is the plain mean of those weights, to float rounding.
            var last = Enumerable.Range(1, Steps).Where(t => t % every == 0).TakeLast(k).Select(t => trajectory[t]).ToList();
            Assert.True((stack(last).mean([0]) - reference[^1]).abs().max().item<float>() < 1e-5);
        }
    }

    [Fact]
    public void Edm_half_life_in_samples_with_and_without_ramp_up()
    {
        var trajectory = Trajectory(13);
        const int batchSize = 32;
        foreach (var (kimg, rampup) in new[] { (0.5, (double?)0.05), (0.5, null), (0.05, 0.5) })
        {
            // NVlabs/edm training/training_loop.py: the EMA after the optimizer step, then cur_nimg += batch_size.
            var ema = trajectory[0].clone();
            long curNimg = 0;
            var reference = new List<Tensor>();
            for (var t = 1; t <= Steps; t++)
            {
                var halfLifeNimg = kimg * 1000;
                if (rampup is { } ratio) halfLifeNimg = Math.Min(halfLifeNimg, curNimg * ratio);
                var beta = Math.Pow(0.5, batchSize / Math.Max(halfLifeNimg, 1e-8));
                ema.copy_(trajectory[t].lerp(ema, tensor((float)beta)));
                curNimg += batchSize;
                reference.Add(ema.clone());
            }
            var track = new EmaTrackSettings { Preset = EmaPresets.Edm, HalfLifeKimg = kimg, RampupRatio = rampup ?? 0 };
            AssertSame(reference, Engine(track, trajectory, shape: new EmaRunShape(batchSize, 100)), $"edm kimg={kimg} rampup={rampup}");
        }
    }

    [Fact]
    public void Torchvision_reference_ema_adjusted_to_batch_steps_and_epochs_with_warmup_copies()
    {
        var trajectory = Trajectory(19);
        const int batchSize = 16, batchesPerEpoch = 23; // epochs of 23 iterations: updates at i = 0, 5, 10, 15, 20 of each
        foreach (var (decayArg, steps, epochs, warmupEpochs) in new[] { (0.999, 5, 7, 0), (0.9995, 5, 7, 2), (0.9, 4, 3, 0) })
        {
            // train.py: adjust and alpha in Python floats; utils.ExponentialMovingAverage is an AveragedModel with ema_avg.
            var adjust = 1.0 * batchSize * steps / epochs;
            var alpha = Math.Min(1.0, (1.0 - decayArg) * adjust);
            var decay = 1.0 - alpha;
            var averaged = trajectory[0].clone();
            long nAveraged = 0;
            var reference = new List<Tensor>();
            for (var t = 1; t <= Steps; t++)
            {
                var (epoch, i) = ((t - 1) / batchesPerEpoch, (t - 1) % batchesPerEpoch);
                if (i % steps == 0)
                {
                    if (nAveraged == 0) averaged.copy_(trajectory[t]);
                    else averaged.copy_(decay * averaged + (1 - decay) * trajectory[t]);
                    nAveraged++;
                    if (epoch < warmupEpochs) nAveraged = 0; // "Reset ema buffer to keep copying weights during warmup period"
                }
                reference.Add(averaged.clone());
            }
            var track = new EmaTrackSettings { Preset = EmaPresets.Torchvision, Decay = decayArg, Every = steps, WarmupEpochs = warmupEpochs };
            AssertSame(reference, Engine(track, trajectory, shape: new EmaRunShape(batchSize, batchesPerEpoch, epochs * (long)batchesPerEpoch)),
                $"torchvision decay={decayArg} steps={steps} warmup={warmupEpochs}");
        }
        // Its defaults: model_ema_decay 0.99998, model_ema_steps 32, the run's epochs (a last partial one counted).
        var rule = new EmaTrackSettings { Preset = EmaPresets.Torchvision }.Resolve(new EmaSettings(), "t", new EmaRunShape(128, 468, 1200));
        Assert.Equal((0.99998, 32, 3, 0, "ema-0.99998-torchvision"), (rule.Decay, rule.Every, rule.Epochs, rule.WarmupEpochs, rule.Name));
        Assert.Equal("t.epochs", Assert.Throws<InvalidSettingException>(() => new EmaTrackSettings { Preset = EmaPresets.Torchvision }.Resolve(new EmaSettings(), "t", null)).Field);
    }

    [Fact]
    public void A_half_life_in_samples_is_the_decay_it_implies_at_the_runs_batch_size()
    {
        var run = new EmaSettings();
        var shape = new EmaRunShape(128, 78);
        var rule = new EmaTrackSettings { HalfLifeSamples = 12_800 }.Resolve(run, "t", shape);
        Assert.Equal(Math.Pow(0.5, 0.01), rule.Decay);
        Assert.Equal("ema-hl12800", rule.Name);
        Assert.Equal(100, EmaMath.HalfLife(rule.Decay), 9); // 12,800 samples are 100 steps of 128
        // Twice the batch, the same window in samples: half the steps (Busbridge et al.'s ρ^κ with κ = 2).
        var doubled = new EmaTrackSettings { HalfLifeSamples = 12_800 }.Resolve(run, "t", shape with { BatchSize = 256 });
        Assert.Equal(rule.Decay * rule.Decay, doubled.Decay, 15);

        var trajectory = Trajectory(14);
        AssertSame(Engine(new EmaTrackSettings { Decay = rule.Decay }, trajectory), Engine(new EmaTrackSettings { HalfLifeSamples = 12_800 }, trajectory, shape: shape), "half-life row");

        var problem = Assert.Throws<InvalidSettingException>(() => new EmaTrackSettings { HalfLifeSamples = 100, Decay = 0.9 }.Resolve(run, "ema.tracks[0]", shape));
        Assert.Equal("ema.tracks[0].halfLifeSamples", problem.Field);
        problem = Assert.Throws<InvalidSettingException>(() => new EmaTrackSettings { HalfLifeSamples = -5 }.Resolve(run, "ema.tracks[0]", shape));
        Assert.Equal("ema.tracks[0].halfLifeSamples", problem.Field);
        problem = Assert.Throws<InvalidSettingException>(() => new EmaTrackSettings { Preset = EmaPresets.Edm }.Resolve(run, "ema.tracks[1]", null));
        Assert.Equal("ema.tracks[1].halfLifeKimg", problem.Field);
    }

    [Fact]
    public void The_new_rules_resume_mid_way_with_identical_shadows()
    {
        var trajectory = Trajectory(15);
        var shape = new EmaRunShape(16, 25);
        var settings = new EmaSettings
        {
            Tracks =
            [
                new EmaTrackSettings { Preset = EmaPresets.TrlBema, Every = 5, UpdateAfterStep = 8 },
                new EmaTrackSettings { Preset = EmaPresets.Bema, Every = 6 },
                new EmaTrackSettings { Preset = EmaPresets.Lawa, Checkpoints = 4, Every = 9 },
                new EmaTrackSettings { Preset = EmaPresets.Edm, HalfLifeKimg = 0.2 },
            ],
        };
        using var model = new Weights(trajectory[0]);
        using var whole = new ExponentialMovingAverage(model, settings, shape);
        using var first = new ExponentialMovingAverage(model, settings, shape);
        for (var t = 1; t <= 57; t++)
        {
            using (no_grad()) model.W.copy_(trajectory[t]);
            whole.Update(t);
            first.Update(t);
        }
        using var resumed = new ExponentialMovingAverage(model, settings, shape);
        resumed.LoadState(first.StateTensors().ToDictionary(p => p.Key, p => p.Tensor.clone()), first.Counters());
        for (var t = 58; t <= Steps; t++)
        {
            using (no_grad()) model.W.copy_(trajectory[t]);
            whole.Update(t);
            resumed.Update(t);
        }
        TensorAssert.Identical(whole.StateTensors(), resumed.StateTensors());
        Assert.Equal(whole.Counters(), resumed.Counters());
        Assert.Contains(whole.StateTensors(), p => p.Key == "lawa-k4-every9#ring3/w");
        Assert.Contains(whole.StateTensors(), p => p.Key == "trl-bema-every5-after8#theta0/w");
    }

    [Fact]
    public void The_new_rules_refuse_bad_settings_by_field()
    {
        var run = new EmaSettings();
        var shape = new EmaRunShape(32, 10);
        string FieldOf(EmaTrackSettings track) => Assert.Throws<InvalidSettingException>(() => track.Resolve(run, "ema.tracks[0]", shape)).Field;
        Assert.Equal("ema.tracks[0].emaPower", FieldOf(new() { Preset = EmaPresets.TrlBema, EmaPower = -1 }));
        Assert.Equal("ema.tracks[0].biasPower", FieldOf(new() { Preset = EmaPresets.Bema, BiasPower = double.NaN }));
        Assert.Equal("ema.tracks[0].multiplier", FieldOf(new() { Preset = EmaPresets.Bema, Multiplier = 1.5 }));
        Assert.Equal("ema.tracks[0].lag", FieldOf(new() { Preset = EmaPresets.TrlBema, Lag = 0, Multiplier = 0.5 }));
        Assert.Equal("ema.tracks[0].minEmaMultiplier", FieldOf(new() { Preset = EmaPresets.TrlBema, MinEmaMultiplier = 2 }));
        Assert.Equal("ema.tracks[0].every", FieldOf(new() { Preset = EmaPresets.TrlBema, Every = 0 }));
        Assert.Equal("ema.tracks[0].checkpoints", FieldOf(new() { Preset = EmaPresets.Lawa, Checkpoints = 0 }));
        Assert.Equal("ema.tracks[0].rampupRatio", FieldOf(new() { Preset = EmaPresets.Edm, RampupRatio = -1 }));
        Assert.Equal("ema.tracks[0].decay", FieldOf(new() { Preset = EmaPresets.Lawa, Decay = 0.9 }));
        Assert.Equal("ema.tracks[0].dtype", FieldOf(new() { Preset = EmaPresets.Bema, Dtype = EmaDtype.BFloat16 }));
        // Defaults are the sources' own, and LAWA takes a checkpoint per epoch.
        var trl = new EmaTrackSettings { Preset = EmaPresets.TrlBema }.Resolve(run, "t", shape);
        Assert.Equal((400, 0.5, 0.2, 10L, 1.0, 0L, 0.0), (trl.Every, trl.EmaPower, trl.BiasPower, trl.Lag, trl.Multiplier, trl.UpdateAfterStep, trl.MinEmaMultiplier));
        Assert.Equal(100, new EmaTrackSettings { Preset = EmaPresets.Bema }.Resolve(run, "t", shape).Every);
        var lawa = new EmaTrackSettings { Preset = EmaPresets.Lawa }.Resolve(run, "t", shape);
        Assert.Equal((5, 10, "lawa-k5-every10"), (lawa.Checkpoints, lawa.Every, lawa.Name));
        var edm = new EmaTrackSettings { Preset = EmaPresets.Edm }.Resolve(run, "t", shape);
        Assert.Equal((500.0, 0.05, 32, "edm-500kimg"), (edm.HalfLifeKimg, edm.RampupRatio, edm.BatchSize, edm.Name));
    }

    [Fact]
    public void Switch_ema_copies_the_track_into_the_weights_as_ema_pytorch_does()
    {
        // Training is scripted as fixed increments: after a switch the weights continue from the EMA, as they would.
        var trajectory = Trajectory(16);
        var increments = Enumerable.Range(1, Steps).Select(t => trajectory[t] - trajectory[t - 1]).ToList();
        const double beta = 0.95;
        const long after = 10;
        const int every = 3, switchEvery = 7;

        // ema-pytorch EMA.update() with update_model_with_ema_every (update_model_with_ema_beta 0: a copy into the model).
        var w = trajectory[0].clone();
        var ema = trajectory[0].clone();
        var stepBuffer = tensor(0L);
        var initted = false;
        var (weights, shadows) = (new List<Tensor>(), new List<Tensor>());
        for (var t = 1; t <= Steps; t++)
        {
            w.add_(increments[t - 1]);
            var step = stepBuffer.item<long>();
            stepBuffer.add_(1);
            if (!initted) { ema.copy_(w); initted = true; }
            else
            {
                var shouldUpdate = step % every == 0;
                if (shouldUpdate && step <= after) ema.copy_(w);
                else
                {
                    if (shouldUpdate)
                    {
                        var epoch = (stepBuffer - after - 1).clamp(min: 0.0);
                        var value = 1 - (1 + epoch / 1.0).pow(-(2.0 / 3.0));
                        var decay = (double)value.clamp(0.0, beta).item<float>();
                        ema.lerp_(w, tensor((float)(1.0 - decay)));
                    }
                    if (step % switchEvery == 0) w.copy_(ema);
                }
            }
            weights.Add(w.clone());
            shadows.Add(ema.clone());
        }

        var settings = new EmaSettings { Tracks = [new EmaTrackSettings { Preset = EmaPresets.EmaPytorch, Decay = beta, UpdateAfterStep = after, Every = every }] };
        var (engineWeights, engineShadows) = Switched(settings, new SwitchEmaSettings { Every = switchEvery }, trajectory[0], increments);
        AssertSame(weights, engineWeights, "ema-pytorch switch: the trained weights");
        AssertSame(shadows, engineShadows, "ema-pytorch switch: the shadow");
        Assert.False(weights[^1].equal(trajectory[^1]).all().item<bool>()); // it did switch
    }

    [Fact]
    public void Switch_ema_of_another_rule_switches_on_multiples_of_every()
    {
        var trajectory = Trajectory(17);
        var increments = Enumerable.Range(1, Steps).Select(t => trajectory[t] - trajectory[t - 1]).ToList();
        var settings = new EmaSettings { Tracks = [new EmaTrackSettings { Decay = 0.9 }, new EmaTrackSettings { Preset = EmaPresets.TrlBema, Every = 4 }] };
        var (weights, shadows) = Switched(settings, new SwitchEmaSettings { Track = "trl-bema-every4", Every = 8 }, trajectory[0], increments);
        for (var t = 1; t <= Steps; t++)
            Assert.Equal(t % 8 == 0, weights[t - 1].equal(shadows[t - 1]).all().item<bool>());
        var problems = new SwitchEmaSettings { Track = "ema-0.5", Every = 0 }.Problems(settings.Rules(null)).Select(p => p.Field);
        Assert.Equal(["switchEma.every", "switchEma.track"], problems);
    }

    /// <summary>Scripted training with Switch EMA: the weights after every step and the switched track's weights read.</summary>
    static (List<Tensor> Weights, List<Tensor> Shadows) Switched(EmaSettings settings, SwitchEmaSettings switchSettings, Tensor initial, List<Tensor> increments)
    {
        using var model = new Weights(initial);
        using var reader = new Weights(zeros(Size));
        using var ema = new ExponentialMovingAverage(model, settings, null);
        var track = switchSettings.Resolve(ema.Shadows.Select(s => s.Rule).ToList())!.Value;
        var switchEma = new SwitchEma(switchSettings, ema, track);
        var (weights, shadows) = (new List<Tensor>(), new List<Tensor>());
        for (var t = 1; t <= Steps; t++)
        {
            using (no_grad()) model.W.add_(increments[t - 1]);
            ema.Update(t);
            switchEma.AfterUpdate(t, model);
            weights.Add(model.W.detach().clone());
            ema.WriteInto(track, reader);
            shadows.Add(reader.W.detach().clone());
        }
        return (weights, shadows);
    }

    [Fact]
    public void The_compact_form_and_its_tracks_give_todays_shadows_bit_for_bit()
    {
        var trajectory = Trajectory(9);
        var compact = new EmaSettings { Decays = [0.9, 0.99], Warmup = true, Every = 2, StartStep = 5 };
        var asTracks = compact with { Tracks = [new EmaTrackSettings { Decay = 0.9 }, new EmaTrackSettings { Decay = 0.99 }] };
        Assert.Equal(compact.Rules(null), asTracks.Rules(null));
        Assert.Equal(["ema-0.9", "ema-0.99"], asTracks.Rules(null).Select(r => r.Name));

        // Today's arithmetic written out: before the start the shadow is w; then s + (float)(1 − d)(w − s) on multiples of 2.
        for (var k = 0; k < 2; k++)
        {
            var decay = compact.Decays[k];
            var s = trajectory[0].data<float>().ToArray();
            var expected = new List<Tensor>();
            for (var t = 1; t <= Steps; t++)
            {
                var w = trajectory[t].data<float>().ToArray();
                if (t < 5) s = (float[])w.Clone();
                else if (t % 2 == 0)
                {
                    var alpha = (float)(1.0 - Math.Min(decay, (1.0 + t) / (10.0 + t)));
                    for (var i = 0; i < Size; i++) s[i] += alpha * (w[i] - s[i]);
                }
                expected.Add(tensor(s));
            }
            AssertSame(expected, Engine(asTracks.Tracks![k], trajectory, compact), $"track {k}");
            AssertSame(expected, Engine(null, trajectory, compact with { Decays = [decay] }), $"decay {k} in the compact form");
        }
    }

    [Fact]
    public void A_bfloat16_shadow_stalls_where_a_float32_shadow_of_the_same_rule_moves()
    {
        // w sits 0.001 above the shadow: each update moves it by 1e-6, far below half a bfloat16 unit at 1.0 (2^-9).
        using var model = new Weights(ones(Size));
        using var ema = new ExponentialMovingAverage(model, new EmaSettings
        {
            Tracks = [new EmaTrackSettings { Decay = 0.999 }, new EmaTrackSettings { Decay = 0.999, Dtype = EmaDtype.BFloat16 }],
        }, null);
        Assert.Equal(["ema-0.999", "ema-0.999-bf16"], ema.Shadows.Select(s => s.Track));
        using (no_grad()) model.W.fill_(1.001f);
        for (var t = 1; t <= 500; t++) ema.Update(t);
        using var reader = new Weights(zeros(Size));
        ema.WriteInto(1, reader);
        TensorAssert.Identical(ones(Size), reader.W.detach(), "the bfloat16 shadow should not have moved");
        ema.WriteInto(0, reader);
        var expected = 1.001 - 0.001 * Math.Pow(0.999, 500);
        Assert.Equal(expected, reader.W[0].item<float>(), 4);
        // The stall as the run page shows it: the bfloat16 shadow's distance to its float32 twin, |1 − s| / s everywhere.
        double full = reader.W[0].item<float>();
        Assert.Equal((full - 1) / full, ema.RelativeDistance(1, 0), 1e-12);
    }

    [Fact]
    public void Decays_match_hand_computed_values()
    {
        static double D(EmaRule rule, long t, long u = 0) => EmaSchedule.Next(rule, t, u).Decay;
        var run = new EmaSettings();
        EmaRule Rule(EmaTrackSettings s) => s.Resolve(run, "t", null);

        var timm = Rule(new EmaTrackSettings { Preset = EmaPresets.Timm, Warmup = EmaWarmup.Power });
        Assert.Equal(0, D(timm, 1));
        Assert.Equal(1 - Math.Pow(2, -2.0 / 3), D(timm, 2), 15); // 0.370
        Assert.Equal(0.9999, D(timm, 10_000_000));
        var diffusers = Rule(new EmaTrackSettings { Preset = EmaPresets.Diffusers });
        Assert.Equal(2.0 / 11, D(diffusers, 2), 15);
        var emaPytorch = Rule(new EmaTrackSettings { Preset = EmaPresets.EmaPytorch });
        Assert.Equal(ShadowAction.FollowLive, EmaSchedule.Next(emaPytorch, 101, 0).Action);
        Assert.Equal(ShadowAction.None, EmaSchedule.Next(emaPytorch, 110, 0).Action);
        Assert.Equal(1 - Math.Pow(11, -2.0 / 3), D(emaPytorch, 111), 6); // epoch 10, in float32
        var keras = Rule(new EmaTrackSettings { Preset = EmaPresets.Keras });
        Assert.Equal(0, D(keras, 1));
        Assert.Equal(0.99f, D(keras, 2));
        var adjusted = Rule(new EmaTrackSettings { Decay = 0.99, Every = 4, AdjustDecay = true });
        Assert.Equal(Math.Pow(0.99, 4), D(adjusted, 4), 15);
        var swa = Rule(new EmaTrackSettings { Preset = EmaPresets.Swa, StartStep = 10 });
        Assert.Equal(ShadowAction.Copy, EmaSchedule.Next(swa, 10, 0).Action);
        Assert.Equal(0.75, D(swa, 13, 3));
    }

    [Fact]
    public void Tracks_are_named_and_checked_by_field()
    {
        var settings = new EmaSettings
        {
            Warmup = true,
            Tracks =
            [
                new EmaTrackSettings { Decay = 0.999 },
                new EmaTrackSettings { Decay = 0.999, Warmup = EmaWarmup.Power },
                new EmaTrackSettings { Preset = EmaPresets.Timm, Warmup = EmaWarmup.Power },
                new EmaTrackSettings { Preset = EmaPresets.Timm, Warmup = EmaWarmup.Power },
                new EmaTrackSettings { Preset = EmaPresets.Swa, StartStep = 1500 },
                new EmaTrackSettings { Name = "mine", Preset = EmaPresets.Keras },
            ],
        };
        Assert.Equal(["ema-0.999", "ema-0.999-power", "ema-0.9999-timm-warmup", "ema-0.9999-timm-warmup-2", "swa-from-1500", "mine"], settings.Rules(null).Select(r => r.Name));

        static string FieldOf(params EmaTrackSettings[] tracks) =>
            Assert.Throws<InvalidSettingException>(() => new EmaSettings { Tracks = tracks }.Validate(null)).Field;
        Assert.Equal("ema.tracks[1].name", FieldOf(new EmaTrackSettings { Decay = 0.9, Name = "a" }, new EmaTrackSettings { Decay = 0.99, Name = "a" }));
        Assert.Equal("ema.tracks[0].name", FieldOf(new EmaTrackSettings { Decay = 0.9, Name = "Big Name" }));
        Assert.Equal("ema.tracks[0].name", FieldOf(new EmaTrackSettings { Decay = 0.9, Name = "raw" }));
        Assert.Equal("ema.tracks[0].every", FieldOf(new EmaTrackSettings { Preset = EmaPresets.Keras, Every = 2 }));
        Assert.Equal("ema.tracks[0].preset", FieldOf(new EmaTrackSettings { Preset = "torch-ema" }));
        Assert.Equal("ema.tracks[0].decay", FieldOf(new EmaTrackSettings()));
        Assert.Equal("ema.tracks[0].decay", FieldOf(new EmaTrackSettings { Decay = 1 }));
        Assert.Equal("ema.tracks[0].warmup", FieldOf(new EmaTrackSettings { Preset = EmaPresets.Timm, Warmup = EmaWarmup.Tf }));
        Assert.Equal("ema.tracks[0].dtype", FieldOf(new EmaTrackSettings { Decay = 0.9, Dtype = "float8" }));
        Assert.Equal("ema.tracks[0].minDecay", FieldOf(new EmaTrackSettings { Preset = EmaPresets.Timm, Decay = 0.9, MinDecay = 0.95 }));
        Assert.Equal("ema.tracks", FieldOf());
        Assert.Equal("ema.tracks", FieldOf(Enumerable.Range(0, 9).Select(i => new EmaTrackSettings { Decay = 0.9 + i / 100.0 }).ToArray()));
    }

    [Fact]
    public void Each_setting_name_is_its_propertys_json_name()
    {
        var names = typeof(EmaFields).GetFields().Select(f => (Property: f.Name, Name: (string)f.GetRawConstantValue()!)).ToList();
        var json = System.Text.Json.JsonSerializer.SerializeToElement(new EmaTrackSettings { Decay = 0.9, Warmup = "none", InvGamma = 1, Power = 1, MinDecay = 0,
            UpdateAfterStep = 0, StartStep = 0, Every = 1, AdjustDecay = false, Init = "initial", ZeroDebias = false, Dtype = "float32" },
            new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web));
        foreach (var (property, name) in names)
        {
            Assert.NotNull(typeof(EmaTrackSettings).GetProperty(property));
            Assert.True(json.TryGetProperty(name, out _), $"{name} is not how {property} is written");
        }
        // Every setting a preset may take is one of them.
        Assert.All(EmaPresets.All.SelectMany(EmaPresets.Fields), s => Assert.Contains(s, names.Select(n => n.Name)));
    }
}
