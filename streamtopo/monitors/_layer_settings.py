"""LayerMonitor's settings: every constructor argument checked, and the defaults that depend
on the rule resolved (one place, so the monitor's ``__init__`` only stores them)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from .._validation import check_choice, check_positive_int, describe
from ..alarms import sidak_z
from ..errors import InputError, InputTypeError

__all__ = ["DEFAULT_RULE", "SETTINGS_ARGS", "layer_settings"]

_TRANSFORMS = ("log", "none")
_RULES = ("streak", "cusum", "peak")
RULE_ALIASES = {"zscore": "streak"}  # runs recorded before the rename replay bit-identically
_EARLY_RULES = ("cusum", "none")
# The early rule's CUSUM starts after 100 accepted values (rule="cusum": 40). Chosen on the
# calibration runs and the transformer demo: with 40 the demo's healthy LR warm-up (one block's
# update ratio rising against the others) was stopped at step 132, before its fault at 180;
# with 100 its first alarm is the fault's (CHANGEPOINT.md, "Early rule").
_EARLY_MIN_HISTORY = 100
_ABSORB_AFTER = 30  # the streak rule's default (see absorb_after)
# The streak rule's debounce with the change detector kept on (which takes the abrupt changes):
# the window + 4, so that a one-step spike (which holds the windowed h0 up for exactly
# ``window`` evaluations) is the detector's alarm only. Chosen on the digits runs of seeds
# 1000+ (first kept version, 8 / 16 / 20: 0.156 / 0.059 / 0.051 false alarms per 1k healthy
# steps; with the final COLLAPSE timing 20 gives 0.063), reported on seeds 2000+ (0.067;
# benchmarks/evaluation/CHANGEPOINT.md, "Kept detector").
_RAISE_AFTER_OVER_WINDOW = 4
DEFAULT_RULE = "streak"  # LayerMonitor's rule when none is given
_NONFINITE = ("collapse", "flag", "raise")


def layer_settings(
    *,
    n_layers: int,
    signals: Sequence[str],
    window: int,
    transform: str,
    rule: str,
    baseline: int,
    watch_z: float,
    collapse_z: float,
    raise_after: int | None,
    escalate_after: int,
    clear_after: int,
    layer_rule: bool | None,
    layer_z: float | None,
    watch_ratio: float,
    collapse_ratio: float,
    warmup: int,
    patience: int,
    check_every: int,
    nonfinite: str,
    capacity: int,
    layer_names: Sequence[str] | None,
    refresh_every: int,
    min_std: float,
    max_culprits: int,
    fa_per_1k: float,
    min_history: int | None,
    early_rule: str | None,
    keep_detector: bool | None,
    absorb_after: int | None,
    jump: float | None,
    signal_name: str | None,
) -> dict[str, Any]:
    """LayerMonitor's arguments (every one, with the defaults of its signature, the one
    place they are declared) checked and resolved: ``{attribute: value}``. A bad argument
    raises a streamtopo error naming it (nothing is set). Defaults that depend on ``rule``
    (``layer_rule``, ``min_history``, ``early_rule``, ``keep_detector``, ``raise_after``,
    ``absorb_after``) are resolved here;
    the monitor records the resolved values in its config.

    >>> from streamtopo import LayerMonitor
    >>> m = LayerMonitor(4)
    >>> m.rule, m.early_rule, m.keep_detector, m.min_history, m.absorb_after, m.jump
    ('streak', 'cusum', True, 100, 30, 0.0)
    >>> LayerMonitor(4, rule="cusum").min_history
    40
    """
    s = SimpleNamespace()
    s.n_layers = check_positive_int(n_layers, "n_layers", minimum=2)
    if signal_name is not None:
        signals = (signal_name,)
    if (
        isinstance(signals, str)
        or not isinstance(signals, Iterable)
        or not all(isinstance(s, str) for s in signals)
    ):
        raise InputTypeError(f"signals must be a sequence of str, got {describe(signals)}")
    s.signals = tuple(signals)
    if not s.signals or len(set(s.signals)) != len(s.signals):
        raise InputError(f"signals must be non-empty and unique, got {s.signals!r}")
    s.window = check_positive_int(window, "window")
    s.transform = check_choice(transform, "transform", _TRANSFORMS)
    s.rule = check_choice(
        RULE_ALIASES.get(rule, rule) if isinstance(rule, str) else rule, "rule", _RULES
    )
    s.baseline = check_positive_int(baseline, "baseline", minimum=2)
    s.watch_z, s.collapse_z = (
        _positive(watch_z, "watch_z"),
        _positive(collapse_z, "collapse_z"),
    )
    if s.collapse_z <= s.watch_z:
        raise InputError(f"collapse_z must be greater than watch_z={s.watch_z}, got {s.collapse_z}")
    s.escalate_after = check_positive_int(escalate_after, "escalate_after")
    s.clear_after = check_positive_int(clear_after, "clear_after")
    if layer_rule is not None and not isinstance(layer_rule, bool):
        raise InputTypeError(f"layer_rule must be True, False or None, got {describe(layer_rule)}")
    s.layer_rule = (s.rule != "peak") if layer_rule is None else layer_rule
    s.layer_z = None if layer_z is None else _positive(layer_z, "layer_z")
    s.layer_z_ = sidak_z(3.0, s.n_layers * len(s.signals)) if layer_z is None else s.layer_z
    s.watch_ratio = _number(watch_ratio, "watch_ratio")
    s.collapse_ratio = _number(collapse_ratio, "collapse_ratio")
    if not 0.0 <= s.collapse_ratio < s.watch_ratio <= 1.0:
        raise InputError(
            "ratios must satisfy 0 <= collapse_ratio < watch_ratio <= 1, got "
            f"collapse_ratio={collapse_ratio!r}, watch_ratio={watch_ratio!r}"
        )
    s.warmup = check_positive_int(warmup, "warmup", minimum=0)
    s.patience = check_positive_int(patience, "patience")
    s.check_every = check_positive_int(check_every, "check_every")
    s.nonfinite = check_choice(nonfinite, "nonfinite", _NONFINITE)
    s.capacity = check_positive_int(capacity, "capacity")
    if s.capacity < s.window:
        raise InputError(f"capacity must be >= window={s.window}, got {s.capacity}")
    if layer_names is None:
        s.layer_names = tuple(str(i) for i in range(s.n_layers))
    else:
        if (
            isinstance(layer_names, str)
            or not isinstance(layer_names, Iterable)
            or not all(isinstance(n, str) for n in layer_names)
        ):
            raise InputTypeError(
                f"layer_names must be a sequence of str, got {describe(layer_names)}"
            )
        s.layer_names = tuple(layer_names)
        if len(s.layer_names) != s.n_layers:
            raise InputError(
                f"layer_names has {len(s.layer_names)} names, expected n_layers={s.n_layers}"
            )
        if len(set(s.layer_names)) != s.n_layers:
            dup = sorted({n for n in s.layer_names if s.layer_names.count(n) > 1})
            raise InputError(f"layer_names must be unique, got duplicates {dup}")
    s.refresh_every = check_positive_int(refresh_every, "refresh_every")
    s.min_std = _number(min_std, "min_std")
    if not 0.0 < s.min_std < math.inf:
        raise InputError(f"min_std must be > 0 (and finite), got {min_std!r}")
    s.max_culprits = check_positive_int(max_culprits, "max_culprits")
    s.fa_per_1k = _positive(fa_per_1k, "fa_per_1k")
    if min_history is None:
        min_history = 40 if s.rule == "cusum" else _EARLY_MIN_HISTORY
    s.min_history = check_positive_int(min_history, "min_history")
    if early_rule is None:
        early_rule = "cusum" if s.rule == "streak" else "none"
    s.early_rule = check_choice(early_rule, "early_rule", _EARLY_RULES)
    if s.early_rule != "none" and s.rule != "streak":
        raise InputError(
            f"early_rule={s.early_rule!r} needs rule='streak' (it decides while the "
            f"streak rule's baseline fills), got rule={s.rule!r}; use early_rule='none'"
        )
    if keep_detector is not None and not isinstance(keep_detector, bool):
        raise InputTypeError(
            f"keep_detector must be True, False or None, got {describe(keep_detector)}"
        )
    s.keep_detector = s.early_rule == "cusum" if keep_detector is None else keep_detector
    if s.keep_detector and s.early_rule == "none":
        raise InputError(
            "keep_detector=True keeps the streak rule's early change detector on after its "
            f"warm-up: it needs early_rule='cusum', got early_rule={s.early_rule!r}"
        )
    if raise_after is None:  # the streak rule's debounce: longer when the detector takes jumps
        raise_after = s.window + _RAISE_AFTER_OVER_WINDOW if s.keep_detector else 8
    s.raise_after = check_positive_int(raise_after, "raise_after")
    if absorb_after is None:
        absorb_after = _ABSORB_AFTER if s.rule == "streak" else 0
    s.absorb_after = check_positive_int(absorb_after, "absorb_after", minimum=0)
    s.jump = 0.0 if jump is None else _number(jump, "jump")  # off unless asked for
    if s.jump and (s.rule != "streak" or not 1.0 < s.jump < math.inf):
        raise InputError(
            "jump must be 0 (off) or a factor > 1 with rule='streak', got "
            f"jump={jump!r} with rule={s.rule!r}"
        )
    s._jump_log = math.log(s.jump) if s.jump and s.transform == "log" else 0.0
    if s.absorb_after and (s.rule != "streak" or s.absorb_after < 4):
        raise InputError(
            "absorb_after must be 0 (off) or an int >= 4 with rule='streak', got "
            f"absorb_after={absorb_after!r} with rule={s.rule!r}"
        )
    return vars(s)


_CODE = layer_settings.__code__
SETTINGS_ARGS = _CODE.co_varnames[: _CODE.co_kwonlyargcount]  # its argument names


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InputTypeError(f"{name} must be a number, got {describe(value)}")
    return float(value)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InputTypeError(f"{name} must be a positive number, got {describe(value)}")
    if not value > 0 or not math.isfinite(value):
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)
