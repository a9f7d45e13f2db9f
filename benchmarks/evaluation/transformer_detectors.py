"""Offline baselines over transformer records, and the table they make.

    python -m benchmarks.evaluation.transformer_detectors [--cache .eval-cache/transformer]

Each detector is a function ``TransformerRecord -> bool array (T,)`` of per-step alarm states,
in the style of ``detectors.py`` (whose loss-rise, loss-spike, gradient-norm and held-out
patience rules apply unchanged: a ``TransformerRecord`` has ``loss``, ``grad_norm``,
``eval_steps`` and ``test_loss``). Thresholds were fixed before any detector was run on a
record:

- ``grad_norm_z``: rolling |z| > 3 (K = 100, 5 consecutive steps) of the log global gradient
  norm (the square root of the sum of the blocks' squared norms) — what practitioners watch.
- ``attn_logit_thr``: the largest attention logit of any block above 100 for 5 consecutive
  steps (healthy small models stay below ~50, issue 18; Wortsman et al. see divergence past
  ~1e4 at scale).
- ``attn_entropy_thr``: the lowest block's mean attention entropy below 0.1 nats for 5
  consecutive steps (entropy collapse, Zhai et al. 2023; healthy blocks sharpen to ~1 nat).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import detectors as det
from .metrics import score
from .transformer import FAULTS, TransformerRecord, failure_onset, load

RUN = 5


def _streak(flag: np.ndarray, run: int = RUN) -> np.ndarray:
    out = np.zeros(len(flag), dtype=bool)
    streak = 0
    for t, f in enumerate(flag):
        streak = streak + 1 if f else 0
        out[t] = streak >= run
    return out


def attn_logit_thr(rec: TransformerRecord, thr: float = 100.0) -> np.ndarray:
    """Max attention logit over blocks > ``thr`` (non-finite counts as above) for 5 steps."""
    x = np.nanmax(np.where(np.isfinite(rec.attn_logit), rec.attn_logit, np.inf), axis=1)
    return _streak(x > thr)


def attn_entropy_thr(rec: TransformerRecord, thr: float = 0.1) -> np.ndarray:
    """Min block attention entropy < ``thr`` nats (non-finite counts as below) for 5 steps."""
    x = np.min(np.where(np.isfinite(rec.attn_entropy), rec.attn_entropy, -np.inf), axis=1)
    return _streak(x < thr)


BASELINES: dict[str, Callable[[TransformerRecord], np.ndarray]] = {
    "loss_rise": det.loss_rise,
    "loss_spike_z": det.loss_spike,
    "grad_norm_z": det.grad_norm_z,
    "attn_logit_thr": attn_logit_thr,
    "attn_entropy_thr": attn_entropy_thr,
    "val_loss_patience": det.val_loss_patience,
}


def score_records(records: list[TransformerRecord], detectors=None) -> list[dict]:
    """One row per record x detector: onset, first alarm, lead, false alarms."""
    detectors = BASELINES if detectors is None else detectors
    rows = []
    for rec in records:
        cfg = rec.config
        onset = failure_onset(rec)
        for name, fn in detectors.items():
            alarm = np.asarray(fn(rec), dtype=bool)
            # emergent scenarios have no injection step; the start of their LR ramp plays its
            # part: steps before it are healthy, an alarm from it on is a detection
            start = cfg.t0
            if start is None and "ramp" in cfg.fault_params:
                start = int(cfg.fault_params["ramp"][0] * cfg.steps)
            s = score(alarm, start, onset, cfg.fault)
            if cfg.fault == "healthy":
                s = score(alarm, None, None, "healthy")
            rows.append(
                {"fault": cfg.fault, "seed": cfg.seed, "detector": name, "onset": onset, **s}
            )
    return rows


def table(rows: list[dict]) -> str:
    """Per detector: false alarms / 1k healthy steps, % healthy-run steps in alarm is not
    recorded here; per scenario: visible failures detected and the median lead."""
    dets = sorted({r["detector"] for r in rows})
    faults = [f for f in FAULTS if f != "healthy" and any(r["fault"] == f for r in rows)]
    head = "| detector | FA / 1k healthy steps | " + " | ".join(faults) + " |"
    lines = [head, "|---" * (2 + len(faults)) + "|"]
    for d in dets:
        mine = [r for r in rows if r["detector"] == d]
        hs = sum(r["healthy_steps"] for r in mine)
        fa = sum(r["false_alarms"] for r in mine)
        cells = []
        for f in faults:
            vis = [r for r in mine if r["fault"] == f and r["onset"] is not None]
            n_all = sum(r["fault"] == f for r in mine)
            if not vis:
                cells.append(f"no visible failure ({n_all})")
                continue
            hits = [r for r in vis if r["first_alarm"] is not None]
            lead = np.median([r["lead"] for r in hits]) if hits else None
            cells.append(f"{len(hits)}/{len(vis)}, " + ("—" if lead is None else f"{lead:+.0f}"))
        lines.append(f"| {d} | {1000 * fa / max(hs, 1):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pilot_summary(records: list[TransformerRecord]) -> str:
    """Per run: configuration, onset, loss and held-out loss behaviour, signal extremes."""
    lines = [
        "| scenario | seed | d x L, batch, peak LR, qk-LN | t0 | onset | train loss start -> "
        "at onset -> end | held-out best (step) -> end | max attn logit | min block entropy "
        "| max abs out logit, min mean logit |",
        "|---" * 10 + "|",
    ]
    for rec in records:
        c = rec.config
        onset = failure_onset(rec)
        peak = c.fault_params.get("peak", c.lr)
        lo = np.convolve(np.nan_to_num(rec.loss, nan=99.0), np.ones(20) / 20, mode="valid")
        at = "—" if onset is None else f"{lo[max(0, min(onset, len(lo) - 1) - 19)]:.2f}"
        b = int(np.nanargmin(rec.test_loss))
        lines.append(
            f"| {c.fault} | {c.seed} | {c.width}x{c.depth}, {c.batch}, {peak:g}, "
            f"{'yes' if c.qk_norm else 'no'} | {c.t0 if c.t0 is not None else '—'} "
            f"| {onset if onset is not None else 'none'} | {lo[0]:.2f} -> {at} -> {lo[-1]:.2f} "
            f"| {rec.test_loss[b]:.3f} ({rec.eval_steps[b]}) -> {rec.test_loss[-1]:.3f} "
            f"| {np.nanmax(rec.attn_logit):.3g} | {np.nanmin(rec.attn_entropy):.2f} "
            f"| {np.nanmax(rec.out_logit_max):.3g}, {np.nanmin(rec.out_logit_mean):.3g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache", default=".eval-cache/transformer")
    ap.add_argument("--pilot-only", action="store_true", help="runs and onsets, no detectors")
    args = ap.parse_args(argv)
    records = [load(p) for p in sorted(Path(args.cache).glob("*.npz"))]
    records.sort(key=lambda r: (FAULTS.index(r.config.fault), r.config.seed))
    print(pilot_summary(records))
    if not args.pilot_only:
        print(table(score_records(records)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    raise SystemExit(main())
