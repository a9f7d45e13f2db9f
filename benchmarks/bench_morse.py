"""MorseMonitor.update (incremental H0) versus a full H0 rebuild and ripser.

Workloads: n points in d = 64 (standard normal), k rows moved per update, two kinds of move:

- ``walk``: k random rows take a random-walk step (0.1 per coordinate, ~0.8 in norm; nearest
  neighbours are ~8 apart), the state carries over from update to update;
- ``split``: the k rows whose removal splits the current tree most evenly (smallest largest
  branch) jump to fresh random positions, so the pieces must be reconnected directly.

For each (n, kind, k): the median and p95 of update time / full rebuild time (our
``h0_diagram``, timed in the same run), and how often the update fell back to a rebuild.
ripser (``maxdim=0``) is timed once per n where it is fast enough (``--ripser-max-n``).

Run: ``python benchmarks/bench_morse.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from streamtopo import h0_diagram
from streamtopo.monitors.morse import MorseMonitor


def _timeit(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _split_rows(mon: MorseMonitor, k: int) -> np.ndarray:
    """The k rows whose removal leaves the smallest largest branch of the current tree."""
    n = mon.n_points
    src, dst = mon.pairs_.i, mon.pairs_.j
    adj = [[] for _ in range(n)]
    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        adj[a].append(b)
        adj[b].append(a)
    order, parent = [0], [-1] * n
    parent[0] = 0
    for u in order:
        for v in adj[u]:
            if parent[v] == -1:
                parent[v] = u
                order.append(v)
    sub = [1] * n
    for u in reversed(order[1:]):
        sub[parent[u]] += sub[u]
    worst = np.empty(n)
    for u in range(n):
        branches = [sub[v] for v in adj[u] if v != parent[u] or u == 0]
        if u != 0:
            branches.append(n - sub[u])
        worst[u] = max(branches) if branches else 0
    return np.argsort(worst, kind="stable")[:k]


def run(ns, ks, d, updates, ripser_max_n, seed=0):
    rows = []
    rng = np.random.default_rng(seed)
    for n in ns:
        X0 = rng.normal(size=(n, d))
        h0_diagram(X0)  # compile / warm the cache
        t_full = _timeit(lambda X0=X0: h0_diagram(X0), 3)
        t_ripser = None
        if n <= ripser_max_n:
            from ripser import ripser

            t_ripser = _timeit(lambda X0=X0: ripser(X0, maxdim=0), 1)
        for kind in ("walk", "split"):
            for k in ks:
                X = X0.copy()
                mon = MorseMonitor(scale=1.0).initialize(X)
                mon.update(X)  # warm
                ratios, falls = [], 0
                for _ in range(updates):
                    if kind == "walk":
                        idx = rng.choice(n, size=k, replace=False)
                        X[idx] += 0.1 * rng.normal(size=(k, d))
                    else:
                        idx = _split_rows(mon, k)
                        X[idx] = rng.normal(size=(k, d))
                    t0 = time.perf_counter()
                    mon.update(X)
                    dt = time.perf_counter() - t0
                    ratios.append(dt / t_full)
                    falls += mon.stats_["fell_back"]
                r = np.array(ratios)
                rows.append(
                    {
                        "n": n,
                        "kind": kind,
                        "k": k,
                        "full_ms": t_full * 1e3,
                        "ripser_ms": None if t_ripser is None else t_ripser * 1e3,
                        "update_med_ms": float(np.median(r)) * t_full * 1e3,
                        "med": float(np.median(r)),
                        "p95": float(np.percentile(r, 95)),
                        "max": float(r.max()),
                        "fallback": falls / updates,
                    }
                )
                print(_row(rows[-1]), flush=True)
    return rows


HEADER = (
    "| n | moves | k | full rebuild (ours) ms | ripser H0 ms | update median ms | "
    "median / full | p95 / full | max / full | update / ripser | fell back |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def _row(r):
    rip = "—" if r["ripser_ms"] is None else f"{r['ripser_ms']:.0f}"
    vs_rip = "—" if r["ripser_ms"] is None else f"{r['update_med_ms'] / r['ripser_ms']:.4f}"
    return (
        f"| {r['n']} | {r['kind']} | {r['k']} | {r['full_ms']:.1f} | {rip} | "
        f"{r['update_med_ms']:.2f} | {r['med']:.3f} | {r['p95']:.3f} | {r['max']:.3f} | "
        f"{vs_rip} | {r['fallback']:.0%} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n=2048 only, k=1,16, 10 updates")
    ap.add_argument("--updates", type=int, default=30)
    ap.add_argument("--ripser-max-n", type=int, default=2048)
    args = ap.parse_args()
    if args.quick:
        ns, ks, updates = [2048], [1, 16], 10
    else:
        ns, ks, updates = [2048, 8192], [1, 4, 16, 64, 256], args.updates
    print(f"load average before: {os.getloadavg()}")
    print(HEADER)
    run(ns, ks, 64, updates, args.ripser_max_n)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
