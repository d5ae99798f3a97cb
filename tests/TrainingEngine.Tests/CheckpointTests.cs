using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EmaLab.TrainingEngine.Averaging;
using EmaLab.TrainingEngine.Checkpoints;
using EmaLab.TrainingEngine.Diffusion;
using EmaLab.TrainingEngine.Models;
using EmaLab.TrainingEngine.Training;
using static TorchSharp.torch;
using EmaLab.TrainingEngine.Formats;

namespace EmaLab.TrainingEngine.Tests;

[Collection(TrainingCollection.Name)]
public class CheckpointTests
{
    public static TheoryData<string> ResumeSpecs() => new()
    {
        // MLP + Adam, cosine schedule, warm-up, zero-debias, every 2, start step 10, averaged buffers (none here).
        new RunSpec
        {
            Model = "mlp", Hidden = [48], Optimizer = RunSpec.Adam, LearningRate = 2e-3, Schedule = RunSpec.Cosine,
            BatchSize = 50, Steps = 80, Seed = 5, EvalInterval = 25,
            Ema = new EmaSettings { Decays = [0.9, 0.97, 0.99], Warmup = true, ZeroDebias = true, Every = 2, StartStep = 10 },
        }.ToJson(),
        // CNN with BatchNorm + SGD momentum + step schedule, recalibrated BN, fused application; 80 steps cross an epoch boundary (44 batches per epoch).
        new RunSpec
        {
            Model = "cnn", Channels = [4, 8], Optimizer = RunSpec.Sgd, LearningRate = 0.05, Momentum = 0.9, WeightDecay = 1e-4,
            Schedule = RunSpec.StepSchedule, StepSize = 30, StepGamma = 0.5, BatchSize = 32, Steps = 80, Seed = 9, EvalInterval = 40,
            Ema = new EmaSettings { Decays = [0.9, 0.99], BnPolicy = BatchNormPolicy.Recalibrate, RecalibrationBatches = 3 },
            EmaApplication = EmaApplication.Fused,
        }.ToJson(),
        // Mixed tracks: every preset's counters (copies, n_averaged, warm-up counts) and a bfloat16 shadow survive a resume.
        new RunSpec
        {
            Model = "mlp", Hidden = [32], Optimizer = RunSpec.Sgd, LearningRate = 0.05, BatchSize = 40, Steps = 80, Seed = 3, EvalInterval = 40,
            Ema = new EmaSettings
            {
                Tracks =
                [
                    new EmaTrackSettings { Decay = 0.99, Warmup = EmaWarmup.Power, Every = 3, AdjustDecay = true, Init = EmaInit.FirstUpdate },
                    new EmaTrackSettings { Preset = EmaPresets.Timm, Decay = 0.99, Warmup = EmaWarmup.Power, UpdateAfterStep = 5 },
                    new EmaTrackSettings { Preset = EmaPresets.EmaPytorch, Decay = 0.99, UpdateAfterStep = 20, Every = 3 },
                    new EmaTrackSettings { Preset = EmaPresets.Keras, Decay = 0.95 },
                    new EmaTrackSettings { Preset = EmaPresets.Swa, StartStep = 30, Every = 2 },
                    new EmaTrackSettings { Preset = EmaPresets.TensorFlow, Decay = 0.97, Warmup = EmaWarmup.Tf, ZeroDebias = true },
                    new EmaTrackSettings { Decay = 0.97, Dtype = EmaDtype.BFloat16 },
                ],
            },
        }.ToJson(),
        // The rules adopted since: BEMA of both sources (θ₀ and the EMA kept apart from the weights read, TRL's anchor at
        // update_after), LAWA's ring mid-way between copies, EDM's half-life in samples, and a half-life row of the run's own rule.
        new RunSpec
        {
            Model = "mlp", Hidden = [32], Optimizer = RunSpec.Adam, LearningRate = 3e-3, BatchSize = 40, Steps = 80, Seed = 6, EvalInterval = 40,
            Ema = new EmaSettings
            {
                Tracks =
                [
                    new EmaTrackSettings { Preset = EmaPresets.TrlBema, Every = 6, UpdateAfterStep = 10 },
                    new EmaTrackSettings { Preset = EmaPresets.Bema, Every = 7, UpdateAfterStep = 5 },
                    new EmaTrackSettings { Preset = EmaPresets.Lawa, Checkpoints = 3, Every = 9 },
                    new EmaTrackSettings { Preset = EmaPresets.Edm, HalfLifeKimg = 0.4 },
                    new EmaTrackSettings { HalfLifeSamples = 800 },
                ],
            },
            // Switch EMA to the EDM track every 15 steps: the pause at 37 falls between switches.
            SwitchEma = new SwitchEmaSettings { Track = "edm-0.4kimg", Every = 15 },
        }.ToJson(),
        // A ResNet with the issue-26 recipe: augmentation (crop and flip), label smoothing, warm-up then cosine, clipping,
        // Adam exempting norms and biases from its decay; the augmentation's draws and the warm-up are pure functions of the step.
        new RunSpec
        {
            Model = "resnet", Channels = [8, 16], Blocks = 1, Optimizer = RunSpec.Adam, LearningRate = 3e-3, WeightDecay = 0.05,
            DecayNormsAndBiases = false, Schedule = RunSpec.Cosine, LearningRateWarmup = 20, GradientClipNorm = 1.0, LabelSmoothing = 0.1,
            RandomCropPadding = 1, HorizontalFlip = true, BatchSize = 32, Steps = 80, Seed = 4, EvalInterval = 40,
            Ema = new EmaSettings { Decays = [0.9, 0.99] },
        }.ToJson(),
        // A diffusion U-Net (cosine schedule, flips): its timesteps and noise are drawn from the step, its evaluation's noise is fixed.
        new RunSpec
        {
            Model = "unet", Channels = [8, 16], Blocks = 1, Optimizer = RunSpec.Adam, LearningRate = 2e-3, HorizontalFlip = true,
            BatchSize = 32, Steps = 80, Seed = 8, EvalInterval = 40,
            Diffusion = new DiffusionSettings { Schedule = DiffusionSettings.CosineSchedule, Timesteps = 200, SamplingSteps = 3, Samples = 100, FinalSamples = 100 },
            Ema = new EmaSettings { Decays = [0.9, 0.99], Warmup = true },
        }.ToJson(),
    };

    [Theory]
    [MemberData(nameof(ResumeSpecs))]
    public void A_version_1_bundle_with_torchsharps_optimizer_state_resumes_exactly(string specJson)
    {
        var spec = RunSpec.FromJson(specJson);
        using var uninterrupted = TrainingSession.Create(spec, "r");
        uninterrupted.Train(new RecordingObserver());

        using var bundle = new MemoryStream();
        using (var first = TrainingSession.Create(spec, "r"))
        {
            first.Train(new RecordingObserver(), stopAfterStep: 37);
            ResumeBundle.Save(first, bundle);
            bundle.Position = 0;
            DowngradeToVersion1(bundle, first);
        }
        bundle.Position = 0;
        using var resumed = ResumeBundle.Resume(bundle);
        resumed.Train(new RecordingObserver());
        TensorAssert.Identical(TrainingTests.State(uninterrupted.LiveModel), TrainingTests.State(resumed.LiveModel));
    }

    /// <summary>Rewrites a bundle as the engine wrote it before it had its own optimizers: TorchSharp's optimizer.bin, format 1.</summary>
    static void DowngradeToVersion1(MemoryStream bundle, TrainingSession session)
    {
        var spec = session.Spec;
        using var torchSharp = spec.Optimizer == RunSpec.Sgd
            ? (TorchSharp.Modules.OptimizerHelper)optim.SGD(session.LiveModel.parameters(), spec.LearningRate, momentum: spec.Momentum, weight_decay: spec.WeightDecay)
            : optim.Adam(session.LiveModel.parameters(), spec.LearningRate, weight_decay: spec.WeightDecay);
        var ours = session.Optimizer.StateTensors().ToDictionary(t => t.Key, t => t.Tensor);
        var names = session.LiveModel.named_parameters().Select(p => p.name).ToArray();
        using (no_grad())
        {
            var states = torchSharp.state_dict().State;
            for (var i = 0; i < names.Length; i++)
            {
                if (states[i] is TorchSharp.Modules.Adam.State adam)
                {
                    adam.exp_avg.copy_(ours[$"{names[i]}/exp_avg"]);
                    adam.exp_avg_sq.copy_(ours[$"{names[i]}/exp_avg_sq"]);
                    adam.step = session.Optimizer.Steps;
                }
                else ((TorchSharp.Modules.SGD.State)states[i]).momentum_buffer = ours[$"{names[i]}/momentum_buffer"].clone();
            }
        }
        using var zip = new System.IO.Compression.ZipArchive(bundle, System.IO.Compression.ZipArchiveMode.Update, leaveOpen: true);
        zip.GetEntry("optimizer.safetensors")!.Delete();
        using (var writer = new BinaryWriter(zip.CreateEntry("optimizer.bin").Open())) torchSharp.save_state_dict(writer);
        var manifestEntry = zip.GetEntry("bundle.json")!;
        string manifest;
        using (var reader = new StreamReader(manifestEntry.Open())) manifest = reader.ReadToEnd();
        manifestEntry.Delete();
        var node = System.Text.Json.Nodes.JsonNode.Parse(manifest)!.AsObject();
        node["formatVersion"] = 1;
        node.Remove("optimizerSteps");
        using var output = new StreamWriter(zip.CreateEntry("bundle.json").Open());
        output.Write(node.ToJsonString());
    }

    [Theory]
    [MemberData(nameof(ResumeSpecs))]
    public void Resuming_from_a_bundle_continues_exactly(string specJson)
    {
        var spec = RunSpec.FromJson(specJson);
        using var uninterrupted = TrainingSession.Create(spec, "r");
        var expected = uninterrupted.Train(new RecordingObserver());

        using var bundle = new MemoryStream();
        using (var first = TrainingSession.Create(spec, "r"))
        {
            var paused = first.Train(new RecordingObserver(), stopAfterStep: 37);
            Assert.Equal(TrainingOutcome.Paused, paused.Outcome);
            ResumeBundle.Save(first, bundle);
        }
        bundle.Position = 0;
        using var resumed = ResumeBundle.Resume(bundle);
        Assert.Equal(37, resumed.Step);
        var observer = new RecordingObserver();
        var actual = resumed.Train(observer);

        Assert.Equal(TrainingOutcome.Completed, actual.Outcome);
        Assert.Equal(38, observer.Series("raw", MetricKeys.TrainLoss).First().Step);
        Assert.Equal("Resuming at step 37 of 80.", observer.Log[0].Message);
        TensorAssert.Identical(TrainingTests.State(uninterrupted.LiveModel), TrainingTests.State(resumed.LiveModel));
        TensorAssert.Identical(uninterrupted.Ema.StateTensors(), resumed.Ema.StateTensors());
        Assert.Equal(uninterrupted.Ema.Counters(), resumed.Ema.Counters());
        TensorAssert.Identical(uninterrupted.Optimizer.StateTensors(), resumed.Optimizer.StateTensors());
        Assert.Equal(uninterrupted.Optimizer.Steps, resumed.Optimizer.Steps);
        Assert.Equal(expected.LastEvaluation, actual.LastEvaluation);
    }

    [Fact]
    public void A_bundle_saved_before_the_first_step_resumes()
    {
        // Shadow counters hold NaN (no effective decay yet) until the first update: the manifest must carry it.
        using var fresh = TrainingSession.Create(new RunSpec { Hidden = [8], Steps = 5 }, "early");
        using var bundle = new MemoryStream();
        ResumeBundle.Save(fresh, bundle);
        bundle.Position = 0;
        using var resumed = ResumeBundle.Resume(bundle);
        Assert.Equal(0, resumed.Step);
        Assert.True(double.IsNaN(resumed.Ema.Shadows[0].LastEffectiveDecay));
        Assert.Equal(TrainingOutcome.Completed, resumed.Train(new RecordingObserver()).Outcome);
    }

    [Fact]
    public void Resume_bundle_file_is_written_atomically_and_reloads()
    {
        var directory = Directory.CreateTempSubdirectory("emalab-bundle-");
        try
        {
            var path = Path.Combine(directory.FullName, "resume.zip");
            using var session = TrainingSession.Create(new RunSpec { Hidden = [16], Steps = 10, EvalInterval = 5 }, "x");
            session.Train(new RecordingObserver());
            ResumeBundle.SaveAtomically(session, path);
            Assert.Equal(["resume.zip"], directory.GetFiles().Select(f => f.Name));
            using var again = ResumeBundle.Resume(path);
            Assert.Equal(10, again.Step);
            Assert.Equal("x", again.RunId);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public void Exported_ema_track_is_spec_conformant_safetensors_and_round_trips()
    {
        var spec = new RunSpec { Model = "cnn", Channels = [4, 8], Steps = 40, EvalInterval = 20, Seed = 2, Ema = new EmaSettings { Decays = [0.9, 0.95] } };
        using var session = TrainingSession.Create(spec, "run-7");
        session.Train(new RecordingObserver());
        using var file = new MemoryStream();
        CheckpointExport.Export(session, "ema-0.95", file);
        var bytes = file.ToArray();

        // The format, read by hand: u64 LE header length, JSON header (padded to 8), then data.
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, headerLength % 8);
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, headerLength));
        var metadata = header.RootElement.GetProperty("__metadata__");
        Assert.All(metadata.EnumerateObject(), p => Assert.Equal(JsonValueKind.String, p.Value.ValueKind));
        Assert.Equal("ema-0.95", metadata.GetProperty("track").GetString());
        Assert.Equal("0.95", metadata.GetProperty("decay").GetString());
        Assert.Equal("40", metadata.GetProperty("step").GetString());
        Assert.Equal("digits-8x8", metadata.GetProperty("dataset").GetString());
        Assert.Equal("cnn", ModelArchitecture.FromJson(metadata.GetProperty("architecture").GetString()!).Kind);
        var preprocessing = JsonDocument.Parse(metadata.GetProperty("preprocessing").GetString()!).RootElement;
        Assert.Equal(1.0 / 16, preprocessing.GetProperty("scale").GetDouble());

        var conv = header.RootElement.GetProperty("0.weight");
        Assert.Equal("F32", conv.GetProperty("dtype").GetString());
        Assert.Equal([4L, 1, 3, 3], conv.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
        var offsets = conv.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        Assert.Equal(4 * 9 * 4, offsets[1] - offsets[0]);
        var tracked = header.RootElement.GetProperty("1.num_batches_tracked");
        Assert.Equal("I64", tracked.GetProperty("dtype").GetString());
        var dataEnd = header.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
            .Max(p => p.Value.GetProperty("data_offsets")[1].GetInt64());
        Assert.Equal(bytes.Length, 8 + headerLength + dataEnd);

        // The exported weights are the shadow's, not the live model's.
        var firstWeight = BitConverter.ToSingle(bytes, 8 + headerLength + (int)offsets[0]);
        Assert.Equal(session.LoadTrack("ema-0.95").state_dict()["0.weight"].flatten()[0].item<float>(), firstWeight);
        Assert.NotEqual(session.LiveModel.state_dict()["0.weight"].flatten()[0].item<float>(), firstWeight);

        // Import rebuilds the model; it scores exactly what the engine reported.
        file.Position = 0;
        using var imported = CheckpointExport.Import(file);
        var reported = session.Evaluate("ema-0.95");
        var rescored = session.Evaluator.Evaluate(imported.Model);
        Assert.Equal(reported, rescored);
        Assert.Equal(reported.Accuracy, double.Parse(imported.Metadata["eval_accuracy"], CultureInfo.InvariantCulture));
        Assert.Equal(session.Data.Normalization, imported.Preprocessing.ToNormalization());
    }

    [Fact]
    public void An_exported_track_carries_its_whole_rule()
    {
        var spec = new RunSpec
        {
            Hidden = [16], Steps = 30, EvalInterval = 30,
            Ema = new EmaSettings { Tracks = [new EmaTrackSettings { Preset = EmaPresets.Timm, Decay = 0.99, Warmup = EmaWarmup.Power }, new EmaTrackSettings { Preset = EmaPresets.Swa, StartStep = 20 }] },
        };
        using var session = TrainingSession.Create(spec, "rules");
        session.Train(new RecordingObserver());
        Assert.Equal(["raw", "ema-0.99-timm-warmup", "swa-from-20"], session.Tracks);

        foreach (var (track, preset, decay) in new[] { ("ema-0.99-timm-warmup", "timm", "0.99"), ("swa-from-20", "swa", "") })
        {
            using var file = new MemoryStream();
            CheckpointExport.Export(session, track, file);
            file.Position = 0;
            using var imported = CheckpointExport.Import(file);
            Assert.Equal(decay, imported.Metadata["decay"]);
            var rule = JsonSerializer.Deserialize<EmaRule>(imported.Metadata["ema_rule"], RunSpec.JsonOptions)!;
            Assert.Equal(session.Ema.Shadows.Single(s => s.Track == track).Rule, rule);
            Assert.Equal(preset, rule.Preset);
        }
        // The spec round-trips with its tracks and without the fields nobody set.
        var json = spec.ToJson();
        Assert.DoesNotContain("null", json);
        Assert.Equal(spec.Ema.Rules(null), RunSpec.FromJson(json).Ema.Rules(null));
    }

    [Fact]
    public void Import_rejects_files_that_are_not_checkpoints_of_the_architecture()
    {
        using var stream = new MemoryStream();
        using (var t = ones(3)) SafeTensors.Write(stream, [("x", t)], new Dictionary<string, string> { ["format"] = "other" });
        stream.Position = 0;
        var e = Assert.Throws<InvalidDataException>(() => CheckpointExport.Import(stream, "other.safetensors"));
        Assert.Contains("not an EMA Lab checkpoint", e.Message);

        var truncated = new MemoryStream(new byte[] { 16, 0, 0, 0, 0, 0, 0, 0, (byte)'{' });
        Assert.Throws<InvalidDataException>(() => SafeTensors.Read(truncated));
    }

    [Fact]
    public void Import_names_a_tensor_whose_shape_does_not_fit_the_architecture()
    {
        using var wide = TrainingSession.Create(new RunSpec { Hidden = [16], Steps = 1 });
        using var narrow = TrainingSession.Create(new RunSpec { Hidden = [8], Steps = 1 });
        using var exported = new MemoryStream();
        CheckpointExport.Export(wide, "raw", exported);
        exported.Position = 0;
        using var content = SafeTensors.Read(exported);
        using var forged = new MemoryStream();
        SafeTensors.Write(forged, narrow.LiveModel.state_dict().Select(p => (p.Key, p.Value)), content.Metadata);
        forged.Position = 0;

        var e = Assert.Throws<InvalidDataException>(() => CheckpointExport.Import(forged, "forged.safetensors"));
        Assert.Equal("forged.safetensors: tensor 1.weight has shape [8, 64], the model needs [16, 64].", e.Message);
    }

    [Fact]
    public void Safetensors_round_trip_keeps_dtypes_shapes_values_and_metadata()
    {
        using var a = arange(12, ScalarType.Float32).reshape(3, 4);
        using var b = tensor(new long[] { -5, 7 });
        using var c = tensor(new double[] { Math.PI });
        using var stream = new MemoryStream();
        SafeTensors.Write(stream, [("a", a), ("b", b), ("c", c)], new Dictionary<string, string> { ["k"] = "v" });
        stream.Position = 0;
        using var content = SafeTensors.Read(stream);
        TensorAssert.Identical(a, content.Tensors["a"]);
        TensorAssert.Identical(b, content.Tensors["b"]);
        TensorAssert.Identical(c, content.Tensors["c"]);
        Assert.Equal("v", content.Metadata["k"]);
    }

    [Fact]
    public void A_file_that_cannot_fit_on_the_disk_is_refused_before_a_byte_is_written()
    {
        var directory = Directory.CreateTempSubdirectory("emalab-disk-").FullName;
        try
        {
            var path = Path.Combine(directory, "huge.safetensors");
            Assert.True(DiskSpace.FreeBytes(path) > 0);
            var written = false;
            var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, long.MaxValue / 2, _ => written = true));
            Assert.StartsWith("Not enough free disk space for huge.safetensors", e.Message);
            Assert.False(written);
            Assert.Empty(Directory.GetFiles(directory));

            // A write that fails half-way leaves neither the file nor its partial.
            Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, 1, stream => { stream.WriteByte(1); throw new InvalidOperationException("boom"); }));
            Assert.Empty(Directory.GetFiles(directory));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
