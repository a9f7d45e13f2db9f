"""streamtopo's monitors as offline detectors over recorded runs (alarm = state != HEALTHY)."""

from __future__ import annotations

from collections.abc import Callable

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
    "ph_compat[grad] raw peak": _layer(("grad_norm",), transform="none", window=1, rule="peak"),
    "ph_compat[act] raw peak": _layer(("act_norm",), transform="none", window=1, rule="peak"),
}
