import math
import unittest

from emalab import rules as R


class ResolveTests(unittest.TestCase):
    def test_a_decay_is_emalabs_rule_with_the_shared_settings(self):
        rule = R.resolve(0.999, R.Shared(warmup=True, zeroDebias=True, every=2, startStep=10))
        self.assertEqual(("ema-0.999", "emalab", "tf", True, 2, 10), (rule.name, rule.preset, rule.warmup, rule.zeroDebias, rule.every, rule.startStep))

    def test_presets_take_their_librarys_defaults_and_names(self):
        names = [r.name for r in R.resolve_all([
            {"preset": "timm"}, {"preset": "timm", "warmup": "power"}, {"preset": "ema-pytorch"}, {"preset": "keras"},
            {"preset": "averaged-model"}, {"preset": "lightning"}, {"preset": "swa", "startStep": 1500},
            {"preset": "tensorflow", "decay": 0.99, "zeroDebias": True, "dtype": "bfloat16"}])]
        self.assertEqual(["ema-0.9999-timm", "ema-0.9999-timm-warmup", "ema-0.9999-ema-pytorch", "ema-0.99-keras",
                          "ema-0.999-averaged-model", "ema-0.999-lightning", "swa-from-1500", "ema-0.99-tensorflow-debias-bf16"], names)
        pytorch = R.resolve({"preset": "ema-pytorch"})
        self.assertEqual((100, 10, "power"), (pytorch.updateAfterStep, pytorch.every, pytorch.warmup))

    def test_the_newer_rules_take_their_sources_defaults(self):
        shape = R.Shape(batchSize=128, batchesPerEpoch=468)
        trl = R.resolve({"preset": "trl-bema"}, shape=shape)
        self.assertEqual((400, 0.5, 0.2, 10, 1.0, 0, 0.0), (trl.every, trl.emaPower, trl.biasPower, trl.lag, trl.multiplier,
                                                           trl.updateAfterStep, trl.minEmaMultiplier))
        self.assertEqual(100, R.resolve({"preset": "bema"}).every)
        lawa = R.resolve({"preset": "lawa"}, shape=shape)
        self.assertEqual((5, 468, "lawa-k5-every468"), (lawa.checkpoints, lawa.every, lawa.name))
        edm = R.resolve({"preset": "edm"}, shape=shape)
        self.assertEqual((500.0, 0.05, 128, "edm-500kimg"), (edm.halfLifeKimg, edm.rampupRatio, edm.batchSize, edm.name))
        self.assertEqual("edm-500kimg-norampup", R.resolve({"preset": "edm", "rampupRatio": 0}, shape=shape).name)
        half = R.resolve({"halfLifeSamples": 12800}, shape=shape)
        self.assertEqual((math.pow(0.5, 0.01), "ema-hl12800"), (half.decay, half.name))

    def test_the_newer_rules_refuse_bad_values_by_path(self):
        shape = R.Shape(32, 10)
        for track, field in [({"preset": "trl-bema", "emaPower": -1}, "emaPower"), ({"preset": "bema", "multiplier": 1.5}, "multiplier"),
                             ({"preset": "trl-bema", "lag": 0, "multiplier": 0.5}, "lag"), ({"preset": "lawa", "checkpoints": 0}, "checkpoints"),
                             ({"preset": "edm", "rampupRatio": -1}, "rampupRatio"), ({"preset": "lawa", "decay": 0.9}, "decay"),
                             ({"halfLifeSamples": 100, "decay": 0.9}, "halfLifeSamples"), ({"preset": "bema", "dtype": "bfloat16"}, "dtype")]:
            with self.subTest(track=track), self.assertRaises(R.InvalidSetting) as e:
                R.resolve_all([track], shape=shape)
            self.assertEqual(f"tracks[0].{field}", e.exception.field)
        # Without the run's batch size a half-life in samples cannot be a decay; without its epoch, LAWA needs 'every'.
        for track, field in [({"preset": "edm"}, "halfLifeKimg"), ({"halfLifeSamples": 10}, "halfLifeSamples"), ({"preset": "lawa"}, "every")]:
            with self.subTest(track=track), self.assertRaises(R.InvalidSetting) as e:
                R.resolve_all([track])
            self.assertEqual(f"tracks[0].{field}", e.exception.field)

    def test_a_setting_the_preset_lacks_is_refused_by_its_path(self):
        with self.assertRaises(R.InvalidSetting) as e:
            R.resolve_all([0.99, {"preset": "keras", "warmup": "tf"}])
        self.assertEqual("tracks[1].warmup", e.exception.field)
        self.assertIn("The keras preset has no 'warmup' setting", e.exception.message)

    def test_bad_values_are_refused_as_the_engine_refuses_them(self):
        for track, field in [({"decay": 1.0}, "decay"), ({"preset": "timm", "warmup": "tf"}, "warmup"),
                             ({"decay": 0.9, "dtype": "float8"}, "dtype"), ({"decay": 0.9, "zeroDebias": True, "init": "first-update"}, "zeroDebias"),
                             ({"decay": 0.9, "minDecay": 0.95}, "minDecay"), ({"preset": "nope"}, "preset"), ({"decay": 0.9, "name": "raw"}, "name")]:
            with self.subTest(track=track), self.assertRaises(R.InvalidSetting) as e:
                R.resolve_all([track])
            self.assertEqual(f"tracks[0].{field}", e.exception.field)

    def test_generated_names_stay_unique_and_given_ones_must_be(self):
        self.assertEqual(["ema-0.99", "ema-0.99-2"], [r.name for r in R.resolve_all([0.99, 0.99])])
        with self.assertRaises(R.InvalidSetting):
            R.resolve_all([{"decay": 0.9, "name": "a"}, {"decay": 0.99, "name": "a"}])
        with self.assertRaises(R.InvalidSetting):
            R.resolve_all([0.9] * 9)

    def test_the_decay_is_written_as_the_engine_writes_it(self):
        self.assertEqual("ema-0.9999", R.decay_name(0.9999))
        self.assertEqual("ema-1E-05", R.decay_name(1e-05))


class ScheduleTests(unittest.TestCase):
    def test_tensorflow_warmup_is_float32_and_caps_the_decay(self):
        rule = R.resolve({"preset": "tensorflow", "decay": 0.999, "warmup": "tf"})
        step = R.next_step(rule, 1, 0)
        self.assertEqual(R.f32(R.f32(2.0) / R.f32(11.0)), step.decay)
        self.assertEqual(R.f32(1.0 - step.decay), step.a)

    def test_swa_is_a_uniform_average_from_its_start(self):
        rule = R.resolve({"preset": "swa", "startStep": 3})
        self.assertEqual(R.NONE, R.next_step(rule, 2, 0).action)
        self.assertEqual(R.COPY, R.next_step(rule, 3, 0).action)
        self.assertEqual(R.f32(1 / 3), R.next_step(rule, 5, 2).a)

    def test_ema_pytorch_copies_until_its_update_after_step_then_every_tenth(self):
        rule = R.resolve({"preset": "ema-pytorch"})
        self.assertEqual(R.FOLLOW_LIVE, R.next_step(rule, 1, 0).action)
        self.assertEqual(R.NONE, R.next_step(rule, 2, 0).action)
        self.assertEqual(R.FOLLOW_LIVE, R.next_step(rule, 101, 0).action)
        self.assertEqual(R.AVERAGE, R.next_step(rule, 111, 0).action)

    def test_power_warmup_starts_at_zero_and_never_passes_the_decay(self):
        rule = R.resolve({"preset": "timm", "decay": 0.99, "warmup": "power"})
        self.assertEqual(0.0, R.power_warmup(rule, 0))
        self.assertTrue(all(R.power_warmup(rule, n) <= 0.99 for n in range(1, 100_000, 997)))
        self.assertTrue(math.isclose(0.99, R.power_warmup(rule, 10**7)))
