using EmaLab.TrainingEngine.Averaging;
using TorchSharp;
using static TorchSharp.torch;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>The EMA contract against hand-computed values and an independent scalar reference, for both kernels.</summary>
public class EmaMathTests
{
    /// <summary>A one-parameter "model" whose weight the test scripts step by step.</summary>
    sealed class ScriptedWeights : nn.Module
    {
        public readonly TorchSharp.Modules.Parameter Weight;

        public ScriptedWeights(float initial) : base(nameof(ScriptedWeights))
        {
            Weight = new TorchSharp.Modules.Parameter(tensor(new[] { initial, -initial }));
            register_parameter("weight", Weight);
        }

        public void Set(double value)
        {
            using var _ = no_grad();
            Weight.copy_(tensor(new[] { (float)value, (float)-value }));
        }
    }

    /// <summary>Runs the scripted weights w_1..w_T through the EMA and returns the value read after each step.</summary>
    static List<double> Run(EmaSettings settings, double initial, IReadOnlyList<double> weights, EmaKernel kernel)
    {
        using var model = new ScriptedWeights((float)initial);
        using var ema = new ExponentialMovingAverage(model, settings, null, kernel: kernel);
        using var reader = new ScriptedWeights(0);
        var values = new List<double>();
        for (var step = 1; step <= weights.Count; step++)
        {
            model.Set(weights[step - 1]);
            ema.Update(step);
            ema.WriteInto(0, reader);
            var read = reader.Weight.data<float>().ToArray();
            Assert.Equal(read[0], -read[1]); // every element gets the same arithmetic
            values.Add(read[0]);
        }
        return values;
    }

    /// <summary>The contract written out plainly in doubles, independent of the engine's code.</summary>
    static List<double> Reference(EmaSettings s, double initial, IReadOnlyList<double> weights)
    {
        var d = s.Decays[0];
        double shadow = s.ZeroDebias ? 0 : initial, product = 1;
        long updates = 0;
        var values = new List<double>();
        for (var step = 1; step <= weights.Count; step++)
        {
            var w = weights[step - 1];
            if (step < s.StartStep) { if (!s.ZeroDebias) shadow = w; }
            else if (step % s.Every == 0)
            {
                var dEff = s.Warmup ? Math.Min(d, (1.0 + step) / (10.0 + step)) : d;
                shadow -= (1 - dEff) * (shadow - w);
                product *= dEff;
                updates++;
            }
            values.Add(!s.ZeroDebias ? shadow : updates == 0 ? w : shadow / (1 - product));
        }
        return values;
    }

    static readonly double[] Script = [1, 2, 3];

    [Theory]
    [InlineData(EmaKernel.Fused)]
    [InlineData(EmaKernel.Lerp)]
    public void Plain_update_matches_hand_computed_values(EmaKernel kernel)
    {
        // d = 0.5 from s0 = 0: 0 + 0.5(1 − 0) = 0.5; 0.5 + 0.5(2 − 0.5) = 1.25; 1.25 + 0.5(3 − 1.25) = 2.125
        var values = Run(new EmaSettings { Decays = [0.5] }, 0, Script, kernel);
        Assert.Equal([0.5, 1.25, 2.125], values, new Tolerance(1e-6));
    }

    [Theory]
    [InlineData(EmaKernel.Fused)]
    [InlineData(EmaKernel.Lerp)]
    public void Zero_debias_matches_hand_computed_values(EmaKernel kernel)
    {
        // s: 0.5, 1.25, 2.125 (from zero); Π d: 0.5, 0.25, 0.125 → read 0.5/0.5 = 1, 1.25/0.75, 2.125/0.875
        var values = Run(new EmaSettings { Decays = [0.5], ZeroDebias = true }, 7, Script, kernel);
        Assert.Equal([1.0, 1.25 / 0.75, 2.125 / 0.875], values, new Tolerance(1e-6));
    }

    [Theory]
    [InlineData(EmaKernel.Fused)]
    [InlineData(EmaKernel.Lerp)]
    public void Warmup_uses_num_updates_formula(EmaKernel kernel)
    {
        // d = 0.9 with warm-up: step 1 uses min(0.9, 2/11), step 2 min(0.9, 3/12) = 0.25
        var s1 = 0 - (1 - 2.0 / 11) * (0 - 1);
        var s2 = s1 - (1 - 0.25) * (s1 - 2);
        var values = Run(new EmaSettings { Decays = [0.9], Warmup = true }, 0, Script[..2], kernel);
        Assert.Equal([s1, s2], values, new Tolerance(1e-6));
        Assert.Equal(2.0 / 11, EmaMath.EffectiveDecay(0.9, 1, warmup: true), 12);
        Assert.Equal(0.9, EmaMath.EffectiveDecay(0.9, 1000, warmup: true), 12);
        Assert.Equal(0.9, EmaMath.EffectiveDecay(0.9, 1, warmup: false), 12);
    }

    [Theory]
    [InlineData(EmaKernel.Fused)]
    [InlineData(EmaKernel.Lerp)]
    public void Every_n_and_start_step(EmaKernel kernel)
    {
        // start 3, every 2: steps 1, 2 copy w; step 3 is not even (hold); step 4 updates; 5 holds; 6 updates.
        var weights = new double[] { 1, 2, 3, 4, 5, 6 };
        var values = Run(new EmaSettings { Decays = [0.5], StartStep = 3, Every = 2 }, 0, weights, kernel);
        Assert.Equal([1, 2, 2, 3, 3, 4.5], values, new Tolerance(1e-6));
    }

    public static TheoryData<bool, bool, int, long, EmaKernel> Combinations()
    {
        var data = new TheoryData<bool, bool, int, long, EmaKernel>();
        foreach (var kernel in new[] { EmaKernel.Fused, EmaKernel.Lerp })
        foreach (var warmup in new[] { false, true })
        foreach (var debias in new[] { false, true })
        {
            data.Add(warmup, debias, 1, 0, kernel);
            data.Add(warmup, debias, 3, 7, kernel);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void Long_scripted_sequence_matches_reference(bool warmup, bool zeroDebias, int every, long start, EmaKernel kernel)
    {
        var settings = new EmaSettings { Decays = [0.95], Warmup = warmup, ZeroDebias = zeroDebias, Every = every, StartStep = start };
        var weights = Enumerable.Range(1, 60).Select(t => Math.Sin(t * 0.37) + 0.01 * t).ToList();
        var expected = Reference(settings, 0.25, weights);
        var actual = Run(settings, 0.25, weights, kernel);
        Assert.Equal(expected, actual, new Tolerance(1e-6));
    }

    [Fact]
    public void Derived_numbers_for_the_lens()
    {
        Assert.Equal(Math.Log(0.5) / Math.Log(0.99), EmaMath.HalfLife(0.99), 12);
        Assert.Equal(68.97, EmaMath.HalfLife(0.99), 2);
        Assert.Equal(1000, EmaMath.Window(0.999), 6);
    }

    [Fact]
    public void Initial_weight_share_shows_when_an_average_never_forgets_its_start()
    {
        static double Share(double decay, EmaSettings run, long steps) => EmaMath.InitialWeightShare((run with { Decays = [decay] }).Rules(null)[0], steps);
        // 0.9999 over 2,000 steps without warm-up: 0.9999^2000 = e^(2000 ln 0.9999) ≈ 0.8187.
        Assert.Equal(Math.Pow(0.9999, 2000), Share(0.9999, new EmaSettings(), 2000), 12);
        Assert.Equal(0.8187, Share(0.9999, new EmaSettings(), 2000), 4);
        // Every 4 steps from step 100 over 200 steps: updates at 100, 104, ..., 200 = 26 updates.
        Assert.Equal(Math.Pow(0.9, 26), Share(0.9, new EmaSettings { Every = 4, StartStep = 100 }, 200), 12);
        // Warm-up: the first update keeps only 2/11 of the start, then 3/12, ...: gone almost at once.
        Assert.True(Share(0.9999, new EmaSettings { Warmup = true }, 2000) < 1e-6);
        Assert.Equal(0, Share(0.9999, new EmaSettings { ZeroDebias = true }, 2000));
    }

    [Fact]
    public void The_lens_knows_when_a_warm_up_reaches_the_decay_and_how_long_two_tracks_are_one()
    {
        var rules = new EmaSettings { Decays = [0.99, 0.999], Warmup = true }.Rules(null);
        // TF's warm-up (1+t)/(10+t) reaches 0.99 at t = 890 and 0.999 at t = 8,990: never in a run of 1,500 steps.
        Assert.Equal(890, EmaMath.NominalDecayFrom(rules[0], 1500));
        Assert.Null(EmaMath.NominalDecayFrom(rules[1], 1500));
        Assert.Equal(8990, EmaMath.NominalDecayFrom(rules[1], 10_000));
        // Both apply the warm-up's decay, the same one, through step 890, where it reaches 0.99 (from 891 the first is capped).
        Assert.Equal(890, EmaMath.IdenticalUntil(rules[0], rules[1], 1500));
        // Without the warm-up they differ from step 1; a late start holds both on the live weights until it.
        var plain = new EmaSettings { Decays = [0.99, 0.999] }.Rules(null);
        Assert.Equal(0, EmaMath.IdenticalUntil(plain[0], plain[1], 1500));
        Assert.Equal(1, EmaMath.NominalDecayFrom(plain[0], 1500));
        var late = new EmaSettings { Decays = [0.99, 0.999], StartStep = 300 }.Rules(null);
        Assert.Equal(299, EmaMath.IdenticalUntil(late[0], late[1], 1500)); // both follow the live weights before step 300
        Assert.Equal(300, EmaMath.NominalDecayFrom(late[0], 1500));
    }

    sealed class Tolerance(double epsilon) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= epsilon;
        public int GetHashCode(double obj) => 0;
    }

    [Fact]
    public void Equivalent_sigma_rel_follows_each_rule_s_own_averaging_profile()
    {
        var run = new EmaSettings();
        EmaRule Rule(EmaTrackSettings track) => track.Resolve(run, "t", null);

        // A plain EMA long past its window: EDM2's steady-state formula √d / (1 − d) / t.
        Assert.Equal(PowerFunctionProfile.SigmaRelOfDecay(0.99, 10_000), EmaMath.SigmaRel(Rule(new EmaTrackSettings { Decay = 0.99 }), 10_000), 1e-9);
        // Updated every 10 steps with the same decay, its profile is ten times as wide in steps.
        Assert.Equal(10 * PowerFunctionProfile.SigmaRelOfDecay(0.99, 100_000), EmaMath.SigmaRel(Rule(new EmaTrackSettings { Decay = 0.99, Every = 10 }), 100_000), 1e-9);
        // SWA of the whole run is the uniform average of the weights after steps 1..T: σ = √((T² − 1) / 12)
        // (to float32's rounding of the weights 1/(n + 1), as AveragedModel computes them).
        const long steps = 1200;
        Assert.Equal(Math.Sqrt((steps * steps - 1) / 12.0) / steps, EmaMath.SigmaRel(Rule(new EmaTrackSettings { Preset = EmaPresets.Swa }), steps), 1e-8);
        // A decay too long for the run keeps most of its weight on the initial weights (step 0), far from the
        // steady-state √d/(1−d)/t = 5: against the profile written out, d^T at step 0 and (1 − d)·d^(T−t) at step t.
        const double d = 0.9999;
        const long t2 = 2000;
        var weights = Enumerable.Range(0, (int)t2 + 1).Select(t => t == 0 ? Math.Pow(d, t2) : (1 - d) * Math.Pow(d, t2 - t)).ToArray();
        var mean = weights.Select((a, t) => a * t).Sum();
        var sigma = Math.Sqrt(weights.Select((a, t) => a * (t - mean) * (t - mean)).Sum()) / t2;
        Assert.Equal(sigma, EmaMath.SigmaRel(Rule(new EmaTrackSettings { Decay = d }), t2), 1e-9);
    }

    /// <summary>A model whose weights are a one-hot vector: at step t they are e_t, so a track's weights read are its profile.</summary>
    sealed class OneHot : nn.Module
    {
        public readonly TorchSharp.Modules.Parameter W;

        public OneHot(int size) : base(nameof(OneHot))
        {
            W = new TorchSharp.Modules.Parameter(zeros(size));
            register_parameter("w", W);
            using var _ = no_grad();
            W[0] = 1;
        }
    }

    [Fact]
    public void Sigma_rel_of_bema_and_lawa_is_that_of_the_weights_they_read()
    {
        const int steps = 120;
        var shape = new EmaRunShape(16, 10);
        foreach (var track in new[]
        {
            new EmaTrackSettings { Preset = EmaPresets.TrlBema, Every = 5, UpdateAfterStep = 7 },
            new EmaTrackSettings { Preset = EmaPresets.Bema, Every = 6, UpdateAfterStep = 3 },
            new EmaTrackSettings { Preset = EmaPresets.Bema, Every = 4, EmaPower = 0 },
            new EmaTrackSettings { Preset = EmaPresets.Lawa, Checkpoints = 4, Every = 9 },
            new EmaTrackSettings { Preset = EmaPresets.Edm, HalfLifeKimg = 0.3 },
        })
        {
            var rule = track.Resolve(new EmaSettings(), "t", shape);
            using var model = new OneHot(steps + 1);
            using var reader = new OneHot(steps + 1);
            using var ema = new ExponentialMovingAverage(model, new EmaSettings { Tracks = [track] }, shape);
            for (var t = 1; t <= steps; t++)
            {
                using (no_grad()) { model.W.zero_(); model.W[t] = 1; }
                ema.Update(t);
            }
            ema.WriteInto(0, reader);
            // The weights read are Σ a_τ e_τ: the profile itself, whose mass is 1 (BEMA's bias terms cancel).
            var profile = reader.W.detach().to(ScalarType.Float64).data<double>().ToArray();
            var taus = Enumerable.Range(0, steps + 1).Select(t => (double)t / steps).ToArray();
            var mass = profile.Sum();
            var mean = profile.Zip(taus, (a, tau) => a * tau).Sum() / mass;
            var variance = profile.Zip(taus, (a, tau) => a * tau * tau).Sum() / mass - mean * mean;
            Assert.True(Math.Abs(mass - 1) < 1e-4, $"{rule.Name}: mass {mass}");
            var expected = Math.Sqrt(Math.Max(0, variance));
            var actual = EmaMath.SigmaRel(rule, steps);
            Assert.True(Math.Abs(expected - actual) < 1e-4, $"{rule.Name}: σ_rel {actual}, its weights' {expected}");
        }
    }

    [Fact]
    public void Tracks_of_the_newer_rules_are_one_track_only_while_they_read_the_same_weights()
    {
        var shape = new EmaRunShape(32, 10);
        EmaRule Rule(EmaTrackSettings track) => track.Resolve(new EmaSettings(), "t", shape);
        // LAWA of 3 and of 5 copies 10 steps apart: the same mean until the fourth copy (step 40).
        Assert.Equal(39, EmaMath.IdenticalUntil(Rule(new() { Preset = EmaPresets.Lawa, Checkpoints = 3, Every = 10 }), Rule(new() { Preset = EmaPresets.Lawa, Checkpoints = 5, Every = 10 }), 200));
        Assert.Equal(200, EmaMath.IdenticalUntil(Rule(new() { Preset = EmaPresets.Lawa, Checkpoints = 3, Every = 10 }), Rule(new() { Preset = EmaPresets.Lawa, Checkpoints = 3, Every = 10 }), 200));
        // TRL's BEMA with another bias power: its EMA is the same, the weights it reads are not.
        Assert.Equal(399, EmaMath.IdenticalUntil(Rule(new() { Preset = EmaPresets.TrlBema }), Rule(new() { Preset = EmaPresets.TrlBema, BiasPower = 0.3 }), 1000));
        // EDM's ramp-up sets two half-lives alike until the longer one's samples seen make them differ.
        var (short_, long_) = (Rule(new() { Preset = EmaPresets.Edm, HalfLifeKimg = 1 }), Rule(new() { Preset = EmaPresets.Edm, HalfLifeKimg = 2 }));
        Assert.Equal(626, EmaMath.IdenticalUntil(short_, long_, 2000)); // the ramp-up, (t − 1)·32·0.05 samples, reaches 1,000 at t = 626
        Assert.Equal(0, EmaMath.IdenticalUntil(Rule(new() { Decay = 0.99 }), Rule(new() { Preset = EmaPresets.Lawa, Every = 1, Checkpoints = 2 }), 100));
    }
}
