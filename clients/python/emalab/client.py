"""Talking to an EMA Lab server: MLflow's REST API (runs, metrics, tags, artifacts) and EMA Lab's own (post-hoc
reconstruction, checkpoints).

With the ``mlflow`` package installed, runs, metrics, tags and artifacts go through mlflow's own ``MlflowClient`` (its
tracking URI, credentials, retries and artifact upload: the server is MLflow-compatible), and its errors are mlflow's;
without it, through the standard library, with refusals raised as ``EmaLabError``. EMA Lab's own endpoints always use
the standard library. The server is ``url``, else ``MLFLOW_TRACKING_URI``, else mlflow's tracking URI when it is an HTTP
one (``mlflow.set_tracking_uri``); a token is ``token`` or ``MLFLOW_TRACKING_TOKEN`` (sent as ``Authorization: Bearer``),
else ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` are sent as HTTP Basic.
"""
from __future__ import annotations

import base64
import json
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request


class EmaLabError(RuntimeError):
    """A refused request: the HTTP status, MLflow's ``error_code`` or the problem's field, and the server's message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _installed_mlflow():
    try:
        import mlflow
        import mlflow.entities
        import mlflow.tracking
    except ImportError:
        return None
    return mlflow


class EmaLab:
    """``use_mlflow``: None uses the mlflow package when it is installed; False never; True requires it."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 120,
                 use_mlflow: bool | None = None):
        mlflow = _installed_mlflow() if use_mlflow is not False else None
        if use_mlflow and mlflow is None:
            raise ImportError("use_mlflow=True, but the mlflow package is not installed.")
        url = url or os.environ.get("MLFLOW_TRACKING_URI")
        if not url and mlflow is not None and mlflow.get_tracking_uri().startswith(("http://", "https://")):
            url = mlflow.get_tracking_uri()
        if not url:
            raise ValueError("Give the server's URL (or set MLFLOW_TRACKING_URI), e.g. http://127.0.0.1:5080.")
        self.url = url.rstrip("/")
        self._mlflow_client = mlflow.tracking.MlflowClient(tracking_uri=self.url) if mlflow is not None else None
        self._metric = mlflow.entities.Metric if mlflow is not None else None
        self.token = token or os.environ.get("MLFLOW_TRACKING_TOKEN")
        # As mlflow's own client: a user name and password (HTTP Basic) when there is no token.
        self.username = os.environ.get("MLFLOW_TRACKING_USERNAME")
        self.password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        self.timeout = timeout
        # What a run's id resolves to never changes: asked once per run, not once per snapshot or reconstruction.
        self._numbers: dict = {}
        self._artifact_roots: dict = {}

    # ---- HTTP ----

    def request(self, method: str, path: str, body=None, data: bytes | None = None, raw: bool = False):
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.username and self.password:
            pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                content = response.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                problem = json.loads(text)
            except ValueError:
                problem = {}
            code = problem.get("error_code") or ",".join((problem.get("errors") or {}).keys()) or problem.get("title") or ""
            raise EmaLabError(e.code, code, problem.get("message") or problem.get("detail") or text) from None
        if raw:
            return content
        return json.loads(content) if content else None

    def mlflow(self, method: str, endpoint: str, body=None):
        return self.request(method, "/api/2.0/mlflow/" + endpoint, body)

    # ---- runs and metrics (MLflow's API) ----

    @property
    def via_mlflow(self) -> bool:
        """Whether runs, metrics, tags and artifacts go through the mlflow package."""
        return self._mlflow_client is not None

    def create_run(self, name: str | None = None, experiment_id: str = "0", tags: dict | None = None) -> str:
        if self._mlflow_client is not None:
            run = self._mlflow_client.create_run(experiment_id, start_time=int(time.time() * 1000),
                                          tags={k: str(v) for k, v in (tags or {}).items()}, run_name=name)
            return run.info.run_id
        body = {"experiment_id": experiment_id, "start_time": int(time.time() * 1000),
                "tags": [{"key": k, "value": str(v)} for k, v in (tags or {}).items()]}
        if name:
            body["run_name"] = name
        return self.mlflow("POST", "runs/create", body)["run"]["info"]["run_id"]

    def log_metrics(self, run_id: str, metrics: dict, step: int, timestamp_ms: int | None = None) -> None:
        """Logs ``{key: value}`` at ``step`` in one request (MLflow's log-batch; up to 1,000 per call)."""
        stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        if self._mlflow_client is not None:
            self._mlflow_client.log_batch(run_id, metrics=[self._metric(k, float(v), stamp, int(step)) for k, v in metrics.items()])
            return
        items = [{"key": k, "value": float(v), "timestamp": stamp, "step": int(step)} for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self.mlflow("POST", "runs/log-batch", {"run_id": run_id, "metrics": items[start:start + 1000]})

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        if self._mlflow_client is not None:
            self._mlflow_client.set_tag(run_id, key, value)
            return
        self.mlflow("POST", "runs/set-tag", {"run_id": run_id, "key": key, "value": value})

    def log_tracks(self, run_id: str, tracks) -> None:
        """Records an ``EmaTracks``' rules on the run (tag ``emalab.tracks``): the run page then marks its tracks on the
        post-hoc σ_rel plot at their equivalent σ_rel, as it marks the engine's."""
        # JSON has no NaN: a number the rule does not have (SWA's decay, a half-life not given) is written "NaN", as .NET reads it.
        rules = [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in r.to_dict().items()} for r in tracks.rules]
        self.set_tag(run_id, "emalab.tracks", json.dumps(rules))

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        if self._mlflow_client is not None:
            self._mlflow_client.set_terminated(run_id, status)
            return
        self.mlflow("POST", "runs/update", {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)})

    def upload_artifact(self, run_id: str, local_path: str, artifact_path: str = "") -> None:
        """Uploads a file through MLflow's artifact proxy under ``artifact_path`` (``posthoc`` for snapshots)."""
        if self._mlflow_client is not None:
            self._mlflow_client.log_artifact(run_id, local_path, artifact_path.strip("/") or None)
            return
        if run_id not in self._artifact_roots:
            uri = self.mlflow("GET", "runs/get?run_id=" + urllib.parse.quote(run_id))["run"]["info"]["artifact_uri"]
            prefix = "mlflow-artifacts:/"
            if not uri.startswith(prefix):
                raise ValueError(f"The run's artifacts are not served by this server ({uri}).")
            self._artifact_roots[run_id] = uri[len(prefix):]
        name = os.path.basename(local_path)
        target = "/".join(p for p in (self._artifact_roots[run_id], artifact_path.strip("/"), name) if p)
        with open(local_path, "rb") as f:
            self.request("PUT", "/api/2.0/mlflow-artifacts/artifacts/" + urllib.parse.quote(target), data=f.read())

    # ---- EMA Lab's own API ----

    def run_number(self, run_id: str) -> int:
        """EMA Lab's number of a run an MLflow client knows by its ``run_id`` (the dashboard shows it as #n)."""
        if run_id not in self._numbers:
            items = self.request("GET", "/api/runs?trackingId=" + urllib.parse.quote(run_id))["items"]
            if not items:
                raise EmaLabError(404, "RESOURCE_DOES_NOT_EXIST", f"No run with run_id {run_id}.")
            self._numbers[run_id] = int(items[0]["id"])
        return self._numbers[run_id]

    def reconstruct(self, run_id: str, sigma_rel: float) -> dict:
        """Asks the server to reconstruct the EMA of ``sigma_rel`` from the run's snapshots; returns its result (track,
        sigmaRel, equivalentDecay, step) once its checkpoint is stored."""
        return self.request("POST", f"/api/runs/{self.run_number(run_id)}/posthoc", {"sigmaRel": float(sigma_rel)})

    def checkpoint(self, run_id: str, track: str, step: int | None = None) -> bytes:
        """The safetensors bytes of a track's checkpoint (its last, or the one of ``step``)."""
        number = self.run_number(run_id)
        listed = [c for c in self.request("GET", f"/api/runs/{number}/checkpoints") if c["track"] == track
                  and (step is None or c["step"] == step)]
        if not listed:
            raise EmaLabError(404, "RESOURCE_DOES_NOT_EXIST", f"Run {run_id} has no checkpoint of {track}.")
        latest = max(listed, key=lambda c: c["step"])
        return self.request("GET", f"/api/checkpoints/{latest['id']}/download", raw=True)
