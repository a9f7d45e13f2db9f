"""Lightning: add ``StreamtopoCallback`` to the Trainer; ``stop=True`` ends training on a
``should_stop``.

    python examples/lightning_callback.py [--steps 300]

A small MLP learns the bundled digits; at 60% of the steps the learning rate jumps ×50. The
callback's statuses go to Lightning's own logger (a CSVLogger here: ``streamtopo/state`` and
friends, every step) and its alarms to the ``streamtopo`` logging logger (WARNING). The monitor
is calibrating for its first 200 steps: the change detector watches then, and may raise a
WATCH on a healthy phase (with the default settings, one at step 146: ``net.0``'s activation
norm falling while the net learns; README "Live from step 0, and alarms that end").
"""

import argparse
import csv
import tempfile
from pathlib import Path

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
    logs = tempfile.mkdtemp(prefix="streamtopo-lightning-")
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=pl.loggers.CSVLogger(logs, name="digits"),
        log_every_n_steps=1,
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
    # what reached Lightning's logger: the steps whose streamtopo state was not HEALTHY
    metrics = Path(trainer.logger.log_dir) / "metrics.csv"
    with metrics.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("streamtopo/state")]
    alarms = [int(r["step"]) for r in rows if float(r["streamtopo/state"]) > 0]
    print(
        f"Lightning's CSVLogger ({metrics}): {len(rows)} steps with streamtopo/state, "
        f"alarm steps {alarms[:3]}{' ...' if len(alarms) > 3 else ''}"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    main(p.parse_args().steps)
