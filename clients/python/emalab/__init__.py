"""EMA Lab's companion for training loops that run elsewhere: EMA Lab's track rules and post-hoc EMA around your own
PyTorch loop, logging to an EMA Lab server (MLflow-compatible)."""
from .rules import InvalidSetting, EmaRule, PRESETS, resolve, resolve_all
from .tracks import EmaTracks
from .posthoc import PostHocProfiles

__all__ = ["EmaTracks", "PostHocProfiles", "EmaRule", "InvalidSetting", "PRESETS", "resolve", "resolve_all"]
__version__ = "0.1.0"
