"""H0 of point clouds: streamtopo against ripser, giotto-ph, scipy and fastcluster.

Run: ``python benchmarks/bench_h0.py [--quick]``. Prints one markdown table per regime with
the best-of-k wall time of every library in the same run, the ratio fastest reference / ours,
and our process CPU time (all threads; on a loaded machine wall time inflates, CPU time much
less). A reference is skipped ("skip") when its time predicted from the previous size in the
same table (scaled by n^2 d) exceeds ``--budget`` seconds. Every reference result is checked
against ours: the last column is the largest relative difference of the sorted deaths
(scipy/fastcluster compute in float64, ripser and giotto-ph in float32).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamtopo.topology import h0

FLOOR_GFLOPS = 206.0  # float32 GEMM peak measured on the development machine (DESIGN.md §4)


def timeit(fn, min_total=0.3, max_reps=200):
    """Best-of-k wall time of ``fn()``, the process CPU time (all threads) of that same call,
    and its last result; a single call if it is slow."""
    best = (float("inf"), 0.0)
    total = 0.0
    reps = 0
    while reps == 0 or (total < min_total and reps < max_reps and best[0] < 2.0):
        c = time.process_time()
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = min(best, (dt, time.process_time() - c))
        total += dt
        reps += 1
    return best[0], best[1], out


def ours(X, metric):
    return lambda: h0.h0_diagram(X, metric)[:-1, 1]


def ref_ripser(X, metric):
    from ripser import ripser

    def run():
        d = ripser(X, maxdim=0, metric=metric)["dgms"][0][:, 1]
        return np.sort(d[np.isfinite(d)])

    return run


def ref_gph(X, metric):
    from gph import ripser_parallel

    def run():
        d = ripser_parallel(X, maxdim=0, metric=metric, n_threads=-1)["dgms"][0][:, 1]
        return np.sort(d[np.isfinite(d)])

    return run


def ref_scipy(X, metric):
    from scipy.cluster.hierarchy import linkage

    return lambda: np.sort(linkage(X, method="single", metric=metric)[:, 2])


def ref_fastcluster(X, metric):
    import fastcluster

    return lambda: np.sort(fastcluster.linkage_vector(X, method="single", metric=metric)[:, 2])


REFS = {
    "ripser": ref_ripser,
    "giotto-ph": ref_gph,
    "scipy": ref_scipy,
    "fastcluster": ref_fastcluster,
}


def rel_diff(a, b):
    """Largest relative difference of two sorted death vectors, ignoring zero-length bars
    (ripser and giotto-ph drop them)."""
    a = a[a > 0]
    b = b[b > 0]
    if a.shape != b.shape:
        return float("nan")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def fmt(t):
    if t is None:
        return "skip"
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1.0:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.2f} s"


def run_regime(title, sizes, metric, make, budget, floor=False):
    print(f"\n### {title} (metric={metric})\n")
    head = [
        "n",
        "d",
        "path",
        "ours",
        "ours CPU",
        *REFS,
        "fastest ref / ours",
        "max rel diff (f64 refs / f32 refs)",
    ]
    if floor:
        head.insert(5, "FLOP floor")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    last = {}  # ref -> (time, n^2 d) of its last run, to predict the next
    for n, d in sizes:
        X = make(n, d)
        work = float(n) * n * d
        path = h0._choose_path(n, d, metric)
        t_ours, cpu_ours, dv = timeit(ours(X, metric))
        cells = [str(n), str(d), path, fmt(t_ours), fmt(cpu_ours)]
        if floor:
            t_floor = n * (n - 1) * d / (FLOOR_GFLOPS * 1e9)
            cells.append(f"{fmt(t_floor)} ({t_ours / t_floor:.1f}×)")
        times = {}
        diffs64, diffs32 = [], []
        for name, make_ref in REFS.items():
            prev = last.get(name)
            if prev is not None and prev[0] * work / prev[1] > budget:
                cells.append("skip")
                continue
            t_ref, _, dref = timeit(make_ref(X, metric), min_total=0.0 if n * d > 1e5 else 0.3)
            last[name] = (t_ref, work)
            times[name] = t_ref
            cells.append(fmt(t_ref))
            (diffs32 if name in ("ripser", "giotto-ph") else diffs64).append(rel_diff(dv, dref))
        fastest = min(times.values()) if times else None
        cells.append(f"{fastest / t_ours:.1f}×" if fastest else "—")
        d64 = f"{max(diffs64):.1e}" if diffs64 else "—"
        d32 = f"{max(diffs32):.1e}" if diffs32 else "—"
        cells.append(f"{d64} / {d32}")
        print("| " + " | ".join(cells) + " |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer, smaller sizes")
    p.add_argument("--budget", type=float, default=30.0, help="skip a reference predicted slower")
    p.add_argument("--regime", choices=("layer", "centroid", "embedding"), action="append")
    args = p.parse_args(argv)
    # ripser warns when n < d ("did you mean to transpose?"); centroids are meant that way
    warnings.filterwarnings("ignore", message="The input point cloud has more columns")
    warnings.filterwarnings("ignore", message="The input matrix is square")
    rng = np.random.default_rng(0)

    def gauss(n, d):
        return rng.normal(size=(n, d))

    def layer_signals(n, d):
        # log-scale layer statistics: a smooth depth trend plus noise, offset far from 0
        depth = np.linspace(0.0, 1.0, n)[:, None]
        return 5.0 + 2.0 * depth + 0.1 * rng.normal(size=(n, d))

    def centroids(n, d):
        return rng.normal(size=(1, d)) + 0.5 * rng.normal(size=(n, d))

    load0 = os.getloadavg()
    print(f"# H0 benchmark — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, numpy {np.__version__}; "
        f"load average at start {load0[0]:.2f}, {load0[1]:.2f}, {load0[2]:.2f}"
    )
    from streamtopo.app.warmup import warm_all

    warm_all()  # compile or load every kernel before timing
    regimes = args.regime or ["layer", "centroid", "embedding"]
    if "layer" in regimes:
        sizes = (
            [(8, 1), (64, 3), (64, 48), (512, 16)]
            if args.quick
            else [
                (8, 1),
                (8, 16),
                (64, 1),
                (64, 3),
                (64, 16),
                (64, 48),
                (256, 16),
                (256, 256),
                (2048, 1),
                (2048, 16),
                (2048, 256),
            ]
        )
        run_regime("Layer signals", sizes, "euclidean", layer_signals, args.budget)
    if "centroid" in regimes:
        sizes = (
            [(10, 64), (100, 512), (1000, 512)]
            if args.quick
            else [
                (10, 64),
                (10, 4096),
                (100, 64),
                (100, 512),
                (100, 4096),
                (1000, 64),
                (1000, 512),
                (1000, 4096),
            ]
        )
        run_regime("Class centroids", sizes, "cosine", centroids, args.budget)
    if "embedding" in regimes:
        sizes = (
            [(500, 32), (2000, 256), (5000, 256)]
            if args.quick
            else [
                (500, 32),
                (500, 1024),
                (2000, 32),
                (2000, 256),
                (5000, 32),
                (5000, 256),
                (5000, 1024),
                (20000, 1024),
            ]
        )
        run_regime("Embeddings", sizes, "euclidean", gauss, args.budget, floor=True)
    load1 = os.getloadavg()
    print(f"\nload average at end {load1[0]:.2f}, {load1[1]:.2f}, {load1[2]:.2f}")


if __name__ == "__main__":
    main()
