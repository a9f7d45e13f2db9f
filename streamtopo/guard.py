"""Guard: turn an alarm into a saved run (snapshot, roll back, cut the learning rate, log it).

The guard is framework-agnostic: it decides *when* to snapshot and *what* to restore from the
statuses it is shown; a *state* object does the capture and restore. :meth:`Guard.attach` builds
the torch one (:class:`streamtopo.integrations.torch.TorchState`: model, optimizer, LR scheduler,
GradScaler, RNG states, monitors); :meth:`Guard.attach_state` takes any object with the same four
methods (``capture``, ``restore``, ``save``/``load`` for ``dir=``, ``set_lr_scale``).

Policy (DESIGN.md §3b)
----------------------
* **Snapshots** every ``every`` steps (``step % every == 0``) while the status is HEALTHY; the
  newest ``keep`` are kept (in memory, or as files in ``dir``).
* **Alarm episode**: consecutive non-HEALTHY steps. Its first step is the *onset*.
* **Still failing?** When the state reaches ``act_on``, the training loss during the alarm
  (median of the episode's last 10 losses, from the status's loss monitor) is compared with
  its level before the episode (median of the last 20 losses of HEALTHY steps taken ``margin``
  or more steps before the onset, not counting a rolled-back trajectory's). At
  most ``still_failing`` times that level, the run has recovered on its own: it is left alone
  (a ``"declined"`` record; the alarm stays in the monitors' statuses) and checked again at
  every later step of the episode. Without a loss in the statuses, every alarm is acted on.
* **Rollback** when the state reaches ``act_on`` and the failure is still there: restore the
  newest snapshot taken at least ``margin`` steps before the onset (``snapshot.step + margin <
  onset``), drop the newer ones, multiply the learning rate by ``lr_factor`` for the next
  ``cooldown`` steps. The batches since the snapshot are not replayed: the caller's loader
  moves on (PaLM, 2022, skipped the batches around a spike the same way).
* **Escalation**: a new alarm while the cool-down runs means the rollback did not help: restore a
  snapshot older than the last one restored (the same one if none is older), with the learning
  rate multiplied by ``lr_factor ** level`` (``lr_factor`` again with ``escalate_lr=False``).
* **Stop**: an alarm after ``max_rollbacks`` rollbacks restores the last good snapshot (the
  newest one before the episode), so the model the user keeps is a healthy one, then sets
  :attr:`Guard.should_stop` and :attr:`Guard.stop_reason_` (both say what was restored).

Every intervention is an :class:`Intervention` in :attr:`Guard.interventions_`, a WARNING on the
``"streamtopo"`` logger and, with ``writer=``, a row of the run's ``interventions`` table.
Decisions depend only on the statuses and the step numbers, so ranks that see the same statuses
(the norms are reduced across ranks) take the same decision on the same step.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._guard_parts import (
    STATE_FORMAT,
    GuardState,
    Intervention,
    LossLevel,
    check_number,
    checked_state,
    loss_of,
    writable_dir,
)
from ._validation import check_choice, check_positive_int, describe
from .errors import InputError, InputTypeError
from .status import State

__all__ = ["Guard", "GuardState", "Intervention", "check_guard"]

logger = logging.getLogger("streamtopo")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    step: int
    data: Any  # the captured tree, or None when on disk
    path: Path | None


def _state_of(status: Any) -> State:
    raw = getattr(status, "state", status)
    try:
        return State(str(raw))
    except ValueError:
        raise InputError(
            "status must be a status with a .state (HEALTHY/WATCH/COLLAPSE) or a State, "
            f"got {describe(status)}"
        ) from None


class Guard:
    """Snapshot while healthy; on an alarm roll back, cut the learning rate, log it; bounded.

    Parameters
    ----------
    every : int
        Snapshot every ``every`` steps (``step % every == 0``) while the status is HEALTHY.
        Smaller = fewer steps redone after a rollback, more snapshot time. Default 50: a snapshot
        (model + Adam state + RNG + monitors) costs ~12 ms and ~12 MiB per million parameters on
        the bench machine, 0.7% of a 33 ms step at this interval (``benchmarks/bench_guard.py``);
        ``every=100`` doubled the steps redone per rollback on the digits sweep (150 vs 77).
    keep : int
        Snapshots kept (oldest dropped first). Each costs the model + optimizer state in host
        memory (or disk with ``dir``); ``keep`` bounds how far escalation can go back. Default 4.
    margin : int
        Restore a snapshot taken at least ``margin`` steps before the alarm's onset, because
        alarms come a few steps after the damage (the loss-rise rule waits 5 steps). Default 10.
    lr_factor : float in (0, 1]
        Learning-rate multiplier after a rollback (``lr_factor ** level`` when escalating);
        1.0 restores only. Default 0.1: on the digits sweep (seeds 0-2) 0.5 rescued 1 of 2
        LR-spike runs (the spike outlasts the cool-down and x0.5, x0.25, x0.125 of it still
        diverge), 0.1 rescued both.
    cooldown : int
        Steps the cut learning rate stays in force after a rollback; an alarm within them
        escalates. Default 100 (was 200: on the transformer calibration runs 200 steps of
        LR x0.1 were 29% of the run; 100 covers the 50-step LR spikes of both evaluations).
    max_rollbacks : int
        Rollbacks allowed in the run; the next alarm sets :attr:`should_stop`. Default 3.
    act_on : {"WATCH", "COLLAPSE"}
        State that triggers a rollback (once it has lasted ``patience`` steps). Default
        ``"COLLAPSE"``. On the digits calibration seeds 0-4 both saved every abrupt failure
        (10/10), but ``"WATCH"`` (patience 10) also acted on the layer rule's mild
        "layers diverging" WATCH episodes of an exploding layer that training absorbs (3 of 4
        such runs, which finish within 2% without a guard, rolled back three times and were
        stopped) and rolled a healthy run back once; ``"COLLAPSE"`` acted on neither. On fresh
        seeds 1000-1005: abrupt failures 12/12 saved either way, exploding layer 5/6 saved and
        none stopped (WATCH: 0/6, 5 stopped). Its cost: a slow weight shrink (``wd_ramp``) is
        no longer stopped early (WATCH stopped 6/6 while accuracy was within 2%; COLLAPSE
        stopped 2 late, 4 end near chance as without a guard). ``benchmarks/EVALUATION.md``.
    patience : int
        Consecutive steps at ``act_on`` or worse before acting. Default 1 (COLLAPSE is already
        debounced by the monitors). With ``act_on="WATCH"`` use 10: acting on the first WATCH
        step rolled healthy digits runs back (5 times in 2 runs).
    still_failing : float > 0 or None
        Act only if the training loss during the alarm (median of its last 10 steps) is above
        ``still_failing`` x its median over the last 20 healthy steps ``margin`` or more steps
        before the alarm (a rolled-back trajectory's losses left out); otherwise
        the run recovered by itself and is left alone (``"declined"``). None: act on every
        alarm. Needs the loss in the statuses (``tm.step(loss)``); without it every alarm is
        acted on. Default 1.1 (see ``benchmarks/EVALUATION.md``, "cost-aware policy").
    escalate_lr : bool
        A rollback during the cool-down of the previous one multiplies the learning rate by
        ``lr_factor ** level`` (True) or by ``lr_factor`` again (False). Default True.
    dir : str or Path, optional
        Keep snapshots as files there (``snapshot-<step>-rank<r>.pt``, loadable with
        ``torch.load(weights_only=True)``) instead of in memory. Must be writable (checked here).
    writer : callable, optional
        Receives one row per intervention (``Intervention.as_row()``), e.g. a ``RunWriter``.

    Attributes
    ----------
    interventions_ : list of Intervention
    rollbacks_ : int
    steps_redone_ : int
        Sum of ``steps_redone`` over the rollbacks.
    lr_scale_ : float
        Learning-rate multiplier in force (1.0 outside a cool-down).
    should_stop : bool
    stop_reason_ : str
        Why :attr:`should_stop` is set ("" otherwise).

    Notes
    -----
    Call :meth:`step` once per optimizer step, after the monitors (``tm.step(loss)``), with the
    caller's global step and the status. Without ``dir`` the snapshots live on the host (CPU).

    Examples
    --------
    The decisions need only statuses; a state object does the capture/restore (here a list):

    >>> class ListState:
    ...     rank = 0
    ...     def __init__(self): self.weights, self.scale = [1.0], 1.0
    ...     def capture(self): return list(self.weights)
    ...     def restore(self, snap): self.weights[:] = snap
    ...     def set_lr_scale(self, scale): self.scale = scale
    >>> state = ListState()
    >>> guard = Guard(every=2, margin=1, cooldown=3, act_on="WATCH").attach_state(state)
    >>> for t, s in enumerate(["HEALTHY"] * 5 + ["WATCH"]):
    ...     state.weights[0] = float(t)
    ...     action = guard.step(t, s)
    >>> action.action, action.restored_step, state.weights, state.scale
    ('rollback', 2, [2.0], 0.1)
    >>> [guard.step(t, "HEALTHY") for t in range(6, 10)][-1] is None, state.scale
    (True, 1.0)
    """

    def __init__(
        self,
        every: int = 50,
        keep: int = 4,
        margin: int = 10,
        lr_factor: float = 0.1,
        cooldown: int = 100,
        max_rollbacks: int = 3,
        *,
        act_on: str = "COLLAPSE",
        patience: int = 1,
        still_failing: float | None = 1.1,
        escalate_lr: bool = True,
        dir: str | os.PathLike[str] | None = None,
        writer: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.every = check_positive_int(every, "every")
        self.keep = check_positive_int(keep, "keep")
        self.margin = check_positive_int(margin, "margin", minimum=0)
        self.lr_factor = check_number(lr_factor, "lr_factor", 0.0, 1.0, "in (0, 1]")
        self.cooldown = check_positive_int(cooldown, "cooldown", minimum=0)
        self.max_rollbacks = check_positive_int(max_rollbacks, "max_rollbacks", minimum=0)
        self.act_on = State(check_choice(act_on, "act_on", ("WATCH", "COLLAPSE")))
        self.patience = check_positive_int(patience, "patience")
        self.still_failing = (
            None
            if still_failing is None
            else check_number(still_failing, "still_failing", 0.0, math.inf, "> 0 or None")
        )
        if not isinstance(escalate_lr, bool):
            raise InputTypeError(f"escalate_lr must be True or False, got {describe(escalate_lr)}")
        self.escalate_lr = escalate_lr
        if writer is not None and not callable(writer):
            raise InputTypeError(f"writer must be callable, got {describe(writer)}")
        self.writer = writer
        self.dir = None if dir is None else writable_dir(dir)
        self.state: GuardState | None = None
        self._reset()

    @property
    def config(self) -> dict[str, Any]:
        """The knobs, as given."""
        return {
            "every": self.every, "keep": self.keep, "margin": self.margin,
            "lr_factor": self.lr_factor, "cooldown": self.cooldown,
            "max_rollbacks": self.max_rollbacks, "act_on": self.act_on.value,
            "patience": self.patience, "still_failing": self.still_failing,
            "escalate_lr": self.escalate_lr,
            "dir": None if self.dir is None else str(self.dir),
        }  # fmt: skip

    def _reset(self) -> None:
        self._snapshots: list[_Snapshot] = []
        self._onset: int | None = None
        self._streak = 0  # consecutive steps at act_on or worse
        self._handled = False  # this episode already got a no_snapshot record
        self._declined = False  # this episode already got a declined record
        self._level_of_loss = LossLevel(lag=self.margin)
        self._calls = 0
        self._cool_until = -1
        self._level = 0
        self._last_restored: int | None = None
        self.interventions_: list[Intervention] = []
        self.rollbacks_ = 0
        self.steps_redone_ = 0
        self.lr_scale_ = 1.0
        self.should_stop = False
        self.stop_reason_ = ""

    # ------------------------------------------------------------------------------ wiring
    def attach(
        self,
        model: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        monitors: Sequence[Any] = (),
        *,
        rng: bool = True,
    ) -> Guard:
        """Guard a torch training loop; returns ``self``.

        Parameters
        ----------
        model : torch.nn.Module
            Restored in place (``load_state_dict``), so references to its parameters stay valid.
        optimizer : torch.optim.Optimizer
            Required; its parameters must be the model's.
        scheduler : LR scheduler, optional
            Restored with the rest (the schedule rewinds to the snapshot's step).
        scaler : torch.amp.GradScaler, optional
        monitors : sequence
            Objects with ``state_dict()``/``load_state_dict()`` restored with the model (pass the
            TrainingMonitor, so its baselines forget the failure).
        rng : bool
            Capture and restore the python, numpy, torch (and CUDA) RNG states.

        Bad input raises before anything is registered; see
        :class:`streamtopo.integrations.torch.TorchState` for the learning-rate mechanism.
        """
        from .integrations.torch import TorchState

        state = TorchState(model, optimizer, scheduler, scaler, monitors, rng=rng)
        if self.dir is not None:
            state.check_saveable()
        return self.attach_state(state)

    def attach_state(self, state: GuardState) -> Guard:
        """Guard any framework through a :class:`GuardState`-like object; returns ``self``."""
        on_disk = self.dir is not None or any(s.path for s in self._snapshots)
        need = ["capture", "restore", "set_lr_scale"] + (["save", "load"] if on_disk else [])
        missing = [m for m in need if not callable(getattr(state, m, None))]
        if missing:
            raise InputTypeError(
                f"state must have methods {need}, {describe(state)} lacks {missing}"
            )
        if self.state is not None:
            raise InputError("this Guard is already attached; make one Guard per training loop")
        self.state = state
        if self.lr_scale_ != 1.0:  # loaded from a checkpoint taken during a cool-down
            state.set_lr_scale(self.lr_scale_)
        return self

    # ------------------------------------------------------------------------------ per step
    def step(self, step: int | None = None, status: Any = None) -> Intervention | None:
        """Look at one step's status: snapshot, roll back or stop; returns what was done.

        Parameters
        ----------
        step : int, optional
            The caller's global step (default: calls of this method so far). It keeps counting
            after a rollback: the restored state continues with the next batch.
        status : TrainingStatus, State or str
            Only its ``state`` is read (and ``reason`` for the record).
        """
        if self.state is None:
            raise InputError(
                "Guard.step() before attach(): call guard.attach(model=..., optimizer=...)"
            )
        if status is None:
            raise InputError("Guard.step() needs the step's status (e.g. tm.step(loss))")
        state = _state_of(status)
        t = self._calls if step is None else check_positive_int(step, "step", minimum=0)
        if t < self._calls - 1:
            raise InputError(
                f"step must not decrease (the caller's global step), got {t} "
                f"after {self._calls - 1}"
            )
        self._calls = t + 1
        if t >= self._cool_until and (self._level or self.lr_scale_ != 1.0):
            if self.lr_scale_ != 1.0:
                self._set_scale(1.0)
            self._level = 0
        if self.should_stop:
            return None
        healthy = state is State.HEALTHY
        self._level_of_loss.observe(
            t, loss_of(status), healthy, not healthy and self._onset is None
        )
        if healthy:
            self._onset, self._handled, self._streak, self._declined = None, False, 0, False
            if t % self.every == 0 and (not self._snapshots or self._snapshots[-1].step < t):
                self._snapshot(t)
            return None
        if self._onset is None:
            self._onset = t
        self._streak = self._streak + 1 if state.severity >= self.act_on.severity else 0
        if self._streak < self.patience or self._handled:
            return None
        reason = str(getattr(status, "reason", "") or state.value)
        ratio = self._level_of_loss.ratio()
        if self.still_failing is not None and ratio is not None and ratio <= self.still_failing:
            if self._declined:  # said once per episode; checked again every step
                return None
            self._declined = True
            pre = self._level_of_loss.pre
            return self._record(
                t, "declined", -1, self._onset if self._onset is not None else t, reason,
                f"training loss back to x{ratio:.3f} of its level before the alarm "
                f"({pre:.4g}; still_failing={self.still_failing:g}): not rolled back", 0,
            )  # fmt: skip
        return self._act(t, reason)

    def _act(self, t: int, reason: str) -> Intervention:
        onset = self._onset if self._onset is not None else t
        if self.rollbacks_ >= self.max_rollbacks:
            return self._stop(t, onset, reason)
        escalate = self._level > 0 and t < self._cool_until
        if escalate and self._last_restored is not None:
            older = [s for s in self._snapshots if s.step < self._last_restored]
            same = [s for s in self._snapshots if s.step == self._last_restored]
            chosen = (older or same or [None])[-1]
        else:
            chosen = (self._predating(onset) or [None])[-1]
        if chosen is None:
            self._handled = True
            return self._record(
                t, "no_snapshot", -1, onset, reason,
                f"no snapshot taken {self.margin}+ steps before step {onset}; nothing restored", 0,
            )  # fmt: skip
        older_note = (
            " (no older snapshot held)" if escalate and chosen.step == self._last_restored else ""
        )
        self._restore(chosen)
        for s in self._snapshots:
            if s.step > chosen.step and s.path is not None:
                s.path.unlink(missing_ok=True)
        self._snapshots = [s for s in self._snapshots if s.step <= chosen.step]
        self._level = self._level + 1 if escalate else 1
        if self.cooldown:  # the next ``cooldown`` optimizer steps (t+1 .. t+cooldown) are cut
            self._set_scale(self.lr_factor ** (self._level if self.escalate_lr else 1))
        self._cool_until = t + self.cooldown
        self._last_restored = chosen.step
        self.rollbacks_ += 1
        self.steps_redone_ += t - chosen.step
        self._onset, self._handled, self._streak, self._declined = None, False, 0, False
        self._level_of_loss.rolled_back(chosen.step)
        policy = (
            f"restored step {chosen.step}{older_note}, lr x{self.lr_scale_:g} "
            f"for {self.cooldown} steps, batches since step {chosen.step} not replayed"
        )
        return self._record(t, "rollback", chosen.step, onset, reason, policy, t - chosen.step)

    def _stop(self, t: int, onset: int, reason: str) -> Intervention:
        """``max_rollbacks`` used up: restore the last good snapshot, then stop."""
        before = [s for s in self._snapshots if s.step < onset]
        chosen = (self._predating(onset) or before or [None])[-1]
        self.should_stop = True
        if chosen is not None:
            self._restore(chosen)
            kept = f"the model and training state are restored to step {chosen.step}"
            policy = f"restored step {chosen.step} (the last good snapshot), stop training"
        else:
            kept = "no snapshot predates the alarm, the model is left as it is"
            policy = "nothing restored (no snapshot before the alarm), stop training"
        self.stop_reason_ = (
            f"streamtopo guard: the run failed again at step {t} after "
            f"{self.rollbacks_} rollback(s) (max_rollbacks={self.max_rollbacks}); "
            f"stopping; {kept}. Last alarm: {reason}"
        )
        restored = -1 if chosen is None else chosen.step
        return self._record(t, "stop", restored, onset, reason, policy, 0)

    def _predating(self, onset: int) -> list[_Snapshot]:
        """The snapshots taken ``margin`` or more steps before ``onset``, oldest first."""
        return [s for s in self._snapshots if s.step + self.margin < onset]

    def _restore(self, snap: _Snapshot) -> None:
        self.state.restore(snap.data if snap.path is None else self.state.load(snap.path))

    def _record(
        self, t: int, action: str, restored: int, onset: int, reason: str, policy: str, redone: int
    ) -> Intervention:
        rec = Intervention(
            t, action, restored, onset, reason, policy, self.lr_scale_, self._level, redone
        )
        self.interventions_.append(rec)
        logger.warning("streamtopo guard: %s", rec.message)
        if action == "stop":
            logger.warning("%s", self.stop_reason_)
        if self.writer is not None:
            self.writer(rec.as_row())
        return rec

    def _set_scale(self, scale: float) -> None:
        self.state.set_lr_scale(scale)
        self.lr_scale_ = scale

    def _snapshot(self, t: int) -> None:
        data = self.state.capture()
        path = None
        if self.dir is not None:
            path = self.dir / f"snapshot-{t:09d}-rank{int(getattr(self.state, 'rank', 0))}.pt"
            self.state.save(data, path)
            data = None
        self._snapshots.append(_Snapshot(t, data, path))
        while len(self._snapshots) > self.keep:
            old = self._snapshots.pop(0)
            if old.path is not None:
                old.path.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The guard's bookkeeping in plain containers (loads with ``weights_only=True``).

        Counters (steps seen, rollbacks, steps redone), the escalation level and the end of the
        cool-down, the alarm episode in progress, the learning-rate multiplier in force, the
        stop flag, every intervention, and the snapshot index: snapshots on disk (``dir=``) by
        step and path. :meth:`TrainingMonitor.state_dict
        <streamtopo.integrations.training.TrainingMonitor.state_dict>` includes it.

        Snapshots held in memory (no ``dir``) are **not** included, only their steps
        (``"dropped"``): each is a copy of the model and optimizer state (~3x the weights with
        Adam), so ``keep`` of them would multiply a checkpoint's size by up to ~5. A guard
        loaded from such a state holds no snapshot until its next one, and an alarm before
        that is a ``"no_snapshot"`` record. Give the guard ``dir=`` for a resume that takes
        the same decisions as the run that was never interrupted. A snapshot file deleted
        since the checkpoint (the interrupted process went on and pruned it) is dropped by
        :meth:`load_state_dict` with a WARNING.

        Examples
        --------
        >>> guard = Guard(every=2)
        >>> state = guard.state_dict()
        >>> state["calls"], state["rollbacks"], state["snapshots"], state["lr_scale"]
        (0, 0, [], 1.0)
        >>> Guard(every=2).load_state_dict(state)
        """
        return {
            "format": STATE_FORMAT,
            "calls": self._calls,
            "onset": self._onset,
            "streak": self._streak,
            "handled": self._handled,
            "declined": self._declined,
            "loss_level": self._level_of_loss.state(),
            "cool_until": self._cool_until,
            "level": self._level,
            "last_restored": self._last_restored,
            "rollbacks": self.rollbacks_,
            "steps_redone": self.steps_redone_,
            "lr_scale": self.lr_scale_,
            "should_stop": self.should_stop,
            "stop_reason": self.stop_reason_,
            "interventions": [asdict(i) for i in self.interventions_],
            "snapshots": [{"step": s.step, "path": str(s.path)} for s in self._snapshots if s.path],
            "dropped": [s.step for s in self._snapshots if s.path is None],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s bookkeeping (all or nothing: bad input changes nothing).

        The knobs are this guard's (they may differ from the saved run's). A learning-rate cut
        in force at the checkpoint is put back on the attached optimizer (or on the one
        attached later).
        """
        new = checked_state(state)
        paths = [Path(p) for _, p in new["snapshots"]]
        if paths and self.state is not None and not callable(getattr(self.state, "load", None)):
            raise InputTypeError(
                f"state holds snapshots on disk; the attached {describe(self.state)} has no load()"
            )
        kept = []
        for (step, _), path in zip(new["snapshots"], paths, strict=True):
            if path.is_file():
                kept.append(_Snapshot(step, None, path))
            else:
                logger.warning("streamtopo guard: snapshot file %s is gone; dropped", path)
        self._snapshots = kept
        for key in ("calls", "onset", "streak", "handled", "declined", "cool_until", "level",
                    "last_restored"):  # fmt: skip
            setattr(self, f"_{key}", new[key])
        self._level_of_loss.load(new["loss_level"])
        self.rollbacks_, self.steps_redone_ = new["rollbacks"], new["steps_redone"]
        self.should_stop, self.stop_reason_ = new["should_stop"], new["stop_reason"]
        self.interventions_ = [Intervention(**d) for d in new["interventions"]]
        if self.state is not None and new["lr_scale"] != self.lr_scale_:
            self._set_scale(new["lr_scale"])
        self.lr_scale_ = new["lr_scale"]

    # ------------------------------------------------------------------------------ reading
    @property
    def snapshot_steps_(self) -> list[int]:
        """Steps of the snapshots held, oldest first."""
        return [s.step for s in self._snapshots]

    def summary(self) -> dict[str, Any]:
        """Counts and one line per intervention (for the run summary)."""
        return {
            "rollbacks": self.rollbacks_,
            "steps_redone": self.steps_redone_,
            "should_stop": self.should_stop,
            "stop_reason": self.stop_reason_,
            "interventions": [i.message for i in self.interventions_],
        }

    def close(self) -> None:
        """Stop any learning-rate cut in force (removes the optimizer hooks); idempotent."""
        if self.state is not None and self.lr_scale_ != 1.0:
            self._set_scale(1.0)
        close = getattr(self.state, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_guard(guard: Any) -> Guard | None:
    """Return ``guard`` if it is a :class:`Guard` or None; raise naming ``guard`` otherwise."""
    if guard is not None and not isinstance(guard, Guard):
        raise InputTypeError(f"guard must be a streamtopo.Guard or None, got {describe(guard)}")
    return guard
