"""Naive twin of LayerMonitor: recomputes everything from the full history each step with
numpy and scipy (no incremental sums, no ring buffers, no numba). Independent of streamtopo.

Semantics mirrored from DESIGN.md §2: log transform with a 1e-8 x step-max zero floor, points
= layers over the last W steps, distance |p_i - p_j| / sqrt(W*S), h0 = sum of single-linkage
merge heights; z-scores (ddof=0, std floored at min_std) against the previous K values
accepted while no alarm was active; WATCH/COLLAPSE by consecutive counts.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist


def transform(raw: np.ndarray, log: bool) -> np.ndarray:
    """(S, L) float32 -> float64; non-finite entries stay NaN."""
    out = np.full(raw.shape, np.nan)
    for s in range(raw.shape[0]):
        v = raw[s].astype(np.float64)
        fin = np.isfinite(v)
        if not log:
            out[s, fin] = v[fin]
            continue
        top = max(float(v[fin].max()) if fin.any() else 0.0, 0.0)
        if top == 0.0:
            out[s, fin] = 0.0
        else:
            out[s, fin] = np.log(np.maximum(v[fin], 1e-8 * top))
    return out


def h0_of(points: np.ndarray) -> float:
    if points.shape[0] < 2:
        return 0.0
    return float(linkage(pdist(points), method="single")[:, 2].sum())


class NaiveLayerMonitor:
    def __init__(
        self,
        n_layers,
        n_signals=1,
        *,
        window=16,
        transform="log",
        rule="zscore",
        baseline=100,
        watch_z=3.0,
        collapse_z=6.0,
        raise_after=5,
        escalate_after=50,
        clear_after=5,
        layer_rule=True,
        layer_z=3.0,
        watch_ratio=0.6,
        collapse_ratio=0.3,
        warmup=10,
        patience=3,
        nonfinite="collapse",
        min_std=1e-3,
        jump=0.0,
    ):
        self.L, self.S, self.W = n_layers, n_signals, window
        self.log = transform == "log"
        self.rule, self.K = rule, baseline
        self.watch_z, self.collapse_z, self.layer_z = watch_z, collapse_z, layer_z
        self.raise_after, self.escalate_after, self.clear_after = (
            raise_after,
            escalate_after,
            clear_after,
        )
        self.layer_rule = layer_rule
        self.watch_ratio, self.collapse_ratio, self.warmup = watch_ratio, collapse_ratio, warmup
        self.patience, self.nonfinite, self.min_std = patience, nonfinite, min_std
        self.jump = jump  # a layer moving more than x jump beyond layer_z: WATCH at once
        self.rows: list[np.ndarray] = []  # transformed rows, whole history
        self.h_base: list[float] = []
        self.l_base: list[np.ndarray] = []
        self.over = {"topology": 0, "layer": 0}
        self.crit = 0
        self.active = False
        self.state = "HEALTHY"
        self.calm = 0
        self.over_steps = 0
        self.peak = 0.0
        self.n_peak = 0
        self.collapse_run = 0

    def _z(self, hist, x):
        if len(hist) < self.K:
            return math.nan
        a = np.asarray(hist[-self.K :])
        sd = max(float(a.std()), self.min_std)
        return (x - float(a.mean())) / sd

    def check(self, raw) -> dict:
        raw = np.asarray(raw, dtype=np.float32).reshape(self.S, self.L)
        y = transform(raw, self.log)
        self.rows.append(y)
        win = np.stack(self.rows[-self.W :])  # (w, S, L)
        w = win.shape[0]
        valid = np.isfinite(win).all(axis=(0, 1))
        bad_now = ~np.isfinite(y).all(axis=0)
        pts = win[:, :, valid].reshape(w * self.S, -1).T / math.sqrt(w * self.S)
        h0 = h0_of(pts)
        excluded = not valid.all()
        # per-layer z of the median-relative value, largest |z| over signals
        med = np.array([np.median(y[s][np.isfinite(y[s])]) for s in range(self.S)])
        u = y - med[:, None]
        lz = np.full(self.L, np.nan)
        if len(self.l_base) >= self.K:
            B = np.stack(self.l_base[-self.K :])
            sd = np.maximum(B.std(axis=0), self.min_std)
            zz = (u - B.mean(axis=0)) / sd
            for i in range(self.L):
                if not bad_now[i]:
                    lz[i] = zz[np.argmax(np.abs(zz[:, i])), i]
        top = int(np.nanargmax(np.abs(lz))) if np.isfinite(lz).any() else -1
        lzt = float(lz[top]) if top >= 0 else math.nan
        logh = math.log(h0) if h0 > 0 else -math.inf
        z = math.nan if excluded else self._z(self.h_base, logh)
        # peak rule
        self.n_peak += 1
        pstate = "HEALTHY"
        if not excluded and self.n_peak > self.warmup:
            self.peak = max(self.peak, h0)
            ratio = h0 / self.peak if self.peak > 0 else 1.0
            if ratio < self.collapse_ratio:
                pstate = "COLLAPSE"
            elif ratio < self.watch_ratio:
                pstate = "WATCH"
        # alarm over the two detectors
        zt = z if self.rule == "zscore" else math.nan
        zl = lzt if (self.layer_rule and not excluded) else math.nan
        self._alarm(zt, zl)
        if (
            self.jump
            and self.log
            and not self.active
            and not excluded
            and not math.isnan(zl)
            and abs(zl) > self.layer_z
        ):
            mean = np.stack(self.l_base[-self.K :]).mean(axis=0)
            if np.abs(u[:, top] - mean[:, top]).max() > math.log(self.jump):
                self.over["layer"] = max(self.over["layer"], self.raise_after)
                self.active, self.state, self.over_steps, self.calm = True, "WATCH", 1, 0
        state = self.state
        sev = {"HEALTHY": 0, "WATCH": 1, "COLLAPSE": 2}
        if self.rule == "peak" and sev[pstate] > sev[state]:
            state = pstate
        if bad_now.any() and self.nonfinite == "collapse":
            state = "COLLAPSE"
        if state == "HEALTHY" and not excluded:
            if logh > -math.inf:
                self.h_base.append(logh)
            if self.over["layer"] == 0:
                self.l_base.append(u)
        self.collapse_run = self.collapse_run + 1 if state == "COLLAPSE" else 0
        return {
            "h0": h0,
            "z": z,
            "layer_z": lzt,
            "state": state,
            "peak": self.peak,
            "should_stop": self.collapse_run >= self.patience,
        }

    def _alarm(self, zt, zl):
        zs = {"topology": zt, "layer": zl}
        evaluated = [k for k, v in zs.items() if not math.isnan(v)]
        over_now = []
        for k in evaluated:
            if abs(zs[k]) > (self.watch_z if k == "topology" else self.layer_z):
                self.over[k] += 1
                over_now.append(k)
            else:
                self.over[k] = 0
        if "topology" in evaluated:
            self.crit = self.crit + 1 if abs(zt) > self.collapse_z else 0
        held_over = [k for k in zs if k not in evaluated and self.over[k] > 0]
        raised = [k for k in zs if self.over[k] >= self.raise_after]
        crit = self.crit >= self.raise_after
        if not self.active:
            if raised:
                self.active = True
                self.state = "COLLAPSE" if crit else "WATCH"
                self.over_steps = 1
                self.calm = 0
            return
        if evaluated and not over_now and not held_over:
            self.calm += 1
            if self.calm >= self.clear_after:
                self.active = False
                self.state = "HEALTHY"
                self.over = {"topology": 0, "layer": 0}
                self.crit = 0
                self.calm = 0
                self.over_steps = 0
                return
        else:
            self.calm = 0
            if over_now or held_over:
                self.over_steps += 1
        if crit or self.over_steps > self.escalate_after:
            self.state = "COLLAPSE"
