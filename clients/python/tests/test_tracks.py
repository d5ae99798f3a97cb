import io
import unittest

import torch

from emalab import EmaTracks, InvalidSetting

EVERY_PRESET = [
    0.99,
    {"preset": "tensorflow", "decay": 0.9, "warmup": "tf", "zeroDebias": True},
    {"preset": "timm", "decay": 0.95, "warmup": "power"},
    {"preset": "diffusers", "decay": 0.95, "warmup": "power", "updateAfterStep": 3},
    {"preset": "ema-pytorch", "decay": 0.95, "updateAfterStep": 4, "every": 3},
    {"preset": "keras", "decay": 0.9, "dtype": "bfloat16"},
    {"preset": "lightning", "decay": 0.9, "startStep": 5, "every": 2},
    {"preset": "swa", "startStep": 7, "dtype": "float16"},
]


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def batches(n):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def train(net, optimizer, tracks, data):
    for x, y in data:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tracks.update()


class TracksTests(unittest.TestCase):
    def test_a_resume_from_the_state_dict_continues_exactly(self):
        data = batches(30)
        net = model()
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        straight = EmaTracks(net, EVERY_PRESET)
        train(net, opt, straight, data)

        net = model()
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        first = EmaTracks(net, EVERY_PRESET)
        train(net, opt, first, data[:12])
        saved = io.BytesIO()
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "ema": first.state_dict()}, saved)
        saved.seek(0)
        state = torch.load(saved)
        net = model()
        net.load_state_dict(state["model"])
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        opt.load_state_dict(state["optimizer"])
        resumed = EmaTracks(net, EVERY_PRESET)
        resumed.load_state_dict(state["ema"])
        train(net, opt, resumed, data[12:])

        self.assertEqual(30, resumed.step)
        for name in straight.names:
            for key, value in straight.averaged(name).items():
                self.assertTrue(torch.equal(value, resumed.averaged(name)[key]), f"{name}/{key} differs after the resume")

    def test_the_newer_rules_resume_exactly_between_their_updates(self):
        newer = [{"preset": "trl-bema", "every": 4, "updateAfterStep": 5}, {"preset": "bema", "every": 5},
                 {"preset": "lawa", "checkpoints": 3}, {"preset": "edm", "halfLifeKimg": 0.1}, {"halfLifeSamples": 200}]
        shape = {"batch_size": 16, "batches_per_epoch": 4}
        data = batches(30)
        net = model()
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        straight = EmaTracks(net, newer, **shape)
        train(net, opt, straight, data)
        self.assertEqual(["trl-bema-every4-after5", "bema-every5", "lawa-k3-every4", "edm-0.1kimg", "ema-hl200"], straight.names)

        net = model()
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        first = EmaTracks(net, newer, **shape)
        train(net, opt, first, data[:13])
        state = {"model": {k: v.clone() for k, v in net.state_dict().items()}, "optimizer": opt.state_dict(), "ema": first.state_dict()}
        net = model()
        net.load_state_dict(state["model"])
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        opt.load_state_dict(state["optimizer"])
        resumed = EmaTracks(net, newer, **shape)
        resumed.load_state_dict(state["ema"])
        train(net, opt, resumed, data[13:])
        for name in straight.names:
            for key, value in straight.averaged(name).items():
                self.assertTrue(torch.equal(value, resumed.averaged(name)[key]), f"{name}/{key} differs after the resume")

    def test_bema_corrects_parameters_only_and_averages_batch_norm_statistics(self):
        net = torch.nn.BatchNorm1d(4)
        tracks = EmaTracks(net, [{"preset": "trl-bema", "every": 2}])
        expected = torch.ones(4)
        for t in range(1, 41):
            with torch.no_grad():
                net.weight.add_(0.1)
                net.running_var.fill_(0.9 ** t)  # falls towards 0; θ₀'s was 1
            tracks.update()
            if t % 2 == 0:
                beta = (10 + t) ** -0.5
                expected.mul_(1 - beta).add_(net.running_var, alpha=beta)
        averaged = tracks.averaged(tracks.names[0])
        self.assertTrue(torch.equal(expected, averaged["running_var"]))
        self.assertGreater(averaged["running_var"].min().item(), 0)

    def test_a_resume_into_other_rules_is_refused(self):
        tracks = EmaTracks(model(), [0.99, 0.999])
        with self.assertRaisesRegex(ValueError, "The saved tracks are ema-0.99, ema-0.999; these are ema-0.99"):
            EmaTracks(model(), [0.99]).load_state_dict(tracks.state_dict())
        other = EmaTracks(model(), [0.99, {"decay": 0.999, "zeroDebias": True, "name": "ema-0.999"}])
        with self.assertRaisesRegex(ValueError, "another rule"):
            other.load_state_dict(tracks.state_dict())

    def test_a_half_precision_shadow_stops_moving_where_float32_follows(self):
        net = torch.nn.Linear(1, 64, bias=False)
        with torch.no_grad():
            net.weight.fill_(1.0)
        tracks = EmaTracks(net, [{"decay": 0.999, "name": "f32"}, {"decay": 0.999, "dtype": "bfloat16", "name": "bf16"}])
        for _ in range(50):
            with torch.no_grad():
                net.weight.add_(1e-4)
            tracks.update()
        self.assertTrue(torch.all(tracks.averaged("bf16")["weight"] == 1.0), "each update is below half a bfloat16 unit: lost")
        self.assertTrue(torch.all(tracks.averaged("f32")["weight"] > 1.0))
        self.assertEqual(torch.bfloat16, tracks.state_dict()["tracks"][1]["shadow"][0].dtype)

    def test_swapped_holds_the_track_inside_and_the_live_weights_after_even_on_error(self):
        net = model()
        tracks = EmaTracks(net, [0.5])
        train(net, torch.optim.SGD(net.parameters(), lr=0.5), tracks, batches(5))
        live = {k: v.clone() for k, v in net.state_dict().items()}
        averaged = tracks.averaged("ema-0.5")
        with self.assertRaises(RuntimeError):
            with tracks.swapped("ema-0.5") as inside:
                for key, value in averaged.items():
                    self.assertTrue(torch.equal(value, inside.state_dict()[key]))
                self.assertFalse(torch.equal(live["0.weight"], inside.state_dict()["0.weight"]))
                raise RuntimeError("evaluation failed")
        for key, value in live.items():
            self.assertTrue(torch.equal(value, net.state_dict()[key]), key)

    def test_a_zero_debiased_track_reads_unbiased_from_its_first_update(self):
        net = torch.nn.Linear(3, 2)
        tracks = EmaTracks(net, [{"decay": 0.999, "zeroDebias": True}, {"preset": "tensorflow", "decay": 0.999, "zeroDebias": True}])
        self.assertTrue(torch.equal(net.weight, tracks.averaged("ema-0.999-debias")["weight"]), "before any update: the live weights")
        tracks.update()
        for name, saved in zip(tracks.names, tracks.state_dict()["tracks"]):
            self.assertTrue(torch.allclose(net.weight, tracks.averaged(name)["weight"], rtol=1e-5), name)
            self.assertTrue(torch.allclose(net.weight * 0.001, saved["shadow"][0], rtol=1e-4), "stored: (1 − d)·w, read: w")

    def test_batch_norm_statistics_follow_the_policy(self):
        averaged = EmaTracks(model(), [0.9], bn_policy="average")
        self.assertIn("1.running_mean", averaged.averaged_names)
        copied = EmaTracks(model(), [0.9], bn_policy="copy")
        self.assertNotIn("1.running_mean", copied.averaged_names)
        self.assertIn("1.num_batches_tracked", copied.copied_names)

        net = torch.nn.Sequential(torch.nn.BatchNorm1d(4))
        tracks = EmaTracks(net, [0.9], bn_policy="recalibrate")
        with self.assertRaisesRegex(ValueError, "recalibrate"):
            with tracks.swapped("ema-0.9"):
                pass
        data = [torch.full((8, 4), 2.0), torch.full((8, 4), 4.0)]
        with tracks.swapped("ema-0.9", recalibrate=data) as inside:
            self.assertTrue(torch.allclose(inside[0].running_mean, torch.full((4,), 3.0)), "the cumulative mean of the batches")
        self.assertTrue(torch.equal(net[0].running_mean, torch.zeros(4)), "the live statistics come back")

    def test_steps_count_from_one_or_follow_the_global_step(self):
        net = torch.nn.Linear(2, 2)
        tracks = EmaTracks(net, [{"preset": "swa", "startStep": 5}])
        tracks.update()
        self.assertEqual(1, tracks.step)
        tracks.update(step=5)
        self.assertEqual(1, tracks.state_dict()["tracks"][0]["updates"], "step 5 is the start: the first copy")
        with self.assertRaises(ValueError):
            tracks.update(step=0)

    def test_bad_settings_name_their_field(self):
        with self.assertRaises(InvalidSetting) as e:
            EmaTracks(torch.nn.Linear(2, 2), [0.9], bn_policy="freeze")
        self.assertEqual("bnPolicy", e.exception.field)
        with self.assertRaises(KeyError):
            EmaTracks(torch.nn.Linear(2, 2), [0.9]).averaged("ema-0.5")
