import json
import os
import tempfile
import unittest

import torch

from emalab import InvalidSetting, safetensors
from emalab.posthoc import PostHocProfiles, gamma


def net():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))


def step(model, optimizer):
    loss = model(torch.randn(8, 4)).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


class PostHocTests(unittest.TestCase):
    def test_snapshots_are_written_every_n_steps_and_at_the_end_in_the_engines_layout(self):
        with tempfile.TemporaryDirectory() as folder:
            model = net()
            written = []
            profiles = PostHocProfiles(model, (0.05, 0.1), snapshot_every=4, folder=folder, bn_policy="copy",
                                       on_snapshot=lambda path, s: written.append((os.path.basename(path), s)))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(10):
                step(model, optimizer)
                profiles.update()
            profiles.snapshot()
            profiles.snapshot()  # once per step
            self.assertEqual([("snapshot-000000004.safetensors", 4), ("snapshot-000000008.safetensors", 8),
                              ("snapshot-000000010.safetensors", 10)], written)
            self.assertEqual(sorted(name for name, _ in written), sorted(os.listdir(folder)), "no partial file left")
            tensors, meta = safetensors.load(os.path.join(folder, "snapshot-000000010.safetensors"))
        self.assertEqual({"format": "emalab-posthoc/1", "step": "10"}, {k: meta[k] for k in ("format", "step")})
        self.assertEqual([0.05, 0.1], json.loads(meta["sigma_rels"]))
        self.assertEqual(sorted(["pf-0.05/0.weight", "pf-0.05/0.bias", "pf-0.05/1.weight", "pf-0.05/1.bias",
                                 "pf-0.1/0.weight", "pf-0.1/0.bias", "pf-0.1/1.weight", "pf-0.1/1.bias",
                                 "buffers/1.running_mean", "buffers/1.running_var", "buffers/1.num_batches_tracked"]), sorted(tensors))
        self.assertTrue(torch.equal(model[1].running_mean, tensors["buffers/1.running_mean"]))

    def test_a_resume_continues_the_profiles_exactly(self):
        with tempfile.TemporaryDirectory() as folder:
            torch.manual_seed(5)
            data = [torch.randn(8, 4) for _ in range(12)]

            def run(split):
                model = net()
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                profiles = PostHocProfiles(model, (0.05,), snapshot_every=100, folder=folder)
                for i, x in enumerate(data):
                    if i == split:
                        state = profiles.state_dict()
                        profiles = PostHocProfiles(model, (0.05,), snapshot_every=100, folder=folder)
                        profiles.load_state_dict(state)
                    loss = model(x).pow(2).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    profiles.update()
                return profiles.state_dict()["profiles"]

            for a, b in zip(run(split=-1)[0], run(split=7)[0]):
                self.assertTrue(torch.equal(a, b))

    def test_profiles_out_of_range_or_repeated_are_refused(self):
        for sigmas in [(0.5,), (0.0001,), (0.05, 0.05), (), (0.01, 0.02, 0.03, 0.04, 0.05)]:
            with self.subTest(sigmas=sigmas), self.assertRaises(InvalidSetting) as e:
                PostHocProfiles(net(), sigmas)
            self.assertEqual("sigmaRels", e.exception.field)

    def test_gamma_inverts_sigma_rel(self):
        for sigma in (0.01, 0.05, 0.1, 0.2):
            g = gamma(sigma)
            self.assertAlmostEqual(sigma, ((g + 1) / ((g + 2) ** 2 * (g + 3))) ** 0.5, places=12)
