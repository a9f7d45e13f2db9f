"""Training-step overhead of TrainingMonitor on CPU, beside the per-parameter ``.item()`` pattern.

    python benchmarks/bench_torch_overhead.py [--rounds 12] [--steps 20] [--threads 1]

Workloads: an MLP with 16 Linear layers (width 256, batch 128) and a small transformer
(6 ``nn.TransformerEncoderLayer``, d=128, 4 heads, sequence 64, batch 16). Variants per
workload, each on its own copy of the same model:

* ``baseline`` — forward, backward, SGD step;
* ``TrainingMonitor every=1`` / ``every=10`` — activation + gradient norms of every layer
  group, LayerMonitor, loss-rise alarm (``step(loss)`` after ``optimizer.step()``);
* ``per-param .item()`` — the common pattern: ``[p.grad.norm().item() for p in params]``
  each step (no monitor at all: the collection alone);
* transformer only, ``transformer signals every=1`` — the collectors alone, no monitor:
  attention entropy and attention logits (one shared ``AttentionSampler``: first batch
  element, every head, <= 32 queries, recomputed from the ``need_weights=False`` encoder
  layers' inputs), update ratio (optimizer step hooks, a fixed sample of <= 1024 elements per
  parameter), output-logit statistics of the head, plus activation and gradient norms, all in
  one ``collect()`` (one host copy) per step; ``activation + gradient norms every=1`` is the
  same without the four transformer signals, so the difference of the two rows is their cost;
* transformer only, ``TrainingMonitor all six signals every=1`` — the same six signals
  through a TrainingMonitor (layer monitor on act/grad/update, attention monitor, loss rule):
  what a user who turns every transformer signal on pays.

Variants run interleaved in rounds of ``--steps`` steps (the order reversed every other
round), so load drift on a shared machine hits all of them alike; the table gives the median
over rounds of the mean step time, the overhead as the median over rounds of (variant /
baseline of the same round) − 1 — in wall time and in process CPU time (``time.process_time``,
which leaves out the time the process waits for a core: the better guide on a loaded machine),
with the interquartile range of the per-round CPU-time ratios as the spread — and the
median time of the monitoring call itself (``tm.step()`` or the ``.item()`` loop; forward-hook
time is inside the forward pass and only in the overhead column).
Host copies per step: ``TrainingMonitor.host_copies_`` (one per monitored step) and one per
parameter for ``.item()`` (on CPU a "device sync" is a host copy; on CUDA each ``.item()`` is a
synchronisation).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's streamtopo

from streamtopo.integrations import torch as st_torch
from streamtopo.integrations.training import TrainingMonitor

ALL_SIGNALS = ("act_norm", "grad_norm", "update_ratio", "attn_entropy", "attn_logit", "out_logit")


def mlp(depth: int = 16, width: int = 256) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(128, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


class SmallTransformer(nn.Module):
    def __init__(self, vocab: int = 96, d: int = 128, n_layers: int = 6, ctx: int = 64) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(ctx, d))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
            for _ in range(n_layers)
        )
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(ctx))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.emb(idx) + self.pos[: idx.shape[1]]
        for layer in self.layers:
            h = layer(h, src_mask=self.mask, is_causal=True)
        return self.head(h)


def workloads():
    g = torch.Generator().manual_seed(0)
    x_mlp = torch.randn(128, 128, generator=g)
    y_mlp = torch.randint(0, 10, (128,), generator=g)
    idx = torch.randint(0, 96, (16, 64), generator=g)

    def mlp_loss(model):
        return nn.functional.cross_entropy(model(x_mlp), y_mlp)

    def tf_loss(model):
        logits = model(idx[:, :-1])
        return nn.functional.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten())

    return [
        ("MLP 16 Linear (w=256, b=128)", mlp, mlp_loss),
        ("transformer 6 blocks (d=128, T=63, b=16)", SmallTransformer, tf_loss),
    ]


class Variant:
    def __init__(self, name: str, make, loss_fn, kind: str, every: int = 1) -> None:
        torch.manual_seed(0)
        self.name, self.kind, self.loss_fn = name, kind, loss_fn
        self.model = make()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.tm = None
        if kind == "monitor":
            self.tm = TrainingMonitor(self.model, every=every)
        elif kind == "monitor-all":
            self.tm = TrainingMonitor(
                self.model, every=every, signals=ALL_SIGNALS, optimizer=self.opt
            )
        self.collectors: list = []
        if kind in ("signals", "norms"):
            self.collectors = [
                st_torch.ActivationNormCollector(self.model),
                st_torch.GradNormCollector(self.model),
            ]
        if kind == "signals":
            sampler = st_torch.AttentionSampler(self.model)
            self.collectors += [
                st_torch.AttentionEntropyCollector(self.model, sampler=sampler),
                st_torch.AttentionLogitCollector(self.model, sampler=sampler),
                st_torch.UpdateRatioCollector(self.model, optimizer=self.opt),
                st_torch.OutputLogitCollector(self.model),
            ]
        self.copies = 0
        self.times: list[float] = []
        self.cpu: list[float] = []  # process CPU time per step: no preemption in it
        self.extra: list[float] = []  # seconds spent in tm.step() / the .item() loop
        self.steps = 0
        self.item_calls = 0
        self.n_layers = 0 if self.tm is None else len(self.tm.layer_names)

    def step(self) -> None:
        loss = self.loss_fn(self.model)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        t0 = time.perf_counter()
        if self.tm is not None:
            self.tm.step(loss)
        elif self.kind == "item":
            norms = [p.grad.norm().item() for p in self.params]
            self.item_calls += len(norms)
        elif self.collectors:
            values = st_torch.collect(self.collectors)
            self.copies += 1
            ok = [
                (np.isfinite(v) | c.missing_).all()
                for v, c in zip(values, self.collectors, strict=True)
            ]
            if self.steps == 0 and not all(ok):
                raise RuntimeError(f"{self.name}: a non-finite signal: {values}")
        self.extra.append(time.perf_counter() - t0)
        self.steps += 1

    def run(self, n: int) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            self.step()
        self.times.append((time.perf_counter() - t0) / n)
        self.cpu.append((time.process_time() - c0) / n)

    def copies_per_step(self) -> float:
        if self.tm is not None:
            return self.tm.host_copies_ / self.steps
        if self.kind == "item":
            return self.item_calls / self.steps
        return self.copies / self.steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f} at start; {args.rounds} rounds x {args.steps} steps"
    )
    rows = []
    for title, make, loss_fn in workloads():
        variants = [
            Variant("baseline", make, loss_fn, "none"),
            Variant("TrainingMonitor every=1", make, loss_fn, "monitor", 1),
            Variant("TrainingMonitor every=10", make, loss_fn, "monitor", 10),
            Variant("per-param .grad.norm().item()", make, loss_fn, "item"),
        ]
        if make is SmallTransformer:
            variants += [
                Variant("activation + gradient norms every=1", make, loss_fn, "norms"),
                Variant("transformer signals every=1", make, loss_fn, "signals"),
                Variant("TrainingMonitor all six signals every=1", make, loss_fn, "monitor-all"),
            ]
        for v in variants:  # warm-up: numba cache load, allocator, first-call costs
            v.run(5)
            v.times.clear()
            v.cpu.clear()
            v.extra.clear()
        for r in range(args.rounds):
            for v in variants if r % 2 == 0 else variants[::-1]:  # alternate the order
                v.run(args.steps)
        base, base_cpu = variants[0].times, variants[0].cpu
        n_params = len(variants[0].params)
        for v in variants:
            # paired: each round's ratio to the baseline of the same round (load drift cancels)
            paired = statistics.median(a / b for a, b in zip(v.times, base, strict=True))
            ratios_cpu = [a / b - 1.0 for a, b in zip(v.cpu, base_cpu, strict=True)]
            paired_cpu = statistics.median(ratios_cpu) + 1.0
            q1, _, q3 = statistics.quantiles(ratios_cpu, n=4)
            rows.append(
                (
                    title,
                    v.name,
                    statistics.median(v.times) * 1e3,
                    (paired - 1.0) * 100.0,
                    (paired_cpu - 1.0) * 100.0,
                    (q1 * 100.0, q3 * 100.0),
                    statistics.median(v.extra) * 1e6,
                    v.copies_per_step(),
                    v.n_layers or "",
                    n_params,
                )
            )
        for v in variants:
            if v.tm is not None:
                v.tm.close()
            for c in v.collectors:
                c.close()
    print()
    print(
        "| workload | variant | step ms (median) | overhead vs baseline (paired median) "
        "| CPU-time overhead (paired median) | CPU-time IQR | in step()/.item() µs (median) "
        "| host copies / step | layers | params |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w, name, ms, over, over_cpu, (q1, q3), extra, copies, layers, n_params in rows:
        base = name == "baseline"
        over_text = "—" if base else f"{over:+.1f}%"
        cpu_text = "—" if base else f"{over_cpu:+.1f}%"
        iqr_text = "—" if base else f"{q1:+.1f} .. {q3:+.1f}"
        extra_text = "—" if base else f"{extra:.0f}"
        print(
            f"| {w} | {name} | {ms:.2f} | {over_text} | {cpu_text} | {iqr_text} | {extra_text} "
            f"| {copies:.2f} | {layers} | {n_params} |"
        )
    print(f"\nload {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
