"""A raw PyTorch loop with a LayerMonitor: the five added lines are marked ``# <-``.

    python examples/raw_loop_layer_monitor.py [--steps 300]

Per-layer gradient norms come from one vectorised ``torch._foreach_norm`` (one host copy per
step); the LayerMonitor turns them into a per-step H0 status.
"""

import argparse

import torch

from streamtopo import LayerMonitor
from streamtopo.integrations.torch import GradNormCollector


def main(steps: int = 300) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        *[m for _ in range(6) for m in (torch.nn.Linear(32, 32), torch.nn.ReLU())],
        torch.nn.Linear(32, 1),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    grads = GradNormCollector(model)  # <-
    monitor = LayerMonitor(grads.n_layers, ("grad_norm",), layer_names=grads.layer_names)  # <-
    for step in range(steps):
        x = torch.randn(64, 32)
        loss = (model(x) - x[:, :1].sin()).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        status = monitor.check(grads.compute())  # <-
        if status.state != "HEALTHY" or step % 50 == 0:  # <-
            print(
                f"step {step:4d} loss {loss.item():.4f} {status.state} h0={status.h0:.3f} "
                f"{status.reason}"
            )
        if monitor.should_stop:  # <-
            break
    print(monitor.summary())


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    main(p.parse_args().steps)
