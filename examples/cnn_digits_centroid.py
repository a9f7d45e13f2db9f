"""A small CNN on the bundled 8x8 digits with a CentroidMonitor: which classes sit closest in
feature space (confusion candidates), and when pairs start to merge.

    python examples/cnn_digits_centroid.py [--epochs 6]

``TrainingMonitor(centroid=...)`` feeds the monitor the penultimate features of every training
batch (``step(loss, labels=y)``); after each epoch the test set's features are added with
``observe(y_test, "test")`` and ``check_centroid(test_loss=...)`` computes the train/test H0
gap, its noise and the test-loss patience rule.
"""

import argparse

import numpy as np
import torch
from torch import nn

from streamtopo import CentroidMonitor, load_digits
from streamtopo.integrations.training import TrainingMonitor


def main(epochs: int = 6) -> None:
    torch.manual_seed(0)
    X, y = load_digits()
    order = np.random.default_rng(0).permutation(len(y))
    X = torch.from_numpy(X).view(-1, 1, 8, 8)
    y = torch.from_numpy(y)
    tr, te = torch.from_numpy(order[:1400]), torch.from_numpy(order[1400:])
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    centroid = CentroidMonitor(n_classes=10, patience=3)
    tm = TrainingMonitor(model, centroid=centroid)
    for epoch in range(epochs):
        perm = tr[torch.randperm(len(tr))]
        for k in range(0, len(perm), 64):
            idx = perm[k : k + 64]
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tm.step(loss, labels=y[idx])
        model.eval()
        with torch.no_grad():
            logits = model(X[te])
            test_loss = float(nn.functional.cross_entropy(logits, y[te]))
        model.train()
        acc = float((logits.argmax(1) == y[te]).float().mean())
        tm.observe(y[te], split="test")
        gap = tm.check_centroid(test_loss=test_loss)
        print(
            f"epoch {epoch}: test acc {acc:.1%} loss {test_loss:.3f} | h0 train "
            f"{gap.h0_train:.3f} test {gap.h0_test:.3f} gap {gap.h0_gap:+.3f} "
            f"(noise {gap.gap_noise:.3f}) {gap.state} {gap.reason}"
        )
    print("closest class pairs (confusion candidates), in merge order:")
    for a, b, d in centroid.confusion_pairs(k=4):
        print(f"  [{a}, {b}]  cosine distance {d:.4f}")
    print("merge tree of the train centroids:")
    print(centroid.dendrogram_text())
    tm.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=6)
    main(p.parse_args().epochs)
