"""The calibrated transformer evaluation: streamtopo's monitors and the baselines, scored offline.

    python benchmarks/eval_detection.py transformer calib     # calibration seeds
    python benchmarks/eval_detection.py transformer fresh     # report seeds (scored once)

Records come from ``python -m benchmarks.evaluation.transformer {calib,fresh}`` (one run at a
time, resumable; ``.eval-cache/transformer-eval``). Every detector replays the recorded
per-step signals; the streamtopo ones go through the library API (``LayerMonitor.run`` and
``LossRiseDetector.check``), so re-scoring after a library change is the same command.

Scoring (``score``): healthy steps are the whole of a healthy run and the steps before the
injection (``t0``), or before the LR ramp starts for attention-logit growth. A false alarm is
an alarm episode starting on a healthy step. A failure is detected when an alarm episode starts
at or after that step; lead = onset - its first step (positive = earlier than the loss showed
it); masked = an alarm already running at that step with no new episode after it. Onsets come
from ``transformer.failure_onset`` (the loss rules, fixed before any detector was run).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import detectors as digits_detectors
from .metrics import alarm_rates, poisson_upper, rate_cells  # noqa: F401 (te.poisson_upper)
from .transformer import TransformerRecord, failure_onset
from .transformer_detectors import attn_entropy_thr, attn_logit_thr

SHORT = {
    "act": "act_norm",
    "grad": "grad_norm",
    "upd": "update_ratio",
    "logit": "attn_logit",
    "ent": "attn_entropy",
}
#: the monitor feeds of the ablation: name -> signals (short names joined by "+")
FEEDS = (
    "act",
    "grad",
    "act+grad",
    "upd",
    "logit",
    "ent",
    "logit+ent",
    "act+grad+upd+logit+ent",
)
TOPOLOGY_ONLY = ("act+grad", "logit+ent", "act+grad+upd+logit+ent")
RULES = {  # the streak rule as it gained its parts (issue 17), then the change detector
    "streak": {"rule": "streak", "early_rule": "none", "absorb_after": 0, "jump": 0},
    "streak+early": {"rule": "streak", "early_rule": "cusum", "absorb_after": 0, "jump": 0},
    # session 5's default: the early detector and absorption (30)
    "streak+early+absorb": {"rule": "streak", "keep_detector": False},
    "default+jump": {"rule": "streak", "keep_detector": False, "jump": 30.0},  # off by default
    # the change detector kept on after the warm-up (layers only), the streak rule's debounce
    # window + 4 (20): today's default
    "default": {"rule": "streak"},
    "cusum": {"rule": "cusum", "fa_per_1k": 0.1},
}


def healthy_end(rec: TransformerRecord) -> int:
    """The first step that is not known to be healthy (T for a healthy run)."""
    cfg = rec.config
    if cfg.t0 is not None:
        return int(cfg.t0)
    if "ramp" in cfg.fault_params:
        return int(cfg.fault_params["ramp"][0] * cfg.steps)
    return int(cfg.steps)


def _values(rec: TransformerRecord, feed: str) -> tuple[tuple[str, ...], np.ndarray]:
    sigs = tuple(SHORT[s] for s in feed.split("+"))
    arr = np.stack([getattr(rec, s) for s in sigs], axis=1)  # (T, S, L)
    return sigs, arr


def layer_monitor(feed: str, **kw) -> Callable[[TransformerRecord], np.ndarray]:
    """A fresh ``LayerMonitor(n_layers=depth, signals=feed, **kw)`` over the record's steps."""

    def detect(rec: TransformerRecord) -> np.ndarray:
        from streamtopo import LayerMonitor

        sigs, arr = _values(rec, feed)
        mon = LayerMonitor(arr.shape[2], sigs, **kw)
        return mon.run(arr)["state"].to_numpy() != "HEALTHY"

    return detect


def library_loss_rise(rec: TransformerRecord) -> np.ndarray:
    """streamtopo's ``LossRiseDetector`` with its defaults (TrainingMonitor's loss alarm)."""
    from streamtopo import LossRiseDetector

    d = LossRiseDetector()
    return np.array([d.check(float(v)).state.value != "HEALTHY" for v in rec.loss])


def any_of(*fns: Callable[[TransformerRecord], np.ndarray]) -> Callable:
    """Alarm when any of the detectors is in alarm (how TrainingMonitor combines monitors)."""

    def detect(rec: TransformerRecord) -> np.ndarray:
        return np.logical_or.reduce([np.asarray(f(rec), dtype=bool) for f in fns])

    return detect


def baselines() -> dict[str, Callable[[TransformerRecord], np.ndarray]]:
    """The practitioners' rules of the issue (thresholds fixed in transformer_detectors.py)."""
    return {
        "loss_rise": digits_detectors.loss_rise,
        "grad_norm_z": digits_detectors.grad_norm_z,
        "attn_logit_thr (>100)": attn_logit_thr,
        "attn_entropy_thr (<0.1)": attn_entropy_thr,
    }


def default_rule() -> str:
    """The rule a ``LayerMonitor`` gets when none is given (it may change on main)."""
    from streamtopo import LayerMonitor

    return str(LayerMonitor(2).rule)


def detectors(rules=tuple(RULES)) -> dict[str, Callable[[TransformerRecord], np.ndarray]]:
    """Baselines, then per rule: every feed, topology-only variants and TrainingMonitor's mix."""
    out = baselines()
    for rule in rules:
        kw = RULES[rule]
        for feed in FEEDS:
            out[f"{rule} [{feed}]"] = layer_monitor(feed, **kw)
        for feed in TOPOLOGY_ONLY:
            out[f"{rule} [{feed}] topology only"] = layer_monitor(feed, layer_rule=False, **kw)
        # TrainingMonitor(signals=("act_norm", "grad_norm", "attn_entropy", "attn_logit")):
        # a layer monitor, an attention monitor (its layers differ) and the loss-rise alarm
        from streamtopo.integrations._training_parts import (
            ATTN_ESCALATE_AFTER,
            ATTN_KEEP_DETECTOR,
            ATTN_MIN_HISTORY,
        )

        attn_kw = {  # as TrainingMonitor builds it (a WATCH never escalates)
            "keep_detector": ATTN_KEEP_DETECTOR,
            **kw,
            "min_history": ATTN_MIN_HISTORY[kw["rule"]],
            "escalate_after": ATTN_ESCALATE_AFTER,
        }
        tm = any_of(layer_monitor("act+grad", **kw), layer_monitor("logit+ent", **attn_kw))
        if rule == "cusum":
            out[f"{rule} [logit+ent] min_history {attn_kw['min_history']}"] = layer_monitor(
                "logit+ent", **attn_kw
            )
        out[f"{rule} [act+grad] or [logit+ent]"] = tm
        out[f"{rule} [act+grad] or [logit+ent] or loss"] = any_of(tm, library_loss_rise)
    return out


def score(alarm: np.ndarray, rec: TransformerRecord, onset: int | None) -> dict:
    """One run's scores (module docstring)."""
    a = np.asarray(alarm, dtype=bool)
    hend = healthy_end(rec)
    starts = np.flatnonzero(a & ~np.concatenate([[False], a[:-1]]))
    out = {
        "healthy_steps": hend,
        "fa": int(np.count_nonzero(starts < hend)),
        "in_alarm": int(a[:hend].sum()),
        "first": None,
        "lead": None,
        "masked": False,
    }
    if rec.config.fault != "healthy":
        after = starts[starts >= hend]
        if after.size:
            out["first"] = int(after[0])
            if onset is not None:
                out["lead"] = int(onset - after[0])
        out["masked"] = bool(hend > 0 and a[hend - 1]) and not after.size
    return out


def evaluate(records: list[TransformerRecord], dets: dict) -> dict[str, list[tuple]]:
    """{detector: [(record, onset, score), ...]}"""
    onsets = [failure_onset(r) for r in records]
    return {
        name: [(r, o, score(fn(r), r, o)) for r, o in zip(records, onsets, strict=True)]
        for name, fn in dets.items()
    }


def summarise(rows: list[tuple]) -> dict:
    """Aggregates of one detector: FA rate and bound, alarm share, per scenario detections."""
    scores = [s for _, _, s in rows]
    out = alarm_rates(scores, [r.config.fault == "healthy" for r, _, _ in rows])
    out["scenarios"] = {}
    for fault in dict.fromkeys(r.config.fault for r, _, _ in rows):
        if fault == "healthy":
            continue
        sub = [(o, s) for r, o, s in rows if r.config.fault == fault]
        vis = [s for o, s in sub if o is not None]
        hit = [s for s in vis if s["first"] is not None]
        out["scenarios"][fault] = {
            "runs": len(sub),
            "any_detected": sum(s["first"] is not None for _, s in sub),
            "visible": len(vis),
            "detected": len(hit),
            "median_lead": float(np.median([s["lead"] for s in hit])) if hit else math.nan,
            "masked": sum(s["masked"] for _, s in sub),
        }
    return out


def table(res: dict, scenarios: list[str]) -> str:
    """Markdown: one row per detector."""
    head = (
        "| detector | FA episodes / 1k healthy steps (95% upper) | healthy steps in alarm | "
        "healthy runs only: FA / 1k (95% upper), in alarm | "
        + " | ".join(f"{s}: det/visible, median lead, masked" for s in scenarios)
        + " | all visible: det | attn_logit_growth: det/all runs |"
    )
    lines = [head, "|---" * (6 + len(scenarios)) + "|"]
    for name, rows in res.items():
        m = summarise(rows)
        cells = []
        for sc in scenarios:
            c = m["scenarios"].get(sc)
            if c is None:
                cells.append("—")
                continue
            lead = "—" if math.isnan(c["median_lead"]) else f"{c['median_lead']:+.0f}"
            cells.append(f"{c['detected']}/{c['visible']}, {lead}, {c['masked']}")
        det_all = sum(c["detected"] for c in m["scenarios"].values())
        vis_all = sum(c["visible"] for c in m["scenarios"].values())
        g = m["scenarios"].get("attn_logit_growth")
        growth = f"{g['any_detected']}/{g['runs']}" if g else "—"
        lines.append(
            f"| {name} | {rate_cells(m, 2)} | "
            + " | ".join(cells)
            + f" | {det_all}/{vis_all} | {growth} |"
        )
    return "\n".join(lines) + "\n"


def first_sources(res: dict, parts: dict[str, str]) -> str:
    """Per scenario, which part fires first: ``parts`` maps a label to a detector name of
    ``res``; a run counts for every part tied at the earliest detection (or "none")."""
    names = list(parts)
    lines = [
        "| scenario | runs | " + " | ".join(f"{n} first" for n in names) + " | none |",
        "|---" * (3 + len(names)) + "|",
    ]
    rows0 = res[parts[names[0]]]
    for fault in dict.fromkeys(r.config.fault for r, _, _ in rows0):
        if fault == "healthy":
            continue
        idx = [i for i, (r, _, _) in enumerate(rows0) if r.config.fault == fault]
        counts = dict.fromkeys([*names, "none"], 0)
        for i in idx:
            firsts = {n: res[parts[n]][i][2]["first"] for n in names}
            hit = {n: f for n, f in firsts.items() if f is not None}
            if not hit:
                counts["none"] += 1
                continue
            best = min(hit.values())
            for n, f in hit.items():
                counts[n] += f == best
        lines.append(
            f"| {fault} | {len(idx)} | "
            + " | ".join(str(counts[n]) for n in [*names, "none"])
            + " |"
        )
    return "\n".join(lines) + "\n"


def run_summary(records: list[TransformerRecord]) -> str:
    """One line per run: scenario, seed, configuration, t0, onset, loss and signal extremes."""
    lines = [
        "| scenario | seed | d x L, batch, LR (peak), qk-LN | t0 / ramp | onset | held-out best "
        "-> end | max attn logit (before -> after t0) | min block entropy |",
        "|---" * 8 + "|",
    ]
    for rec in records:
        c = rec.config
        he = healthy_end(rec)
        onset = failure_onset(rec)
        peak = c.fault_params.get("peak", c.lr)
        lg = np.nan_to_num(rec.attn_logit, nan=np.inf)
        before = float(lg[:he].max()) if he else math.nan
        after = f"{float(lg[he:].max()):.3g}" if he < c.steps else "—"
        lines.append(
            f"| {c.fault} | {c.seed} | {c.width}x{c.depth}, {c.batch}, {c.lr:g} ({peak:g}), "
            f"{'yes' if c.qk_norm else 'no'} | {he if he < c.steps else '—'} | "
            f"{'none' if onset is None else onset} | {np.nanmin(rec.test_loss):.3f} -> "
            f"{rec.test_loss[-1]:.3f} | {before:.3g} -> {after} | "
            f"{np.nanmin(rec.attn_entropy):.2f} |"
        )
    return "\n".join(lines) + "\n"


def load_set(plan: str, cache: str | None = None) -> list[TransformerRecord]:
    """The records of a plan that exist on disk, in the plan's scenario order."""
    from pathlib import Path

    from .transformer import (
        EVAL_DIR,
        EVAL_STEPS,
        EVALUATED,
        FAULTS,
        PILOT_DIR,
        PLANS,
        load,
        record_path,
    )

    if plan == "pilot":  # the pilot's records (grid "pilot", 1,000 steps): every evaluated one
        paths = sorted(Path(cache or PILOT_DIR).glob("*.npz"))
        recs = [r for r in map(load, paths) if r.config.fault in EVALUATED]
        recs.sort(key=lambda r: (FAULTS.index(r.config.fault), r.config.seed))
        return recs
    out = Path(cache or EVAL_DIR)
    recs = []
    for fault, seeds in PLANS[plan].items():
        for seed in seeds:
            p = record_path(out, fault, seed, EVAL_STEPS)
            if p.exists():
                recs.append(load(p))
    recs.sort(key=lambda r: (FAULTS.index(r.config.fault), r.config.seed))
    return recs


def main(argv=None) -> int:
    """Score a recorded set; print and write the run summary and the detector table."""
    import argparse
    import re
    import time
    from pathlib import Path

    from .transformer import EVALUATED, PLANS

    ap = argparse.ArgumentParser(
        prog="eval_detection.py transformer",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument("plan", choices=(*PLANS, "pilot"))
    ap.add_argument(
        "--cache", default=None, help="records directory (.eval-cache/transformer-eval)"
    )
    ap.add_argument("--out", default="eval-out/transformer", help="writes PLAN-table.md there")
    ap.add_argument("--only", default=None, help="regex: score only the matching detectors")
    args = ap.parse_args(argv)
    t_start = time.process_time()
    records = load_set(args.plan, args.cache)
    if not records:
        ap.error(f"no records of plan {args.plan!r}; record them first (module docstring)")
    dets = detectors()
    if args.only:
        dets = {k: v for k, v in dets.items() if re.search(args.only, k)}
    res = evaluate(records, dets)
    present = {r.config.fault for r in records}
    scenarios = [f for f in EVALUATED if f != "healthy" and f in present]
    n_h = sum(r.config.fault == "healthy" for r in records)
    text = (
        f"## {args.plan}: {len(records)} runs ({n_h} healthy), default rule today: "
        f"{default_rule()!r}\n\n" + run_summary(records) + "\n" + table(res, scenarios)
    )
    for rule in RULES:
        parts = {
            "loss_rise": "loss_rise",
            f"{rule} [act+grad]": f"{rule} [act+grad]",
            f"{rule} [upd]": f"{rule} [upd]",
            f"{rule} [logit+ent]": f"{rule} [logit+ent]",
        }
        if all(v in res for v in parts.values()):
            text += f"\nWho fires first ({rule}; ties count for each):\n\n" + first_sources(
                res, parts
            )
    hs = summarise(next(iter(res.values())))["healthy_steps"]
    text += (
        f"\nHealthy steps: {hs} (healthy runs + steps before the injection or the LR ramp). "
        "Cells: detected/visible failures, median lead in steps (onset - first alarm episode "
        "starting at or after the injection; + = before the loss showed it), failures masked "
        f"by an alarm already running. Scored in {time.process_time() - t_start:.0f} CPU-s.\n"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.plan}-table.md").write_text(text)
    print(text)
    return 0


__all__ = [
    "detectors",
    "evaluate",
    "load_set",
    "main",
    "run_summary",
    "score",
    "summarise",
    "table",
]
