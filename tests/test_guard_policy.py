"""Guard policy (issue 19): act only while the failure is still there; a stop keeps a good model."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")

from streamtopo import Guard, InputError, InputTypeError, State  # noqa: E402
from streamtopo.integrations.training import TrainingStatus  # noqa: E402
from streamtopo.monitors import LossStatus  # noqa: E402

from .test_guard import batches, make, params, same, train_step  # noqa: E402


def status(t: int, state: str, loss: float | None) -> TrainingStatus:
    """A training status as the TrainingMonitor makes it, with the loss monitor's loss."""
    ls = None if loss is None else LossStatus(t, State.HEALTHY, "", loss=loss)
    fired = () if state == "HEALTHY" else ("layer",)
    return TrainingStatus(t, State(state), fired, "injected", loss=ls)


def run(plan, guard, steps):
    """Train ``steps`` steps; ``plan(t) -> (state, loss)``; params after each step and actions."""
    model, opt, sched = make(dropout=0.0)
    guard.attach(model=model, optimizer=opt)
    data = batches(steps)
    at, actions = {}, {}
    for t in range(steps):
        train_step(model, opt, sched, data[t])
        at[t] = params(model)
        state, loss = plan(t)
        actions[t] = guard.step(t, status(t, state, loss))
        if guard.should_stop:
            break
    return model, at, actions


def healthy_then(episode):
    """Loss 1.0 (+-0.01) while healthy, then ``episode(t)`` from step 40 on."""

    def plan(t):
        if t < 40:
            return "HEALTHY", 1.0 + 0.01 * ((t % 3) - 1)
        return episode(t)

    return plan


def test_a_run_that_recovered_before_the_decision_is_not_rolled_back(caplog):
    # the loss jumps at 40 (WATCH), is back to its level by 50, COLLAPSE comes at 60 (a long
    # WATCH): the failure is gone at the decision step, so nothing is restored
    def episode(t):
        return ("COLLAPSE" if t >= 60 else "WATCH"), (3.0 if t < 50 else 1.02)

    guard = Guard(every=10, margin=0, still_failing=1.1)
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        model, at, actions = run(healthy_then(episode), guard, 70)
    declined = actions[60]
    assert declined.action == "declined" and declined.restored_step == -1
    assert declined.onset == 40 and "not rolled back" in declined.policy
    assert all(actions[t] is None for t in range(61, 70))  # said once per episode
    assert guard.rollbacks_ == 0 and guard.lr_scale_ == 1.0 and not guard.should_stop
    assert same(params(model), at[69])  # the model was never touched
    assert [i.action for i in guard.interventions_] == ["declined"]
    assert any("declined" in r.getMessage() for r in caplog.records if r.name == "streamtopo")


def test_a_run_that_stays_failed_is_rolled_back():
    def episode(t):
        return ("COLLAPSE" if t >= 60 else "WATCH"), 3.0

    guard = Guard(every=10, margin=0, still_failing=1.1)
    model, at, actions = run(healthy_then(episode), guard, 61)
    rollback = actions[60]
    assert rollback.action == "rollback" and rollback.restored_step == 30  # 30 + 0 < onset 40
    assert same(params(model), at[30])
    assert guard.rollbacks_ == 1 and guard.lr_scale_ == pytest.approx(0.1)


def test_a_recovered_episode_that_fails_again_is_rolled_back_then():
    # declined at 60; the loss climbs back within the same episode: checked every step, acted on
    def episode(t):
        return ("COLLAPSE" if t >= 60 else "WATCH"), (1.0 if t < 64 else 4.0)

    guard = Guard(every=10, margin=0, still_failing=1.1)
    _, _, actions = run(healthy_then(episode), guard, 75)
    acted = [(t, a.action) for t, a in actions.items() if a is not None]
    # the median of the episode's last 10 losses passes 1.1 x 1.0 once 5 of them are 4.0
    assert acted[:2] == [(60, "declined"), (68, "rollback")]


def test_failing_steps_the_monitors_called_healthy_do_not_raise_the_level_before():
    # the monitors flag a failure some steps late (and, restored with the model, again after a
    # rollback): those steps' losses must not count as the healthy level, else a run that is
    # still failing looks recovered (seen on a digits LR spike)
    def plan(t):
        if t < 40:
            return "HEALTHY", 1.0
        if t < 50 or 51 <= t < 63:
            return "HEALTHY", 30.0 if t < 50 else 20.0  # failing, not flagged yet
        return "COLLAPSE", 30.0 if t == 50 else 2.0

    guard = Guard(every=10, margin=10, cooldown=100)
    _, _, actions = run(plan, guard, 64)
    assert actions[50].action == "rollback" and actions[50].restored_step == 30
    second = actions[63]  # the level before is still ~1.0 (steps <= 30, 51-52), not 20
    assert second.action == "rollback" and second.level == 2


def test_without_a_loss_or_with_still_failing_none_every_alarm_is_acted_on():
    def episode(t):
        return ("COLLAPSE" if t >= 60 else "WATCH"), 1.0

    for still, loss in ((None, True), (1.1, False)):
        guard = Guard(every=10, margin=0, still_failing=still)

        def plan(t, loss=loss):
            state, value = healthy_then(episode)(t)
            return state, value if loss else None

        _, _, actions = run(plan, guard, 61)
        assert actions[60].action == "rollback"


def test_a_diverged_loss_counts_as_failing():
    def episode(t):
        return ("COLLAPSE" if t >= 45 else "WATCH"), float("nan")

    guard = Guard(every=10, margin=0, still_failing=1.1)
    _, _, actions = run(healthy_then(episode), guard, 46)
    assert actions[45].action == "rollback"


def test_escalate_lr_false_repeats_the_same_cut():
    def episode(t):
        return "COLLAPSE", 3.0

    def plan(t):
        if t < 40 or 41 <= t < 50:
            return "HEALTHY", 1.0
        return episode(t)

    for escalate, second in ((True, 0.01), (False, 0.1)):
        guard = Guard(every=10, margin=0, escalate_lr=escalate, cooldown=100)
        _, _, actions = run(plan, guard, 51)
        assert actions[40].lr_scale == pytest.approx(0.1)
        assert actions[50].level == 2 and actions[50].lr_scale == pytest.approx(second)


def test_a_stop_restores_the_last_good_snapshot_and_says_so(caplog):
    # one rollback allowed; the failure comes back: the guard restores the newest snapshot
    # before the new episode (not the failed weights) and stops
    def plan(t):
        if t == 40 or t >= 75:
            return "COLLAPSE", 5.0
        return "HEALTHY", 1.0

    guard = Guard(every=10, margin=0, max_rollbacks=1)
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        model, at, actions = run(plan, guard, 80)
    assert actions[40].action == "rollback" and actions[40].restored_step == 30
    stop = actions[75]
    assert stop.action == "stop" and stop.restored_step == 70
    assert "restored step 70" in stop.policy and "last good snapshot" in stop.policy
    assert same(params(model), at[70])  # stopped: the user keeps the healthy model
    assert guard.should_stop and "restored to step 70" in guard.stop_reason_
    assert "restored to step 70" in guard.summary()["stop_reason"]
    assert any("restored step 70" in m for m in guard.summary()["interventions"])
    warnings = [r.getMessage() for r in caplog.records if r.name == "streamtopo"]
    assert any("stopping" in m and "restored to step 70" in m for m in warnings)
    assert guard.step(76, status(76, "COLLAPSE", 5.0)) is None  # stopped: nothing more
    assert same(params(model), at[70])


def test_a_stop_with_no_snapshot_before_the_alarm_says_nothing_was_restored():
    guard = Guard(every=10, margin=0, max_rollbacks=0, still_failing=None)
    model, opt, _ = make(dropout=0.0)
    guard.attach(model=model, optimizer=opt)
    stop = guard.step(0, "COLLAPSE")
    assert stop.action == "stop" and stop.restored_step == -1
    assert "nothing restored" in stop.policy and "left as it is" in guard.stop_reason_


def test_bad_policy_knobs_raise_naming_the_argument():
    for kwargs, name in (({"still_failing": 0}, "still_failing"),
                         ({"still_failing": "1.1"}, "still_failing"),
                         ({"escalate_lr": 1}, "escalate_lr")):  # fmt: skip
        with pytest.raises((InputError, InputTypeError), match=name):
            Guard(**kwargs)


def test_policy_state_round_trips_through_state_dict():
    def episode(t):
        return ("COLLAPSE" if t >= 60 else "WATCH"), (3.0 if t < 50 else 1.02)

    guard = Guard(every=10, margin=0)
    run(healthy_then(episode), guard, 62)
    state = guard.state_dict()
    assert state["declined"] is True and state["loss_level"]["pre"] == pytest.approx(1.0)
    fresh = Guard(every=10, margin=0)
    fresh.load_state_dict(state)
    in_memory = ("dropped",)  # snapshots in memory are listed, not stored
    assert {k: v for k, v in fresh.state_dict().items() if k not in in_memory} == {
        k: v for k, v in state.items() if k not in in_memory
    }
    old = {k: v for k, v in state.items() if k not in ("declined", "loss_level")}
    Guard().load_state_dict(old)  # a state saved before issue 19 still loads
    with pytest.raises(InputError, match="loss_level"):
        Guard().load_state_dict({**state, "loss_level": {"healthy": ["x"]}})
