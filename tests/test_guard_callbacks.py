"""Guard wired into the real Lightning and Hugging Face callbacks (tiny local models)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from streamtopo import Guard, InputTypeError  # noqa: E402

from .test_torch_callbacks import DictData, HFTiny, fit  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning:lightning",
    "ignore::UserWarning:lightning.fabric",
    "ignore::UserWarning:lightning.pytorch",
    "ignore:.*does not have many workers.*",
    "ignore:.*is not recommended.*",
    "ignore:.*LeafSpec.*:FutureWarning",
)


def lightning_module(fault_from=None):
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(
                nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)
            )
            self.losses = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            if fault_from is not None and self.global_step >= fault_from:
                loss = loss * 5.0  # a lasting fault (a loss-scaling bug)
            self.losses.append(loss.item())
            return loss

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return pl, Tiny()


def test_lightning_guard_rolls_back_escalates_and_stops(tmp_path):
    from streamtopo.integrations.lightning import StreamtopoCallback

    pl, module = lightning_module(fault_from=80)
    guard = Guard(every=10, patience=3, act_on="WATCH")
    cb = StreamtopoCallback(guard=guard, signals=("grad_norm",), log_dir=tmp_path)
    trainer = fit(pl, module, cb, max_steps=400)
    actions = [i.action for i in guard.interventions_]
    assert actions[0] == "rollback" and actions[-1] == "stop"
    assert guard.interventions_[0].step >= 81  # not before the fault (Lightning's step 81)
    assert guard.interventions_[0].restored_step <= 70  # a snapshot from before the fault
    assert guard.should_stop and trainer.should_stop and trainer.global_step < 400
    assert guard.state.scheduler is trainer.lr_scheduler_configs[0].scheduler
    check_routed(cb, guard, trainer.global_step)


def check_routed(cb, guard, last_step):
    """The guard ran inside the callback's TrainingMonitor, as in a plain loop: same records,
    the last status carries the stop, the interventions are rows of the run at their steps."""
    from streamtopo.io import read_run

    tm = cb.monitor
    assert tm.guard is guard and tm.interventions_ == guard.interventions_
    assert cb.intervention_ == cb.status_.intervention == guard.interventions_[-1]
    assert cb.status_.step == last_step and tm.should_stop
    assert tm.summary()["guard"]["rollbacks"] == guard.rollbacks_
    rows = read_run(tm.run_dir_, table="interventions").collect()
    assert rows["step"].to_list() == [i.step for i in guard.interventions_]
    assert rows["action"].to_list() == [i.action for i in guard.interventions_]


def test_lightning_guard_leaves_a_healthy_run_identical():
    from streamtopo.integrations.lightning import StreamtopoCallback

    runs = []
    for guard in (None, Guard(every=5, act_on="WATCH")):
        pl, module = lightning_module()
        cb = StreamtopoCallback(guard=guard, signals=("grad_norm",))
        fit(pl, module, cb, max_steps=60)
        runs.append(module.losses)
    assert runs[0] == runs[1]
    assert guard.interventions_ == [] and len(guard.snapshot_steps_) == 4


def test_hf_guard_rolls_back_and_stops(tmp_path):
    from streamtopo.integrations.hf import StreamtopoTrainerCallback

    class Faulty(HFTiny):  # the loss x5 from the 81st forward pass on: a lasting fault
        def forward(self, x, labels=None):
            out = super().forward(x, labels)
            if labels is not None and self.calls > 80:
                out["loss"] = out["loss"] * 5.0
            return out

    guard = Guard(every=10, patience=3, act_on="WATCH")
    cb = StreamtopoTrainerCallback(guard=guard, signals=("grad_norm",), log_dir=tmp_path / "r")
    trainer, model = hf_train_with(tmp_path, cb, Faulty())
    # the early change detector warns in the first 20 steps (the tiny net's gradient norms
    # move x48-x1e7 as it leaves its initialisation): the guard takes nothing back for it
    acted = [i for i in guard.interventions_ if i.action in ("rollback", "stop")]
    early = [i.action for i in guard.interventions_ if i.step < 81]
    assert set(early) <= {"no_snapshot", "declined"}
    assert acted[0].action == "rollback"
    assert acted[0].step >= 81  # not before the fault (HF's step 81)
    assert guard.interventions_[-1].action == "stop" and guard.should_stop
    assert trainer.state.global_step < 400
    assert guard.state.model is model and guard.state.scaler is None  # no fp16 on the CPU
    check_routed(cb, guard, trainer.state.global_step)


def test_hf_guard_restores_the_accelerators_grad_scaler(tmp_path):
    """Under fp16 the Trainer's GradScaler is ``trainer.accelerator.scaler`` (what
    ``Trainer._save_scaler`` saves); accelerate hands it to the optimizer it wraps. accelerate
    makes none on the CPU, so the test gives the accelerator a real CPU GradScaler before
    ``train()``, which then scales the loss, unscales and steps through it."""
    from streamtopo.integrations.hf import StreamtopoTrainerCallback

    class Faulty(HFTiny):
        def forward(self, x, labels=None):
            out = super().forward(x, labels)
            if labels is not None and self.calls > 60:
                out["loss"] = out["loss"] * 5.0
            return out

    guard = Guard(every=10, patience=3, max_rollbacks=1, act_on="WATCH")
    cb = StreamtopoTrainerCallback(guard=guard, signals=("grad_norm",))
    trainer = hf_trainer_with(tmp_path, cb, Faulty(), max_steps=200)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=20)
    trainer.accelerator.scaler = scaler
    trainer.train()
    assert guard.state.scaler is scaler is trainer.accelerator.scaler
    assert scaler.get_scale() > 2.0**10  # it ran: the scale grew every 20 clean steps
    rollback = next(i for i in guard.interventions_ if i.action in ("rollback", "stop"))
    assert rollback.action == "rollback" and rollback.restored_step % 10 == 0
    assert rollback.step > 60  # the fault's, not the early detector's warning (see above)


def hf_trainer_with(tmp_path, callback, model, max_steps=400):
    import transformers

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=8,
        learning_rate=0.1, lr_scheduler_type="constant", report_to=[], save_strategy="no",
        logging_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        max_grad_norm=0.0,
    )  # fmt: skip
    return transformers.Trainer(
        model=model, args=args, train_dataset=DictData(), callbacks=[callback]
    )


def hf_train_with(tmp_path, callback, model):
    trainer = hf_trainer_with(tmp_path, callback, model)
    trainer.train()
    return trainer, model


def test_callbacks_reject_a_non_guard():
    from streamtopo.integrations.hf import StreamtopoTrainerCallback
    from streamtopo.integrations.lightning import StreamtopoCallback

    with pytest.raises(InputTypeError, match=r"guard must be a streamtopo\.Guard"):
        StreamtopoCallback(guard="yes")
    with pytest.raises(InputTypeError, match=r"guard must be a streamtopo\.Guard"):
        StreamtopoTrainerCallback(guard=object())
