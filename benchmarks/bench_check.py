"""Per-call latency of ``LayerMonitor.check()`` beside a naive recomputation and ripser.

Run: ``python benchmarks/bench_check.py`` (add ``--quick`` for fewer steps). Prints a markdown
table: for L layers x S signals x window W, our p50/p99 per ``check()`` call (everything: input
conversion, ring, window update, H0, alarms, Status) and steps/s, beside the H0 alone of the
same points each step by (a) numpy/scipy (pdist + single linkage) and (b) ripser, and the
ratios of their p50 to ours; also our mean CPU (thread) time per call, which preemption on a
shared machine does not inflate (``--against REF``: only ``check()`` of the checkout REF
against this one, in alternating subprocesses). First, the same for ``rule="streak"`` against
``rule="cusum"`` at 64 layers x 3 signals (``--rules``: only that table). Then the bytes a
monitor holds for 128 layers x 3 signals x capacity 1024.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np


def stream(rng, steps, L, S):
    """Layers at fixed log-levels with 5 % multiplicative noise and a cosine LR decay."""
    levels = rng.normal(0.0, 1.0, size=(S, L))
    lr = 1e-3 + 0.5 * (1 + np.cos(np.pi * np.arange(steps) / steps))
    x = np.exp(levels[None] + 0.05 * rng.normal(size=(steps, S, L))) * lr[:, None, None]
    return x.astype(np.float32)  # what the monitor records


def points(x, t, W):
    """The layer points at step t, as the monitor defines them (log, window W)."""
    win = np.log(x[max(0, t - W + 1) : t + 1].astype(np.float64))  # (w, S, L)
    w, S, L = win.shape
    return win.reshape(w * S, L).T / math.sqrt(w * S)


def percentiles(ts):
    a = np.asarray(ts) / 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def bench_ours(x, L, S, W, warm, steps, rule="streak"):
    from streamtopo import LayerMonitor

    mon = LayerMonitor(L, [f"s{k}" for k in range(S)], window=W, rule=rule)
    rows = [{f"s{k}": x[t, k] for k in range(S)} if S > 1 else x[t, 0] for t in range(len(x))]
    for t in range(warm):
        mon.check(rows[t])
    ts = []
    clock = time.perf_counter_ns
    cpu0 = time.thread_time_ns()
    for t in range(warm, warm + steps):
        a = clock()
        mon.check(rows[t])
        ts.append(clock() - a)
    cpu = (time.thread_time_ns() - cpu0) / steps / 1e3  # CPU time: not inflated by preemption
    return (*percentiles(ts), cpu)


def bench_naive(x, W, warm, steps):
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    ts = []
    for t in range(warm, warm + steps):
        a = time.perf_counter_ns()
        P = points(x, t, W)
        float(linkage(pdist(P), method="single")[:, 2].sum())
        ts.append(time.perf_counter_ns() - a)
    return percentiles(ts)


def bench_ripser(x, W, warm, steps):
    import warnings

    from ripser import ripser

    warnings.filterwarnings("ignore", message="The input point cloud has more columns")
    ts = []
    for t in range(warm, warm + steps):
        a = time.perf_counter_ns()
        P = points(x, t, W)
        d = ripser(P, maxdim=0)["dgms"][0]
        float(d[np.isfinite(d[:, 1]), 1].sum())
        ts.append(time.perf_counter_ns() - a)
    return percentiles(ts)


def check_agreement(x, L, S, W, warm):
    """Our h0 equals the naive one on the benchmark stream (guards the table)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    from streamtopo import LayerMonitor

    mon = LayerMonitor(L, [f"s{k}" for k in range(S)], window=W)
    for t in range(warm):
        h = mon.check(x[t]).h0
    ref = float(linkage(pdist(points(x, warm - 1, W)), method="single")[:, 2].sum())
    assert abs(h - ref) <= 1e-9 * ref, (h, ref)


def monitor_bytes(L=128, S=3, capacity=1024, W=16):
    from streamtopo import LayerMonitor

    mon = LayerMonitor(L, [f"s{k}" for k in range(S)], window=W, capacity=capacity)
    return mon.nbytes, mon.ring_.nbytes


def false_alarms(steps):
    """Alarm steps and episodes per 1,000 steps on healthy synthetic streams (i.i.d. 5 % noise
    around fixed layer levels, cosine LR decay): the plain per-layer threshold 3.0 against the
    default (Šidák-corrected for L x S z-scores), under ``rule="streak"``."""
    from streamtopo import LayerMonitor

    rng = np.random.default_rng(1)
    print()
    print("| L | S | layer_z | alarm steps / 1k | alarm episodes / 1k |")
    print("|---|---|---|---|---|")
    for L, S in ((8, 1), (8, 3), (64, 1), (64, 3)):
        x = stream(rng, steps, L, S)
        for layer_z in (3.0, None):
            mon = LayerMonitor(L, [f"s{k}" for k in range(S)], rule="streak", layer_z=layer_z)
            states = [mon.check(x[t]).state != "HEALTHY" for t in range(steps)]
            episodes = sum(1 for t in range(1, steps) if states[t] and not states[t - 1])
            scored = steps - mon.baseline
            label = f"{mon.layer_z_:.2f}" + (" (default)" if layer_z is None else "")
            print(
                f"| {L} | {S} | {label} | {1000 * sum(states) / scored:.1f} |"
                f" {1000 * episodes / scored:.2f} |"
            )


def rules(reps: int, steps: int, warm: int) -> None:
    """``check()`` per call with rule="streak" (the default) and rule="cusum" (the change
    detector), 64 layers x 3 signals, W=16, alternating the rules ``reps`` times on the same
    stream: the median over repetitions of each p50 and of the thread CPU time per call."""
    rng = np.random.default_rng(2)
    L, S, W = 64, 3, 16
    x = stream(rng, warm + steps, L, S)
    got = {"streak": [], "cusum": []}
    for _ in range(reps):
        for rule in got:
            got[rule].append(bench_ours(x, L, S, W, warm, steps, rule=rule))
    print()
    print(f"Rules, {L} layers x {S} signals, W={W}, median of {reps} repetitions x {steps} steps:")
    print()
    print("| rule | p50 µs | p99 µs | CPU µs/call | CPU / streak |")
    print("|---|---|---|---|---|")
    med = {r: np.median(np.asarray(v), axis=0) for r, v in got.items()}
    for rule, (p50, p99, cpu) in med.items():
        print(f"| {rule} | {p50:.1f} | {p99:.1f} | {cpu:.1f} | {cpu / med['streak'][2]:.2f}x |")


def _use_tree() -> None:
    """In :func:`against`'s subprocesses: import streamtopo from ``STREAMTOPO_TREE``. An
    editable install's import hook (``__editable__`` finder) outranks ``PYTHONPATH``, so
    without this both sides would measure the installed checkout."""
    import sys

    tree = os.environ.get("STREAMTOPO_TREE")
    if not tree:
        return
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable")]
    sys.path.insert(0, tree)
    import streamtopo

    where = os.path.abspath(streamtopo.__file__)
    if not where.startswith(os.path.join(tree, "")):
        raise SystemExit(f"streamtopo imported from {where}, not from {tree}")
    print(f"streamtopo: {where}", file=sys.stderr)


def one(L: int, S: int, rule: str) -> None:
    """One ``bench_ours`` run (64-bit stream seed 2, W=16, 2,000 timed steps): prints
    ``p50 cpu`` in µs, for :func:`against`."""
    _use_tree()
    x = stream(np.random.default_rng(2), 2300, L, S)
    p50, _, cpu = bench_ours(x, L, S, 16, 300, 2000, rule=rule)
    print(p50, cpu)


def against(ref: str, reps: int) -> None:
    """``check()`` of the streamtopo in ``ref`` (a checkout's root, e.g. main's) against this
    checkout's, at 64 x 3 and 8 x 1, W=16, both rules: fresh subprocesses alternating old and
    new (order swapped every repetition), medians over ``reps`` of p50 and CPU per call."""
    import statistics
    import subprocess
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"ref": os.path.abspath(ref), "new": here}
    if not os.path.isfile(os.path.join(trees["ref"], "streamtopo", "__init__.py")):
        raise SystemExit(f"--against {ref}: not a streamtopo checkout (git worktree add DIR REV)")
    cfgs = [(64, 3, "streak"), (64, 3, "cusum"), (8, 1, "streak"), (8, 1, "cusum")]
    got: dict[tuple, list[tuple[float, float]]] = {}
    for r in range(reps):
        for cfg in cfgs:
            for name in ("ref", "new") if r % 2 == 0 else ("new", "ref"):
                env = {**os.environ, "STREAMTOPO_TREE": trees[name]}
                cmd = [sys.executable, os.path.abspath(__file__), "--one", *map(str, cfg)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                assert f"streamtopo: {trees[name]}" in out.stderr, out.stderr  # the right tree
                p50, cpu = map(float, out.stdout.split()[-2:])
                got.setdefault((cfg, name), []).append((p50, cpu))
    print(f"check(): {trees['ref']} (ref) vs {here} (new), median of {reps} alternating runs")
    print()
    print("| L x S | rule | ref p50 µs | new p50 µs | p50 new/ref | ref CPU µs | new CPU µs |"
          " CPU new/ref |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for cfg in cfgs:
        (rp, rc), (np50, nc) = (
            [statistics.median(v[k] for v in got[(cfg, name)]) for k in (0, 1)]
            for name in ("ref", "new")
        )
        print(
            f"| {cfg[0]} x {cfg[1]} | {cfg[2]} | {rp:.1f} | {np50:.1f} | {np50 / rp:.2f} |"
            f" {rc:.1f} | {nc:.1f} | {nc / rc:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--rules", action="store_true", help="only the streak/cusum comparison")
    parser.add_argument(
        "--against", metavar="REF", help="only: check() of the streamtopo checkout REF vs this one"
    )
    parser.add_argument("--reps", type=int, default=5, help="repetitions of --against")
    parser.add_argument("--one", nargs=3, metavar=("L", "S", "RULE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(int(args.one[0]), int(args.one[1]), args.one[2])
    if args.against:
        print(f"load average: {os.getloadavg()}, cores: {os.cpu_count()}")
        against(args.against, args.reps)
        print(f"load average after: {os.getloadavg()}")
        return
    steps, ref_steps, warm = (300, 30, 120) if args.quick else (2000, 200, 300)
    rng = np.random.default_rng(0)
    print(f"load average: {os.getloadavg()}, cores: {os.cpu_count()}")
    rules(3 if args.quick else 7, steps, warm)
    if args.rules:
        return
    print()
    print("| L | S | W | ours p50 µs | ours p99 µs | ours CPU µs/call | steps/s |"
          " naive scipy p50 µs | ripser p50 µs | naive/ours | ripser/ours |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for L in (8, 32, 64, 128):
        for S in (1, 3):
            for W in (1, 16):
                x = stream(rng, warm + steps, L, S)
                check_agreement(x, L, S, W, warm)
                o50, o99, ocpu = bench_ours(x, L, S, W, warm, steps)
                n50, _ = bench_naive(x, W, warm, ref_steps)
                r50, _ = bench_ripser(x, W, warm, ref_steps)
                print(
                    f"| {L} | {S} | {W} | {o50:.1f} | {o99:.1f} | {ocpu:.1f} | {1e6 / o50:,.0f} |"
                    f" {n50:.1f} |"
                    f" {r50:.1f} | {n50 / o50:.1f}x | {r50 / o50:.1f}x |"
                )
    false_alarms(1000 if args.quick else 5000)
    total, ring = monitor_bytes()
    print()
    print(
        f"Memory, 128 layers x 3 signals x capacity 1024 (window 16): {total:,} bytes held by "
        f"the monitor, of which {ring:,} in the ArrowRing."
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
