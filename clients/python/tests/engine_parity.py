"""Runs the companion's tracks on the engine's trajectory and compares what each reads after every step with what the
engine read (tests/Companion.Tests/EngineParityTests.cs writes both files).

    python3 tests/engine_parity.py <folder with trajectory.safetensors and engine.safetensors>
"""
import json
import os
import sys

import torch

from emalab import EmaTracks, safetensors


class Weights(torch.nn.Module):
    def __init__(self, initial):
        super().__init__()
        self.w = torch.nn.Parameter(initial.clone())


def main(folder):
    trajectory, _ = safetensors.load(os.path.join(folder, "trajectory.safetensors"))
    engine, metadata = safetensors.load(os.path.join(folder, "engine.safetensors"))
    groups, names, steps = json.loads(metadata["groups"]), json.loads(metadata["names"]), int(metadata["steps"])
    shape = {"batch_size": int(metadata["batchSize"]), "batches_per_epoch": int(metadata["batchesPerEpoch"]),
             "total_steps": int(metadata["totalSteps"])}
    problems, count = [], 0
    for g, (tracks, engine_names) in enumerate(zip(groups, names)):
        model = Weights(trajectory["w/0"])
        ema = EmaTracks(model, tracks, **shape)
        if ema.names != engine_names:
            problems.append(f"group {g}: names {ema.names} != the engine's {engine_names}")
            continue
        for t in range(1, steps + 1):
            with torch.no_grad():
                model.w.copy_(trajectory[f"w/{t}"])
            ema.update()
            for name in ema.names:
                got, expected = ema.averaged(name)["w"], engine[f"g{g}/{name}/{t}"]
                if not torch.equal(got, expected):
                    differ = (got != expected).sum().item()
                    problems.append(f"{name} after step {t}: {differ} of {got.numel()} values differ, "
                                    f"max |Δ| {(got.double() - expected.double()).abs().max().item():.3g}")
        count += len(ema.names)
    for p in problems[:40]:
        print(p)
    if problems:
        print(f"{len(problems)} differences")
        return 1
    print(f"{count} tracks identical at all {steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
