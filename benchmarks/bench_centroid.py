"""CentroidMonitor benchmark: update throughput and check() latency beside giotto-ph and ripser.

Run: ``python benchmarks/bench_centroid.py [--quick]``. Prints markdown tables.

* update: rows/s of ``update(features, labels)`` for batches of 256 rows, d = 512 and 4096.
* check: ``check()`` latency for n_classes = 10, 100, 1000 at d = 4096 (epoch mode; the
  filled accumulators are restored from a state_dict outside the timed region before each
  repeat), 24 train and 8 test rows per class,
  in the default configuration (float64 Gram, groups=8, history="train": three H0s per check
  when the train side is larger) and a fast one (float32 Gram for edge selection, groups=2,
  history=None: two H0s). Beside it, one H0 of the same unit test-side centroids by
  our core path (``centroid_tree``: one BLAS Gram product, Prim on the distance matrix, exact
  float64 re-evaluation of the chosen edges), by giotto-ph (``ripser_parallel(maxdim=0,
  metric="cosine")``) and by ripser (``ripser(maxdim=0, metric="cosine")``), and the FLOP floor
  ``n (n - 1) d / 206e9`` s (f32 GEMM peak of this machine, DESIGN.md §4). A check computes
  two or three such H0s (matched train, test, all-train when the train side was down-weighted)
  plus the delta-method noise (passes over the group sums), so the fair per-H0 comparison is
  the "ours H0" column.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from streamtopo.monitors.centroid import CentroidMonitor
from streamtopo.topology import centroid as stats

FLOPS = 206e9


def _best(fn, repeat):
    fn()  # warm (numba compile / caches)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), float(np.min(ts))


def _time_check(mon, repeat):
    """Median check() time on the same filled accumulators (restored outside the timing)."""
    saved = mon.state_dict()
    ts = []
    for _ in range(repeat + 1):
        mon.load_state_dict(saved)
        t = time.perf_counter()
        mon.check()
        ts.append(time.perf_counter() - t)
    mon.load_state_dict(saved)
    return float(np.median(ts[1:]))


def _fill(mon, K, d, per_class_train, per_class_test, rng, batch=256):
    M = rng.normal(size=(K, d)).astype(np.float32)
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        y_all = np.repeat(np.arange(K), per)
        rng.shuffle(y_all)
        for s in range(0, y_all.size, batch):
            y = y_all[s : s + batch]
            X = M[y] + rng.normal(size=(y.size, d)).astype(np.float32)
            mon.update(X, y, split=split)


def bench_update(d, K, n_batches, rng):
    mon = CentroidMonitor(K)
    X = rng.normal(size=(256, d)).astype(np.float32)
    y = rng.integers(0, K, 256)
    mon.update(X, y)
    t = time.perf_counter()
    for _ in range(n_batches):
        mon.update(X, y)
    dt = time.perf_counter() - t
    return 256 * n_batches / dt


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS threads (threadpoolctl); on an oversubscribed machine 1 avoids "
        "OpenBLAS spin-wait stalls",
    )
    args = ap.parse_args(argv)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
    rng = np.random.default_rng(0)
    print(f"# CentroidMonitor benchmark — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average before: {os.getloadavg()}, BLAS threads: {args.blas_threads or 'default'}"
    )
    print()
    print("| d | n_classes | batch | rows/s |")
    print("|---|---|---|---|")
    for d in (512, 4096):
        rps = bench_update(d, 100, 20 if args.quick else 100, rng)
        print(f"| {d} | 100 | 256 | {rps:,.0f} |")
    print()

    import gph
    from ripser import ripser

    ks = (10, 100) if args.quick else (10, 100, 1000)
    d = 4096
    rows = []
    for K in ks:
        mon = CentroidMonitor(K)
        mon2 = CentroidMonitor(K, groups=2, precision="float32", history=None)
        _fill(mon, K, d, 24, 8, np.random.default_rng(K))
        _fill(mon2, K, d, 24, 8, np.random.default_rng(K))
        rep = 3 if K == 1000 else 7
        t_check = _time_check(mon, rep)
        t_check2 = _time_check(mon2, rep)
        C = mon._sums[1].sum(axis=0)  # test-side centroid sums: the points of one H0
        st = mon.check()
        assert st.valid, (K, st.reason)
        assert abs(mon2.check().h0_test - st.h0_test) < 1e-4 * st.h0_test
        U = stats.unit_rows(C)
        t_h0, _ = _best(lambda C=C: stats.centroid_tree(C), rep)
        t_h0_32, _ = _best(lambda C=C: stats.centroid_tree(C, precision="float32"), rep)
        ours = np.sort(stats.centroid_tree(C).edges.death)
        t_gph, _ = _best(lambda U=U: gph.ripser_parallel(U, maxdim=0, metric="cosine"), rep)
        dg = gph.ripser_parallel(U, maxdim=0, metric="cosine")["dgms"][0]
        np.testing.assert_allclose(
            np.sort(dg[np.isfinite(dg[:, 1]), 1]), ours, rtol=1e-5, atol=1e-6
        )
        with warnings.catch_warnings():  # "more columns than rows": intended here
            warnings.simplefilter("ignore")
            t_rip, _ = _best(lambda U=U: ripser(U, maxdim=0, metric="cosine"), rep)
            dr = ripser(U, maxdim=0, metric="cosine")["dgms"][0]
        np.testing.assert_allclose(
            np.sort(dr[np.isfinite(dr[:, 1]), 1]), ours, rtol=1e-5, atol=1e-6
        )
        floor = K * (K - 1) * d / FLOPS
        rows.append((K, t_check, t_check2, t_h0, t_h0_32, t_gph, t_rip, floor))
    print(
        "| n_classes | d | check() default ms | check() fast ms | ours H0 f64 ms "
        "| ours H0 f32 ms | giotto-ph ms | ripser ms | FLOP floor ms | H0 f64 / floor "
        "| H0 f32 / floor | giotto-ph / H0 f64 | giotto-ph / H0 f32 | giotto-ph / check fast |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for K, tc, tc2, th, th32, tg, tr, fl in rows:
        print(
            f"| {K} | {d} | {tc * 1e3:.2f} | {tc2 * 1e3:.2f} | {th * 1e3:.2f} | {th32 * 1e3:.2f} "
            f"| {tg * 1e3:.2f} | {tr * 1e3:.2f} | {fl * 1e3:.3f} | {th / fl:.1f}x "
            f"| {th32 / fl:.1f}x | {tg / th:.1f}x | {tg / th32:.1f}x | {tg / tc2:.2f}x |"
        )
    print()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
