"""Guard state across a resume (state_dict/load_state_dict) and replay across rollbacks."""

from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamtopo import Guard, InputError  # noqa: E402
from streamtopo.integrations.torch import decode_tree, encode_tree  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor  # noqa: E402
from streamtopo.io import read_run, replay, run_summary  # noqa: E402

nn = torch.nn
# an injected alarm on a healthy loss: still_failing=None so the guard acts on it
KNOBS = {"every": 10, "keep": 8, "margin": 0, "patience": 3, "cooldown": 30, "act_on": "WATCH",
         "still_failing": None}  # fmt: skip


def lasting_fault_run(
    tmp, steps=150, *, checkpoint_at=None, resume=None, log_dir=None, every=1, **knobs
):
    """SGD on a linear-teacher task; from step 120 the labels are random (a lasting fault): the
    loss-rise rule fires, the guard rolls back at 126, escalates at 132 and 139, stops at 147.

    ``checkpoint_at=t`` saves a checkpoint after step t (``torch.save`` of model, optimizer,
    TrainingMonitor with its guard, data generator) and stops there, like a process killed
    right after checkpointing; ``resume=path`` starts from such a checkpoint.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 4))  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    guard = Guard(**{**KNOBS, **knobs, "dir": tmp / "snaps"})
    tm = TrainingMonitor(model, log_dir=log_dir, optimizer=opt, guard=guard, every=every)
    gen = torch.Generator().manual_seed(100)
    teacher = torch.randn(8, 4, generator=torch.Generator().manual_seed(7))
    start = 0
    if resume is not None:
        ck = decode_tree(torch.load(resume, weights_only=True))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        tm.load_state_dict(ck["tm"])
        gen.set_state(ck["gen"])
        start = ck["next"]
    losses, statuses = {}, []
    for t in range(start, steps):
        x = torch.randn(32, 8, generator=gen)
        y = (x @ teacher).argmax(1) if t < 120 else torch.randint(0, 4, (32,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        statuses.append(tm.step(loss))
        losses[t] = loss.detach()
        if t == checkpoint_at:
            ck = {"model": model.state_dict(), "opt": opt.state_dict(), "tm": tm.state_dict(),
                  "gen": gen.get_state(), "next": t + 1}  # fmt: skip
            torch.save(encode_tree(ck), tmp / "ck.pt")
            break
        if tm.should_stop:
            break
    tm.close()
    return {"guard": guard, "tm": tm, "losses": losses, "statuses": statuses, "model": model}


def messages(guard):
    return [i.message for i in guard.interventions_]


def test_a_resumed_run_takes_the_same_guard_decisions(tmp_path):
    whole = lasting_fault_run(tmp_path / "whole")
    assert [(i.step, i.action) for i in whole["guard"].interventions_] == [
        (126, "rollback"), (132, "rollback"), (139, "rollback"), (147, "stop")
    ]  # fmt: skip
    # interrupted mid-episode during the first cool-down: alarm since 130, LR cut x0.1 in force
    first = lasting_fault_run(tmp_path / "cut", checkpoint_at=131)
    assert first["statuses"][-1].step == 131
    state = torch.load(tmp_path / "cut" / "ck.pt", weights_only=True)["tm"]["guard"]
    assert state["rollbacks"] == 1 and state["onset"] == 130 and state["lr_scale"] == 0.1
    assert [s["step"] for s in state["snapshots"]] == list(range(50, 130, 10))
    rest = lasting_fault_run(tmp_path / "cut", resume=tmp_path / "cut" / "ck.pt")
    assert messages(rest["guard"]) == messages(whole["guard"])
    assert rest["guard"].steps_redone_ == whole["guard"].steps_redone_
    assert [s.step for s in rest["statuses"]] == list(range(132, 148))  # global steps go on
    after = range(132, 148)
    a = torch.stack([whole["losses"][t] for t in after])
    b = torch.stack([rest["losses"][t] for t in after])
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))
    for p, q in zip(whole["model"].parameters(), rest["model"].parameters(), strict=True):
        assert torch.equal(p, q)


def test_guard_state_loads_with_weights_only_and_bad_state_changes_nothing(tmp_path, caplog):
    run = lasting_fault_run(tmp_path, steps=134)  # after two rollbacks, in the cool-down
    guard = run["guard"]
    torch.save(guard.state_dict(), tmp_path / "g.pt")
    state = torch.load(tmp_path / "g.pt", weights_only=True)  # plain containers only
    assert state == guard.state_dict()
    fresh = Guard(**KNOBS)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state and messages(fresh) == messages(guard)
    assert fresh.snapshot_steps_ == guard.snapshot_steps_ == list(range(50, 120, 10))
    before = fresh.state_dict()
    for key, value in [("rollbacks", -1), ("lr_scale", 0.0), ("onset", "x"),
                       ("interventions", [{"step": 1}]), ("snapshots", [{"step": 1}]),
                       ("format", "other"), ("should_stop", 1)]:  # fmt: skip
        with pytest.raises(InputError, match=key):
            fresh.load_state_dict({**state, key: value})
        assert fresh.state_dict() == before
    # a snapshot file pruned since the checkpoint is dropped, with a warning
    gone = state["snapshots"][0]["path"]
    (tmp_path / "snaps" / gone.rsplit("/", 1)[-1]).unlink()
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        Guard(**KNOBS).load_state_dict(state)
    assert any("is gone; dropped" in r.getMessage() for r in caplog.records)


def test_in_memory_snapshots_are_listed_not_stored():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = Guard(every=2, margin=0, patience=1, act_on="WATCH").attach(model=model, optimizer=opt)
    for t in range(5):
        guard.step(t, "HEALTHY")
    guard.step(5, "WATCH")  # rollback to 4: LR x0.1 in force
    state = guard.state_dict()
    assert state["snapshots"] == [] and state["dropped"] == [0, 2, 4]
    model2 = nn.Linear(2, 2)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    resumed = Guard(every=2, margin=0, patience=1, act_on="WATCH")
    resumed.load_state_dict(state)
    resumed.attach(model=model2, optimizer=opt2)  # the cut applies to the optimizer attached
    assert resumed.snapshot_steps_ == [] and resumed.lr_scale_ == 0.1 and resumed.rollbacks_ == 1
    x = torch.ones(1, 2)
    before = model2.weight.detach().clone()
    model2(x).sum().backward()
    opt2.step()
    assert torch.allclose(before - model2.weight.detach(), torch.full((2, 2), 0.01))
    rec = resumed.step(6, "WATCH")  # an alarm in the cool-down: nothing held to go back to
    assert rec.action == "no_snapshot" and resumed.rollbacks_ == 1


def test_replay_is_bit_identical_to_live_across_rollbacks(tmp_path):
    run = lasting_fault_run(tmp_path, log_dir=tmp_path / "logs")
    rollbacks = [i for i in run["guard"].interventions_ if i.action == "rollback"]
    assert len(rollbacks) == 3
    live = [s.layer for s in run["statuses"]]
    out = replay(run["tm"].run_dir_)
    assert out["step"].to_list() == [s.step for s in run["statuses"]]
    live_h0 = np.array([s.h0 for s in live], dtype=np.float64)
    assert np.array_equal(out["h0"].to_numpy().view(np.int64), live_h0.view(np.int64))
    assert out["state"].to_list() == [s.state.value for s in live]
    assert (out["live_state"] == out["state"]).all()
    marks = out.filter(out["intervention"].is_not_null())
    assert marks.rows() and marks["step"].to_list() == [126, 132, 139, 147]
    assert marks["intervention"].to_list() == [
        "rollback to 120", "rollback to 110", "rollback to 100", "stop"
    ]  # fmt: skip
    summary = run_summary(out).row(0, named=True)
    assert summary["differ_from_live"] == 0 and summary["interventions"] == 4
    # without the interventions the replay is one stream and parts from the live run
    plain = replay(run["tm"].run_dir_, interventions=False)
    assert run_summary(plain).row(0, named=True)["differ_from_live"] > 0
    assert read_run(run["tm"].run_dir_, table="interventions").collect().height == 4


@pytest.mark.parametrize("every", [2, 3])
def test_replay_applies_rollbacks_between_monitored_steps(tmp_path, every):
    # with TrainingMonitor(every>1) the layer table has one row per monitored step while the
    # guard counts every step: a snapshot/rollback between rows applies after the row before it
    run = lasting_fault_run(tmp_path, log_dir=tmp_path / "logs", every=every)
    assert [i.action for i in run["guard"].interventions_][:1] == ["rollback"]
    df = replay(run["tm"].run_dir_)
    assert df["intervention"].drop_nulls().len() == len(run["guard"].interventions_) > 0
    assert (
        df["h0"].to_numpy().view(np.int64).tolist()
        == df["live_h0"].to_numpy().view(np.int64).tolist()
    )
    assert df["state"].to_list() == df["live_state"].to_list()
    flat = replay(run["tm"].run_dir_, interventions=False)
    assert flat.height == df.height
    assert flat["h0"].to_list() != df["live_h0"].to_list()  # the rollbacks matter


def test_training_monitor_state_with_a_bad_guard_state_changes_nothing(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tm = TrainingMonitor(model, optimizer=opt, guard=Guard(every=2))
    for _ in range(5):
        loss = model(torch.randn(8, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tm.step(loss)
    state = tm.state_dict()
    assert state["guard"]["calls"] == 5 and state["step"] == 5
    assert "guard" not in tm.state_dict(guard=False)
    before = tm.state_dict()
    with pytest.raises(InputError, match="lr_scale"):
        tm.load_state_dict({**state, "calls": 2, "guard": {**state["guard"], "lr_scale": 2.0}})
    # compared as JSON: NaN (a change detector's unset prediction) equals NaN there
    assert dump(tm.state_dict()) == dump(before) and tm.step_ == 5
    plain = TrainingMonitor(model)
    with pytest.raises(InputError, match="this TrainingMonitor has no guard"):
        plain.load_state_dict(state)
    plain.close()
    tm.close()


def dump(state) -> str:
    import json

    return json.dumps(state, sort_keys=True, default=repr)
