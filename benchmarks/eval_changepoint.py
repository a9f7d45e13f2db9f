"""Change-point detector vs the streak rule and the loss-rise rule on recorded digits runs.

    python -m benchmarks.evaluation.cache calib      # record (once; CPU-heavy, resumable)
    python benchmarks/eval_changepoint.py calib      # score on the calibration seeds (0-19)
    python benchmarks/eval_changepoint.py fresh      # score on the report seeds (1000+)
    python benchmarks/eval_changepoint.py fresh2     # healthy seeds 2000+ (false alarms only)

Every run is replayed through LayerMonitor (read-only) for its per-evaluation h0 and its
``rule="streak"`` alarm (the default); the change detector
(``benchmarks/evaluation/changepoint.py``) sees ``log h0`` and each layer's median-relative
log signal (as LayerMonitor's layer rule does). Scores per detector: false-alarm episodes per
1k healthy steps (from step 0, calibration included), share of healthy steps in alarm, and per
scenario the detection rate, median lead vs onset and failures masked by an alarm already
running at the injection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.evaluation import detectors as det
from benchmarks.evaluation.cache import CACHE, Recorded, load_set
from benchmarks.evaluation.changepoint import ChangeDetector
from benchmarks.evaluation.metrics import alarm_rates, rate_cells

FEAT = CACHE / "feat"
SIGS = {"act": ("act_norm",), "grad": ("grad_norm",), "act+grad": ("act_norm", "grad_norm")}


def _values(rec: Recorded, signals: tuple[str, ...]) -> np.ndarray:
    arrays = {"act_norm": rec.act_norm, "grad_norm": rec.grad_norm}
    return np.stack([arrays[s] for s in signals], axis=1)  # (T, S, L)


def layer_features(rec: Recorded, sig: str) -> tuple[np.ndarray, np.ndarray]:
    """(log h0 (T,), the streak rule's alarm (T,)) from LayerMonitor, cached per run."""
    FEAT.mkdir(parents=True, exist_ok=True)
    p = FEAT / f"{rec.scenario}_s{rec.seed}_T{rec.steps}_{sig}.npz"
    if p.exists():
        with np.load(p, allow_pickle=False) as z:
            return z["logh0"], z["streak"]
    from streamtopo import LayerMonitor

    vals = _values(rec, SIGS[sig])
    mon = LayerMonitor(  # the streak rule before issue 17 (cached as "before")
        n_layers=vals.shape[2],
        signals=SIGS[sig],
        rule="streak",
        early_rule="none",
        absorb_after=0,
        jump=0,
    )
    df = mon.run(vals)
    h0 = df["h0"].to_numpy().astype(np.float64)
    with np.errstate(divide="ignore"):
        logh0 = np.where(h0 > 0, np.log(np.where(h0 > 0, h0, 1.0)), -np.inf)
    streak = df["state"].to_numpy() != "HEALTHY"
    np.savez(p, logh0=logh0, streak=streak)
    return logh0, streak


VARIANTS = {  # the streak rule's variants (LayerMonitor arguments) and their cache suffix
    "early": {"rule": "streak", "early_rule": "cusum", "absorb_after": 0, "keep_detector": False},
    # session 5's default: the early detector and absorption (30)
    "absorb": {"rule": "streak", "keep_detector": False},
    "jump": {"rule": "streak", "keep_detector": False, "jump": 30},  # + the jump (x30), off
    # today's default: the change detector kept on after the warm-up (layers only), the streak
    # rule's debounce window + 4 = 20
    "kept20": {"rule": "streak"},
}


def streak_variant(rec: Recorded, sig: str, variant: str) -> np.ndarray:
    """Alarm (T,) of a LayerMonitor variant (``VARIANTS``), cached per run."""
    FEAT.mkdir(parents=True, exist_ok=True)
    p = FEAT / f"{rec.scenario}_s{rec.seed}_T{rec.steps}_{sig}_{variant}.npz"
    if p.exists():
        with np.load(p, allow_pickle=False) as z:
            return z["alarm"]
    from streamtopo import LayerMonitor

    vals = _values(rec, SIGS[sig])
    mon = LayerMonitor(n_layers=vals.shape[2], signals=SIGS[sig], **VARIANTS[variant])
    alarm = mon.run(vals)["state"].to_numpy() != "HEALTHY"
    np.savez(p, alarm=alarm)
    return alarm


def median_relative(rec: Recorded, sig: str) -> np.ndarray:
    """(T, S*L) per layer: log value (float32-rounded, zeros floored at 1e-8 x the step's
    largest, as LayerMonitor does) minus the step's median over layers."""
    v = _values(rec, SIGS[sig]).astype(np.float32).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        top = np.nanmax(np.where(np.isfinite(v), v, np.nan), axis=2, keepdims=True)
        y = np.log(np.maximum(v, 1e-8 * top))
        y = np.where(np.isfinite(v), y, np.nan)
        u = y - np.nanmedian(y, axis=2, keepdims=True)
    return u.reshape(len(u), -1)


def streams(rec: Recorded, sig: str, parts: str = "both") -> np.ndarray:
    logh0, _ = layer_features(rec, sig)
    cols = []
    if parts in ("both", "topology"):
        cols.append(logh0[:, None])
    if parts in ("both", "layer"):
        cols.append(median_relative(rec, sig))
    return np.concatenate(cols, axis=1)


def run_detector(x: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray, list]:
    """Alarm (T,), calibrating (T,) and the absorbed-shift starts of one run."""
    d = ChangeDetector(x.shape[1], **kw)
    alarm = np.zeros(len(x), dtype=bool)
    calib = np.zeros(len(x), dtype=bool)
    absorbed = []
    for t in range(len(x)):
        before = d.absorbed_step
        state, *_ = d.update(x[t])
        alarm[t] = state != 0
        calib[t] = d.calibrating
        if d.absorbed_step != before:
            absorbed.append((t, d.absorbed_step))
    return alarm, calib, absorbed


def loss_rise(rec: Recorded) -> np.ndarray:
    return det.loss_rise(rec)  # only uses rec.loss


def score(alarm: np.ndarray, rec: Recorded) -> dict:
    """metrics.py semantics, extended: episodes and alarm share on healthy steps; detection
    needs an alarm episode STARTING at or after t0; masked = an alarm already running at t0
    and no new episode after it."""
    T = len(alarm)
    t0 = rec.t0
    hend = t0 if t0 is not None else T
    a = alarm.astype(bool)
    starts = np.flatnonzero(a & ~np.concatenate([[False], a[:-1]]))
    out = {
        "healthy_steps": hend,
        "fa": int(np.count_nonzero(starts < hend)),
        "in_alarm": int(a[:hend].sum()),
        "first": None,
        "lead": None,
        "masked": False,
    }
    if t0 is not None:
        after = starts[starts >= t0]
        if after.size:
            out["first"] = int(after[0])
            if rec.onset is not None:
                out["lead"] = int(rec.onset - after[0])
        out["masked"] = bool(a[t0 - 1]) and not after.size
    return out


def evaluate(runs: list[Recorded], detectors: dict) -> dict:
    """{detector: [(rec, score), ...]}"""
    res = {}
    for name, fn in detectors.items():
        res[name] = [(r, score(fn(r), r)) for r in runs]
    return res


def table(res: dict, scenarios: list[str]) -> str:
    head = (
        "| detector | FA episodes / 1k healthy (95% upper) | healthy steps in alarm | "
        "healthy runs only: FA / 1k (95% upper), in alarm | "
        + " | ".join(f"{s}: det, lead, masked" for s in scenarios)
        + " |"
    )
    lines = [head, "|---" * (4 + len(scenarios)) + "|"]
    for name, rows in res.items():
        m = alarm_rates([s for _, s in rows], [r.fault == "healthy" for r, _ in rows])
        cells = []
        for sc in scenarios:
            sub = [(r, s) for r, s in rows if r.scenario == sc and r.onset is not None]
            hit = [s for _, s in sub if s["first"] is not None]
            leads = [s["lead"] for s in hit if s["lead"] is not None]
            med = f"{np.median(leads):+.0f}" if leads else "—"
            masked = sum(s["masked"] for _, s in sub)
            cells.append(f"{len(hit)}/{len(sub)}, {med}, {masked}")
        lines.append(f"| {name} | {rate_cells(m, 3)} | " + " | ".join(cells) + " |")
    first = next(iter(res.values()))
    hs = sum(s["healthy_steps"] for _, s in first)
    hs_h = sum(s["healthy_steps"] for r, s in first if r.fault == "healthy")
    lines.append("")
    lines.append(
        f"Healthy steps: {hs} (all pre-injection steps, as metrics.py counts them; the fault "
        f"runs of one seed share their pre-injection trajectory, so these are not independent), "
        f"of which {hs_h} in healthy runs. Cells: detected/visible failures, median lead "
        "(onset - first alarm episode starting at or after the injection; + = earlier than "
        "the loss/accuracy onset), failures masked by an alarm running at the injection."
    )
    return "\n".join(lines) + "\n"


STREAK_LABELS = {  # VARIANTS' rows, in the order the streak rule gained them (issue 17)
    "before": "streak before (no early rule, no absorption, no jump)",
    "early": "streak + early cusum",
    "absorb": "streak + early + absorb (session 5's default)",
    "jump": "streak + early + absorb + jump x30 (off by default)",
    "kept20": "default: streak (debounce 20) + change detector kept on",
}


def detectors(kw: dict) -> dict:
    def cp(sig: str, parts: str = "both"):
        return lambda r: run_detector(streams(r, sig, parts), **kw)[0]

    def streak(sig: str, variant: str):
        if variant == "before":
            return lambda r: layer_features(r, sig)[1]
        return lambda r: streak_variant(r, sig, variant)

    out = {
        f"{label} [{sig}]": streak(sig, variant)
        for sig in ("act", "act+grad", "grad")
        for variant, label in STREAK_LABELS.items()
    }
    return {
        **out,
        "loss_rise": loss_rise,
        "changepoint [act+grad]": cp("act+grad"),
        "changepoint [act]": cp("act"),
        "changepoint [grad]": cp("grad"),
        "changepoint [act+grad] topology only": cp("act+grad", "topology"),
        "changepoint [act+grad] layer only": cp("act+grad", "layer"),
    }


SCENARIOS = [
    f"{f}{e}" for f in ("lr_spike", "dead_relu", "explode", "wd_ramp") for e in ("", "_early")
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("which", choices=("calib", "fresh", "fresh2"))
    ap.add_argument("--fa-per-1k", type=float, default=0.1)
    ap.add_argument("--k", type=float, default=2.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    runs = load_set(args.which)
    kw = {"fa_per_1k": args.fa_per_1k, "k": args.k}
    res = evaluate(runs, detectors(kw))
    n_h = sum(r.fault == "healthy" for r in runs)
    text = f"{args.which}: {len(runs)} runs ({n_h} healthy), detector {kw}\n\n" + table(
        res, SCENARIOS
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
