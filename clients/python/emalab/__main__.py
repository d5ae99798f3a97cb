"""``python -m emalab sweep``: evaluates post-hoc reconstructions of a run with your model and evaluation function, the
command a run page shows for the σ_rels that still need an evaluation.

    python -m emalab sweep --run <run_id> --sigma-rels 0.03,0.07 --model train:build_model --evaluate train:evaluate
        [--server http://127.0.0.1:5080]      (default: MLFLOW_TRACKING_URI; MLFLOW_TRACKING_TOKEN for a token)

``--model`` names a function that returns the model (its architecture: the weights come from the reconstruction);
``--evaluate`` one that takes the model and returns ``{key: value}`` (logged as ``posthoc-<σ_rel>/<key>``).
"""
import argparse
import importlib
import json
import os
import sys

from .client import EmaLab
from .posthoc import sweep


def _function(spec: str):
    module, _, name = spec.partition(":")
    if not module or not name:
        raise SystemExit(f"'{spec}' is not module:function")
    sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module), name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emalab")
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("sweep", help="evaluate post-hoc reconstructions of a run and log the results to it")
    s.add_argument("--run", required=True, help="the run's MLflow run_id")
    s.add_argument("--sigma-rels", required=True, help="comma-separated σ_rel values, e.g. 0.03,0.07")
    s.add_argument("--model", required=True, help="module:function returning the model")
    s.add_argument("--evaluate", required=True, help="module:function(model) returning {key: value}")
    s.add_argument("--server", default=None, help="EMA Lab's URL (default: MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    sigma_rels = [float(x) for x in args.sigma_rels.split(",") if x.strip()]
    results = sweep(args.run, sigma_rels, _function(args.evaluate), _function(args.model)(), EmaLab(args.server))
    print(json.dumps({str(k): v for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
