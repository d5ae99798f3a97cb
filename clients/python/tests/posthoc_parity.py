"""Runs the companion's post-hoc profiles on the engine's trajectory, writing snapshots to <folder>/companion, and
compares every file with the engine's (<folder>/engine) bit for bit (tests/Companion.Tests/PostHocParityTests.cs).

    python3 tests/posthoc_parity.py <folder>
"""
import json
import os
import sys

import torch

from emalab import safetensors
from emalab.posthoc import PostHocProfiles


class Model(torch.nn.Module):
    def __init__(self, initial):
        super().__init__()
        self.w = torch.nn.Parameter(initial.clone())
        self.register_buffer("running", torch.zeros(3))


def main(folder):
    trajectory, meta = safetensors.load(os.path.join(folder, "trajectory.safetensors"))
    sigma_rels, every, steps = json.loads(meta["sigma_rels"]), int(meta["snapshot_every"]), int(meta["steps"])
    model = Model(trajectory["w/0"])
    profiles = PostHocProfiles(model, sigma_rels, snapshot_every=every, folder=os.path.join(folder, "companion"), bn_policy="copy")
    for t in range(1, steps + 1):
        with torch.no_grad():
            model.w.copy_(trajectory[f"w/{t}"])
            model.running.fill_(t)
        profiles.update()
    profiles.snapshot()
    problems = []
    engine_files = sorted(os.listdir(os.path.join(folder, "engine")))
    companion_files = sorted(os.listdir(os.path.join(folder, "companion")))
    if engine_files != companion_files:
        problems.append(f"files {companion_files} != the engine's {engine_files}")
    for name in engine_files:
        ours, our_meta = safetensors.load(os.path.join(folder, "companion", name))
        theirs, their_meta = safetensors.load(os.path.join(folder, "engine", name))
        if {k: our_meta[k] for k in ("format", "step")} != {k: their_meta[k] for k in ("format", "step")} \
                or json.loads(our_meta["sigma_rels"]) != json.loads(their_meta["sigma_rels"]):
            problems.append(f"{name}: metadata {our_meta} != the engine's {their_meta}")
        if sorted(ours) != sorted(theirs):
            problems.append(f"{name}: tensors {sorted(ours)} != the engine's {sorted(theirs)}")
            continue
        for key in theirs:
            if ours[key].dtype != theirs[key].dtype or not torch.equal(ours[key], theirs[key]):
                problems.append(f"{name}: {key} differs")
    for p in problems[:40]:
        print(p)
    print(f"{len(engine_files)} snapshots compared, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
