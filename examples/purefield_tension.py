"""Seed 004's PureField model, its per-layer tension fed to a LayerMonitor as a signal.

    python examples/purefield_tension.py [--steps 600] [--fault-at 400] [--layers 4]

Each block has two engines A and G on the residual stream; ``tension = mean((A - G)**2)``,
``direction = normalize(A - G)`` and the block adds ``scale * sqrt(tension) * direction``. Seed
004 says its layer monitor "works with any model - not just PureField" and lists "PureField
tension" as a signal. Here the per-block tension of every step goes to streamtopo's default
``LayerMonitor`` (log values, 16-step window, z-score rules) and to seed 004's
``LayerPHMonitor`` (raw max - min against its peak) side by side. At ``--fault-at`` one
block's engine G is scaled by 20 (its tension jumps); the script prints when each monitor
first alarmed before and after the fault.

Measured with the defaults (2026-12-06): no alarm from either monitor in the 400 healthy steps;
LayerMonitor COLLAPSE 7 steps after the fault (its 8-evaluation debounce), block2 named.
LayerPHMonitor stayed HEALTHY through the jump itself - a rise is a new peak, which its rule
calls healthy - and first said WATCH 16 steps later, when the tension fell back from that peak.
"""

import argparse

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import streamtopo as st
from streamtopo.compat.ph_training import LayerPHMonitor


class PureFieldBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()

        def engine():
            return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

        self.engine_a, self.engine_g = engine(), engine()
        self.tension_scale = nn.Parameter(torch.tensor(0.5))
        self.last_tension = torch.zeros(())

    def forward(self, h):
        rep = self.engine_a(h) - self.engine_g(h)
        tension = (rep**2).mean(-1, keepdim=True)
        self.last_tension = tension.detach().mean()
        return h + self.tension_scale * torch.sqrt(tension + 1e-8) * F.normalize(rep, dim=-1)


class PureFieldNet(nn.Module):
    def __init__(self, layers: int, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Linear(64, width)
        self.blocks = nn.ModuleList(PureFieldBlock(width) for _ in range(layers))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def tensions(self) -> np.ndarray:
        return torch.stack([b.last_tension for b in self.blocks]).numpy().astype(np.float64)


def main(steps: int = 600, fault_at: int = 400, layers: int = 4) -> None:
    torch.manual_seed(0)
    X, y = st.load_digits()
    xt, yt = torch.tensor(X), torch.tensor(y)
    model = PureFieldNet(layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    names = [f"block{i}" for i in range(layers)]
    monitor = st.LayerMonitor(layers, ("tension",), layer_names=names)
    seed_monitor = LayerPHMonitor(n_layers=layers, signal_name="tension")
    first = {"LayerMonitor": {}, "LayerPHMonitor": {}}
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        if step == fault_at:
            with torch.no_grad():
                model.blocks[layers // 2].engine_g[2].weight.mul_(20.0)
            print(f"step {step}: fault - block{layers // 2}'s engine G scaled by 20")
        idx = torch.randint(0, len(yt), (64,), generator=gen)
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        tension = model.tensions()
        status = monitor.check({"tension": tension})
        seed_status = seed_monitor.check(list(tension))
        phase = "before" if step < fault_at else "after"
        for name, state in (("LayerMonitor", status.state), ("LayerPHMonitor", seed_status.state)):
            if state != "HEALTHY":
                first[name].setdefault(phase, (step, str(state)))
        if step % 100 == 0 or step == fault_at + 10:
            print(
                f"step {step:4d} loss {loss.item():.3f} tension "
                f"{np.array2string(tension, precision=3)} LayerMonitor {status.state} "
                f"({status.reason[:60]}) | LayerPHMonitor {seed_status.status} "
                f"h0={seed_status.h0:.3f}"
            )
    for name, hits in first.items():
        b, a = hits.get("before"), hits.get("after")
        lag = "" if a is None else f", lag {a[0] - fault_at}"
        print(
            f"{name}: first alarm before the fault: "
            f"{'none' if b is None else f'step {b[0]} ({b[1]})'}; after: "
            f"{'none' if a is None else f'step {a[0]} ({a[1]})'}{lag}"
        )
    print(
        "LayerMonitor summary:",
        {k: monitor.summary()[k] for k in ("steps", "watch_steps", "collapse_steps")},
    )
    print("LayerPHMonitor summary:", seed_monitor.summary())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--fault-at", type=int, default=400)
    ap.add_argument("--layers", type=int, default=4)
    a = ap.parse_args()
    main(a.steps, a.fault_at, a.layers)
