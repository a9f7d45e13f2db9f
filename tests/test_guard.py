"""Guard: snapshots, rollback, escalation, stop, LR cut, disk form, bad input, DDP (real torch)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from streamtopo import Guard, InputError, InputTypeError, State  # noqa: E402
from streamtopo.integrations.torch import decode_tree  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor, TrainingStatus  # noqa: E402

from .test_torch_distributed import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
nn = torch.nn


def make(seed: int = 0, dropout: float = 0.1):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 3),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.9)
    return model, opt, sched


def batches(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 3, generator=g)
    out = []
    for _ in range(n):
        x = torch.randn(32, 6, generator=g)
        out.append((x, (x @ w).argmax(1)))
    return out


def train_step(model, opt, sched, batch):
    x, y = batch
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.detach()


def status(t: int, state: str) -> TrainingStatus:
    return TrainingStatus(t, State(state), () if state == "HEALTHY" else ("loss",), "injected")


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------------- healthy
def test_healthy_run_has_no_intervention_and_bit_identical_losses():
    data = batches(120)
    runs = []
    for guarded in (False, True):
        model, opt, sched = make()
        tm = TrainingMonitor(model)
        guard = Guard(every=10, keep=3, act_on="WATCH").attach(
            model=model, optimizer=opt, scheduler=sched, monitors=[tm]
        ) if guarded else None  # fmt: skip
        losses = []
        for t, b in enumerate(data):
            loss = train_step(model, opt, sched, b)
            st = tm.step(loss)
            assert st.state == "HEALTHY"
            if guard is not None:
                assert guard.step(t, st) is None
            losses.append(loss)
        runs.append((torch.stack(losses), params(model), guard))
        tm.close()
    (l0, p0, _), (l1, p1, guard) = runs
    assert torch.equal(l0.view(torch.int32), l1.view(torch.int32))
    assert same(p0, p1)
    assert guard.interventions_ == [] and guard.rollbacks_ == 0
    assert guard.snapshot_steps_ == [90, 100, 110]  # keep=3, every=10


# ---------------------------------------------------------------------------------- rollback
def test_rollback_continues_like_a_restart_from_the_snapshot():
    """After a rollback to step 30 at step 32, the run equals one that never left step 30 and
    then got batches 33.. with the LR halved for the cool-down."""
    data = batches(80)
    cut = {"factor": 0.5, "cooldown": 20}
    model, opt, sched = make()
    # the status is scripted (WATCH at step 32); the early rule would see the x50 at step 31
    tm = TrainingMonitor(model, layer={"early_rule": "none"})
    guard = Guard(every=10, margin=0, patience=1, lr_factor=cut["factor"],
                  cooldown=cut["cooldown"], act_on="WATCH", still_failing=None).attach(
        model=model, optimizer=opt, scheduler=sched, monitors=[tm]
    )  # fmt: skip
    losses_a = {}
    for t, b in enumerate(data):
        if t == 31:  # the failure: corrupt the weights (a one-off, like a dead-ReLU shift)
            with torch.no_grad():
                model[3].weight.mul_(50.0)
        loss = train_step(model, opt, sched, b)
        st = tm.step(loss)
        action = guard.step(t, status(t, "WATCH") if t == 32 else st)
        if t == 32:
            assert action.action == "rollback" and action.restored_step == 30
            assert action.steps_redone == 2 and action.lr_scale == 0.5
            assert tm.step_ == 31  # the monitor's state came back too
        losses_a[t] = loss

    # reference: the same run, uninterrupted to step 30, then batches 33.. with the cut applied
    # by hand around optimizer.step() (the scheduler keeps its own schedule)
    model_b, opt_b, sched_b = make()
    losses_b = {}
    for t, b in enumerate(data):
        if t in (31, 32):
            continue
        x, y = b
        loss = nn.functional.cross_entropy(model_b(x), y)
        opt_b.zero_grad(set_to_none=True)
        loss.backward()
        cooling = 32 < t <= 32 + cut["cooldown"]
        saved = [g["lr"] for g in opt_b.param_groups]
        if cooling:
            for g in opt_b.param_groups:
                g["lr"] = g["lr"] * cut["factor"]
        opt_b.step()
        for g, lr in zip(opt_b.param_groups, saved, strict=True):
            g["lr"] = lr
        sched_b.step()
        losses_b[t] = loss.detach()
    after = [t for t in range(33, 80)]
    a = torch.stack([losses_a[t] for t in after])
    b = torch.stack([losses_b[t] for t in after])
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))
    assert same(params(model), params(model_b))
    assert opt.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]  # schedule intact
    assert guard.lr_scale_ == 1.0  # the cool-down ended
    tm.close()


def test_escalation_then_stop(caplog):
    data = batches(70)
    model, opt, sched = make(dropout=0.0)
    guard = Guard(every=10, keep=5, margin=0, patience=1, lr_factor=0.5, cooldown=20,
                  max_rollbacks=3, act_on="WATCH").attach(
        model=model, optimizer=opt, scheduler=sched)  # fmt: skip
    at = {}
    plan = {45: "WATCH", 50: "WATCH", 53: "COLLAPSE", 56: "WATCH"}
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        for t in range(60):
            train_step(model, opt, sched, data[t])
            if t % 10 == 0:
                at[t] = params(model)
            action = guard.step(t, status(t, plan.get(t, "HEALTHY")))
            if t == 45:
                assert (action.restored_step, action.level, action.lr_scale) == (40, 1, 0.5)
                assert same(params(model), at[40])
            if t == 50:  # failed again within the cool-down: older snapshot, smaller LR
                assert (action.restored_step, action.level, action.lr_scale) == (30, 2, 0.25)
                assert same(params(model), at[30])
                assert guard.snapshot_steps_ == [0, 10, 20, 30]
            if t == 53:
                assert (action.restored_step, action.level, action.lr_scale) == (20, 3, 0.125)
            if t == 56:
                assert action.action == "stop"
            if t > 56:
                assert action is None
    assert guard.should_stop and "max_rollbacks=3" in guard.stop_reason_
    assert [i.action for i in guard.interventions_] == ["rollback"] * 3 + ["stop"]
    assert guard.rollbacks_ == 3 and guard.steps_redone_ == 5 + 20 + 33
    warnings = [
        r for r in caplog.records if r.name == "streamtopo" and r.levelno == logging.WARNING
    ]
    assert sum(": rollback (" in r.getMessage() for r in warnings) == 3
    assert any("stopping" in r.getMessage() for r in warnings)


def test_snapshot_predates_onset_by_margin_and_only_healthy_steps_snapshot():
    model, opt, sched = make(dropout=0.0)
    data = batches(60)
    guard = Guard(every=5, keep=10, margin=8, patience=4, act_on="WATCH").attach(
        model=model, optimizer=opt
    )
    states = {t: "HEALTHY" for t in range(60)}
    states.update({20: "WATCH", 21: "HEALTHY"})  # a blip: no snapshot at 20
    states.update({t: "WATCH" for t in range(41, 45)})  # onset 41, acts at 44
    for t in range(45):
        train_step(model, opt, sched, data[t])
        action = guard.step(t, status(t, states[t]))
        assert (action is None) == (t != 44)
    assert 20 not in guard.snapshot_steps_
    # newest snapshot with step + 8 < 41: 30 (35 is too close to the onset; 40 too)
    assert action.restored_step == 30 and action.onset == 41
    assert guard.snapshot_steps_ == [0, 5, 10, 15, 25, 30]


def test_no_snapshot_old_enough_is_recorded_once():
    model, opt, _ = make(dropout=0.0)
    guard = Guard(every=5, margin=10, patience=1, act_on="WATCH").attach(model=model, optimizer=opt)
    assert guard.step(0, "HEALTHY") is None
    first = guard.step(3, "WATCH")
    assert first.action == "no_snapshot" and first.restored_step == -1
    assert guard.step(4, "WATCH") is None  # same episode: not repeated
    assert guard.rollbacks_ == 0 and not guard.should_stop


# ---------------------------------------------------------------------------------- LR cut
def test_lr_cut_applies_inside_step_and_leaves_scheduler_and_user_loop_alone():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = Guard(every=1, margin=0, patience=1, lr_factor=0.25, cooldown=3, act_on="WATCH")
    guard.attach(model=model, optimizer=opt)
    x = torch.ones(1, 3)

    def sgd_step(t, user_lr):
        for g in opt.param_groups:
            g["lr"] = user_lr  # the user's own schedule, assigned every step
        before = model.weight.detach().clone()
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
        return float((before - model.weight.detach())[0, 0])  # = effective lr (grad is 1)

    assert sgd_step(0, 0.1) == pytest.approx(0.1)
    guard.step(0, "HEALTHY")
    assert sgd_step(1, 0.1) == pytest.approx(0.1)
    assert guard.step(1, "WATCH").action == "rollback"
    for t in (2, 3, 4):
        assert sgd_step(t, 0.2) == pytest.approx(0.05)  # user LR 0.2, cut x0.25
        assert opt.param_groups[0]["lr"] == 0.2  # outside step(): the user's value
        guard.step(t, "HEALTHY")
    assert guard.lr_scale_ == 1.0
    assert sgd_step(5, 0.2) == pytest.approx(0.2)


# ---------------------------------------------------------------------------------- disk
def test_disk_snapshots_load_with_weights_only_and_restore(tmp_path):
    data = batches(40)
    model, opt, sched = make()
    scaler = torch.amp.GradScaler("cpu")
    tm = TrainingMonitor(model)
    guard = Guard(
        every=10,
        keep=2,
        margin=0,
        patience=1,
        dir=tmp_path / "snaps",
        act_on="WATCH",
        still_failing=None,
    ).attach(model=model, optimizer=opt, scheduler=sched, scaler=scaler, monitors=[tm])
    at = {}
    for t in range(36):
        x, y = data[t]
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        st = tm.step(loss)
        at[t] = params(model)
        guard.step(t, st)
    files = sorted((tmp_path / "snaps").iterdir())
    assert [f.name for f in files] == ["snapshot-000000020-rank0.pt", "snapshot-000000030-rank0.pt"]
    raw = torch.load(files[-1], weights_only=True)  # no pickle of arbitrary objects
    snap = decode_tree(raw)
    assert same(list(snap["model"].values()), [p for p in at[30]])
    assert snap["scaler"]["scale"] == scaler.get_scale()
    assert snap["rng"]["python"]["state"] and snap["monitors"][0]["calls"] == 31
    scaler.update(new_scale=2.0)
    action = guard.step(36, "WATCH")
    assert action.restored_step == 30 and same(params(model), at[30])
    assert scaler.get_scale() == snap["scaler"]["scale"] != 2.0 and tm.step_ == 31
    tm.close()


# ---------------------------------------------------------------------------------- bad input
def test_bad_knobs_raise_naming_the_argument(tmp_path):
    for kwargs, name in [
        ({"keep": 0}, "keep"), ({"every": 0}, "every"), ({"lr_factor": 0.0}, "lr_factor"),
        ({"lr_factor": 1.5}, "lr_factor"), ({"margin": -1}, "margin"),
        ({"max_rollbacks": -1}, "max_rollbacks"), ({"act_on": "HEALTHY"}, "act_on"),
        ({"patience": 0}, "patience"), ({"cooldown": 1.5}, "cooldown"),
    ]:  # fmt: skip
        with pytest.raises((InputError, InputTypeError), match=name):
            Guard(**kwargs)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="dir must be a writable directory"):
        Guard(dir=blocker / "snaps")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_bad_attach_registers_nothing():
    model, opt, sched = make()
    _, other_opt, _ = make(seed=1)
    guard = Guard()
    with pytest.raises(InputError, match="optimizer"):
        guard.attach(model=model)
    with pytest.raises(InputError, match="not parameters of model"):
        guard.attach(model=model, optimizer=other_opt)
    with pytest.raises(InputError, match="scheduler drives another optimizer"):
        guard.attach(model=model, optimizer=opt, scheduler=torch.optim.lr_scheduler.StepLR(
            other_opt, 1))  # fmt: skip
    with pytest.raises(InputTypeError, match=r"monitors\[0\]"):
        guard.attach(model=model, optimizer=opt, monitors=[object()])
    assert guard.state is None
    with pytest.raises(InputError, match="before attach"):
        guard.step(0, "HEALTHY")
    guard.attach(model=model, optimizer=opt, scheduler=sched)  # the right call still works
    with pytest.raises(InputError, match="already attached"):
        guard.attach(model=model, optimizer=opt)
    with pytest.raises(InputError, match="status"):
        guard.step(0, "FINE")
    guard.step(5, "HEALTHY")
    with pytest.raises(InputError, match="step must not decrease"):
        guard.step(4, "HEALTHY")


# ----------------------------------------------------------------------------- DDP / FSDP2
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_gloo_ranks_take_the_same_decisions(tmp_path, mode):
    """Two gloo ranks with a lasting fault from step 120: the same interventions on both ranks,
    the first a rollback after the fault, and the (gathered) parameters still equal. FSDP2:
    each rank snapshots and restores its own parameter and optimizer-state shards."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    outs = [tmp_path / f"rank-{r}.json" for r in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "guard_dist_worker.py"),
                str(r),
                "2",
                port,
                str(outs[r]),
                mode,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for r in range(2)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]  # read both before asserting
    for p, err in zip(procs, errs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    r0, r1 = (json.loads(o.read_text()) for o in outs)
    assert r0["interventions"] == r1["interventions"]
    assert [i[1] for i in r0["interventions"]][:1] == ["rollback"]
    assert r0["interventions"][0][0] >= 120  # after the injected fault, not before
    assert r0["params"] == r1["params"]  # ranks still in lockstep after the rollbacks
    # the lasting fault uses up the rollbacks: the stop restores the newest good snapshot, and
    # the parameters every rank ends with are exactly those of that step
    stop = r0["interventions"][-1]
    assert stop[1] == "stop" and stop[2] is not None
    assert r0["params"] == r0["seen"][str(stop[2])] != r0["seen"][str(stop[0])]
