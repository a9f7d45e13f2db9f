"""Lightning and Hugging Face callbacks on tiny locally built models (no downloads)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny layers on a shared 2-core machine: one thread is fastest
from torch import nn  # noqa: E402


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long()


# ----------------------------------------------------------------------------- Lightning


def lightning_module(nan_after=None):
    import lightning.pytorch as pl  # in the dev extra: fail, never skip

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)
            )
            self.losses = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            if nan_after is not None and self.global_step >= nan_after:
                loss = loss * float("nan")
            self.losses.append(loss.item())
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return pl, Tiny()


def fit(pl, module, callback, max_steps, accumulate=1):
    x, y = data()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=8, num_workers=0
    )
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accumulate_grad_batches=accumulate,
        callbacks=[callback],
    )
    trainer.fit(module, loader)
    return trainer


pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning:lightning",
    "ignore::UserWarning:lightning.fabric",
    "ignore::UserWarning:lightning.pytorch",
    "ignore:.*does not have many workers.*",
    "ignore:.*is not recommended.*",
    "ignore:.*LeafSpec.*:FutureWarning",  # lightning 2.6 vs torch 2.13 pytree deprecation
)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_callback_counts_optimizer_steps_and_losses(accumulate):
    from streamtopo.integrations.lightning import StreamtopoCallback

    pl, module = lightning_module()
    cb = StreamtopoCallback(every=1)
    fit(pl, module, cb, max_steps=12, accumulate=accumulate)
    tm = cb.monitor
    assert tm.step_ == 12  # optimizer steps, not batches
    assert tm.layer_monitor.step == 12
    assert [g for g in tm.layer_names] == ["net.0", "net.2", "net.4"]
    # the loss alarm saw the loss of the last micro-batch of every optimizer step
    expected = module.losses[accumulate - 1 :: accumulate]
    assert tm.loss_monitor.step_ == 12
    assert tm.loss_monitor.status_.loss == pytest.approx(expected[-1])
    assert not any(m._forward_hooks for m in module.modules())  # closed at teardown


def test_lightning_stop_flag():
    from streamtopo.integrations.lightning import StreamtopoCallback

    pl, module = lightning_module(nan_after=5)
    cb = StreamtopoCallback(stop=True, signals=("grad_norm",))
    trainer = fit(pl, module, cb, max_steps=40)
    assert cb.status_.state == "COLLAPSE"
    assert trainer.global_step < 40 and trainer.should_stop
    pl, module = lightning_module(nan_after=5)
    cb = StreamtopoCallback(stop=False, signals=("grad_norm",))
    trainer = fit(pl, module, cb, max_steps=15)
    assert trainer.global_step == 15 and cb.monitor.should_stop


# ----------------------------------------------------------------------------- Hugging Face


class HFTiny(nn.Module):
    def __init__(self, nan_after=None):
        super().__init__()
        self.nan_after, self.calls = nan_after, 0
        torch.manual_seed(0)
        self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(4)])
        self.head = nn.Linear(8, 2)

    def forward(self, x, labels=None):
        for layer in self.layers:
            x = torch.relu(layer(x))
        logits = self.head(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
            self.calls += 1
            if self.nan_after is not None and self.calls > self.nan_after:
                out["loss"] = out["loss"] * float("nan")
        return out


class DictData(torch.utils.data.Dataset):
    def __init__(self):
        self.x, self.y = data()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def hf_train(tmp_path, callback, max_steps, nan_after=None):
    import transformers  # in the dev extra: fail, never skip

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        learning_rate=0.1,
        lr_scheduler_type="constant",
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        max_grad_norm=0.0,
    )
    model = HFTiny(nan_after)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=DictData(), callbacks=[callback]
    )
    trainer.train()
    return trainer, model


def test_hf_callback_steps_grads_and_loss(tmp_path):
    from streamtopo.integrations.hf import StreamtopoTrainerCallback

    cb = StreamtopoTrainerCallback(every=2)
    trainer, model = hf_train(tmp_path, cb, max_steps=10)
    tm = cb.monitor
    assert trainer.state.global_step == 10 and tm.step_ == 10
    assert tm.layer_names == ("layers.0", "layers.1", "layers.2", "layers.3", "head")
    assert tm.layer_monitor.step == 5  # every=2
    assert tm.loss_monitor.step_ == 10  # the 10th step's loss, buffered, is checked at close()
    assert cb.status_.step == 10 and tm.status_.loss.step == 10  # HF's global step
    assert math.isfinite(tm.loss_monitor.status_.loss)
    assert not any(m._forward_hooks for m in model.modules())


def test_hf_stop_flag(tmp_path):
    from streamtopo.integrations.hf import StreamtopoTrainerCallback

    cb = StreamtopoTrainerCallback(stop=True, signals=("grad_norm",))
    trainer, _ = hf_train(tmp_path, cb, max_steps=40, nan_after=5)
    assert trainer.state.global_step < 40
    assert cb.status_.state == "COLLAPSE"
