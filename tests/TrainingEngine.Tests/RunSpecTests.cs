using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Training;

namespace EmaLab.TrainingEngine.Tests;

public class RunSpecTests
{
    public static TheoryData<string, string> InvalidSpecs() => new()
    {
        { new RunSpec { Dataset = "cifar" }.ToJson(), "dataset" },
        { new RunSpec { Model = "vit" }.ToJson(), "model" },
        { new RunSpec { Optimizer = "lion" }.ToJson(), "optimizer" },
        { new RunSpec { LearningRate = 0 }.ToJson(), "learningRate" },
        { new RunSpec { LearningRate = -1 }.ToJson(), "learningRate" },
        { new RunSpec { BatchSize = 0 }.ToJson(), "batchSize" },
        { new RunSpec { BatchSize = 5000 }.ToJson(), "batchSize" },
        { new RunSpec { Steps = 0 }.ToJson(), "steps" },
        { new RunSpec { Steps = 10_000_000 }.ToJson(), "steps" },
        { new RunSpec { Epochs = 0 }.ToJson(), "epochs" },
        { new RunSpec { EvalInterval = 0 }.ToJson(), "evalInterval" },
        { new RunSpec { Threads = 0 }.ToJson(), "threads" },
        { new RunSpec { Schedule = "linear" }.ToJson(), "schedule" },
        { new RunSpec { Model = "mlp", Hidden = [] }.ToJson(), "hidden" },
        { new RunSpec { Model = "cnn", Channels = [8, 8, 8, 8] }.ToJson(), "channels" },
        { new RunSpec { Ema = new EmaSettings { Decays = [] } }.ToJson(), "ema.decays" },
        { new RunSpec { Ema = new EmaSettings { Decays = [1.0] } }.ToJson(), "ema.decays" },
        { new RunSpec { Ema = new EmaSettings { Decays = [0] } }.ToJson(), "ema.decays" },
        { new RunSpec { Ema = new EmaSettings { Decays = [0.9, 0.9] } }.ToJson(), "ema.decays" },
        { new RunSpec { Ema = new EmaSettings { Decays = Enumerable.Range(1, 9).Select(i => 1 - 1.0 / (i + 1)).ToList() } }.ToJson(), "ema.decays" },
        { new RunSpec { Ema = new EmaSettings { Every = 0 } }.ToJson(), "ema.every" },
        { new RunSpec { Ema = new EmaSettings { StartStep = -1 } }.ToJson(), "ema.startStep" },
    };

    [Theory]
    [MemberData(nameof(InvalidSpecs))]
    public void Each_invalid_field_is_named(string json, string field)
    {
        var spec = RunSpec.FromJson(json);
        var e = Assert.Throws<InvalidSettingException>(spec.Validate);
        Assert.Equal(field, e.Field);
        Assert.DoesNotContain("Parameter", e.Reason);
    }

    [Fact]
    public void A_spec_with_tracks_writes_no_compact_decays_it_does_not_use()
    {
        var compact = new RunSpec { Ema = new EmaSettings { Decays = [0.9] } };
        var tracked = new RunSpec { Ema = new EmaSettings { Tracks = [new EmaTrackSettings { Preset = EmaPresets.Swa }] } };
        Assert.Contains("\"decays\":[0.9]", compact.ToJson());
        Assert.DoesNotContain("decays", tracked.ToJson());
        Assert.DoesNotContain("shadowCount", tracked.ToJson());
        Assert.Equal(["swa"], RunSpec.FromJson(tracked.ToJson()).Ema.Rules(null).Select(r => r.Name));
    }

    [Fact]
    public void Every_broken_rule_is_listed_once_per_field()
    {
        var spec = new RunSpec
        {
            LearningRate = 0, BatchSize = 0, Threads = 0,
            Ema = new EmaSettings { Decays = [1.5, 2.0], Every = 0 },
            PostHoc = new PostHocSettings { SnapshotEvery = 0 },
        };
        Assert.Equal(["learningRate", "batchSize", "threads", "ema.decays", "ema.every", "postHoc.snapshotEvery"], spec.Problems().Select(p => p.Field));
        Assert.Equal("Decay 1.5 is outside (0, 1).", spec.Problems().Single(p => p.Field == "ema.decays").Reason);
        Assert.Equal("learningRate", Assert.Throws<InvalidSettingException>(spec.Validate).Field);
        Assert.Empty(new RunSpec().Problems());
    }

    [Fact]
    public void Nan_learning_rate_is_rejected() =>
        Assert.Equal("learningRate", Assert.Throws<InvalidSettingException>(new RunSpec { LearningRate = double.NaN }.Validate).Field);

    [Fact]
    public void Defaults_are_valid_and_round_trip_through_json()
    {
        var spec = new RunSpec { Ema = new EmaSettings { Decays = [0.9, 0.999], BnPolicy = BatchNormPolicy.Recalibrate } };
        spec.Validate();
        var json = spec.ToJson();
        Assert.Contains("\"bnPolicy\":\"recalibrate\"", json);
        var back = RunSpec.FromJson(json);
        Assert.Equal(json, back.ToJson());
        Assert.Equal([0.9, 0.999], back.Ema.Decays);
    }

    [Fact]
    public void Steps_or_epochs_set_the_length()
    {
        Assert.Equal(22 * 3, new RunSpec { Epochs = 3 }.TotalSteps(22));
        Assert.Equal(10, new RunSpec { Steps = 10, Epochs = 3 }.TotalSteps(22));
        Assert.Equal(22, new RunSpec().TotalSteps(22));
    }

    [Theory]
    [InlineData("mlp", new[] { 64, 32 }, 8, 8)]
    [InlineData("mlp", new[] { 256, 256 }, 28, 28)]
    [InlineData("cnn", new[] { 4, 8 }, 8, 8)]
    [InlineData("cnn", new[] { 16, 32 }, 28, 28)]
    [InlineData("resnet", new[] { 16, 32, 64 }, 28, 28)]
    [InlineData("resnet", new[] { 8, 8, 16 }, 8, 8)]
    [InlineData("resnet", new[] { 4 }, 5, 7)]
    public void The_parameter_count_is_computed_without_building_the_model(string kind, int[] sizes, int height, int width)
    {
        var architecture = new Models.ModelArchitecture
        {
            Kind = kind, Height = height, Width = width, Classes = 10, Hidden = kind == "mlp" ? sizes : [], Channels = kind != "mlp" ? sizes : [],
            Blocks = kind == "resnet" ? 2 : 0,
        };
        using var model = Models.ModelFactory.Build(architecture);
        Assert.Equal(Models.ModelFactory.ParameterCount(model), architecture.ParameterCount());
    }

    [Fact]
    public void The_resnet_is_resnet_20_by_default_with_the_readmes_names_and_shapes()
    {
        var architecture = new RunSpec { Dataset = "mnist-10k", Model = "resnet" }.ArchitectureFor(Data.DatasetCatalog.Load("mnist-10k"));
        Assert.Equal([16, 32, 64], architecture.Channels);
        Assert.Equal(3, architecture.Blocks);
        using var model = Models.ModelFactory.Build(architecture, new TorchSharp.torch.Generator(1));
        var state = model.state_dict();
        // ResNet-20: 19 convolutions (stem + 2 per block × 9) and the head; shortcuts only where a stage starts.
        Assert.Equal(19, state.Keys.Count(k => k.EndsWith("weight") && state[k].ndim == 4 && state[k].shape[2] == 3));
        Assert.Equal(["blocks.3.shortcut.0.weight", "blocks.6.shortcut.0.weight"], state.Keys.Where(k => k.Contains("shortcut.0")).Order());
        Assert.Equal([16L, 1, 3, 3], state["stem.0.weight"].shape);
        Assert.Equal([10L, 64], state["head.weight"].shape);
        Assert.Contains("blocks.8.bn2.num_batches_tracked", state.Keys);
        // 28 → 28 → 14 → 7, pooled: a batch of images gives one row of logits each.
        using var logits = model.forward(TorchSharp.torch.zeros(2, 1, 28, 28));
        Assert.Equal([2L, 10], logits.shape);
        Assert.Equal(architecture.ParameterCount(), Models.ModelFactory.ParameterCount(model));
        Assert.InRange(architecture.ParameterCount(), 270_000, 275_000); // He et al.: ResNet-20 has 0.27 M
    }

    [Fact]
    public void Models_too_deep_or_too_large_are_refused_before_anything_is_built()
    {
        // 32 pooling stages once passed the size check: 1 << 32 wraps to 1.
        Assert.Equal("channels", new RunSpec { Model = "cnn", Channels = Enumerable.Repeat(1, 32).ToArray() }.Problems().Single().Field);
        Assert.Equal("hidden", new RunSpec { Hidden = Enumerable.Repeat(8, 17).ToArray() }.Problems().Single().Field);
        var huge = new RunSpec { Dataset = "mnist-10k", Hidden = [16384, 16384] }.Problems().Single();
        Assert.Equal("hidden", huge.Field);
        Assert.Contains("at most 100,000,000", huge.Reason);
        Assert.Equal("postHoc.snapshotEvery", new RunSpec { Steps = 100_000, PostHoc = new PostHocSettings { SnapshotEvery = 10 } }.Problems().Single().Field);
    }
}
