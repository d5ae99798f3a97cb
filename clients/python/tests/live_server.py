"""A script's run against a live EMA Lab server (tests/Dashboard.Tests/CompanionLiveTests.cs starts it): a small model
trained with the companion's tracks and post-hoc profiles, metrics of raw and every track logged, snapshots uploaded,
three σ_rels reconstructed by the server, evaluated here and logged back. Prints the run's id on its last line.

    python3 tests/live_server.py <server url> [seconds to pause per step, so that a page can watch it train]
"""
import sys
import tempfile
import time

import torch

from emalab import EmaTracks, PostHocProfiles
from emalab.client import EmaLab, EmaLabError
from emalab.posthoc import sweep, uploader
from live_model import batch, build_model, evaluate


def main(url, pace=0.0):
    client = EmaLab(url)
    torch.manual_seed(0)
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    run_id = client.create_run("companion-live", tags={"emalab.metrics": '{"accuracy": "val_acc", "loss": "val_loss", "train": "loss"}'})
    tracks = EmaTracks(model, [0.99, {"preset": "timm", "decay": 0.995}])
    client.log_tracks(run_id, tracks)
    with tempfile.TemporaryDirectory() as folder:
        # Named so that the run page shows the exact command for reconstructions this script has not evaluated.
        upload = uploader(client, run_id, model="tests.live_model:build_model", evaluate="tests.live_model:evaluate")
        profiles = PostHocProfiles(model, (0.05, 0.10), snapshot_every=50, folder=folder, on_snapshot=upload)
        g = torch.Generator().manual_seed(1)
        steps = 300
        for step in range(1, steps + 1):
            x, y = batch(32, g)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            tracks.update()
            profiles.update()
            metrics = {"loss": loss.item()}
            if step % 100 == 0:
                metrics.update(evaluate(model))
                for name in tracks.names:
                    with tracks.swapped(name):
                        metrics.update({f"{name}/{k}": v for k, v in evaluate(model).items()})
            client.log_metrics(run_id, metrics, step)
            time.sleep(pace)
        profiles.snapshot()

    # A snapshot of other profiles is refused by name, and the run keeps the good ones.
    try:
        with tempfile.TemporaryDirectory() as folder:
            other = PostHocProfiles(model, (0.2,), snapshot_every=1, folder=folder, on_snapshot=uploader(client, run_id))
            other.update(step=301)
        raise AssertionError("a snapshot of other σ_rels was accepted")
    except EmaLabError as e:
        assert e.status == 400 and "posthoc/snapshot-000000301.safetensors" in e.message and "differ" in e.message, e

    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = sweep(run_id, [0.03, 0.07, 0.15], evaluate, model, client)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "the model's own weights came back"
    assert [r["track"] for r in results.values()] == ["posthoc-0.03", "posthoc-0.07", "posthoc-0.15"], results
    assert all(r["step"] == 300 for r in results.values()), results
    assert all(r["metrics"]["val_acc"] > 0.7 for r in results.values()), results
    client.set_terminated(run_id)
    print(client.run_number(run_id))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
