"""Betti numbers across depth (seed 003) for a small CNN on the digits set, before and after
training: Omega per ReLU layer and theta, with cubical (feature maps) and Rips (embeddings).

Run: ``PYTHONPATH=. python examples/depth_profile_digits.py`` (needs torch; ~20 s on 2 cores).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streamtopo import DepthProfile, load_digits


def make_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    channels = 1
    for _ in range(4):
        layers += [nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU()]
        channels = 16
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 64, 10))


def relu_outputs(model: nn.Sequential, x: torch.Tensor) -> list[np.ndarray]:
    out = []
    with torch.no_grad():
        for module in model:
            x = module(x)
            if isinstance(module, nn.ReLU):
                out.append(x.numpy())
    return out


def report(model: nn.Sequential, probe: torch.Tensor, label: str) -> None:
    acts = relu_outputs(model, probe)
    names = [f"relu{i}" for i in range(len(acts))]
    for kind, kwargs in (("cubical", {"connectivity": 8}), ("rips", {"dims": (0, 1)})):
        dp = DepthProfile(names, kind=kind, thresholds=32, **kwargs)
        for name, a in zip(names, acts, strict=True):
            dp.add(name, a)
        omega = [round(v, 3) for v in dp.omega()["omega"].to_list()]
        fit = dp.theta()
        print(f"{label:8s} {kind:8s} omega={omega} theta={fit['theta'][0]:+.3f} "
              f"r2={fit['r2'][0]:.2f}")  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    X, y = load_digits()
    X = torch.tensor(X.reshape(-1, 1, 8, 8))
    y = torch.tensor(y)
    probe, train = slice(0, 200), slice(200, None)
    model = make_cnn(0)
    report(model, X[probe], "init")
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    Xt, yt = X[train], y[train]
    for _ in range(15):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    with torch.no_grad():
        acc = (model(X[probe]).argmax(1) == y[probe]).float().mean().item()
    report(model, X[probe], f"acc={acc:.2f}")


if __name__ == "__main__":
    main()
