"""Lightning and HF callbacks: logged keys, early argument errors, resume without duplicates."""

from __future__ import annotations

import logging
import shutil

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from torch import nn  # noqa: E402

from streamtopo.errors import InputError, InputTypeError  # noqa: E402

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


def layer_steps(run_dir, table="layer") -> list[int]:
    from streamtopo.io.replay import read_run

    return read_run(run_dir, table=table).select("step").collect()["step"].to_list()


def check_resumed_run(run_dir, first, second):
    """Layer rows of both runs on the trainer's step axis; replay keeps the resumed copy."""
    from streamtopo.io.replay import replay

    assert layer_steps(run_dir) == first + second
    replayed = replay(run_dir)
    assert replayed["step"].to_list() == sorted(set(first + second))
    assert (replayed["h0"] == replayed["live_h0"]).all()  # the later copy wins, bit for bit


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
        callbacks=kw.pop("callbacks", [callback]),
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
    # the trainer's global step: the NaN loss of the batch after 4 optimizer steps is step 5
    assert any(m.startswith("streamtopo alarm starts at step 5: COLLAPSE") for m in messages)
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
    """fit(ckpt_path=) from step 6 of a run that went on to step 8 (a crash after the last
    checkpoint): the monitor and the run continue at step 7, steps 7-8 superseded."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from streamtopo.integrations.lightning import StreamtopoCallback

    logs, ckpts = tmp_path / "runs", tmp_path / "ckpt"
    pl, module = lightning_module()
    cb = StreamtopoCallback(log_dir=logs, run_id="r1", every=2)
    every3 = ModelCheckpoint(dirpath=ckpts, every_n_train_steps=3, save_top_k=-1)
    first = lightning_trainer(pl, cb, 8, logger=False, callbacks=[cb, every3])
    first.fit(module, loader())
    ckpt = ckpts / "epoch=0-step=6.ckpt"
    saved = torch.load(ckpt, weights_only=True)  # the callback's state is weights_only-safe
    assert any("StreamtopoCallback" in k for k in saved["callbacks"])

    pl, module = lightning_module()
    with pytest.raises(InputError, match="resume must be one of"):
        StreamtopoCallback(log_dir=logs, run_id="r1", resume="yes")
    cb2 = StreamtopoCallback(log_dir=logs, run_id="r1", resume="allow", every=2)
    second = lightning_trainer(pl, cb2, 10, logger=False, enable_checkpointing=False)
    second.fit(module, loader(), ckpt_path=ckpt)
    assert second.global_step == 10 and cb2.status_.step == 10
    assert cb2.monitor.step_ == 10  # calls: 6 restored + 4
    # every=2 monitors calls 0, 2, ...: Lightning's steps 1, 3, ...; the loss every step
    check_resumed_run(cb.monitor.run_dir_, [1, 3, 5, 7], [7, 9])
    assert layer_steps(cb.monitor.run_dir_, "loss") == list(range(1, 9)) + list(range(7, 11))


# ----------------------------------------------------------------------------- Hugging Face


class HFTiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList([nn.Linear(8, 16)] + [nn.Linear(16, 16) for _ in range(2)])
        self.head = nn.Linear(16, 2)

    def forward(self, x, labels=None):
        for layer in self.layers:
            x = torch.relu(layer(x))
        logits = self.head(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class DictData(torch.utils.data.Dataset):
    def __init__(self):
        self.x, self.y = data()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def hf_trainer(tmp_path, callback, max_steps, **kw):
    import transformers

    options = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": max_steps,
        "per_device_train_batch_size": 8,
        "learning_rate": 0.1,
        "lr_scheduler_type": "constant",
        "report_to": [],
        "save_strategy": "no",
        "logging_strategy": "steps",
        "logging_steps": 1,
        "use_cpu": True,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "max_grad_norm": 0.0,
        **kw,
    }
    args = transformers.TrainingArguments(**options)
    return transformers.Trainer(
        model=HFTiny(), args=args, train_dataset=DictData(), callbacks=[callback]
    )


def test_hf_keys_reach_log_history_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from streamtopo.integrations.hf import StreamtopoTrainerCallback

    cb = StreamtopoTrainerCallback()
    tb = tmp_path / "out"  # the TensorBoard backend writes under output_dir/runs
    trainer = hf_trainer(tmp_path, cb, 5, report_to=["tensorboard"])
    cb.attach(trainer)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logged] == [1, 2, 3, 4, 5]
    for h in logged:
        assert h["streamtopo/state"] == 0.0
        assert "streamtopo/layer/state" in h and "streamtopo/loss/loss" in h
    acc = EventAccumulator(str(next(p.parent for p in tb.rglob("events.out.tfevents.*"))))
    acc.Reload()
    state = acc.Scalars("train/streamtopo/state")
    assert [e.step for e in state] == [1, 2, 3, 4, 5]


def test_hf_errors_come_before_train(tmp_path):
    from streamtopo.errors import InputError
    from streamtopo.integrations.hf import StreamtopoTrainerCallback

    with pytest.raises(InputTypeError, match="unexpected argument 'singals'"):
        StreamtopoTrainerCallback(singals=("grad_norm",))
    cb = StreamtopoTrainerCallback(signals=("grad_norm", "attn_entropy"))
    with pytest.raises(InputError, match="no attention module streamtopo can observe"):
        hf_trainer(tmp_path, cb, 5)  # at Trainer(...), not inside train()


def test_hf_resume_from_checkpoint_continues_steps(tmp_path):
    """resume_from_checkpoint=True from checkpoint-6 of a run that went on to step 8: the
    monitor and the run continue at HF's step 7, steps 7-8 superseded."""
    from streamtopo.integrations.hf import StreamtopoTrainerCallback

    logs = tmp_path / "runs"
    saving = {"save_strategy": "steps", "save_steps": 3}
    cb = StreamtopoTrainerCallback(log_dir=logs, run_id="r1")
    first = hf_trainer(tmp_path, cb, 8, **saving)
    first.train()
    shutil.rmtree(tmp_path / "out" / "checkpoint-8")  # as if it crashed before saving it
    with pytest.raises(InputError, match="run_id 'r1' already holds rows"):
        hf_trainer(tmp_path, StreamtopoTrainerCallback(log_dir=logs, run_id="r1"), 10)
    cb2 = StreamtopoTrainerCallback(log_dir=logs, run_id="r1", resume="allow")
    second = hf_trainer(tmp_path, cb2, 10, **saving)
    second.train(resume_from_checkpoint=True)
    assert second.state.global_step == 10 and cb2.monitor.step_ == 10
    check_resumed_run(cb.monitor.run_dir_, list(range(1, 9)), list(range(7, 11)))
    assert layer_steps(cb.monitor.run_dir_, "loss") == list(range(1, 9)) + list(range(7, 11))
    steps = [h["step"] for h in second.state.log_history if "loss" in h]
    assert steps == list(range(1, 11))
    statuses = [h["streamtopo/state"] for h in second.state.log_history if "loss" in h]
    assert statuses == [0.0] * 10
