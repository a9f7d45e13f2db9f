"""Parts of :class:`~streamtopo.integrations.training.TrainingMonitor`: signal and monitor
names, the row sink that puts every table on the training-step axis, the monitors it builds,
and its argument checks. The hooks on the model are ``_training_hooks.py``'s, the combined
status ``_training_status.py``'s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .._validation import check_choice, check_positive_int, describe
from ..errors import InputError, InputTypeError
from ..monitors import LossRiseDetector

__all__ = [
    "ATTN_ESCALATE_AFTER",
    "ATTN_KEEP_DETECTOR",
    "ATTN_MIN_HISTORY",
    "ATTN_SIGNALS",
    "LAYER_SIGNALS",
    "MONITORS",
    "RESUME",
    "SIGNALS",
    "SUMMARISED",
    "at_step",
    "check_feature_monitor",
    "check_layer",
    "check_options",
    "check_signals",
    "check_state",
    "check_step",
    "layer_options",
    "make_attention",
    "make_layer",
    "make_loss",
    "state_steps",
]

SIGNALS = ("act_norm", "grad_norm", "update_ratio", "attn_entropy", "attn_logit", "out_logit")
LAYER_SIGNALS = ("act_norm", "grad_norm", "update_ratio")  # one value per layer group
ATTN_SIGNALS = ("attn_entropy", "attn_logit")  # one value per attention module
# The attention monitor never turns a long WATCH into COLLAPSE: attention entropy drifts in
# healthy training (one block sharpens while the others stay), and with the layer monitor's
# escalate_after=50 it stopped 2 of 12 healthy fresh-seed transformer runs (held in WATCH for
# 399 and 464 of 700 steps). Without escalation: 0/12 healthy runs stopped, every growth run
# still raised (WATCH), 4/10 reached COLLAPSE on their own evidence (9/10 with escalation);
# benchmarks/evaluation/TRANSFORMER.md, "Escalation of the attention monitor".
ATTN_ESCALATE_AFTER = 1_000_000
# Accepted values before the attention monitor's CUSUM runs, per rule (the layer monitor's: 40).
# rule="cusum": 100. A block's max attention logit moves by x2-x3 against the others during
# the LR warm-up of a healthy transformer (heads forming), which the CUSUM took for changes;
# on the transformer calibration runs 100 cut the attention monitor's false alarms from 0.64
# to 0.45 per 1k healthy steps and its share of healthy steps in alarm from 6.6% to 2.6%, with
# the same detections of TrainingMonitor (benchmarks/evaluation/CHANGEPOINT.md).
# rule="streak" (with its early change detector): 200, the streak rule's baseline, so while it
# calibrates only the early rule's jump and non-finite checks watch attention. With the CUSUM
# from value 100, TrainingMonitor's false alarms on the 12 extra transformer calibration runs
# rose from 0.72 to 1.30 per 1k healthy steps; with 200 they stay at 0.72 and the early LR
# spike of the calibration set is still caught (CHANGEPOINT.md, "Early rule").
ATTN_MIN_HISTORY = {"cusum": 100, "streak": 200}
# The attention monitor keeps the streak rule alone after its warm-up (``keep_detector=False``,
# so ``raise_after`` 8): attention logits grow slowly, and the layer monitor's setting (the
# change detector kept on, the streak rule's debounce 20) found the growth later on the
# transformer calibration runs (calib_more, growth runs: median lead +16 -> +4 steps before
# the loss; CHANGEPOINT.md, "Kept detector").
ATTN_KEEP_DETECTOR = False
MONITORS = ("layer", "attention", "loss", "centroid", "collapse")
SUMMARISED = ("layer", "attention", "centroid")  # the monitors with a summary()
STEP_LIMIT = 2**62  # steps a RunWriter accepts
RESUME = ("never", "allow", "must")  # a RunWriter's run-id policies


def at_step(status: Any, step: int) -> Any:
    """``status`` with its ``step`` set to the training step (a monitor counts its own)."""
    return status if status is None or status.step == step else replace(status, step=step)


def check_step(step: Any, after: int) -> int:
    """A training step given to ``TrainingMonitor.step(step=)``: an int >= ``after`` (the
    steps strictly increase) and below 2**62 (the run writer's bound)."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise InputTypeError(
            f"step must be an int (the trainer's global step) or None, got {describe(step)}"
        )
    step = int(step)
    if not after <= step < STEP_LIMIT:
        last = "" if after == 0 else f" (steps must increase; the last step was {after - 1})"
        raise InputError(f"step must be an int in [{after}, 2**62){last}, got {step}")
    return step


def state_steps(state: Mapping[str, Any], calls: int) -> tuple[int, Mapping[str, int]]:
    """The checked training-step entries of a ``TrainingMonitor.state_dict()``: the next step
    (``calls`` in states saved before it existed) and the step of each monitor's status."""
    step, stamps = state.get("step", calls), state.get("status_steps", {})
    if not isinstance(stamps, Mapping):
        raise InputError(f"state['status_steps'] must be a dict, got {describe(stamps)}")
    checked = [("'step'", step)] + [(f"'status_steps'][{k!r}", v) for k, v in stamps.items()]
    for key, v in checked:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f"state[{key}] must be an int >= 0, got {describe(v)}")
    return step, stamps


def check_state(
    state: Any, every: int, monitors: Mapping[str, Any], *, has_guard: bool
) -> tuple[int, int, int, Mapping[str, int]]:
    """The checked counters of a ``TrainingMonitor.state_dict()`` for a TrainingMonitor with
    ``every``, ``monitors`` (by name) and a guard or not: ``(calls, monitored, step, status
    steps)``; raises, naming the entry, on a state that does not fit."""
    if not isinstance(state, Mapping) or state.get("every") != every:
        raise InputError(
            f"state has every={state.get('every') if isinstance(state, Mapping) else None}, "
            f"this monitor has every={every}"
        )
    names = set(state.get("monitors", {}))
    if names != set(monitors):
        raise InputError(
            f"state has monitors {sorted(names)}, this TrainingMonitor has {sorted(monitors)}"
        )
    calls, monitored = state.get("calls"), state.get("monitored")
    for key, v in (("calls", calls), ("monitored", monitored)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f"state[{key!r}] must be an int >= 0, got {describe(v)}")
    step, stamps = state_steps(state, calls)
    if "guard" in state and not has_guard:
        raise InputError("state has a guard's state, this TrainingMonitor has no guard")
    return calls, monitored, step, stamps


def check_signals(signals: Any) -> tuple[str, ...]:
    if isinstance(signals, str) or not all(isinstance(s, str) for s in signals):
        raise InputTypeError(f"signals must be a sequence of str, got {describe(signals)}")
    signals = tuple(signals)
    unknown = [s for s in signals if s not in SIGNALS]
    if unknown or not signals or len(set(signals)) != len(signals):
        raise InputError(f"signals must be distinct names from {SIGNALS}, got {signals!r}")
    return signals


def check_options(
    signals: Any,
    optimizer: Any,
    every: Any,
    feature_warmup: Any,
    centroid_every: Any,
    writer: Any,
    log_dir: Any,
    resume: Any,
) -> tuple[tuple[str, ...], int, int, int | None, str]:
    """The ``TrainingMonitor(...)`` options checked before anything is built: ``(signals,
    every, feature_warmup, centroid_every, resume)``."""
    signals = check_signals(signals)
    if "update_ratio" in signals and optimizer is None:
        raise InputError(
            "signals includes 'update_ratio' but optimizer is None; pass "
            "TrainingMonitor(..., optimizer=opt) so its step() can be observed"
        )
    every = check_positive_int(every, "every")
    feature_warmup = check_positive_int(feature_warmup, "feature_warmup", minimum=0)
    if centroid_every is not None:
        centroid_every = check_positive_int(centroid_every, "centroid_every")
    if writer is not None and not callable(writer):
        raise InputTypeError(f"writer must be callable, got {describe(writer)}")
    if writer is not None and log_dir is not None:
        raise InputError("give log_dir or writer, not both")
    resume = check_choice(resume, "resume", RESUME)
    if resume != "never" and log_dir is None:
        raise InputError(f"resume={resume!r} needs log_dir (it is the RunWriter's policy)")
    return signals, every, feature_warmup, centroid_every, resume


def check_layer(layer: Any) -> None:
    """``TrainingMonitor(layer=)``: None, a LayerMonitor, or a dict of LayerMonitor keyword
    options; checked before any hook or file exists, an unknown option refused by name."""
    import inspect

    from ..monitors.layer import LayerMonitor

    if layer is None or isinstance(layer, LayerMonitor):
        return
    if not isinstance(layer, Mapping):
        raise InputTypeError(
            f"layer must be a dict of LayerMonitor options or a LayerMonitor, got {describe(layer)}"
        )
    own = ("n_layers", "signals", "signal_name")  # set by the TrainingMonitor
    options = [p for p in inspect.signature(LayerMonitor).parameters if p not in own]
    bad = [k for k in layer if k not in options]
    if bad:
        raise InputError(
            f"layer has unknown LayerMonitor option(s) {bad!r}; expected keys from {options} "
            f"({', '.join(own)} come from the model and signals=)"
        )


def check_feature_monitor(monitor: Any, name: str) -> None:
    """``TrainingMonitor(centroid=)`` is a CentroidMonitor or None, ``collapse=`` a
    CollapseMonitor or None."""
    from ..monitors.centroid import CentroidMonitor
    from ..monitors.collapse import CollapseMonitor

    cls = CentroidMonitor if name == "centroid" else CollapseMonitor
    if monitor is not None and not isinstance(monitor, cls):
        raise InputTypeError(f"{name} must be a {cls.__name__} or None, got {describe(monitor)}")


def make_layer(layer: Any, names: tuple[str, ...], signals: tuple[str, ...], writer: Any) -> Any:
    """The layer-group LayerMonitor: built from a dict of options, or a ready one that fits."""
    from ..monitors.layer import LayerMonitor

    if isinstance(layer, LayerMonitor):
        if layer.n_layers != len(names) or tuple(layer.signals) != signals:
            raise InputError(
                f"layer monitor has n_layers={layer.n_layers}, signals={layer.signals}; "
                f"expected n_layers={len(names)}, signals={signals}"
            )
        return layer
    if layer is not None and not isinstance(layer, Mapping):
        raise InputTypeError(
            f"layer must be a dict of LayerMonitor options or a LayerMonitor, got {describe(layer)}"
        )
    kwargs = {"layer_names": names, "writer": writer, **(layer or {})}
    return LayerMonitor(len(names), signals, **kwargs)


def layer_options(layer: Any, config: Any) -> Any:
    """``TrainingMonitor(layer=)`` with ``config=`` added (the LayerMonitor reads and checks
    it); refused when ``layer`` already has a config or is a ready LayerMonitor."""
    if isinstance(layer, Mapping) and "config" in layer:
        raise InputError("pass config= or layer={'config': ...}, not both; got both")
    if layer is not None and not isinstance(layer, Mapping):
        raise InputError("config= configures the LayerMonitor built here; got a ready one")
    return {**(layer or {}), "config": config}


def make_attention(attn: Any, signals: Sequence[str], writer: Any) -> Any:
    """The attention LayerMonitor over the sites of ``attn`` (the first attention collector)
    with the attention signals among ``signals``; its long WATCH never escalates."""
    from ..monitors.layer import DEFAULT_RULE, LayerMonitor

    return LayerMonitor(
        attn.n_layers,
        tuple(s for s in signals if s in ATTN_SIGNALS),
        layer_names=attn.layer_names,
        escalate_after=ATTN_ESCALATE_AFTER,  # drifts stay WATCH (see its definition)
        min_history=ATTN_MIN_HISTORY[DEFAULT_RULE],
        keep_detector=ATTN_KEEP_DETECTOR,
        writer=writer,
    )


def make_loss(loss: Any, writer: Any) -> LossRiseDetector | None:
    if isinstance(loss, LossRiseDetector):
        return loss
    if loss is True:
        return LossRiseDetector(writer=writer)
    if isinstance(loss, Mapping):
        return LossRiseDetector(**{"writer": writer, **loss})
    if loss is False or loss is None:
        return None
    raise InputTypeError(
        f"loss must be True/False, a dict or a LossRiseDetector, got {describe(loss)}"
    )
