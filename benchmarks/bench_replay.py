"""Fused replay against live ``check()``: per-step CPU cost of ``LayerMonitor.run`` (one compiled
loop per chunk) as a ratio to the per-step cost of ``check()`` measured in the same run.

    python benchmarks/bench_replay.py [--steps 20000] [--repeat 3]

Workload: a healthy run's signals (per-layer log-normal levels with AR(1) noise), 64 layers,
window 16, default baseline. Two references, measured in the same run: ``check()`` alone (the
monitor's own cost) and ``check()`` with a ``RunWriter`` (what a live run pays, the reference of
issue 23). Every side processes the same rows from a fresh monitor; the fused statuses are
compared with ``check()``'s (``DataFrame.equals``). CPU time (``time.process_time``, which
includes the writer's background thread), best of ``--repeat``, interleaved so load hits all
alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from streamtopo.io import RunWriter
from streamtopo.monitors._records import status_frame
from streamtopo.monitors.layer import LayerMonitor


def stream(steps: int, S: int, L: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = 0.05 * rng.normal(size=(steps, S, L))
    ar = np.zeros_like(e)
    for t in range(1, steps):
        ar[t] = 0.8 * ar[t - 1] + e[t]
    return np.exp(rng.normal(size=(1, S, L)) + ar)


def logged(mon: LayerMonitor, x: np.ndarray) -> float:
    with tempfile.TemporaryDirectory() as d:
        writer = RunWriter(d, run_id="bench")
        live = LayerMonitor(**mon.config, writer=writer)
        t = time.process_time()
        for row in x:
            live.check(row)
        writer.close()
        return time.process_time() - t


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
        "| workload | rule | steps | check() µs/step | check() + RunWriter µs/step | "
        "fused run() µs/step | ratio to check() | ratio to check() + writer | "
        "rows alarming or naming culprits | identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for S in (1, 3):
        x = stream(args.steps, S, 64)
        signals = tuple(f"s{k}" for k in range(S))
        for rule in ("streak", "cusum"):
            mon = LayerMonitor(64, signals, rule=rule)
            mon.run(x[:300])  # compile / load the cache outside the timing
            best_live = best_fused = best_logged = float("inf")
            for _ in range(args.repeat):
                tl, statuses = live(mon, x)
                tw = logged(mon, x)
                tf, df = fused(mon, x)
                best_live, best_fused = min(best_live, tl), min(best_fused, tf)
                best_logged = min(best_logged, tw)
            want = status_frame(statuses)
            same = df.equals(want)
            slow = (want["state"] != "HEALTHY") | (want["culprits"].list.len() > 0)
            python_rows = int(slow.sum())
            n = args.steps
            print(
                f"| 64 layers × {S} signal{'s' if S > 1 else ''}, W=16 | {rule} | {n:,} | "
                f"{1e6 * best_live / n:.2f} | {1e6 * best_logged / n:.2f} | "
                f"{1e6 * best_fused / n:.2f} | {best_fused / best_live:.2f} | "
                f"{best_fused / best_logged:.2f} | {python_rows} | {same} |"
            )
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
