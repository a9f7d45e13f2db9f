"""CollapseMonitor on a real (small) training run: an MLP on the bundled digits whose
penultimate features are pulled towards their mean from epoch 20 on (a feature-collapse
scenario), watched by the default monitor and by seed 000's form and rule side by side.

Run: ``python examples/collapse_digits.py [--epochs 60] [--seed 0] [--ramp 0.5] [--healthy]``.

Measured once (seed 0, 60 epochs, checks every 5): with ``--ramp 0.5`` test accuracy fell from
0.97 to 0.12 by epoch 25; the default monitor said COLLAPSE at that same check (H1 entropy
5.1 → 1.4, Fisher term up; CI 0.25 rising to 0.65) while seed 000's CI *fell* 0.42 → 0.35 and its
rule never fired. No lead time is shown here: the collapse is fast against the 5-epoch checks.
``--healthy``: no alarm from either in 12 checks. Gentle ramps (0.01, 0.1) left accuracy at
0.97–0.99 but reshaped the features (participation ratio 3.8 → 7.1, anisotropy 60 → 6): the
default reported this as an excursion *away* from collapse from epoch 25 on (``direction="up"``
ignores those), the seed form stayed silent.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from streamtopo import CollapseMonitor, load_digits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--healthy", action="store_true", help="no collapse pressure")
    ap.add_argument("--ramp", type=float, default=0.5, help="pull added per epoch after 20")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    X, y = load_digits()
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(X))
    tr, te = perm[:1300], perm[1300:]
    Xt, yt = torch.tensor(X), torch.tensor(y)
    body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU())
    head = nn.Linear(32, 10)
    opt = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-3)
    default = CollapseMonitor(check_every=5)
    seed = CollapseMonitor(check_every=5, variant="seed000", mode="seed")
    print("| epoch | pull | test acc | default CI | default state | seed000 CI | seed state |")
    print("|---|---|---|---|---|---|---|")
    for epoch in range(args.epochs):
        pull = 0.0 if args.healthy or epoch < 20 else args.ramp * (epoch - 19)
        body.train()
        for b in torch.split(torch.tensor(tr[rng.permutation(len(tr))]), 64):
            f = body(Xt[b])
            loss = nn.functional.cross_entropy(head(f), yt[b])
            loss = loss + pull * ((f - f.mean(0)) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        body.eval()
        with torch.no_grad():
            feats = body(Xt[te])
            acc = float((head(feats).argmax(1) == yt[te]).float().mean())
        a = default.check(feats, yt[te], step=epoch)
        b = seed.check(feats, yt[te], step=epoch)
        if a.checked:
            print(
                f"| {epoch} | {pull:.2f} | {acc:.3f} | {a.ci:.3f} | {a.state} | {b.ci:.3f} | "
                f"{b.state} |"
            )
    print()
    print(f"default first COLLAPSE at epoch {default.collapse_step_}: ", end="")
    row = default.history.filter(default.history["state"] == "COLLAPSE").head(1)
    print(row["reason"][0] if row.height else "never")
    print(f"seed000/seed rule first COLLAPSE at epoch {seed.collapse_step_}")


if __name__ == "__main__":
    main()
