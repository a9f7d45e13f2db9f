"""Sublevel-set H0 persistence of images: streamtopo vs cripser (Cubical Ripser) and gudhi.

Run: ``PYTHONPATH=. python benchmarks/bench_cubical.py [--quick]``. Prints a markdown table.

Every library gets the same float64 maps and the T-construction (8-connectivity, a pixel is a
closed square): ``cubical_diagrams(maps, connectivity=8)``,
``cripser.compute_ph(m, filtration="T", maxdim=0)``, and
``gudhi.CubicalComplex(top_dimensional_cells=m).persistence()`` (gudhi has no H0-only switch,
so it also computes H1; its H0 is the same). Times are the best of ``repeat`` runs after one
warm-up (numba compile excluded). Before timing, the three H0 diagrams are checked equal on the
first map of each workload.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _best(fn, repeat: int) -> float:
    fn()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _canon(d):
    d = np.asarray(d, dtype=float).reshape(-1, 2)
    d = d[d[:, 1] > d[:, 0]]
    return d[np.lexsort((d[:, 0], d[:, 1]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller batch, fewer repeats")
    args = ap.parse_args()

    import cripser
    import gudhi

    from streamtopo.cubical import betti_curves, cubical_diagrams

    rng = np.random.default_rng(0)
    repeat = 2 if args.quick else 3
    batch = (64, 32) if args.quick else (256, 32)
    workloads = [
        ("64x64", rng.normal(size=(1, 64, 64))),
        ("256x256", rng.normal(size=(1, 256, 256))),
        ("1024x1024", rng.normal(size=(1, 1024, 1024))),
        (f"batch {batch[0]}x{batch[1]} of 16x16", rng.normal(size=(*batch, 16, 16))),
    ]

    def ours(x):
        return cubical_diagrams(x, connectivity=8)

    def crip(x):
        flat = x.reshape(-1, *x.shape[-2:])
        return [cripser.compute_ph(m, filtration="T", maxdim=0) for m in flat]

    def gud(x):
        flat = x.reshape(-1, *x.shape[-2:])
        return [gudhi.CubicalComplex(top_dimensional_cells=m).persistence() for m in flat]

    rows = []
    for name, x in workloads:
        first = x.reshape(-1, *x.shape[-2:])[0]
        ref_c = cripser.compute_ph(first, filtration="T", maxdim=0)[:, 1:3]
        ref_g = [p for dim, p in gudhi.CubicalComplex(top_dimensional_cells=first).persistence()
                 if dim == 0]  # fmt: skip
        mine = _canon(ours(first[None])[0])
        assert np.array_equal(mine, _canon(ref_c)) and np.array_equal(mine, _canon(ref_g)), name
        r = 1 if x.shape[-1] >= 1024 else repeat
        t_ours = _best(lambda x=x: ours(x), r)
        t_c = _best(lambda x=x: crip(x), r)
        t_g = _best(lambda x=x: gud(x), r)
        rows.append((name, t_ours, t_c, t_g))

    xb = workloads[-1][1]
    t_curves = _best(lambda: betti_curves(xb, np.linspace(-3, 3, 64), 8), repeat)

    load = os.getloadavg()
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
    )
    print(
        "| workload (H0, 8-conn) | streamtopo | cripser | gudhi | cripser / ours | gudhi / ours |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, a, c, g in rows:
        print(f"| {name} | {a * 1e3:.2f} ms | {c * 1e3:.2f} ms | {g * 1e3:.2f} ms "
              f"| {c / a:.1f}x | {g / a:.1f}x |")  # fmt: skip
    print(
        f"\nbetti_curves (beta0, beta1 at 64 levels, areas, total persistence) on the batch: "
        f"{t_curves * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
