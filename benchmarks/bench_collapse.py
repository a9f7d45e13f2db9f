"""Collapse Index cost: total time, share spent in ripser (H1), and our β0 (MST) vs ripser H0.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_collapse.py [--quick]``. Prints a markdown
table. On a shared machine pin BLAS to one thread: multi-threaded OpenBLAS under contention made
single calls vary 20× here.
Embeddings: Gaussian with a decaying spectrum (singular values 1/sqrt(k)), float64. That
spectrum is well conditioned, so tall inputs take the Gram-eigenvalue path ("spectrum"); the
"SVD" column is the cost of the SVD path taken by ill-conditioned or rank-deficient embeddings.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

from streamtopo.topology import betti0_at, h1_diagram
from streamtopo.topology.collapse import _spectrum, _subsample, collapse_index


def _best(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _ripser_beta0(P, eps):
    from ripser import ripser

    h0 = ripser(P, maxdim=0)["dgms"][0]
    e32 = np.float32(eps)
    return int(np.count_nonzero(h0[:, 1].astype(np.float32) > e32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="n = 500, 2000 only")
    ap.add_argument("--full-h0-max", type=int, default=2000, help="largest n for full-n H0")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="The input point cloud has more columns")
    from ripser import ripser  # noqa: F401  - import cost (~1 s) kept out of the timings
    from scipy.spatial.distance import pdist

    betti0_at(np.random.default_rng(0).normal(size=(10, 3)), 1.0)  # numba compile / cache load
    sizes = [500, 2000] if args.quick else [500, 2000, 10000]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print()
    print(
        "| n | d | CI total ms | spectrum ms | SVD ms | ripser H1 ms | ripser share "
        "| β0 ours (500) ms | ripser H0 (500) ms | ratio "
        "| β0 ours (n) ms | ripser H0 (n) ms | ratio |"
    )
    print("|" + "---|" * 13)
    for n in sizes:
        for d in (64, 512):
            rng = np.random.default_rng(n + d)
            X = rng.normal(size=(n, d)) / np.sqrt(np.arange(1, d + 1))
            rep = 3 if n * d <= 2000 * 512 else 2
            t_ci, _ = _best(lambda X=X: collapse_index(X, max_points=500), rep)
            t_sp, _ = _best(lambda X=X: _spectrum(X), rep)
            Xc = X - X.mean(axis=0)
            t_svd, _ = _best(lambda Xc=Xc: np.linalg.svd(Xc, compute_uv=False), 1)
            sub = X[_subsample(n, 500, 0)]
            eps = float(np.median(pdist(sub)))
            t_h1, _ = _best(lambda sub=sub: h1_diagram(sub, max_points=None), rep)
            t_b0, b0 = _best(lambda sub=sub, eps=eps: betti0_at(sub, eps), rep)
            t_r0, r0 = _best(lambda sub=sub, eps=eps: _ripser_beta0(sub, eps), rep)
            assert b0 == r0, (b0, r0)
            full = "| – | – | – |"
            if n <= args.full_h0_max:
                epsn = eps
                t_fb, fb = _best(lambda X=X, e=epsn: betti0_at(X, e), 1)
                t_fr, fr = _best(lambda X=X, e=epsn: _ripser_beta0(X, e), 1)
                assert fb == fr, (fb, fr)
                full = f"| {1e3 * t_fb:.1f} | {1e3 * t_fr:.1f} | {t_fr / t_fb:.1f}× |"
            print(
                f"| {n} | {d} | {1e3 * t_ci:.0f} | {1e3 * t_sp:.0f} | {1e3 * t_svd:.0f} | "
                f"{1e3 * t_h1:.0f} | "
                f"{100 * t_h1 / t_ci:.0f}% | {1e3 * t_b0:.2f} | {1e3 * t_r0:.1f} | "
                f"{t_r0 / t_b0:.0f}× " + full
            )
    print()
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
