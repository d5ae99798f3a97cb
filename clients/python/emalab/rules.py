"""EMA Lab's track rules in Python: the same presets, settings, names and step-by-step arithmetic as the engine.

Each preset reproduces one library's update loop after optimizer step ``t`` (1-based). ``u`` is the number of updates
the rule has counted before this one. Decays are computed in the precision the library uses (Python floats are
doubles; float32 where the library computes on tensors), exactly as ``src/TrainingEngine/Averaging/EmaSchedule.cs``
does, so a track here and the engine's track of the same rule hold the same shadows on the same trajectory.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import re
import struct
from dataclasses import asdict, dataclass, field, replace

# Preset names (EmaPresets.cs).
EMALAB = "emalab"
TENSORFLOW = "tensorflow"
TIMM = "timm"
DIFFUSERS = "diffusers"
EMA_PYTORCH = "ema-pytorch"
KERAS = "keras"
AVERAGED_MODEL = "averaged-model"
LIGHTNING = "lightning"
SWA = "swa"
BEMA = "bema"
TRL_BEMA = "trl-bema"
LAWA = "lawa"
EDM = "edm"
TORCHVISION = "torchvision"
PRESETS = (EMALAB, TENSORFLOW, TIMM, DIFFUSERS, EMA_PYTORCH, KERAS, AVERAGED_MODEL, LIGHTNING, SWA, BEMA, TRL_BEMA, LAWA, EDM, TORCHVISION)

# Setting names (EmaFields.cs): a track is written as the engine's JSON writes it.
DECAY, WARMUP, INV_GAMMA, POWER, MIN_DECAY = "decay", "warmup", "invGamma", "power", "minDecay"
UPDATE_AFTER_STEP, START_STEP, EVERY, ADJUST_DECAY = "updateAfterStep", "startStep", "every", "adjustDecay"
INIT, ZERO_DEBIAS, DTYPE = "init", "zeroDebias", "dtype"
HALF_LIFE_SAMPLES, HALF_LIFE_KIMG, RAMPUP_RATIO = "halfLifeSamples", "halfLifeKimg", "rampupRatio"
EMA_POWER, BIAS_POWER, LAG, MULTIPLIER, MIN_EMA_MULTIPLIER = "emaPower", "biasPower", "lag", "multiplier", "minEmaMultiplier"
CHECKPOINTS, EPOCHS, WARMUP_EPOCHS = "checkpoints", "epochs", "warmupEpochs"

_SETTINGS = {
    EMALAB: [DECAY, HALF_LIFE_SAMPLES, WARMUP, INV_GAMMA, POWER, MIN_DECAY, START_STEP, EVERY, ADJUST_DECAY, INIT, ZERO_DEBIAS, DTYPE],
    TENSORFLOW: [DECAY, WARMUP, ZERO_DEBIAS, DTYPE],
    TIMM: [DECAY, WARMUP, INV_GAMMA, POWER, MIN_DECAY, UPDATE_AFTER_STEP, DTYPE],
    DIFFUSERS: [DECAY, WARMUP, INV_GAMMA, POWER, MIN_DECAY, UPDATE_AFTER_STEP, DTYPE],
    EMA_PYTORCH: [DECAY, INV_GAMMA, POWER, MIN_DECAY, UPDATE_AFTER_STEP, EVERY, DTYPE],
    KERAS: [DECAY, DTYPE],
    AVERAGED_MODEL: [DECAY, DTYPE],
    LIGHTNING: [DECAY, START_STEP, EVERY, DTYPE],
    SWA: [START_STEP, EVERY, DTYPE],
    BEMA: [EVERY, EMA_POWER, BIAS_POWER, LAG, MULTIPLIER, UPDATE_AFTER_STEP, MIN_EMA_MULTIPLIER],
    TRL_BEMA: [EVERY, EMA_POWER, BIAS_POWER, LAG, MULTIPLIER, UPDATE_AFTER_STEP, MIN_EMA_MULTIPLIER],
    LAWA: [CHECKPOINTS, EVERY],
    EDM: [HALF_LIFE_KIMG, RAMPUP_RATIO],
    TORCHVISION: [DECAY, EVERY, EPOCHS, WARMUP_EPOCHS],
}
# Each preset's own defaults, as its source sets them (EmaPresets.SourceDefaults; a test holds the two tables equal).
_SOURCE_DEFAULTS = {
    EMA_PYTORCH: {UPDATE_AFTER_STEP: 100, EVERY: 10},
    BEMA: {EVERY: 100, EMA_POWER: 0.5, BIAS_POWER: 0.2, LAG: 10, MULTIPLIER: 1.0, UPDATE_AFTER_STEP: 0, MIN_EMA_MULTIPLIER: 0.0},
    TRL_BEMA: {EVERY: 400, EMA_POWER: 0.5, BIAS_POWER: 0.2, LAG: 10, MULTIPLIER: 1.0, UPDATE_AFTER_STEP: 0, MIN_EMA_MULTIPLIER: 0.0},
    LAWA: {CHECKPOINTS: 5},
    EDM: {HALF_LIFE_KIMG: 500.0, RAMPUP_RATIO: 0.05},
    TORCHVISION: {EVERY: 32, WARMUP_EPOCHS: 0},
}
MAX_LAWA_CHECKPOINTS = 32
_DEFAULT_DECAY = {TIMM: 0.9999, DIFFUSERS: 0.9999, EMA_PYTORCH: 0.9999, KERAS: 0.99, AVERAGED_MODEL: 0.999, LIGHTNING: 0.999,
                  TORCHVISION: 0.99998}
_WARMUPS = {
    EMALAB: ["none", "tf", "power"], TENSORFLOW: ["none", "tf"], TIMM: ["none", "power"], DIFFUSERS: ["none", "power"],
    EMA_PYTORCH: ["power"],
}
DTYPES = ("float32", "bfloat16", "float16")
MAX_TRACKS = 8
MAX_NAME_LENGTH = 64
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class InvalidSetting(ValueError):
    """A track setting the engine would refuse; ``field`` is its path (``tracks[2].decay``), as the engine's API names it."""

    def __init__(self, field_path: str, message: str):
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


def presets() -> tuple:
    return PRESETS


def settings_of(preset: str) -> list:
    """The settings a preset takes (besides ``name`` and ``preset``)."""
    return list(_SETTINGS[preset])


def warmups_of(preset: str) -> list:
    return list(_WARMUPS.get(preset, ["none"]))


def has_decay(preset: str) -> bool:
    """Presets with one decay (the others average by a count, a schedule of their own, or a half-life in samples)."""
    return preset not in (SWA, BEMA, TRL_BEMA, LAWA, EDM)


def table() -> dict:
    """The presets as the engine's ``EmaPresets`` describes them: settings, default decay, warm-ups, source defaults."""
    return {p: {"settings": settings_of(p), "defaultDecay": _DEFAULT_DECAY.get(p), "warmups": warmups_of(p),
                "sourceDefaults": dict(_SOURCE_DEFAULTS.get(p, {}))} for p in PRESETS}


@dataclass(frozen=True)
class Shape:
    """What rules counted in samples or epochs need of their run (the engine's ``EmaRunShape``); totalSteps 0: unknown."""

    batchSize: int
    batchesPerEpoch: int
    totalSteps: int = 0

    @property
    def epochs(self) -> int:
        """The run's epochs, a last partial one counted."""
        return 0 if self.batchesPerEpoch < 1 else -(-self.totalSteps // self.batchesPerEpoch)


@dataclass(frozen=True)
class EmaRule:
    """A track's complete rule (every field set), as the engine's ``EmaRule`` and a checkpoint's metadata record it."""

    name: str
    preset: str
    decay: float  # NaN for SWA
    warmup: str = "none"
    invGamma: float = 1.0
    power: float = 2.0 / 3.0
    minDecay: float = 0.0
    updateAfterStep: int = 0
    startStep: int = 0
    every: int = 1
    adjustDecay: bool = False
    init: str = "initial"
    zeroDebias: bool = False
    dtype: str = "float32"
    halfLifeSamples: float = math.nan
    halfLifeKimg: float = math.nan
    rampupRatio: float = math.nan
    batchSize: int = 0
    emaPower: float = 0.0
    biasPower: float = 0.0
    lag: int = 0
    multiplier: float = 0.0
    minEmaMultiplier: float = 0.0
    checkpoints: int = 0
    epochs: int = 0
    warmupEpochs: int = 0
    batchesPerEpoch: int = 0

    @property
    def is_bema(self) -> bool:
        return self.preset in (BEMA, TRL_BEMA)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Shared:
    """The run-level settings the ``emalab`` preset takes its defaults from (the engine's ``EmaSettings``)."""

    warmup: bool = False
    zeroDebias: bool = False
    every: int = 1
    startStep: int = 0


def decay_name(decay: float) -> str:
    """``ema-0.999``: the decay in the shortest form that reads back the same (C#'s "R" format)."""
    return "ema-" + _r(decay)


def _r(x: float) -> str:
    """A number as C#'s "R" format writes it: the shortest form that reads back the same, no trailing ".0"."""
    text = repr(float(x)).replace("e", "E")
    return text[:-2] if text.endswith(".0") else text


def _bad_number(x: float, positive: bool) -> bool:
    return math.isnan(x) or math.isinf(x) or (x <= 0 if positive else x < 0)


def _check_new_rules(rule: EmaRule, path: str) -> None:
    p = rule.preset
    if rule.is_bema:
        if _bad_number(rule.emaPower, False):
            raise InvalidSetting(f"{path}.{EMA_POWER}", "emaPower (κ) must be a number ≥ 0.")
        if _bad_number(rule.biasPower, False):
            raise InvalidSetting(f"{path}.{BIAS_POWER}", "biasPower (η) must be a number ≥ 0.")
        if rule.lag < 0:
            raise InvalidSetting(f"{path}.{LAG}", "lag (ρ) must not be negative.")
        if _bad_number(rule.multiplier, True):
            raise InvalidSetting(f"{path}.{MULTIPLIER}", "multiplier (γ) must be a positive number.")
        if p == BEMA and rule.multiplier > 1:
            raise InvalidSetting(f"{path}.{MULTIPLIER}", "multiplier (γ) is at most 1 here: β = γ(1 + t)^−κ starts at γ.")
        if p == TRL_BEMA and rule.lag + rule.multiplier < 1:
            raise InvalidSetting(f"{path}.{LAG}", "lag + multiplier must be at least 1: β = (ρ + γt)^−κ must not exceed 1 at t = 1.")
        if not (0 <= rule.minEmaMultiplier <= 1):
            raise InvalidSetting(f"{path}.{MIN_EMA_MULTIPLIER}", "minEmaMultiplier must be in [0, 1].")
    if p == TORCHVISION:
        if rule.epochs < 1:
            raise InvalidSetting(f"{path}.{EPOCHS}", "epochs must be at least 1.")
        if rule.warmupEpochs < 0:
            raise InvalidSetting(f"{path}.{WARMUP_EPOCHS}", "warmupEpochs must not be negative.")
    if p == LAWA and not (1 <= rule.checkpoints <= MAX_LAWA_CHECKPOINTS):
        raise InvalidSetting(f"{path}.{CHECKPOINTS}",
                             f"checkpoints (k) is from 1 to {MAX_LAWA_CHECKPOINTS}: each one is a copy of the model kept in memory.")
    if p == EDM:
        if _bad_number(rule.halfLifeKimg, True):
            raise InvalidSetting(f"{path}.{HALF_LIFE_KIMG}", "halfLifeKimg must be a positive number (thousands of samples).")
        if not math.isnan(rule.rampupRatio) and _bad_number(rule.rampupRatio, True):
            raise InvalidSetting(f"{path}.{RAMPUP_RATIO}", "rampupRatio must be a positive number (0 for no ramp-up).")
    if not math.isnan(rule.halfLifeSamples) and _bad_number(rule.halfLifeSamples, True):
        raise InvalidSetting(f"{path}.{HALF_LIFE_SAMPLES}", "halfLifeSamples must be a positive number.")


def _check(rule: EmaRule, path: str) -> None:
    _check_new_rules(rule, path)
    p = rule.preset
    if has_decay(p) and not (0 <= rule.decay < 1 and (rule.decay > 0 or p != EMALAB)):
        raise InvalidSetting(f"{path}.{DECAY}", f"Decay {rule.decay:g} is outside {'(0, 1)' if p == EMALAB else '[0, 1)'}.")
    if rule.warmup not in warmups_of(p):
        raise InvalidSetting(f"{path}.{WARMUP}", f"The {p} preset's warm-up is one of {', '.join(warmups_of(p))}.")
    if not (rule.invGamma > 0) or math.isinf(rule.invGamma):
        raise InvalidSetting(f"{path}.{INV_GAMMA}", "invGamma must be a positive number.")
    if not (rule.power > 0) or math.isinf(rule.power):
        raise InvalidSetting(f"{path}.{POWER}", "power must be a positive number.")
    if not (0 <= rule.minDecay < 1):
        raise InvalidSetting(f"{path}.{MIN_DECAY}", "minDecay must be in [0, 1).")
    if rule.minDecay > rule.decay:
        raise InvalidSetting(f"{path}.{MIN_DECAY}", "minDecay must not exceed the decay.")
    if rule.updateAfterStep < 0:
        raise InvalidSetting(f"{path}.{UPDATE_AFTER_STEP}", "updateAfterStep must not be negative.")
    if rule.startStep < 0:
        raise InvalidSetting(f"{path}.{START_STEP}", "The start step must not be negative.")
    if rule.every < 1:
        raise InvalidSetting(f"{path}.{EVERY}", "'every' must be at least 1.")
    if rule.init not in ("initial", "first-update"):
        raise InvalidSetting(f"{path}.{INIT}", "init is 'initial' or 'first-update'.")
    if rule.dtype not in DTYPES:
        raise InvalidSetting(f"{path}.{DTYPE}", f"dtype is one of {', '.join(DTYPES)}.")
    if rule.zeroDebias and rule.init == "first-update":
        raise InvalidSetting(f"{path}.{ZERO_DEBIAS}",
                             "A zero-debiased shadow starts at zero; it cannot also start with a copy (init 'first-update').")


def _default_name(rule: EmaRule, run: Shared) -> str:
    parts = []
    if rule.is_bema:
        parts.append(rule.preset)
        if rule.every != _SOURCE_DEFAULTS[rule.preset][EVERY]:
            parts.append(f"every{rule.every}")
        if rule.updateAfterStep > 0:
            parts.append(f"after{rule.updateAfterStep}")
    elif rule.preset == LAWA:
        parts.append(f"lawa-k{rule.checkpoints}-every{rule.every}")
    elif rule.preset == EDM:
        parts.append("edm-" + _r(rule.halfLifeKimg) + "kimg")
        if math.isnan(rule.rampupRatio):
            parts.append("norampup")
    elif rule.preset == SWA:
        parts.append("swa")
        if rule.startStep > 1:
            parts.append(f"from-{rule.startStep}")
        if rule.every > 1:
            parts.append(f"every{rule.every}")
    else:
        parts.append(decay_name(rule.decay) if math.isnan(rule.halfLifeSamples) else "ema-hl" + _r(rule.halfLifeSamples))
        if rule.preset == EMALAB:
            if rule.warmup != ("tf" if run.warmup else "none"):
                parts.append("nowarmup" if rule.warmup == "none" else rule.warmup)
            if rule.zeroDebias != run.zeroDebias:
                parts.append("debias" if rule.zeroDebias else "biased")
            if rule.every != run.every:
                parts.append(f"every{rule.every}")
            if rule.adjustDecay:
                parts.append("adjusted")
            if rule.startStep != run.startStep:
                parts.append(f"from-{rule.startStep}")
            if rule.init == "first-update":
                parts.append("copyfirst")
        else:
            parts.append(rule.preset)
            if (rule.warmup == "power" and rule.preset != EMA_PYTORCH) or rule.warmup == "tf":
                parts.append("warmup")
            if rule.zeroDebias:
                parts.append("debias")
    if rule.dtype == "bfloat16":
        parts.append("bf16")
    if rule.dtype == "float16":
        parts.append("fp16")
    return "-".join(parts)


def name_problem(name: str):
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        return f"A track name has 1 to {MAX_NAME_LENGTH} characters."
    if not _NAME.match(name):
        return f"Track name '{name}' may use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit."
    if name == "raw" or name.startswith("pf-") or name.startswith("posthoc-"):
        return f"Track name '{name}' is reserved ('raw', 'pf-…' and 'posthoc-…' name other tracks)."
    return None


def resolve(track, run: Shared = Shared(), path: str = "tracks[0]", shape: Shape | None = None) -> EmaRule:
    """One track as the engine's ``EmaTrackSettings.Resolve`` makes it complete: a float is an ``emalab`` decay; a dict
    holds ``preset`` (default ``emalab``), ``name`` and the preset's settings; a setting the preset lacks is refused.
    ``shape``: the run's batch size and epoch length, which rules counted in samples or epochs need."""
    if isinstance(track, (int, float)) and not isinstance(track, bool):
        track = {DECAY: float(track)}
    if not isinstance(track, dict):
        raise InvalidSetting(path, "A track is a decay or a dict of settings.")
    preset = track.get("preset", EMALAB)
    if preset not in PRESETS:
        raise InvalidSetting(f"{path}.preset", f"Unknown preset '{preset}'; use one of {', '.join(PRESETS)}.")
    for key in track:
        if key in ("name", "preset"):
            continue
        if key not in _SETTINGS[preset]:
            raise InvalidSetting(f"{path}.{key}", f"The {preset} preset has no '{key}' setting (it takes {', '.join(_SETTINGS[preset])}).")
    is_emalab = preset == EMALAB
    own = _SOURCE_DEFAULTS.get(preset, {})
    half_life = track.get(HALF_LIFE_SAMPLES)
    if half_life is not None and DECAY in track:
        raise InvalidSetting(f"{path}.{HALF_LIFE_SAMPLES}", "Give either a decay or a half-life in samples, not both.")
    if preset == TORCHVISION and EPOCHS not in track and (shape is None or shape.totalSteps <= 0):
        raise InvalidSetting(f"{path}.{EPOCHS}", "torchvision adjusts its decay to the run's epochs, which are not known here: give 'epochs'.")
    needs_batch = half_life is not None or preset in (EDM, TORCHVISION)
    if needs_batch and shape is None:
        if half_life is not None or preset == EDM:
            raise InvalidSetting(f"{path}.{HALF_LIFE_SAMPLES if half_life is not None else HALF_LIFE_KIMG}",
                                 "A half-life in samples needs the run's batch size.")
        raise InvalidSetting(f"{path}.preset", f"The {preset} preset needs the run's batch size and epoch length.")
    if preset == LAWA and EVERY not in track and shape is None:
        raise InvalidSetting(f"{path}.{EVERY}", "LAWA takes a checkpoint per epoch unless 'every' says otherwise, and the run's "
                                                "epoch length is not known here: give 'every'.")
    if not has_decay(preset):
        decay = math.nan
    elif half_life is not None:
        decay = math.pow(0.5, shape.batchSize / half_life) if half_life > 0 else math.nan
    else:
        decay = track.get(DECAY, _DEFAULT_DECAY.get(preset))
        if decay is None:
            raise InvalidSetting(f"{path}.{DECAY}", "A decay is needed.")
    if LAWA == preset and EVERY not in track:
        every = shape.batchesPerEpoch
    else:
        every = track.get(EVERY, run.every if is_emalab else own.get(EVERY, 1))
    rampup = track.get(RAMPUP_RATIO, own.get(RAMPUP_RATIO, math.nan))
    rule = EmaRule(
        name="",
        preset=preset,
        decay=float(decay),
        warmup=track.get(WARMUP, ("tf" if run.warmup else "none") if is_emalab else warmups_of(preset)[0]),
        invGamma=float(track.get(INV_GAMMA, 1.0)),
        power=float(track.get(POWER, 2.0 / 3.0)),
        minDecay=float(track.get(MIN_DECAY, 0.0)),
        updateAfterStep=int(track.get(UPDATE_AFTER_STEP, own.get(UPDATE_AFTER_STEP, 0))),
        startStep=int(track.get(START_STEP, run.startStep if is_emalab else 1 if preset == SWA else 0)),
        every=int(every),
        adjustDecay=bool(track.get(ADJUST_DECAY, False)),
        init=track.get(INIT, "initial"),
        zeroDebias=bool(track.get(ZERO_DEBIAS, is_emalab and run.zeroDebias)),
        dtype=track.get(DTYPE, "float32"),
        halfLifeSamples=float(half_life) if half_life is not None else math.nan,
        halfLifeKimg=float(track.get(HALF_LIFE_KIMG, own.get(HALF_LIFE_KIMG, math.nan))),
        rampupRatio=math.nan if rampup == 0 else float(rampup),
        batchSize=shape.batchSize if needs_batch else 0,
        emaPower=float(track.get(EMA_POWER, own.get(EMA_POWER, 0.0))),
        biasPower=float(track.get(BIAS_POWER, own.get(BIAS_POWER, 0.0))),
        lag=int(track.get(LAG, own.get(LAG, 0))),
        multiplier=float(track.get(MULTIPLIER, own.get(MULTIPLIER, 0.0))),
        minEmaMultiplier=float(track.get(MIN_EMA_MULTIPLIER, own.get(MIN_EMA_MULTIPLIER, 0.0))),
        checkpoints=int(track.get(CHECKPOINTS, own.get(CHECKPOINTS, 0))),
        epochs=int(track.get(EPOCHS, shape.epochs if preset == TORCHVISION else 0)),
        warmupEpochs=int(track.get(WARMUP_EPOCHS, own.get(WARMUP_EPOCHS, 0))),
        batchesPerEpoch=shape.batchesPerEpoch if preset == TORCHVISION else 0,
    )
    _check(rule, path)
    return replace(rule, name=track.get("name") or _default_name(rule, run))


def resolve_all(tracks, run: Shared = Shared(), shape: Shape | None = None) -> list:
    """Every track's rule; generated names stay unique (a second identical rule becomes ``name-2``), as in the engine."""
    if not tracks:
        raise InvalidSetting("tracks", "At least one track is needed.")
    if len(tracks) > MAX_TRACKS:
        raise InvalidSetting("tracks", f"At most {MAX_TRACKS} tracks can be shadowed in one run.")
    rules = []
    for i, track in enumerate(tracks):
        path = f"tracks[{i}]"
        rule = resolve(track, run, path, shape)
        named = isinstance(track, dict) and track.get("name")
        if not named:
            name, n = rule.name, 2
            while any(r.name == name for r in rules):
                name, n = f"{rule.name}-{n}", n + 1
            rule = replace(rule, name=name)
        problem = name_problem(rule.name)
        if problem:
            raise InvalidSetting(f"{path}.name", problem if named else problem + " Give the track a shorter name.")
        if any(r.name == rule.name for r in rules):
            raise InvalidSetting(f"{path}.name", f"Two tracks are named '{rule.name}'.")
        rules.append(rule)
    return rules


# ---- What a shadow does after one optimizer step (EmaSchedule.cs) ----

NONE, FOLLOW_LIVE, COPY, AVERAGE, ANCHOR, SNAPSHOT = "none", "follow-live", "copy", "average", "anchor", "snapshot"
SUBTRACT, LERP, BLEND, SCALE_ADD, REVERSE_LERP = "subtract", "lerp", "blend", "scale-add", "reverse-lerp"


@dataclass(frozen=True)
class ShadowStep:
    """The action, the update's form and float32 coefficients (α, or a and b for a blend), and the decay it amounts to.
    ``bias``: BEMA's α, the weight of θ_t − θ₀ added to the EMA in the weights read (NaN for the other rules)."""

    action: str
    form: str = ""
    a: float = 0.0
    b: float = 0.0
    decay: float = math.nan
    bias: float = math.nan


_NONE = ShadowStep(NONE)
_FOLLOW = ShadowStep(FOLLOW_LIVE, decay=0.0)
_COPY = ShadowStep(COPY, decay=0.0)
_ANCHOR = ShadowStep(ANCHOR)
_SNAPSHOT = ShadowStep(SNAPSHOT)


def _bema_average(beta: float, alpha: float) -> ShadowStep:
    # ema.mul_(1 − β).add_(θ, alpha=β): both Python floats, rounded to float32 by the ops.
    return ShadowStep(AVERAGE, SCALE_ADD, f32(1.0 - beta), f32(beta), 1.0 - beta, alpha)


def f32(x: float) -> float:
    """``(float)x``: the double rounded to float32. An operation on float32 values done in double and rounded so is
    the float32 operation itself (double has more than 2·24 + 2 bits)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _average(form: str, decay: float) -> ShadowStep:
    return ShadowStep(AVERAGE, form, f32(1.0 - decay), 0.0, decay)


def power_warmup(rule: EmaRule, n: int) -> float:
    """crowsonkb's warm-up as timm and diffusers write it, in double: clamp(1 − (1 + n/γ)^−p, minDecay, decay); 0 at n = 0."""
    if n <= 0:
        return 0.0
    return max(min(1 - math.pow(1 + n / rule.invGamma, -rule.power), rule.decay), rule.minDecay)


def _torch_pow_f32(value: float, exponent: float) -> float:
    """``float32_tensor ** exponent`` as libtorch computes it (not correctly rounded): ema-pytorch computes its decay so."""
    import torch
    return float(torch.tensor(value, dtype=torch.float32).pow(exponent).item())


def next_step(rule: EmaRule, t: int, u: int) -> ShadowStep:
    p = rule.preset
    if p == EMALAB:
        if t < rule.startStep:
            return _NONE if rule.zeroDebias else _FOLLOW
        if t % rule.every != 0:
            return _NONE
        if u == 0 and rule.init == "first-update":
            return _COPY
        if rule.warmup == "tf":
            d = min(rule.decay, (1.0 + t) / (10.0 + t))
        elif rule.warmup == "power":
            d = power_warmup(rule, u)
        else:
            d = rule.decay
        if rule.adjustDecay:
            d = math.pow(d, rule.every)
        return _average(SUBTRACT, d)
    if p == TENSORFLOW:
        d = f32(rule.decay)
        if rule.warmup == "tf":
            n = f32(t)
            d = min(d, f32(f32(1.0 + n) / f32(10.0 + n)))
        return ShadowStep(AVERAGE, SUBTRACT, f32(1.0 - d), 0.0, d)
    if p == TIMM:
        n = max(0, t - rule.updateAfterStep - 1)
        d = 0.0 if n <= 0 else power_warmup(rule, n) if rule.warmup == "power" else rule.decay
        return _average(LERP, d)
    if p == DIFFUSERS:
        n = max(0, t - rule.updateAfterStep - 1)
        if n <= 0:
            d = 0.0
        else:
            d = 1 - math.pow(1 + n / rule.invGamma, -rule.power) if rule.warmup == "power" else (1.0 + n) / (10.0 + n)
            d = max(min(d, rule.decay), rule.minDecay)
        return _average(SUBTRACT, d)
    if p == EMA_PYTORCH:
        if t == 1:
            return _FOLLOW
        if (t - 1) % rule.every != 0:
            return _NONE
        if t - 1 <= rule.updateAfterStep:
            return _FOLLOW
        epoch = f32(t - rule.updateAfterStep - 1)
        value = f32(1.0 - _torch_pow_f32(f32(1.0 + f32(epoch / f32(rule.invGamma))), -rule.power))
        d = min(max(value, f32(rule.minDecay)), f32(rule.decay))
        return _average(LERP, d)
    if p == KERAS:
        m = 0.0 if t == 1 else f32(rule.decay)
        return ShadowStep(AVERAGE, BLEND, m, f32(1.0 - m), m)
    if p == AVERAGED_MODEL:
        return _COPY if u == 0 else _average(LERP, rule.decay)
    if p == LIGHTNING:
        index = t - 1
        if index < rule.startStep or index % rule.every != 0:
            return _NONE
        if u == 0:
            return _COPY
        return ShadowStep(AVERAGE, BLEND, f32(rule.decay), f32(1.0 - rule.decay), rule.decay)
    if p == SWA:
        if t < rule.startStep or t % rule.every != 0:
            return _NONE
        if u == 0:
            return _COPY
        weight = f32(1.0 / f32(u + 1))
        return ShadowStep(AVERAGE, LERP, weight, 0.0, 1.0 - weight)
    if p == BEMA:
        # abblock/bema core_online.py (2025-12-03): the first update at the first t ≥ update_after with (t + 1) % freq == 0.
        start = max(1, rule.updateAfterStep)
        first = start + (rule.every - 1 - start) % rule.every
        if t < first or (t - first) % rule.every != 0:
            return _NONE
        age = 1.0 + max(0, t - rule.lag)
        alpha = rule.multiplier * math.pow(age, -rule.biasPower) if rule.biasPower > 0 else 0.0
        if not rule.emaPower > 0:
            return replace(_COPY, bias=alpha)
        beta = rule.multiplier * math.pow(age, -rule.emaPower)
        if rule.minEmaMultiplier > 0:
            beta = max(beta, rule.minEmaMultiplier)
        return _bema_average(beta, alpha)
    if p == TRL_BEMA:
        if t < rule.updateAfterStep:
            return _NONE
        if t == rule.updateAfterStep:
            return _ANCHOR
        if (t - rule.updateAfterStep) % rule.every != 0:
            return _NONE
        x = rule.lag + rule.multiplier * t
        return _bema_average(max(math.pow(x, -rule.emaPower), rule.minEmaMultiplier), math.pow(x, -rule.biasPower))
    if p == LAWA:
        if t % rule.every == 0:
            return _SNAPSHOT
        return _FOLLOW if u == 0 else _NONE
    if p == TORCHVISION:
        epoch, i = divmod(t - 1, rule.batchesPerEpoch)
        if i % rule.every != 0:
            return _NONE
        previous_epoch = epoch if i >= rule.every else epoch - 1  # the update before: earlier in this epoch, or the last of the one before
        if u == 0 or previous_epoch < rule.warmupEpochs:
            return _COPY
        adjust = rule.batchSize * rule.every / rule.epochs
        decay = 1.0 - min(1.0, (1.0 - rule.decay) * adjust)
        return ShadowStep(AVERAGE, BLEND, f32(decay), f32(1 - decay), decay)
    if p == EDM:
        samples_seen = (t - 1) * rule.batchSize
        half_life = rule.halfLifeKimg * 1000
        if not math.isnan(rule.rampupRatio):
            half_life = min(half_life, samples_seen * rule.rampupRatio)
        beta = math.pow(0.5, rule.batchSize / max(half_life, 1e-8))
        return ShadowStep(AVERAGE, REVERSE_LERP, f32(beta), 0.0, beta)
    raise ValueError(f"Unknown preset '{p}'.")


_libm = None


def powf(x: float, y: float) -> float:
    """C's ``powf`` (what the engine's ``MathF.Pow`` calls): TensorFlow's zero-debias divisor 1 − d^k in float32."""
    global _libm
    if _libm is None:
        try:
            _libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
            _libm.powf.restype = ctypes.c_float
            _libm.powf.argtypes = [ctypes.c_float, ctypes.c_float]
        except OSError:
            _libm = False
    if _libm:
        return float(_libm.powf(x, y))
    return f32(math.pow(f32(x), f32(y)))
