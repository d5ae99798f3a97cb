"""Post-hoc EMA (EDM2) in your own loop: power-function EMAs tracked after each step and snapshotted every N steps in
the engine's layout, so that EMA Lab's server reconstructs any σ_rel (or classic decay) after training.

    profiles = PostHocProfiles(model, sigma_rels=(0.05, 0.10), snapshot_every=500, folder="posthoc")
    ...
    optimizer.step(); profiles.update()        # writes posthoc/snapshot-000000500.safetensors at step 500, …
    profiles.snapshot()                        # and one at the last step

A snapshot file (format ``emalab-posthoc/1``) holds ``pf-<σ_rel>/<state_dict name>`` for every profile and
``buffers/<name>`` for the live buffers that are not averaged; its metadata: ``format``, ``step``, ``sigma_rels`` (JSON).
"""
from __future__ import annotations

import json
import math
import os

import torch

from . import rules as R
from . import safetensors
from .client import EmaLab
from .tracks import BN_POLICIES, _apply, _scratch_for

FORMAT = "emalab-posthoc/1"
MIN_SIGMA_REL = 1e-3
MAX_SIGMA_REL = math.sqrt(1.0 / 12)
MAX_PROFILES = 4


def gamma(sigma_rel: float) -> float:
    """The exponent γ of a σ_rel: the largest real root of γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) (EDM2 eq. 126), by
    Newton's method from above, as the engine's ``PowerFunctionProfile.Gamma``."""
    if not MIN_SIGMA_REL <= sigma_rel <= MAX_SIGMA_REL:
        raise R.InvalidSetting("sigmaRels", f"σ_rel must be from {MIN_SIGMA_REL} to {MAX_SIGMA_REL:.4f} (the uniform average of the whole run).")
    t = 1 / (sigma_rel * sigma_rel)
    g = max(t, 10.0)
    for _ in range(200):
        f = ((g + 7) * g + 16 - t) * g + 12 - t
        slope = (3 * g + 14) * g + 16 - t
        nxt = g - f / slope
        if abs(nxt - g) <= 1e-14 * max(1, abs(g)):
            return nxt
        g = nxt
    return g


def beta(g: float, step: int) -> float:
    """The decay after (1-based) step t: (1 − 1/t)^(γ+1); 0 at step 1 (the profile starts as a copy)."""
    return math.pow(1 - 1.0 / step, g + 1)


def track_name(sigma_rel: float) -> str:
    return "pf-" + repr(float(sigma_rel)).replace("e", "E")


def file_name(step: int) -> str:
    return f"snapshot-{step:09d}.safetensors"


class PostHocProfiles:
    """Power-function EMAs of the model (one per σ_rel, at most four) and their snapshots every ``snapshot_every`` steps
    into ``folder``. ``on_snapshot(path, step)`` is called after each file is written (``emalab.client`` uploads it)."""

    def __init__(self, model: torch.nn.Module, sigma_rels=(0.05, 0.10), *, snapshot_every: int = 1000, folder: str = "posthoc",
                 bn_policy: str = "average", on_snapshot=None):
        sigma_rels = [float(s) for s in sigma_rels]
        if not 0 < len(sigma_rels) <= MAX_PROFILES:
            raise R.InvalidSetting("sigmaRels", f"Track 1 to {MAX_PROFILES} power-function profiles.")
        if len(set(sigma_rels)) != len(sigma_rels):
            raise R.InvalidSetting("sigmaRels", "The σ_rel values must be distinct.")
        if snapshot_every < 1:
            raise R.InvalidSetting("snapshotEvery", "Snapshots need at least 1 step between them.")
        if bn_policy not in BN_POLICIES:
            raise R.InvalidSetting("bnPolicy", f"bnPolicy is one of {', '.join(BN_POLICIES)}.")
        self.model = model
        self.sigma_rels = sigma_rels
        self._gammas = [gamma(s) for s in sigma_rels]
        self.snapshot_every = int(snapshot_every)
        self.folder = folder
        self.on_snapshot = on_snapshot
        self.step = 0
        self.last_snapshot = 0
        averaged, copied = [], []
        for n, p in model.named_parameters():
            averaged.append(n)
        for n, b in model.named_buffers():
            (averaged if b.is_floating_point() and bn_policy == "average" else copied).append(n)
        self.averaged_names, self.copied_names = averaged, copied
        with torch.no_grad():
            self._profiles = [[w.detach().to(torch.float32, copy=True) for w in self._live()] for _ in sigma_rels]

    def _tensors(self) -> dict:
        tensors = dict(self.model.named_parameters())
        tensors.update(dict(self.model.named_buffers()))
        return tensors

    def _live(self) -> list:
        tensors = self._tensors()
        return [tensors[n].detach() for n in self.averaged_names]

    @torch.no_grad()
    def update(self, step: int | None = None) -> str | None:
        """Averages every profile for the optimizer step just taken; returns the snapshot's path when one was written."""
        self.step = self.step + 1 if step is None else int(step)
        if self.step < 1:
            raise ValueError("Steps count from 1: call update() after the first optimizer step.")
        live = [w if w.dtype == torch.float32 else w.float() for w in self._live()]
        self._scratch = _scratch_for(live, getattr(self, "_scratch", None))
        for g, profile in zip(self._gammas, self._profiles):
            b = beta(g, self.step)
            _apply(R.ShadowStep(R.AVERAGE, R.SUBTRACT, R.f32(1.0 - b), 0.0, b), profile, live, self._scratch)
        return self.snapshot() if self.step % self.snapshot_every == 0 else None

    def snapshot(self) -> str | None:
        """Writes the snapshot of the current step (once per step: the last step's after training, if not written)."""
        if self.step == 0 or self.step == self.last_snapshot:
            return None
        os.makedirs(self.folder, exist_ok=True)
        tensors = {}
        for sigma, profile in zip(self.sigma_rels, self._profiles):
            for n, t in zip(self.averaged_names, profile):
                tensors[f"{track_name(sigma)}/{n}"] = t
        current = self._tensors()
        for n in self.copied_names:
            tensors[f"buffers/{n}"] = current[n].detach()
        path = os.path.join(self.folder, file_name(self.step))
        partial = path + ".partial"
        safetensors.save(tensors, partial, {"format": FORMAT, "step": str(self.step), "sigma_rels": json.dumps(self.sigma_rels)})
        os.replace(partial, path)
        self.last_snapshot = self.step
        if self.on_snapshot is not None:
            self.on_snapshot(path, self.step)
        return path

    def state_dict(self) -> dict:
        return {"format": FORMAT, "step": self.step, "last_snapshot": self.last_snapshot, "sigma_rels": list(self.sigma_rels),
                "averaged_names": list(self.averaged_names), "profiles": [[t.clone() for t in p] for p in self._profiles]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != FORMAT:
            raise ValueError(f"Not post-hoc profiles of this format ({state.get('format')!r}, expected {FORMAT!r}).")
        if list(state["sigma_rels"]) != self.sigma_rels or state["averaged_names"] != self.averaged_names:
            raise ValueError("The saved profiles are of other σ_rels or another model.")
        for profile, saved in zip(self._profiles, state["profiles"]):
            for t, s in zip(profile, saved):
                t.copy_(s)
        self.step, self.last_snapshot = int(state["step"]), int(state["last_snapshot"])


def uploader(client: EmaLab, run_id: str, model: str | None = None, evaluate: str | None = None):
    """An ``on_snapshot`` that uploads each snapshot to the run's artifacts (``posthoc/``), where the server finds them.

    ``model`` and ``evaluate`` (``module:function``, importable from the script's folder) name how the script builds its
    model and evaluates it: the run page then shows the exact ``python -m emalab sweep`` command for σ_rels it has not
    evaluated yet."""
    if (model is None) != (evaluate is None):
        raise ValueError("Give both model and evaluate (module:function each), or neither.")
    if model is not None:
        client.set_tag(run_id, "emalab.posthoc.evaluator", f"{model} {evaluate}")

    def upload(path: str, step: int) -> None:
        client.upload_artifact(run_id, path, "posthoc")
    return upload


def sweep(run_id: str, sigma_rels, evaluate, model: torch.nn.Module, client: EmaLab | None = None) -> dict:
    """For each σ_rel: the server reconstructs the EMA of that width from the run's uploaded snapshots; its weights are
    loaded into ``model``; ``evaluate(model)`` returns ``{key: value}``, logged to the run as ``posthoc-<σ_rel>/<key>`` at
    the reconstruction's step, so the run page's σ_rel plot and slider show it. The model's own weights come back after.
    Returns ``{σ_rel: {"track", "step", "metrics"}}``."""
    client = client or EmaLab()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    results = {}
    try:
        for sigma in sigma_rels:
            result = client.reconstruct(run_id, sigma)
            tensors, _ = safetensors.loads(client.checkpoint(run_id, result["track"], result["step"]))
            model.load_state_dict(tensors)
            metrics = evaluate(model)
            client.log_metrics(run_id, {f"{result['track']}/{k}": v for k, v in metrics.items()}, step=result["step"])
            results[sigma] = {"track": result["track"], "step": result["step"], "metrics": metrics}
    finally:
        model.load_state_dict(saved)
    return results
