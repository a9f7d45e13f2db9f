"""streamtopo's monitors as offline detectors over recorded runs (alarm = state != HEALTHY)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streamtopo import LayerMonitor

from .scenarios import RunRecord


def _layer(signals: tuple[str, ...], **kw) -> Callable[[RunRecord], np.ndarray]:
    def detect(rec: RunRecord) -> np.ndarray:
        arrays = {"act_norm": rec.act_norm, "grad_norm": rec.grad_norm}
        values = np.stack([arrays[s] for s in signals], axis=1)
        mon = LayerMonitor(n_layers=values.shape[2], signals=signals, **kw)
        states = mon.run(values)["state"].to_numpy()
        return states != "HEALTHY"

    return detect


DETECTORS: dict[str, Callable[[RunRecord], np.ndarray]] = {
    "st_layer[act] default": _layer(("act_norm",)),
    "st_layer[act] topology only": _layer(("act_norm",), layer_rule=False),
    "st_layer[grad] default": _layer(("grad_norm",)),
    "st_layer[act+grad] default": _layer(("act_norm", "grad_norm")),
    # the change detector (rule="cusum", fa_per_1k=0.1), the library implementation
    "st_layer[act] cusum": _layer(("act_norm",), rule="cusum"),
    "st_layer[grad] cusum": _layer(("grad_norm",), rule="cusum"),
    "st_layer[act+grad] cusum": _layer(("act_norm", "grad_norm"), rule="cusum"),
    "ph_compat[grad] raw peak": _layer(("grad_norm",), transform="none", window=1, rule="peak"),
    "ph_compat[act] raw peak": _layer(("act_norm",), transform="none", window=1, rule="peak"),
}


def _centroid(rule: str, use: str) -> Callable[[RunRecord], np.ndarray]:
    """CentroidMonitor over the per-evaluation probe features; ``use`` picks the flag:
    "gap" (the gap rule's alert), "loss" (test-loss patience) or "state" (any)."""
    from streamtopo import CentroidMonitor

    from .detectors import _eval_to_steps

    def detect(rec: RunRecord) -> np.ndarray:
        mon = CentroidMonitor(10, rule=rule)
        flags = []
        for e in range(len(rec.eval_steps)):
            s = mon.check(
                rec.features_train[e],
                rec.labels_train,
                rec.features_test[e],
                rec.labels_test,
                test_loss=float(rec.test_loss[e]),
            )
            flag = {"gap": s.alert, "loss": s.loss_stop, "state": s.state != "HEALTHY"}[use]
            flags.append(bool(flag))
        return _eval_to_steps(rec, np.array(flags))

    return detect


def _collapse(variant: str, mode: str, **kw: Any) -> Callable[[RunRecord], np.ndarray]:
    """CollapseMonitor on the probe features at every fourth evaluation (every 100 steps; the H1
    part runs ripser on 256 points, the dominant cost of the whole evaluation)."""
    from streamtopo import CollapseMonitor

    from .detectors import _eval_to_steps

    def detect(rec: RunRecord) -> np.ndarray:
        mon = CollapseMonitor(check_every=4, variant=variant, mode=mode, **kw)
        flags, last = [], False
        for e in range(len(rec.eval_steps)):
            s = mon.check(rec.features_train[e], rec.labels_train)
            last = s.state != "HEALTHY" if s.checked else last
            flags.append(last)
        return _eval_to_steps(rec, np.array(flags, dtype=bool))

    return detect


DETECTORS.update(
    {
        "st_centroid gap (baseline rule)": _centroid("baseline", "gap"),
        "st_centroid gap (seed rule 0.08)": _centroid("seed", "gap"),
        "st_centroid test-loss patience": _centroid("baseline", "loss"),
        "st_collapse default": _collapse("default", "baseline"),
        # the one-check rule before 2026-12-06 (confirm=1)
        "st_collapse default, confirm=1": _collapse(
            "default", "baseline", confirm=1, collapse_z=None
        ),
        "st_collapse seed000": _collapse("seed000", "seed"),
    }
)
