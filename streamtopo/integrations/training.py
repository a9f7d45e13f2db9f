"""TrainingMonitor: one object that owns the collectors, the monitors and the run writer.

A training loop adds three lines::

    tm = TrainingMonitor(model, log_dir="runs")      # before the loop
    status = tm.step(loss)                            # after optimizer.step(), before zero_grad()
    if tm.should_stop: break
    tm.close()                                        # after the loop (or use ``with``)

Per monitored step (every ``every`` calls) the collectors' sums and the buffered losses travel
in one packed ``all_reduce`` (when distributed) and **one** device→host copy; between monitored
steps nothing is synchronised (losses stay on the device until the next monitored step). The
loss-rise rule still sees every step's loss, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..guard import check_guard
from ..monitors import LossRiseDetector
from . import torch as st_torch
from ._training_hooks import ModelHooks, layer_group_names
from ._training_log import RunLog, out_logit_row
from ._training_losses import LossFeed
from ._training_parts import (  # ATTN_MIN_HISTORY: imported from here by the benchmarks
    ATTN_MIN_HISTORY,  # noqa: F401
    LAYER_SIGNALS,
    MONITORS,
    SUMMARISED,
    at_step,
    check_feature_monitor,
    check_layer,
    check_options,
    check_state,
    check_step,
    layer_options,
    make_attention,
    make_layer,
    make_loss,
)
from ._training_status import TrainingStatus, combine, repeated
from .loggers import AlarmReporter

__all__ = ["TrainingMonitor", "TrainingStatus"]


TrainingStatus.__module__ = __name__  # public here (defined in _training_status.py)
_MONITOR_ATTRS = {name: f"{name}_monitor" for name in MONITORS}  # "layer": "layer_monitor"


class TrainingMonitor:
    """Watch a ``torch.nn.Module`` train: layer signals → LayerMonitor, loss → loss-rise alarm.

    Parameters
    ----------
    model : torch.nn.Module
        The model (for DDP, the wrapped ``.module`` or the wrapper; hooks go on submodules).
    log_dir : str or Path, optional
        Write a run directory there with :class:`streamtopo.io.journal.RunWriter` (rank 0 only
        unless ``log_all_ranks``).
    signals : sequence of {"act_norm", "grad_norm", "update_ratio", "attn_entropy", \
"attn_logit", "out_logit"}
        Per-layer signals. ``"act_norm"``, ``"grad_norm"`` and ``"update_ratio"`` (‖ΔW‖/‖W‖
        of each layer group per ``optimizer.step()``, needs ``optimizer``; read on a fixed
        sample of ≤ 1024 elements per parameter, see
        :class:`~streamtopo.integrations.torch.UpdateRatioCollector`) are one value per
        layer group and feed the LayerMonitor. ``"attn_entropy"`` and ``"attn_logit"`` (one
        value per attention module, see
        :class:`~streamtopo.integrations.torch.AttentionEntropyCollector` and
        :class:`~streamtopo.integrations.torch.AttentionLogitCollector`; one shared
        :class:`~streamtopo.integrations.torch.AttentionSampler`: first batch element, every
        head, at most 32 queries) feed a second LayerMonitor, reported as ``"attention"``,
        because its layers differ; a long WATCH of it is never escalated to COLLAPSE (attention
        entropy drifts in healthy training). ``"out_logit"`` (max |logit| and mean logit of the
        language-model head) is logged as a table of its own and not alarmed on. A signal
        this model cannot give (no attention module streamtopo can observe, no ``optimizer``
        for ``"update_ratio"``, no head) fails here, at construction.
    centroid : CentroidMonitor, optional
        Fed with penultimate features and the ``labels`` given to :meth:`step` (train split) or
        to :meth:`observe` (any split); checked by :meth:`check_centroid` (e.g. after an
        evaluation pass), or every ``centroid_every`` monitored steps if that is set.
    collapse : CollapseMonitor, optional
        Given the penultimate features (and labels) of every monitored step; it reads them
        (one host copy) only on its own ``check_every`` steps.
    every : int
        Monitor every k-th call of :meth:`step` (the first call is monitored). Every table and
        status stays on the training-step axis: with ``every=5`` the layer table holds steps
        0, 5, 10, ... and the loss table every step (the losses in between are buffered, and
        flushed by :meth:`close`).
    groups : "auto", regex or list of module names
        Layer groups (see :func:`~streamtopo.integrations.torch.layer_groups`).
    layer : dict or LayerMonitor, optional
        Keyword arguments for the LayerMonitor (an unknown one is refused here), or a ready one
        (its ``n_layers`` and ``signals`` must match).
    loss : bool, dict or LossRiseDetector
        The loss-rise alarm (on by default; used when :meth:`step` gets a loss).
    writer : callable, optional
        A row sink instead of ``log_dir`` (any callable; see the writer contract). Two
        TrainingMonitors on one RunWriter (train and eval) must not share a table: the second
        is refused unless named, ``layer={"name": "eval"}, loss={"name": "eval"}`` (tables
        ``layer.eval`` and ``loss.eval``; a CentroidMonitor or CollapseMonitor takes its own
        ``name=``).
    run_id : str, optional
        Run id for the RunWriter.
    resume : {"never", "allow", "must"}
        The RunWriter's run-id policy (with ``log_dir``): ``"allow"`` or ``"must"`` continue a
        run that holds rows. A monitor restored with :meth:`load_state_dict` before its first
        step (a run resumed from a checkpoint) continues the checkpoint's steps; rows the run
        recorded from there on are superseded (the RunWriter's ``rewind_to``; replay keeps the
        later copy).
    stop_on : sequence of str
        Monitors whose ``should_stop`` makes :attr:`should_stop` true.
    feature_warmup : int
        Calls of :meth:`step` before the centroid/collapse monitors are fed, so their baselines
        come from a formed representation rather than from the first steps of learning.
    feature_layer : str
        Where :class:`~streamtopo.integrations.torch.FeatureCollector` reads features.
    force_attention_weights : bool
        See :class:`~streamtopo.integrations.torch.AttentionEntropyCollector`.
    loggers : sequence, optional
        TensorBoard ``SummaryWriter``, W&B run, Lightning logger or any object with
        ``log(dict, step=)`` / ``add_scalar(tag, value, step)``: receive the
        ``streamtopo/...`` scalars of every monitored step (see
        :class:`~streamtopo.integrations.loggers.AlarmReporter`).
    on_alarm : callable, optional
        ``on_alarm(status)`` once per alarm episode start and when :attr:`should_stop` turns
        True. Alarms and stops are also logged on ``logging.getLogger("streamtopo")``.
    optimizer : torch.optim.Optimizer, optional
        Needed by ``"update_ratio"`` (hooks on its ``step()``) and by ``guard``.
    scheduler, scaler : optional
        The LR scheduler and ``GradScaler`` a guard restores with the model and optimizer.
    guard : streamtopo.Guard, optional
        Attached here (or later with :meth:`attach_guard`) to the model, optimizer, scheduler,
        scaler and this monitor (it logs its interventions into this monitor's run unless it
        has a writer). :meth:`step` shows it every status with the training step; a rollback
        restores the training state in place, this monitor's included, and is reported in
        ``status.intervention`` and :attr:`interventions_`. A rollback rewinds the monitors'
        own counters with their state, but not the training step that every status and logged
        row carries, so no table repeats a step.
    guard_on : sequence of str, optional
        Monitors whose alarms the guard acts on (default: ``stop_on``); the guard is shown
        their combined status.
    config : path or dict, optional
        A config written by ``streamtopo calibrate`` for the layer monitor (see
        ``LayerMonitor(config=...)``); its settings replace those in ``layer``.

    Attributes
    ----------
    values_ : dict
        Signal name → float32 array of the last monitored step's per-layer values.
    status_ : TrainingStatus or None
        The last status.
    host_copies_ : int
        Device→host copies made so far (one per monitored step, plus one per feature read,
        plus one at :meth:`close` for losses buffered after the last monitored step).

    Examples
    --------
    >>> import torch
    >>> from streamtopo.integrations.training import TrainingMonitor
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(4)])
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.01)
    >>> with TrainingMonitor(model, every=2) as tm:
    ...     for _ in range(6):
    ...         loss = model(torch.randn(16, 8)).square().mean()
    ...         loss.backward()
    ...         opt.step()
    ...         status = tm.step(loss)
    ...         opt.zero_grad()
    >>> status.step, status.state.value, tm.layer_monitor.n_layers, tm.host_copies_
    (5, 'HEALTHY', 4, 4)
    """

    def __init__(
        self,
        model: Any,
        log_dir: Any = None,
        signals: Sequence[str] = ("act_norm", "grad_norm"),
        centroid: Any = None,
        collapse: Any = None,
        every: int = 1,
        *,
        groups: str | Sequence[str] = "auto",
        layer: Mapping[str, Any] | Any = None,
        loss: bool | Mapping[str, Any] | LossRiseDetector = True,
        writer: Callable[[dict[str, Any]], Any] | None = None,
        run_id: str | None = None,
        resume: str = "never",
        log_all_ranks: bool = False,
        centroid_every: int | None = None,
        stop_on: Sequence[str] = ("layer", "attention", "loss", "centroid", "collapse"),
        feature_layer: str = "auto",
        feature_warmup: int = 0,
        force_attention_weights: bool = False,
        loggers: Sequence[Any] = (),
        on_alarm: Callable[[Any], Any] | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        guard: Any = None,
        guard_on: Sequence[str] | None = None,
        config: Any = None,
    ) -> None:
        self._closed = True  # until fully built: close() then only removes hooks
        self._hooks: ModelHooks | None = None
        self._log: RunLog | None = None
        self.guard = None
        guard = check_guard(guard)
        if guard is not None and guard.state is not None:
            raise InputError("guard is already attached; make one Guard per training loop")
        self.signals, self.every, self.feature_warmup, self.centroid_every, resume = check_options(
            signals, optimizer, every, feature_warmup, centroid_every, writer, log_dir, resume
        )
        self.stop_on = tuple(stop_on)
        self._reporter = AlarmReporter(loggers, on_alarm, should_stop=lambda: self.should_stop)
        self.guard_on = self.stop_on if guard_on is None else tuple(guard_on)
        for name, given in (("stop_on", self.stop_on), ("guard_on", self.guard_on)):
            if any(n not in MONITORS for n in given):
                raise InputError(f"{name} must name monitors from {MONITORS}, got {given!r}")
        check_layer(layer)
        check_feature_monitor(centroid, "centroid")
        check_feature_monitor(collapse, "collapse")
        self.rank = st_torch.rank()
        layer_sigs = tuple(s for s in self.signals if s in LAYER_SIGNALS)
        self.layer_names = layer_group_names(model, groups, layer_sigs)
        try:
            # the one place hooks go on the model (close() removes them)
            self._hooks = ModelHooks(
                model,
                self.signals,
                groups,
                feature_layer,
                force_attention_weights,
                features=centroid is not None or collapse is not None,
                features_always=centroid is not None,
                optimizer=optimizer,
            )
            self._log = RunLog(log_dir, writer, run_id, self.rank, log_all_ranks, resume)
            self.writer = self._log.writer
            self._sink = self._log.sink
            if config is not None and layer_sigs:  # the LayerMonitor reads and checks it
                layer = layer_options(layer, config)
            self._build_monitors(layer, layer_sigs, loss, centroid, collapse)
            self._losses = LossFeed(self.loss_monitor, self._sink)
            self._init_counters()
            self.model = model
            if guard is not None:
                self._attach_guard(guard, optimizer, scheduler, scaler)
        except BaseException:
            self._close_collectors()
            if self._log is not None:
                self._log.close()
            raise
        self._closed = False

    # ------------------------------------------------------------------------------ builders
    def _build_monitors(
        self, layer: Any, layer_sigs: tuple[str, ...], loss: Any, centroid: Any, collapse: Any
    ) -> None:
        writer = self._sink if self.writer is not None else None
        self.layer_monitor = (
            make_layer(layer, self.layer_names, layer_sigs, writer) if layer_sigs else None
        )
        self.attention_monitor = None
        if self._hooks.attn is not None:
            attention = self._log.attention if self.writer is not None else None
            self.attention_monitor = make_attention(self._hooks.attn, self.signals, attention)
        self.loss_monitor = make_loss(loss, writer)
        self.centroid_monitor = centroid
        self.collapse_monitor = collapse
        self._log.adopt([m for m in (centroid, collapse) if m is not None])

    def _init_counters(self) -> None:
        self._global = 0  # the next training step: never rewound by a guard's rollback
        self._started = False  # step() was called (load_state_dict then does not resume)
        self._calls = 0
        self._monitored = 0
        self.host_copies_ = 0
        self.values_: dict[str, Any] = {}
        self.status_: TrainingStatus | None = None
        self._last: dict[str, Any] = {}

    def attach_guard(
        self, guard: Any, optimizer: Any, scheduler: Any = None, scaler: Any = None
    ) -> None:
        """Attach ``guard`` (see ``guard`` above) when the optimizer exists only after this
        monitor (the Lightning and Hugging Face callbacks attach it when training starts).

        Parameters
        ----------
        guard : streamtopo.Guard
            Not attached elsewhere; this monitor must have none yet.
        optimizer, scheduler, scaler
            As for ``TrainingMonitor(optimizer=, scheduler=, scaler=)``.

        Bad input raises before anything is attached.

        Examples
        --------
        >>> import torch
        >>> from streamtopo import Guard
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        >>> tm = TrainingMonitor(model, signals=("grad_norm",))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)  # made after the monitor
        >>> tm.attach_guard(Guard(every=10), opt)
        >>> tm.guard.state.optimizer is opt
        True
        >>> tm.close()
        """
        if self._closed or self.guard is not None:
            raise InputError("this TrainingMonitor is closed or already has a guard")
        self._attach_guard(guard, optimizer, scheduler, scaler)

    def _attach_guard(self, guard: Any, optimizer: Any, scheduler: Any, scaler: Any) -> None:
        if check_guard(guard) is None:
            raise InputTypeError("guard must be a streamtopo.Guard, got None")
        if guard.state is not None:
            raise InputError("guard is already attached; make one Guard per training loop")
        # a snapshot holds the monitors' state, not the guard's (a rollback must not rewind the
        # guard's own bookkeeping)
        view = SimpleNamespace(
            state_dict=lambda: self.state_dict(guard=False), load_state_dict=self.load_state_dict
        )
        guard.attach(self.model, optimizer, scheduler, scaler, monitors=[view])
        if guard.writer is None and self.writer is not None:
            guard.writer = self._sink
        self.guard = guard

    # ------------------------------------------------------------------------------ per step
    def capture_grads(self) -> None:
        """Read the gradients now (on device, no sync) for the coming :meth:`step`.

        For frameworks that clear gradients before the step ends (HF Trainer, Lightning): call
        it where gradients are final (after unscaling/clipping), then :meth:`step` later.
        """
        if self._calls % self.every == 0:
            self._hooks.capture_grads()

    def step(
        self, loss: Any = None, labels: Any = None, *, step: int | None = None
    ) -> TrainingStatus:
        """Advance one training step; returns the combined :class:`TrainingStatus`.

        Call after ``optimizer.step()`` and before ``optimizer.zero_grad()`` (or use
        :meth:`capture_grads`). ``loss`` (a tensor or number) feeds the loss-rise alarm;
        ``labels`` of the batch feed the centroid/collapse monitors with the penultimate
        features of the last forward pass. ``step`` is the trainer's global step (strictly
        increasing; default: the last step + 1, from 0): the step of the status and of every
        row this call writes (given on the first call of a resumed run, rows the run recorded
        from that step on are superseded, as after :meth:`load_state_dict`). A layer with no
        value this step (no gradient, or no forward pass since the last monitored step) is
        reported absent, not collapsed.
        """
        if self._closed:
            raise InputError("this TrainingMonitor is closed")
        # validate everything first, then mutate: a step() that raises changes nothing
        t = self._calls
        g = self._global if step is None else check_step(step, self._global)
        monitored = t % self.every == 0
        item = self._losses.prepare(loss)
        y = None
        if monitored:
            y = self._check_labels(labels, t)
        if not self._started and step is not None:
            self._rewind_writer(g)  # a resumed run's first step: its rows supersede from g on
        if item is not None:
            self._losses.append(item, g)
        self._global = g + 1
        self._calls += 1
        self._started = True
        self._sink.at = g
        if not monitored:
            self._hooks.arm(self._calls % self.every == 0)
            return self._guarded(self._repeat(g))
        extra = self._losses.buffer.take_items()
        values = self._hooks.collect(extra)
        self.host_copies_ += 1
        statuses: dict[str, Any] = {}
        if self.loss_monitor is not None and extra is not None:
            self._last["loss"] = self._losses.check(values[-1])
            self._sink.at = g
        by_signal = self._hooks.by_signal(values)
        self.values_ = by_signal
        # a value a collector did not observe (no gradient: frozen layer, no backward) is
        # absent, not NaN: the monitors leave it out and name it, never a collapse
        missing = self._hooks.missing()
        for name, mon in (("layer", self.layer_monitor), ("attention", self.attention_monitor)):
            if mon is not None:
                flags = [missing[s] for s in mon.signals]
                statuses[name] = mon.check(
                    {s: by_signal[s] for s in mon.signals},
                    # nothing absent (the usual step): no mask, the monitor's fast path
                    missing=np.stack(flags) if any(f.any() for f in flags) else None,
                )
        out_logit = self._hooks.out_logit
        if out_logit is not None and self.writer is not None:
            # output-logit statistics: logged (a table of their own), not alarmed on
            self._sink(out_logit_row(g, out_logit.layer_names, by_signal["out_logit"]))
        features = self._hooks.features
        if features is not None and features.features_ is not None and t >= self.feature_warmup:
            statuses.update(self._feed_features(y))
        self._monitored += 1
        self._last.update({name: at_step(st, g) for name, st in statuses.items()})
        self._hooks.arm(self._calls % self.every == 0)
        status = combine(self._last, g, evaluated=True)
        status = self._guarded(status)
        self.status_ = status
        self._reporter.report(status)
        return status

    def _guarded(self, status: TrainingStatus) -> TrainingStatus:
        """Show the guard the status (it may roll everything back, this monitor included)."""
        if self.guard is None:
            return status
        seen = status
        if set(self.guard_on) != set(MONITORS):
            seen = combine(self._last, status.step, status.evaluated, names=self.guard_on)
        rec = self.guard.step(status.step, seen)  # the training step: a restore keeps it
        if rec is not None:
            status = replace(status, intervention=rec)
            self.status_ = status
        return status

    def observe(self, labels: Any, split: str = "test") -> None:
        """Give the CentroidMonitor the last forward pass's features with their labels.

        Run ``model(x)`` (e.g. in eval mode under ``torch.no_grad()``), then
        ``observe(y, "test")``.
        """
        if self.centroid_monitor is None or self._hooks.features is None:
            raise InputError("observe() needs a centroid monitor (TrainingMonitor(centroid=...))")
        feats = self._hooks.features.take()
        self.host_copies_ += 1
        self.centroid_monitor.update(feats, st_torch.labels_to_numpy(labels), split=split)

    def check_centroid(self, **kwargs: Any) -> Any:
        """Run ``centroid.check(**kwargs)`` now (e.g. at an epoch's end); keeps its status."""
        if self.centroid_monitor is None:
            raise InputError("no centroid monitor (TrainingMonitor(centroid=...))")
        at = max(self._global - 1, 0)  # the last training step
        self._sink.at = at
        status = at_step(self.centroid_monitor.check(**kwargs), at)
        self._last["centroid"] = status
        return status

    def _check_labels(self, labels: Any, t: int) -> Any:
        """The labels as a host int array when the feature monitors will read them (else None);
        raises on labels that do not fit the last forward pass's features."""
        if t < self.feature_warmup:
            return None
        n = None if self.centroid_monitor is None else self.centroid_monitor.n_classes
        return self._hooks.labels_for(labels, n)

    def _feed_features(self, y: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.centroid_monitor is not None and y is not None:
            self.centroid_monitor.update(self._hooks.features.take(), y, split="train")
            self.host_copies_ += 1
            every = self.centroid_every
            if every is not None and self._monitored % every == every - 1:
                out["centroid"] = self.centroid_monitor.check()
        if self.collapse_monitor is not None:
            out["collapse"] = self.collapse_monitor.check(self._hooks.features.features_, y)
        return out

    def _repeat(self, t: int) -> TrainingStatus:
        if self.status_ is None:  # after a rollback or load_state_dict: the monitors' last
            return replace(combine(self._last, t, evaluated=False), intervention=None)
        return repeated(self.status_, t)

    # ------------------------------------------------------------------------------ state
    @property
    def monitors(self) -> dict[str, Any]:
        """The active monitors by name."""
        found = {name: getattr(self, attr) for name, attr in _MONITOR_ATTRS.items()}
        return {k: v for k, v in found.items() if v is not None}

    @property
    def should_stop(self) -> bool:
        """True when a monitor named in ``stop_on`` says stop, or the guard does (its
        rollbacks are used up)."""
        if self.guard is not None and self.guard.should_stop:
            return True
        for name in self.stop_on:  # read on every monitored step: no dict built
            m = getattr(self, _MONITOR_ATTRS[name])
            if m is not None and m.should_stop:
                return True
        return False

    @property
    def interventions_(self) -> list[Any]:
        """The guard's interventions so far (empty without a guard)."""
        return [] if self.guard is None else list(self.guard.interventions_)

    @property
    def step_(self) -> int:
        """Calls of :meth:`step` so far."""
        return self._calls

    @property
    def last_status_(self) -> TrainingStatus | None:
        """The status of the last :meth:`step` (the same as ``status_``)."""
        return self.status_

    def summary(self) -> dict[str, Any]:
        """The ``summary()`` of the layer, attention and centroid monitors by name (and the
        guard's under ``"guard"``)."""
        out = {name: m.summary() for name, m in self.monitors.items() if name in SUMMARISED}
        if self.guard is not None:
            out["guard"] = self.guard.summary()
        return out

    def reset(self) -> None:
        """Forget every step (monitors reset, collector sums and buffered losses dropped)."""
        for m in self.monitors.values():
            m.reset()
        self._hooks.reset()
        self._losses.clear()
        self._calls = self._monitored = self._global = 0
        self.status_ = None
        self._last = {}
        self._hooks.arm(True, force=True)

    def state_dict(self, *, guard: bool = True) -> dict[str, Any]:
        """Counters, every monitor's ``state_dict()`` (JSON + numpy arrays, no pickle) and,
        with a guard (unless ``guard=False``), the guard's under ``"guard"``
        (:meth:`streamtopo.Guard.state_dict`: its snapshots on disk by path, not in memory).

        Losses buffered between monitored steps are not saved: save right after a monitored
        step (``status.evaluated``) to lose nothing.
        """
        out = {
            "calls": self._calls,
            "monitored": self._monitored,
            "every": self.every,
            "step": self._global,
            "status_steps": {name: st.step for name, st in self._last.items()},
            "monitors": {name: m.state_dict() for name, m in self.monitors.items()},
        }
        if guard and self.guard is not None:
            out["guard"] = self.guard.state_dict()
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (same monitors and ``every``)."""
        calls, monitored, step, stamps = check_state(
            state, self.every, self.monitors, has_guard=self.guard is not None
        )
        backup = {name: m.state_dict() for name, m in self.monitors.items()}
        try:
            for name, m in self.monitors.items():
                m.load_state_dict(state["monitors"][name])
            if not self._started:  # a resumed run: its steps continue the checkpoint's
                self._rewind_writer(step)
            if "guard" in state:  # last: it checks everything before it changes anything
                self.guard.load_state_dict(state["guard"])
        except BaseException:
            for name, m in self.monitors.items():  # all or nothing
                m.load_state_dict(backup[name])
            raise
        self._calls, self._monitored = calls, monitored
        # a resumed run continues the checkpoint's steps; a guard's restore never goes back
        self._global = step if not self._started else max(self._global, step)
        self._losses.clear()
        self.status_ = None
        # each monitor's last status is part of its state: the combined status continues
        self._last = {
            name: at_step(m.last_status_, stamps.get(name, m.last_status_.step))
            for name, m in self.monitors.items()
            if m.last_status_ is not None
        }
        self._hooks.arm(self._calls % self.every == 0, force=True)

    def _rewind_writer(self, step: int) -> None:
        """Rows from ``step`` on supersede those a resumed run recorded (see RunLog.rewind)."""
        try:
            self._log.rewind(step)
        finally:
            self.writer = self._log.writer

    # ------------------------------------------------------------------------------ teardown
    def _close_collectors(self) -> None:
        if self._hooks is not None:
            self._hooks.close()

    def close(self) -> None:
        """Check the losses buffered since the last monitored step, remove every hook and
        close the run writer this monitor opened (idempotent)."""
        if self._closed:
            self._close_collectors()
            return
        self._closed = True
        try:
            self._flush_losses()
            self._sink.flush()  # acknowledgements after the last check
        finally:
            self._close_collectors()
            self._reporter.close()
            if self.guard is not None:
                self.guard.close()
            self._log.close()

    def _flush_losses(self) -> None:
        """The loss monitor checks the losses of the steps after the last monitored one (one
        host copy, averaged across ranks as at a monitored step); the status is reported."""
        extra = self._losses.buffer.take()
        if extra is None:
            return
        self.host_copies_ += 1
        self._last["loss"] = self._losses.check(st_torch.collect([], extra=extra)[-1])
        self.status_ = combine(self._last, self._global - 1, evaluated=True)
        self._reporter.report(self.status_)

    @property
    def run_dir_(self) -> Any:
        """The run directory written by the RunWriter (None without ``log_dir``)."""
        w = self._log.owned
        return None if w is None else w.run_dir

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # training failed: no collective for its buffered losses
            self._losses.buffer.clear()
        self.close()
