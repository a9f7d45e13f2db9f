"""Lightning: add ``StreamtopoCallback`` to the Trainer; ``stop=True`` ends training on a
``should_stop``.

    python examples/lightning_callback.py [--steps 300]

A small MLP learns the bundled digits; at 60% of the steps the learning rate jumps ×50.
"""

import argparse

import lightning.pytorch as pl
import torch
from torch import nn

from streamtopo import load_digits
from streamtopo.integrations.lightning import StreamtopoCallback


class DigitsMLP(pl.LightningModule):
    def __init__(self, spike_at: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *[m for _ in range(5) for m in (nn.LazyLinear(64), nn.ReLU())], nn.Linear(64, 10)
        )
        self.spike_at = spike_at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.spike_at:
            for g in self.optimizers().param_groups:
                g["lr"] *= 50
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def main(steps: int = 300) -> None:
    torch.manual_seed(0)
    X, y = load_digits()
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    module = DigitsMLP(spike_at=int(steps * 0.6))
    module.net(torch.zeros(1, 64))  # materialise the lazy layers before the callback hooks them
    cb = StreamtopoCallback(stop=True)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb],
    )
    trainer.fit(module, loader)
    print(
        f"stopped at step {trainer.global_step} of {steps}: {cb.status_.state} "
        f"({cb.status_.reason})"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    main(p.parse_args().steps)
