"""Cost of a Guard: snapshot time and size, restore time, and overhead per training step.

    python benchmarks/bench_guard.py [--rounds 8] [--threads 1]

Workloads: the bench models of ``bench_torch_overhead.py`` (an MLP with 16 Linear layers,
width 256, batch 128; a 6-block transformer, d=128, sequence 64, batch 16), trained with Adam
(whose two moment buffers triple the state a snapshot copies).

Table 1, per workload: the median time of one snapshot (``TorchState.capture``: model +
optimizer + RNG + TrainingMonitor state, deep-copied to the CPU), of one restore, of one
snapshot written to disk (``Guard(dir=...)``) and the bytes held per snapshot (in memory / file).

Table 2, per workload: step time of the loop with a TrainingMonitor and without guard (the
reference, measured in the same run), and with a Guard at its default interval added; the
variants run interleaved in rounds of ``every`` steps (each guarded round takes exactly one
snapshot), in ABBA order so a drift of the machine's load hits both alike; the overhead is the
median over rounds of (guarded / reference of the same round) − 1. Beside it, the snapshot's
share of a round, capture time / (``every`` × reference step time), both measured in this run:
the overhead without the load noise of two timed loops. The paired median is also given in
process CPU time (``time.process_time``; torch runs one thread), which other processes on a shared
machine disturb less than wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_torch_overhead import workloads
from streamtopo import Guard
from streamtopo.integrations.torch import TorchState
from streamtopo.integrations.training import TrainingMonitor


def tree_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(tree_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tree_bytes(v) for v in obj)
    return 8


class Loop:
    def __init__(self, make, loss_fn, guard: Guard | None) -> None:
        torch.manual_seed(0)
        self.model = make()
        self.loss_fn = loss_fn
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.tm = TrainingMonitor(self.model)
        self.guard = guard
        if guard is not None:
            guard.attach(model=self.model, optimizer=self.opt, monitors=[self.tm])
        self.t = 0
        self.times: list[float] = []
        self.cpu: list[float] = []

    def run(self, n: int) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            loss = self.loss_fn(self.model)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            status = self.tm.step(loss)
            if self.guard is not None:
                self.guard.step(self.t, status)
            self.t += 1
        self.times.append((time.perf_counter() - start) / n)
        self.cpu.append((time.process_time() - cpu) / n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    every = Guard().every
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f} at start; Guard() default every={every}"
    )
    snap_rows, step_rows = [], []
    for title, make, loss_fn in workloads():
        # --- snapshot / restore cost ---
        loop = Loop(make, loss_fn, None)
        loop.run(3)
        state = TorchState(loop.model, loop.opt, monitors=[loop.tm])
        caps, rests, saves = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "snap.pt"
            for _ in range(7):
                t0 = time.perf_counter()
                snap = state.capture()
                caps.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                state.restore(snap)
                rests.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                state.save(snap, path)
                saves.append(time.perf_counter() - t0)
            file_bytes = path.stat().st_size
        n_params = sum(p.numel() for p in loop.model.parameters())
        snap_rows.append(
            (title, n_params, statistics.median(caps) * 1e3, statistics.median(rests) * 1e3,
             statistics.median(saves) * 1e3, tree_bytes(snap) / 2**20, file_bytes / 2**20)
        )  # fmt: skip
        loop.tm.close()

        # --- overhead per step at the default interval ---
        ref = Loop(make, loss_fn, None)
        guarded = Loop(make, loss_fn, Guard())
        for v in (ref, guarded):  # warm-up (numba cache load, allocator)
            v.run(every)
            v.times.clear()
        for r in range(args.rounds):
            for v in (ref, guarded) if r % 2 == 0 else (guarded, ref):
                v.run(every)
        paired = statistics.median(g / r for g, r in zip(guarded.times, ref.times, strict=True))
        paired_cpu = statistics.median(g / r for g, r in zip(guarded.cpu, ref.cpu, strict=True))
        ref_ms = statistics.median(ref.times) * 1e3
        share = snap_rows[-1][2] / (every * ref_ms) * 100
        step_rows.append(
            (title, ref_ms, statistics.median(guarded.times) * 1e3, (paired - 1) * 100,
             (paired_cpu - 1) * 100, share, len(guarded.guard.snapshot_steps_),
             guarded.guard.rollbacks_)
        )  # fmt: skip
        for v in (ref, guarded):
            v.tm.close()
    print()
    print(
        "| workload | params | snapshot (capture) ms | restore ms | snapshot to disk ms "
        "| MiB per snapshot in memory | MiB per file |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for w, n, cap, rest, save, mem, disk in snap_rows:
        print(f"| {w} | {n} | {cap:.2f} | {rest:.2f} | {save:.2f} | {mem:.2f} | {disk:.2f} |")
    print()
    print(
        f"| workload | step ms, TrainingMonitor, no guard | step ms, + Guard(every={every}) "
        "| guard overhead, wall (paired median) | guard overhead, process CPU time (paired median) "
        "| snapshot share of a round | snapshots held | rollbacks |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for w, ref_ms, g_ms, over, over_cpu, share, held, rb in step_rows:
        print(
            f"| {w} | {ref_ms:.2f} | {g_ms:.2f} | {over:+.1f}% | {over_cpu:+.1f}% | {share:.2f}% "
            f"| {held} | {rb} |"
        )
    print(f"\nload {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
