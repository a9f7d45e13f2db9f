"""Lightning and HF callbacks: logged keys, early argument errors, resume without duplicates."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from torch import nn  # noqa: E402

from streamtopo.errors import InputTypeError  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning:lightning",
    "ignore::UserWarning:lightning.fabric",
    "ignore::UserWarning:lightning.pytorch",
    "ignore:.*does not have many workers.*",
    "ignore:.*is not recommended.*",
    "ignore:.*LeafSpec.*:FutureWarning",
)


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long()


def layer_steps(run_dir) -> list[int]:
    from streamtopo.io.replay import read_run

    return read_run(run_dir).select("step").collect()["step"].to_list()


# ----------------------------------------------------------------------------- Lightning


def lightning_module(nan_after=None):
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)
            )

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            if nan_after is not None and self.global_step >= nan_after:
                loss = loss * float("nan")
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return pl, Tiny()


def lightning_trainer(pl, callback, max_steps, **kw):
    return pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
        **kw,
    )


def loader():
    x, y = data()
    ds = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(ds, batch_size=8, num_workers=0)


def test_lightning_logs_the_streamtopo_keys_and_warns_on_stop(tmp_path, caplog):
    from lightning.pytorch.loggers import CSVLogger

    from streamtopo.integrations.lightning import StreamtopoCallback

    pl, module = lightning_module(nan_after=4)
    cb = StreamtopoCallback(stop=True, loss={"stop_patience": 2})
    csv = CSVLogger(str(tmp_path), name="csv")
    trainer = lightning_trainer(
        pl, cb, 20, logger=csv, enable_checkpointing=False, log_every_n_steps=1
    )
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        trainer.fit(module, loader())
    assert trainer.global_step == 6  # NaN losses at steps 4, 5: stop after two
    assert trainer.progress_bar_metrics["streamtopo/state"] == 2.0
    for key in ("streamtopo/layer/state", "streamtopo/h0", "streamtopo/loss/state"):
        assert key in trainer.logged_metrics
    import polars as plr

    metrics = plr.read_csv(f"{csv.log_dir}/metrics.csv")
    assert metrics["streamtopo/state"].drop_nulls().to_list() == [0.0] * 4 + [2.0, 2.0]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("streamtopo alarm starts at step 4: COLLAPSE") for m in messages)
    assert any(m.startswith("streamtopo stops the Trainer at global step 6") for m in messages)


def test_lightning_argument_typo_fails_at_construction():
    from streamtopo.integrations.lightning import StreamtopoCallback

    with pytest.raises(InputTypeError) as info:
        StreamtopoCallback(logdir="runs")
    msg = str(info.value)
    assert "unexpected argument 'logdir' (did you mean 'log_dir'?)" in msg
    assert "stop, labels, guard, log_dir" in msg
    with pytest.raises(InputTypeError, match="loggers\\[0\\] must have"):
        StreamtopoCallback(loggers=[3])
    with pytest.raises(InputTypeError, match="every must be an integer"):
        StreamtopoCallback(every="2")


def test_lightning_resume_from_checkpoint_continues_steps(tmp_path):
    from streamtopo.integrations.lightning import StreamtopoCallback

    logs = tmp_path / "runs"
    pl, module = lightning_module()
    cb = StreamtopoCallback(log_dir=logs, run_id="r1")
    first = lightning_trainer(pl, cb, 6, logger=False, enable_checkpointing=False)
    first.fit(module, loader())
    ckpt = tmp_path / "six.ckpt"
    first.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)  # the callback's state is weights_only-safe
    assert any("StreamtopoCallback" in k for k in saved["callbacks"])

    from streamtopo.io.journal import RunWriter

    pl, module = lightning_module()
    # TrainingMonitor has no resume= yet: continue the run through a writer that allows it
    with RunWriter(logs, run_id="r1", resume="allow") as writer:
        cb2 = StreamtopoCallback(writer=writer)
        second = lightning_trainer(pl, cb2, 10, logger=False, enable_checkpointing=False)
        second.fit(module, loader(), ckpt_path=ckpt)
    assert second.global_step == 10
    assert cb2.monitor.step_ == 10
    assert layer_steps(writer.run_dir) == list(range(10))
