"""Fused replay against live ``check()``: per-step CPU cost of ``LayerMonitor.run`` (one compiled
loop per chunk) as a ratio to the per-step cost of ``check()`` measured in the same run.

    python benchmarks/bench_replay.py [--steps 20000] [--repeat 3]

Workload: log-normal random-walk signals (a healthy run), 64 layers, window 16, default
baseline; ``check()`` is timed without a writer (the monitor's own cost). Both sides process the
same rows from a fresh monitor; the statuses are compared bit for bit before timing is trusted.
CPU time (``time.process_time``), best of ``--repeat``, interleaved so load hits both alike.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from streamtopo.monitors._records import status_frame
from streamtopo.monitors.layer import LayerMonitor


def stream(steps: int, S: int, L: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(scale=0.01, size=(steps, S, L)), axis=0)
    return np.exp(walk + rng.normal(size=(1, S, L)) + 0.05 * rng.normal(size=(steps, S, L)))


def live(mon: LayerMonitor, x: np.ndarray) -> tuple[float, list]:
    mon.reset()
    t = time.process_time()
    out = [mon.check(row) for row in x]
    return time.process_time() - t, out


def fused(mon: LayerMonitor, x: np.ndarray) -> tuple[float, object]:
    mon.reset()
    t = time.process_time()
    df = mon.run(x)
    return time.process_time() - t, df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()}, cores: {os.cpu_count()}\n")
    print(
        "| workload | rule | steps | live check() µs/step | fused run() µs/step | ratio | "
        "rows alarming or naming culprits | identical |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for S in (1, 3):
        x = stream(args.steps, S, 64)
        signals = tuple(f"s{k}" for k in range(S))
        for rule in ("streak", "cusum"):
            mon = LayerMonitor(64, signals, rule=rule)
            mon.run(x[:300])  # compile / load the cache outside the timing
            best_live = best_fused = float("inf")
            for _ in range(args.repeat):
                tl, statuses = live(mon, x)
                tf, df = fused(mon, x)
                best_live, best_fused = min(best_live, tl), min(best_fused, tf)
            want = status_frame(statuses)
            same = df.equals(want)
            slow = (want["state"] != "HEALTHY") | (want["culprits"].list.len() > 0)
            python_rows = int(slow.sum())
            n = args.steps
            print(
                f"| 64 layers × {S} signal{'s' if S > 1 else ''}, W=16 | {rule} | {n:,} | "
                f"{1e6 * best_live / n:.2f} | {1e6 * best_fused / n:.2f} | "
                f"{best_fused / best_live:.2f} | {python_rows} | {same} |"
            )
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
