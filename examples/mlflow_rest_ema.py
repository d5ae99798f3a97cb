#!/usr/bin/env python3
"""Train a small PyTorch model, keep an EMA of its weights, and log both to EMA Lab through
MLflow's REST API with nothing but the standard library (no `mlflow` package needed).

    python3 examples/mlflow_rest_ema.py                       # EMA Lab at http://127.0.0.1:5080
    MLFLOW_TRACKING_URI=http://host:5080 MLFLOW_TRACKING_TOKEN=... python3 examples/mlflow_rest_ema.py

The raw model logs `val_acc`, `val_loss` and `loss`; the EMA logs `val_acc_ema` and `val_loss_ema`. The run's
tag `emalab.track_suffixes` = {"_ema": "ema-<decay>"} tells EMA Lab that `*_ema` keys belong to the EMA track,
so its pages compare raw and EMA side by side. At the end the EMA weights are uploaded as a .safetensors
artifact, which EMA Lab lists as a checkpoint of that track.

With the real MLflow client the same run is two lines more than usual:
    mlflow.set_tracking_uri("http://127.0.0.1:5080")
    mlflow.set_tag("emalab.track_suffixes", '{"_ema": "ema-0.995"}')
"""
import argparse
import gzip
import json
import os
import struct
import time
import urllib.error
import urllib.request

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "src", "TrainingEngine", "Data", "Datasets", "digits-8x8", "digits.csv.gz")


class Tracking:
    """The MLflow REST API 2.0, as its own client calls it (JSON bodies, Bearer token from MLFLOW_TRACKING_TOKEN)."""

    def __init__(self, uri, token=None):
        self.uri = uri.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method, path, body=None, data=None, content_type="application/json"):
        if body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.uri + path, data=data, method=method, headers={**self.headers, "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: {e.code} {e.read().decode()}") from None

    def api(self, method, name, body=None):
        return self.call(method, "/api/2.0/mlflow/" + name, body)

    def experiment(self, name):
        try:
            return self.call("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=" + urllib.request.quote(name))["experiment"]["experiment_id"]
        except RuntimeError as e:
            if "RESOURCE_DOES_NOT_EXIST" not in str(e):
                raise
            return self.api("POST", "experiments/create", {"name": name})["experiment_id"]

    def upload(self, artifact_uri, name, payload):
        # mlflow-artifacts:/<experiment>/<run>/artifacts is served by the tracking server's artifact proxy.
        path = artifact_uri.replace("mlflow-artifacts:", "/api/2.0/mlflow-artifacts/artifacts", 1) + "/" + name
        self.call("PUT", path, data=payload, content_type="application/octet-stream")


def safetensors_bytes(state, metadata):
    """The safetensors format by hand: an 8-byte header length, a JSON header, then the raw little-endian data."""
    dtypes = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, tensor in state.items():
        blob = tensor.detach().contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": dtypes[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def load_digits(seed):
    with gzip.open(DIGITS, "rt") as f:
        rows = [list(map(float, line.split(","))) for line in f if line.strip()]
    data = torch.tensor(rows)
    x, y = data[:, :64] / 16.0, data[:, 64].long()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(1) == y).float().mean().item()
    model.train()
    return accuracy, loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5080"))
    parser.add_argument("--experiment", default="bring-your-own")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--decay", type=float, default=0.995)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    (train_x, train_y), (test_x, test_y) = load_digits(args.seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    # PyTorch's own EMA: AveragedModel with an exponential average (get_ema_multi_avg_fn where torch has it).
    try:
        from torch.optim.swa_utils import get_ema_multi_avg_fn
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.decay))
    except ImportError:
        ema = AveragedModel(model, avg_fn=lambda avg, p, n: args.decay * avg + (1 - args.decay) * p)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    tracking = Tracking(args.tracking_uri, os.environ.get("MLFLOW_TRACKING_TOKEN"))
    experiment_id = tracking.experiment(args.experiment)
    track = f"ema-{args.decay}"
    run = tracking.api("POST", "runs/create", {
        "experiment_id": experiment_id,
        "run_name": f"digits mlp, EMA {args.decay}",
        "start_time": int(time.time() * 1000),
        "tags": [
            {"key": "mlflow.source.name", "value": os.path.basename(__file__)},
            {"key": "mlflow.user", "value": os.environ.get("USER", "me")},
            {"key": "emalab.track_suffixes", "value": json.dumps({"_ema": track})},
        ],
    })["run"]["info"]
    run_id = run["run_id"]
    tracking.api("POST", "runs/log-batch", {"run_id": run_id, "params": [
        {"key": "lr", "value": str(args.lr)}, {"key": "decay", "value": str(args.decay)}, {"key": "steps", "value": str(args.steps)},
    ]})
    print(f"run {run_id} in experiment {experiment_id}: {args.tracking_uri}")

    pending = []
    for step in range(1, args.steps + 1):
        batch = torch.randint(0, len(train_x), (64,))
        loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update_parameters(model)
        now = int(time.time() * 1000)
        pending.append({"key": "loss", "value": loss.item(), "timestamp": now, "step": step})
        if step % args.eval_every == 0 or step == args.steps:
            accuracy, val_loss = evaluate(model, test_x, test_y)
            ema_accuracy, ema_val_loss = evaluate(ema.module, test_x, test_y)
            pending += [
                {"key": "val_acc", "value": accuracy, "timestamp": now, "step": step},
                {"key": "val_loss", "value": val_loss, "timestamp": now, "step": step},
                {"key": "val_acc_ema", "value": ema_accuracy, "timestamp": now, "step": step},
                {"key": "val_loss_ema", "value": ema_val_loss, "timestamp": now, "step": step},
            ]
            # At most 1000 metrics per log-batch call (MLflow's limit).
            for i in range(0, len(pending), 1000):
                tracking.api("POST", "runs/log-batch", {"run_id": run_id, "metrics": pending[i:i + 1000]})
            pending = []
            print(f"step {step:4d}  loss {loss.item():.4f}  val_acc {accuracy:.4f}  val_acc_ema {ema_accuracy:.4f}")

    weights = {k: v for k, v in ema.module.state_dict().items()}
    tracking.upload(run["artifact_uri"], "model_ema.safetensors",
                    safetensors_bytes(weights, {"track": track, "step": str(args.steps), "decay": str(args.decay)}))
    tracking.api("POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
    print(f"uploaded model_ema.safetensors ({track}); run finished")


if __name__ == "__main__":
    main()
