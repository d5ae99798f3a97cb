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
PRESETS = (EMALAB, TENSORFLOW, TIMM, DIFFUSERS, EMA_PYTORCH, KERAS, AVERAGED_MODEL, LIGHTNING, SWA)

# Setting names (EmaFields.cs): a track is written as the engine's JSON writes it.
DECAY, WARMUP, INV_GAMMA, POWER, MIN_DECAY = "decay", "warmup", "invGamma", "power", "minDecay"
UPDATE_AFTER_STEP, START_STEP, EVERY, ADJUST_DECAY = "updateAfterStep", "startStep", "every", "adjustDecay"
INIT, ZERO_DEBIAS, DTYPE = "init", "zeroDebias", "dtype"

_SETTINGS = {
    EMALAB: [DECAY, WARMUP, INV_GAMMA, POWER, MIN_DECAY, START_STEP, EVERY, ADJUST_DECAY, INIT, ZERO_DEBIAS, DTYPE],
    TENSORFLOW: [DECAY, WARMUP, ZERO_DEBIAS, DTYPE],
    TIMM: [DECAY, WARMUP, INV_GAMMA, POWER, MIN_DECAY, UPDATE_AFTER_STEP, DTYPE],
    DIFFUSERS: [DECAY, WARMUP, INV_GAMMA, POWER, MIN_DECAY, UPDATE_AFTER_STEP, DTYPE],
    EMA_PYTORCH: [DECAY, INV_GAMMA, POWER, MIN_DECAY, UPDATE_AFTER_STEP, EVERY, DTYPE],
    KERAS: [DECAY, DTYPE],
    AVERAGED_MODEL: [DECAY, DTYPE],
    LIGHTNING: [DECAY, START_STEP, EVERY, DTYPE],
    SWA: [START_STEP, EVERY, DTYPE],
}
_DEFAULT_DECAY = {TIMM: 0.9999, DIFFUSERS: 0.9999, EMA_PYTORCH: 0.9999, KERAS: 0.99, AVERAGED_MODEL: 0.999, LIGHTNING: 0.999}
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
    return "ema-" + repr(float(decay)).replace("e", "E")


def _check(rule: EmaRule, path: str) -> None:
    p = rule.preset
    if p != SWA and not (0 <= rule.decay < 1 and (rule.decay > 0 or p != EMALAB)):
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
    if rule.preset == SWA:
        parts.append("swa")
        if rule.startStep > 1:
            parts.append(f"from-{rule.startStep}")
        if rule.every > 1:
            parts.append(f"every{rule.every}")
    else:
        parts.append(decay_name(rule.decay))
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


def resolve(track, run: Shared = Shared(), path: str = "tracks[0]") -> EmaRule:
    """One track as the engine's ``EmaTrackSettings.Resolve`` makes it complete: a float is an ``emalab`` decay; a dict
    holds ``preset`` (default ``emalab``), ``name`` and the preset's settings; a setting the preset lacks is refused."""
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
    decay = math.nan if preset == SWA else track.get(DECAY, _DEFAULT_DECAY.get(preset))
    if decay is None:
        raise InvalidSetting(f"{path}.{DECAY}", "A decay is needed.")
    rule = EmaRule(
        name="",
        preset=preset,
        decay=float(decay),
        warmup=track.get(WARMUP, ("tf" if run.warmup else "none") if is_emalab else warmups_of(preset)[0]),
        invGamma=float(track.get(INV_GAMMA, 1.0)),
        power=float(track.get(POWER, 2.0 / 3.0)),
        minDecay=float(track.get(MIN_DECAY, 0.0)),
        updateAfterStep=int(track.get(UPDATE_AFTER_STEP, 100 if preset == EMA_PYTORCH else 0)),
        startStep=int(track.get(START_STEP, run.startStep if is_emalab else 1 if preset == SWA else 0)),
        every=int(track.get(EVERY, run.every if is_emalab else 10 if preset == EMA_PYTORCH else 1)),
        adjustDecay=bool(track.get(ADJUST_DECAY, False)),
        init=track.get(INIT, "initial"),
        zeroDebias=bool(track.get(ZERO_DEBIAS, is_emalab and run.zeroDebias)),
        dtype=track.get(DTYPE, "float32"),
    )
    _check(rule, path)
    return replace(rule, name=track.get("name") or _default_name(rule, run))


def resolve_all(tracks, run: Shared = Shared()) -> list:
    """Every track's rule; generated names stay unique (a second identical rule becomes ``name-2``), as in the engine."""
    if not tracks:
        raise InvalidSetting("tracks", "At least one track is needed.")
    if len(tracks) > MAX_TRACKS:
        raise InvalidSetting("tracks", f"At most {MAX_TRACKS} tracks can be shadowed in one run.")
    rules = []
    for i, track in enumerate(tracks):
        path = f"tracks[{i}]"
        rule = resolve(track, run, path)
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

NONE, FOLLOW_LIVE, COPY, AVERAGE = "none", "follow-live", "copy", "average"
SUBTRACT, LERP, BLEND = "subtract", "lerp", "blend"


@dataclass(frozen=True)
class ShadowStep:
    """The action, the update's form and float32 coefficients (α, or a and b for a blend), and the decay it amounts to."""

    action: str
    form: str = ""
    a: float = 0.0
    b: float = 0.0
    decay: float = math.nan


_NONE = ShadowStep(NONE)
_FOLLOW = ShadowStep(FOLLOW_LIVE, decay=0.0)
_COPY = ShadowStep(COPY, decay=0.0)


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
