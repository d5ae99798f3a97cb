"""EMA tracks for a PyTorch training loop, with EMA Lab's rules (see ``rules``) and the engine's arithmetic.

    tracks = EmaTracks(model, tracks=[0.999, {"preset": "timm", "decay": 0.9998}, {"decay": 0.9999, "dtype": "bfloat16"}])
    for batch in data:
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        tracks.update()                      # after each optimizer step (after the batch-norm update of the step)
    with tracks.swapped("ema-0.999"):        # the model holds that track's weights inside the block
        evaluate(model)
    torch.save({"model": model.state_dict(), "ema": tracks.state_dict()}, "resume.pt")   # a resume continues exactly

Shadows live on the device of the weights they follow and are updated with torch's multi-tensor (``_foreach_``) ops.
"""
from __future__ import annotations

import contextlib
import math

import torch

from . import rules as R

FORMAT = "emalab-tracks/1"
BN_POLICIES = ("average", "copy", "recalibrate")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _Shadow:
    def __init__(self, rule: R.EmaRule, tensors: list, live: list):
        self.rule = rule
        self.tensors = tensors      # the weights read (evaluation, export)
        # BEMA: its EMA and θ₀ apart from the weights read, both the weights before training as its sources clone them.
        self.ema = [w.detach().clone() for w in live] if rule.is_bema else None
        self.anchor = [w.detach().clone() for w in live] if rule.is_bema else None
        # LAWA: the ring of the k latest copies; copy n (from 0) is in slot n % k.
        self.ring = [[torch.empty_like(w) for w in live] for _ in range(rule.checkpoints)] if rule.preset == R.LAWA else None
        self.updates = 0            # updates counted (averages, and the first copy of the rules that count it)
        self.decay_product = 1.0    # Π d over the updates (zero-debias divides by 1 − this)
        self.last_decay = math.nan  # the last decay applied


def _foreach(name: str):
    return getattr(torch, name, None)


class EmaTracks:
    """K shadows of one model, each with its own rule, updated together after each optimizer step.

    ``tracks``: decays (EMA Lab's own rule with the shared settings below) or dicts with ``preset``, ``name`` and the
    preset's settings under the engine's names (``decay``, ``warmup``, ``invGamma``, ``power``, ``minDecay``,
    ``updateAfterStep``, ``startStep``, ``every``, ``adjustDecay``, ``init``, ``zeroDebias``, ``dtype``).
    ``bn_policy``: ``average`` (float buffers averaged like weights, the engine's default), ``copy`` (the live
    model's buffers), or ``recalibrate`` (recomputed from batches given to ``swapped``).
    The newer rules: ``{"preset": "trl-bema"}`` / ``{"preset": "bema"}`` (``every``, ``emaPower``, ``biasPower``, ``lag``,
    ``multiplier``, ``updateAfterStep``, ``minEmaMultiplier``), ``{"preset": "lawa", "checkpoints": k, "every": ν}``,
    ``{"preset": "edm", "halfLifeKimg": …, "rampupRatio": …}`` and ``{"halfLifeSamples": H}`` for EMA Lab's rule. Those
    counted in samples need ``batch_size``; LAWA's default of a copy per epoch needs ``batches_per_epoch``;
    ``{"preset": "torchvision"}`` (``decay``, ``every``, ``epochs``, ``warmupEpochs``) needs both, and ``total_steps`` for
    its default ``epochs``.
    """

    def __init__(self, model: torch.nn.Module, tracks=(0.99, 0.999), *, warmup: bool = False, zero_debias: bool = False,
                 every: int = 1, start_step: int = 0, bn_policy: str = "average", batch_size: int | None = None,
                 batches_per_epoch: int | None = None, total_steps: int | None = None):
        if bn_policy not in BN_POLICIES:
            raise R.InvalidSetting("bnPolicy", f"bnPolicy is one of {', '.join(BN_POLICIES)}.")
        if every < 1:
            raise R.InvalidSetting("every", "'every' must be at least 1.")
        if start_step < 0:
            raise R.InvalidSetting("startStep", "The start step must not be negative.")
        self.model = model
        self.bn_policy = bn_policy
        self.shared = R.Shared(warmup=warmup, zeroDebias=zero_debias, every=every, startStep=start_step)
        # Rules counted in samples (a half-life) need the batch size; LAWA's default of a checkpoint per epoch, the epoch's length.
        self.shape = None if batch_size is None else R.Shape(int(batch_size), int(batches_per_epoch or 0), int(total_steps or 0))
        self.rules = R.resolve_all(list(tracks), self.shared, self.shape)
        averaged = [(n, p) for n, p in model.named_parameters()]
        self._parameter_count = len(averaged)  # the averaged tensors: parameters, then buffers
        copied = []
        for n, b in model.named_buffers():
            (averaged if b.is_floating_point() and bn_policy == "average" else copied).append((n, b))
        self.averaged_names = [n for n, _ in averaged]
        self.copied_names = [n for n, _ in copied]
        self.step = 0
        with torch.no_grad():
            live = [w for _, w in averaged]
            if any(r.is_bema or r.preset == R.LAWA for r in self.rules) and any(w.dtype != torch.float32 for w in live):
                raise ValueError("BEMA and LAWA tracks need float32 weights.")
            self._shadows = [_Shadow(rule, [self._initial(w, rule) for w in live], live) for rule in self.rules]

    # ---- the update ----

    def _live(self) -> list:
        """The averaged tensors as they are now (an optimizer updates them in place; a module may replace buffers)."""
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        return [(params[n] if n in params else buffers[n]).detach() for n in self.averaged_names]

    @staticmethod
    def _initial(live: torch.Tensor, rule: R.EmaRule) -> torch.Tensor:
        dtype = _DTYPES[rule.dtype]
        if rule.zeroDebias:
            return torch.zeros_like(live, dtype=dtype)
        return live.detach().to(dtype=dtype, copy=True)

    @torch.no_grad()
    def update(self, step: int | None = None) -> None:
        """Applies every track's rule for the optimizer step just taken: the next step (1, 2, …) unless ``step`` says
        which (the global step, 1-based, after a resume that did not restore this object)."""
        self.step = self.step + 1 if step is None else int(step)
        if self.step < 1:
            raise ValueError("Steps count from 1: call update() after the first optimizer step.")
        live = self._live()
        live32 = [w if w.dtype == torch.float32 else w.float() for w in live]
        for shadow in self._shadows:
            nxt = R.next_step(shadow.rule, self.step, shadow.updates)
            if nxt.action == R.NONE:
                continue
            if shadow.ema is not None or shadow.ring is not None:
                if not self._update_stateful(shadow, nxt, live32):
                    continue
            elif nxt.action in (R.FOLLOW_LIVE, R.COPY):
                for s, w in zip(shadow.tensors, live):
                    s.copy_(w)
                if nxt.action == R.FOLLOW_LIVE:
                    continue
            elif shadow.rule.dtype == "float32":
                _apply(nxt, shadow.tensors, live32, self._scratch(live32))
            else:
                # Computed in float32 from the stored value and rounded once: an update below half a unit in the last
                # place of the shadow's type is lost (the stall a low-precision shadow shows).
                wide = [s.float() for s in shadow.tensors]
                _apply(nxt, wide, live32, self._scratch(live32))
                for s, x in zip(shadow.tensors, wide):
                    s.copy_(x)
            shadow.updates += 1
            if math.isnan(nxt.decay):
                continue  # a LAWA copy has no decay
            shadow.decay_product *= nxt.decay
            shadow.last_decay = nxt.decay

    def _update_stateful(self, shadow: _Shadow, nxt: R.ShadowStep, live: list) -> bool:
        """BEMA and LAWA (ExponentialMovingAverage.UpdateStateful): True when the step counts as an update."""
        if nxt.action == R.FOLLOW_LIVE:
            for s, w in zip(shadow.tensors, live):
                s.copy_(w)
            return False
        if nxt.action == R.ANCHOR:
            for z, e, w in zip(shadow.anchor, shadow.ema, live):
                z.copy_(w)
                e.copy_(w)
            return False
        scratch = self._scratch(live)
        if nxt.action == R.SNAPSHOT:
            ring, k = shadow.ring, len(shadow.ring)
            for c, w in zip(ring[shadow.updates % k], live):
                c.copy_(w)
            # The mean taken afresh from the copies, oldest first, as Sanyal et al.'s lawa.py folds them: m + (c − m) / n.
            count = min(shadow.updates + 1, k)
            oldest = shadow.updates + 1 - count
            for i, out in enumerate(shadow.tensors):
                out.copy_(ring[oldest % k][i])
                for n in range(1, count):
                    torch.sub(ring[(oldest + n) % k][i], out, out=scratch[i])
                    scratch[i].div_(n + 1)
                    out.add_(scratch[i])
            return True
        # BEMA: the EMA (or, with κ = 0, a copy of θ_t), then the weights read: ema + α·(θ_t − θ₀), each op rounded.
        if nxt.action == R.COPY:
            for e, w in zip(shadow.ema, live):
                e.copy_(w)
        else:
            _apply(nxt, shadow.ema, live, scratch)
        for i, (out, e, z, w, d) in enumerate(zip(shadow.tensors, shadow.ema, shadow.anchor, live, scratch)):
            # Both sources correct parameters only; an averaged batch-norm statistic is read as its EMA.
            if nxt.bias == 0 or i >= self._parameter_count:
                out.copy_(e)  # and the authors' η = 0: the EMA itself
            else:
                torch.sub(w, z, out=d)
                d.mul_(nxt.bias)
                torch.add(e, d, out=out)
        return True

    def _scratch(self, live: list) -> list:
        """Float32 tensors shaped as the weights for an update's intermediate products, kept between updates (allocating
        them per update cost more than the arithmetic)."""
        self._scratch_tensors = _scratch_for(live, getattr(self, "_scratch_tensors", None))
        return self._scratch_tensors

    # ---- reading a track ----

    @property
    def names(self) -> list:
        return [r.name for r in self.rules]

    def _shadow(self, name: str) -> _Shadow:
        for s in self._shadows:
            if s.rule.name == name:
                return s
        raise KeyError(f"No track '{name}' (the tracks are {', '.join(self.names)}).")

    @torch.no_grad()
    def averaged(self, name: str) -> dict:
        """The track's averaged tensors as they are read for evaluation or export, by state_dict name, in the live
        weights' dtype: debiased under zero-debias (the live weights before its first update)."""
        shadow = self._shadow(name)
        live = self._live()
        debias = shadow.rule.zeroDebias and shadow.updates > 0
        if shadow.rule.preset == R.TENSORFLOW:
            correction = R.f32(1.0 - R.powf(shadow.last_decay, float(shadow.updates))) if debias else 1.0
        else:
            correction = 1.0 - shadow.decay_product
        values = {}
        for name_, s, w in zip(self.averaged_names, shadow.tensors, live):
            if shadow.rule.zeroDebias and not debias:
                values[name_] = w.clone()
            elif debias:
                values[name_] = torch.empty_like(w).copy_(s).div_(correction)
            else:
                values[name_] = torch.empty_like(w).copy_(s)
        return values

    def state_dict_of(self, name: str) -> dict:
        """A full model state_dict with the track's weights (buffers not averaged are the live model's): what a
        checkpoint of the track holds, loadable with ``model.load_state_dict``."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        state.update(self.averaged(name))
        return state

    @contextlib.contextmanager
    def swapped(self, name: str, recalibrate=None):
        """Inside the block the model holds the track's weights; after it, the live weights again (and buffers).

        Under ``bn_policy="recalibrate"`` pass ``recalibrate``: an iterable of input batches run through the model in
        train mode (momentum off, a cumulative average, as ``torch.optim.swa_utils.update_bn``) to recompute the
        batch-norm statistics for the track's weights."""
        if self.bn_policy == "recalibrate" and recalibrate is None:
            raise ValueError("bn_policy='recalibrate' needs recalibrate=<batches> to recompute the batch-norm statistics.")
        live = self._live()
        saved = [w.clone() for w in live]
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        with torch.no_grad():
            for w, value in zip(live, self.averaged(name).values()):
                w.copy_(value)
        try:
            if recalibrate is not None:
                _recalibrate(self.model, recalibrate)
            yield self.model
        finally:
            with torch.no_grad():
                for w, value in zip(live, saved):
                    w.copy_(value)
                current = dict(self.model.named_buffers())
                for n, value in buffers.items():
                    current[n].copy_(value)

    # ---- resume ----

    def state_dict(self) -> dict:
        """Everything a resume needs (shadows, counters, the step, the rules): ``load_state_dict`` continues exactly."""
        return {
            "format": FORMAT,
            "step": self.step,
            "bn_policy": self.bn_policy,
            "averaged_names": list(self.averaged_names),
            "tracks": [
                {"rule": s.rule.to_dict(), "updates": s.updates, "decay_product": s.decay_product, "last_decay": s.last_decay,
                 "shadow": [t.detach().clone() for t in s.tensors],
                 **({"ema": [t.clone() for t in s.ema], "theta0": [t.clone() for t in s.anchor]} if s.ema is not None else {}),
                 **({"ring": [[t.clone() for t in copy] for copy in s.ring]} if s.ring is not None else {})}
                for s in self._shadows
            ],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != FORMAT:
            raise ValueError(f"Not EMA tracks of this format ({state.get('format')!r}, expected {FORMAT!r}).")
        if state["averaged_names"] != self.averaged_names:
            raise ValueError("The saved tracks average other tensors than this model's (another model or bn_policy).")
        saved = {t["rule"]["name"]: t for t in state["tracks"]}
        if sorted(saved) != sorted(self.names):
            raise ValueError(f"The saved tracks are {', '.join(saved)}; these are {', '.join(self.names)}.")
        for shadow in self._shadows:
            entry = saved[shadow.rule.name]
            if not _same(entry["rule"], shadow.rule.to_dict()):
                raise ValueError(f"Track '{shadow.rule.name}' was saved with another rule: {entry['rule']}.")
            for s, t in zip(shadow.tensors, entry["shadow"]):
                s.copy_(t)
            if shadow.ema is not None:
                for mine, kept in ((shadow.ema, entry["ema"]), (shadow.anchor, entry["theta0"])):
                    for s, t in zip(mine, kept):
                        s.copy_(t)
            if shadow.ring is not None:
                for copy, kept in zip(shadow.ring, entry["ring"]):
                    for s, t in zip(copy, kept):
                        s.copy_(t)
            shadow.updates = int(entry["updates"])
            shadow.decay_product = float(entry["decay_product"])
            shadow.last_decay = float(entry["last_decay"])
        self.step = int(state["step"])


def _same(a: dict, b: dict) -> bool:
    """Two rules as dicts, a NaN decay (SWA) equal to itself."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def _apply(step: R.ShadowStep, shadows: list, live: list, scratch: list | None = None) -> None:
    """One average of float32 shadows, rounded as the engine's kernels round it (MultiDecayLerp.cs). ``scratch``: float32
    tensors shaped as ``live`` for the intermediate products (allocated here when not given)."""
    if step.form == R.LERP:
        # The libraries' own op (timm, ema-pytorch, AveragedModel call lerp_): the same rounding as theirs here.
        lerp = _foreach("_foreach_lerp_")
        if lerp is not None:
            lerp(shadows, live, step.a)
        else:
            for s, w in zip(shadows, live):
                s.lerp_(w, step.a)
        return
    scratch = scratch if scratch is not None else [torch.empty_like(w) for w in live]
    if step.form == R.SCALE_ADD:
        # BEMA's ema.mul_(1 − β).add_(θ, alpha=β), its sources' own ops.
        for s, w in zip(shadows, live):
            s.mul_(step.a).add_(w, alpha=step.b)
        return
    if step.form == R.REVERSE_LERP:
        # EDM's p_ema.copy_(p_net.lerp(p_ema, β)).
        for s, w, d in zip(shadows, live, scratch):
            torch.lerp(w, s, step.a, out=d)
            s.copy_(d)
        return
    if step.form == R.SUBTRACT:
        # s + α(w − s): three roundings, no fused multiply-add (add_ with alpha may fuse; mul then add does not).
        for s, w, d in zip(shadows, live, scratch):
            torch.sub(w, s, out=d)
            d.mul_(step.a)
            s.add_(d)
    else:
        # a·s + b·w: each product rounded, then the sum (Keras, Lightning's get_ema_avg_fn).
        for s, w, d in zip(shadows, live, scratch):
            torch.mul(w, step.b, out=d)
            s.mul_(step.a).add_(d)


def _scratch_for(live: list, kept: list | None) -> list:
    """``kept`` when it still fits the weights (shapes, devices), else new float32 tensors shaped as them."""
    if kept is not None and len(kept) == len(live) and all(k.shape == w.shape and k.device == w.device for k, w in zip(kept, live)):
        return kept
    return [torch.empty_like(w, dtype=torch.float32) for w in live]


def _recalibrate(model: torch.nn.Module, batches) -> None:
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = {m: m.momentum for m in norms}
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        device = next(model.parameters()).device
        for batch in batches:
            inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
            model(inputs.to(device))
    for m, momentum in momenta.items():
        m.momentum = momentum
    model.train(was_training)
