"""``streamtopo calibrate`` on recorded digits runs: is the false-alarm rate met on held-out runs?

    python benchmarks/eval_calibrate.py [--target-fa 0.1] [--rule cusum] [--runs 108]

The healthy runs recorded in ``.eval-cache/`` (``benchmarks/evaluation/cache.py``: MLPs on the
bundled digits, 1,500 steps, act_norm and grad_norm of 6 layers) are written as run directories
(``LayerMonitor`` + ``RunWriter``, as a training run writes them), split by seed into a
calibration half and a held-out half. ``calibrate`` chooses the knob on the first half; the
chosen config is then replayed on the held-out half, whose false-alarm rate is printed with its
exact 95 % Poisson (Garwood) interval. The recorded fault runs (the real failures of the cache)
are replayed too, for the detection of real failures with the chosen knob.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.evaluation.cache import CACHE, load
from streamtopo.app.calibrate import calibrate, garwood_upper
from streamtopo.io import RunWriter
from streamtopo.monitors.layer import LayerMonitor

SIGNALS = ("act_norm", "grad_norm")


def write_run(log_dir: Path, run_id: str, x: np.ndarray) -> Path:
    with RunWriter(log_dir, run_id=run_id) as w:
        mon = LayerMonitor(x.shape[2], SIGNALS, writer=w)
        for row in x:
            mon.check(row)
    return w.run_dir


def garwood_lower(k: int, confidence: float = 0.95) -> float:
    from scipy.stats import chi2

    return 0.0 if k == 0 else float(chi2.ppf(1.0 - confidence, 2 * k) / 2.0)


def evaluate_group(L, kept, faulty, args, work) -> tuple[int, int]:
    """Calibrate on the even-indexed runs of one network (L layers), test on the others."""
    cal_dirs, held = [], []
    for k, (seed, x) in enumerate(kept):
        if k % 2 == 0:
            cal_dirs.append(write_run(work / f"L{L}", f"s{seed}", x))
        else:
            held.append(x)
    t = time.perf_counter()
    rule = None if args.rule == "recorded" else args.rule
    cal = calibrate(cal_dirs, args.target_fa, rule=rule, workers=args.workers)
    took = time.perf_counter() - t
    print(f"### {L} layers: {len(cal_dirs)} calibration runs, {len(held)} held out\n")
    print(cal.table())
    verdict = "certified" if cal.certified else "not certified"
    print(
        f"\nchosen {cal.knob} ({verdict}) on {cal.steps:,} evaluations of {cal.runs} runs in "
        f"{took:.1f} s wall. {cal.note}\n"
    )
    steps = alarms = 0
    for x in held:
        states = LayerMonitor(L, SIGNALS, config=cal.config).run(x)["state"].to_numpy()
        alarm = states != "HEALTHY"
        alarms += int((alarm & ~np.concatenate([[False], alarm[:-1]])).sum())
        steps += x.shape[0]
    print("| held-out healthy runs | evaluations | false alarms | per 1k | 95% interval |")
    print("|---|---|---|---|---|")
    print(f"| {len(held)} | {steps:,} | {alarms} | {interval(alarms, steps)} |\n")
    print("| recorded fault runs | runs | alarm after injection | median delay (steps) |")
    print("|---|---|---|---|")
    by: dict[str, list] = {}
    for rec in faulty:
        x = np.stack([rec.act_norm, rec.grad_norm], axis=1)
        if rec.t0 is None or x.shape[2] != L:
            continue
        states = LayerMonitor(L, SIGNALS, config=cal.config).run(x)["state"].to_numpy()
        hit = np.flatnonzero(states[rec.t0 :] != "HEALTHY")
        by.setdefault(rec.scenario, []).append(int(hit[0]) if hit.size else None)
    for name, delays in sorted(by.items()):
        found = [d for d in delays if d is not None]
        med = f"{np.median(found):g}" if found else "—"
        print(f"| {name} | {len(delays)} | {len(found)} | {med} |")
    print()
    return steps, alarms


def interval(alarms: int, steps: int) -> str:
    rate = 1000.0 * alarms / steps
    lo, hi = 1000.0 * garwood_lower(alarms) / steps, 1000.0 * garwood_upper(alarms) / steps
    return f"{rate:.3f} | [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-fa", type=float, default=0.1)
    ap.add_argument(
        "--rule", default="cusum", choices=("cusum", "streak", "recorded"),
        help="recorded: the runs' own rule (the default monitor: streak + kept change detector, "
        "whose fa_per_1k is chosen with the streak knobs)",
    )  # fmt: skip
    ap.add_argument("--runs", type=int, default=108, help="healthy runs used (both halves)")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    healthy = [load(p) for p in sorted(CACHE.glob("healthy_late_s*_T1500.npz"))[: args.runs]]
    faulty = [
        load(p) for p in sorted(CACHE.glob("*_T1500.npz")) if not p.name.startswith("healthy")
    ]
    if len(healthy) < 4:
        raise SystemExit(f"{CACHE} holds {len(healthy)} healthy runs; record them first")
    print(f"load before: {os.getloadavg()}, target {args.target_fa} per 1k, rule {args.rule}\n")
    work = Path(tempfile.mkdtemp(prefix="eval-calibrate-"))
    groups: dict[int, list] = {}
    for r in healthy:  # one network (number of layers) at a time
        x = np.stack([r.act_norm, r.grad_norm], axis=1)
        groups.setdefault(x.shape[2], []).append((r.seed, x))
    steps = alarms = 0
    for L, kept in sorted(groups.items()):
        if len(kept) >= 4:
            s, a = evaluate_group(L, kept, faulty, args, work)
            steps, alarms = steps + s, alarms + a
    print("| all held-out healthy runs | evaluations | false alarms | per 1k | 95% interval |")
    print("|---|---|---|---|---|")
    print(
        f"| {sum(len(k) // 2 for k in groups.values() if len(k) >= 4)} | {steps:,} | "
        f"{alarms} | {interval(alarms, steps)} |"
    )
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
