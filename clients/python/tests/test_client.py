"""Which way the companion talks to the server: through the mlflow package when it is installed, else plain HTTP.

mlflow cannot be installed on these machines, so the mlflow case puts a stand-in under its name: the functions the
companion calls, with mlflow 3's signatures (mlflow/tracking/client.py and mlflow/entities/metric.py), recording each
call. A call the real client would refuse for its arguments fails here too; what the real client then sends is
MLflow's REST API, which the server's own tests cover.
"""
import http.server
import json
import os
import sys
import tempfile
import threading
import types
import unittest
from unittest import mock

import torch

from emalab import EmaTracks
from emalab.client import EmaLab
from emalab.posthoc import uploader


class Metric:
    def __init__(self, key, value, timestamp, step, model_id=None, dataset_name=None, dataset_digest=None, run_id=None):
        self.key, self.value, self.timestamp, self.step = key, value, timestamp, step


class MlflowClient:
    calls: list = []

    def __init__(self, tracking_uri=None, registry_uri=None, workspace_store_uri=None):
        self.calls.append(("MlflowClient", tracking_uri))

    def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):
        self.calls.append(("create_run", experiment_id, tags, run_name, type(start_time)))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id="r1"))

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        self.calls.append(("log_batch", run_id, [(m.key, m.value, type(m.value), type(m.timestamp), m.step) for m in metrics]))

    def set_tag(self, run_id, key, value, synchronous=None):
        self.calls.append(("set_tag", run_id, key, value))

    def set_terminated(self, run_id, status=None, end_time=None):
        self.calls.append(("set_terminated", run_id, status))

    def log_artifact(self, run_id, local_path, artifact_path=None):
        self.calls.append(("log_artifact", run_id, os.path.basename(local_path), artifact_path))


def standin_mlflow(tracking_uri):
    mlflow = types.ModuleType("mlflow")
    mlflow.tracking = types.ModuleType("mlflow.tracking")
    mlflow.entities = types.ModuleType("mlflow.entities")
    mlflow.tracking.MlflowClient, mlflow.entities.Metric = MlflowClient, Metric
    mlflow.get_tracking_uri = lambda: tracking_uri
    return {"mlflow": mlflow, "mlflow.tracking": mlflow.tracking, "mlflow.entities": mlflow.entities}


class ThroughMlflowTests(unittest.TestCase):
    def setUp(self):
        MlflowClient.calls = []
        self.env = mock.patch.dict(os.environ, {}, clear=False)
        self.env.start()
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)

    def tearDown(self):
        self.env.stop()

    def test_runs_metrics_tags_and_artifacts_go_through_mlflows_client_at_mlflows_tracking_uri(self):
        with mock.patch.dict(sys.modules, standin_mlflow("http://lab:5080/")):
            lab = EmaLab()
            self.assertTrue(lab.via_mlflow)
            self.assertEqual("http://lab:5080", lab.url)
            run_id = lab.create_run("script", tags={"emalab.metrics": "{}", "seed": 3})
            lab.log_metrics(run_id, {"loss": torch.tensor(0.5).item(), "ema-0.99/val_acc": 1}, step=7)
            lab.log_tracks(run_id, EmaTracks(torch.nn.Linear(2, 2), [0.99]))
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "snapshot-000000007.safetensors")
                open(path, "wb").close()
                uploader(lab, run_id, model="train:build", evaluate="train:evaluate")(path, 7)
            lab.set_terminated(run_id)
        calls = MlflowClient.calls
        self.assertEqual(("MlflowClient", "http://lab:5080"), calls[0])
        self.assertEqual(("create_run", "0", {"emalab.metrics": "{}", "seed": "3"}, "script", int), calls[1])
        self.assertEqual(("log_batch", "r1", [("loss", 0.5, float, int, 7), ("ema-0.99/val_acc", 1.0, float, int, 7)]), calls[2])
        self.assertEqual(("set_tag", "r1", "emalab.tracks"), calls[3][:3])
        self.assertEqual("ema-0.99", json.loads(calls[3][3])[0]["name"])
        self.assertEqual(("set_tag", "r1", "emalab.posthoc.evaluator", "train:build train:evaluate"), calls[4])
        self.assertEqual(("log_artifact", "r1", "snapshot-000000007.safetensors", "posthoc"), calls[5])
        self.assertEqual(("set_terminated", "r1", "FINISHED"), calls[6])
        self.assertEqual(7, len(calls))

    def test_mlflows_local_store_is_not_a_server_and_an_explicit_url_wins(self):
        with mock.patch.dict(sys.modules, standin_mlflow("file:///tmp/mlruns")):
            with self.assertRaises(ValueError) as e:
                EmaLab()
            self.assertIn("MLFLOW_TRACKING_URI", str(e.exception))
            self.assertEqual("http://other:1", EmaLab("http://other:1").url)
            os.environ["MLFLOW_TRACKING_URI"] = "http://env:2"
            self.assertEqual("http://env:2", EmaLab().url)

    def test_use_mlflow_false_keeps_plain_http_and_true_requires_mlflow(self):
        with mock.patch.dict(sys.modules, standin_mlflow("http://lab:5080")):
            self.assertFalse(EmaLab(use_mlflow=False, url="http://lab:5080").via_mlflow)
        with mock.patch.dict(sys.modules, {"mlflow": None}):  # None in sys.modules: `import mlflow` fails
            self.assertFalse(EmaLab("http://lab:5080").via_mlflow)
            with self.assertRaises(ImportError):
                EmaLab("http://lab:5080", use_mlflow=True)


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):
        Recorder.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"items": [{"id": 12}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def requests_seen(call):
    """Runs ``call(url)`` against a local server that answers a run's number, and returns (path, Authorization) per request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.seen = []
    try:
        call(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    return Recorder.seen


class EmaLabsOwnEndpointsTests(unittest.TestCase):
    def test_they_use_plain_http_with_the_tracking_token_even_through_mlflow_and_ask_a_runs_number_once(self):
        def call(url):
            with mock.patch.dict(sys.modules, standin_mlflow(url)), mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": "t0k"}):
                lab = EmaLab()
                self.assertEqual(12, lab.run_number("abc def"))
                self.assertEqual(12, lab.run_number("abc def"))
        self.assertEqual([("/api/runs?trackingId=abc%20def", "Bearer t0k")], requests_seen(call))

    def test_without_a_token_the_user_name_and_password_go_as_http_basic(self):
        def call(url):
            with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": "pass:word"}):
                os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
                EmaLab(url, use_mlflow=False).run_number("r")
        self.assertEqual([("/api/runs?trackingId=r", "Basic YW5hOnBhc3M6d29yZA==")], requests_seen(call))
