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
from dataclasses import dataclass, fields, replace
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from .._validation import check_choice, check_positive_int, describe
from ..alarms import State
from ..errors import InputError, InputTypeError
from ..guard import check_guard
from ..monitors import LossRiseDetector, LossStatus, MonitorStatus
from . import torch as st_torch
from ._training_parts import (
    ATTN_ESCALATE_AFTER,
    ATTN_SIGNALS,
    LAYER_SIGNALS,
    MONITORS,
    RESUME,
    SUMMARISED,
    RowSink,
    add_collectors,
    at_step,
    attention_row,
    check_feature_monitor,
    check_layer,
    check_signals,
    check_step,
    layer_group_names,
    make_layer,
    make_loss,
    missing_of,
    out_logit_row,
    reopen_writer,
    state_steps,
)
from .loggers import AlarmReporter

# Accepted values before the attention monitor's CUSUM runs, per rule (the layer monitor's: 40).
# rule="cusum": 100. A block's max attention logit moves by x2-x3 against the others during
# the LR warm-up of a healthy transformer (heads forming), which the CUSUM took for changes;
# on the transformer calibration runs 100 cut the attention monitor's false alarms from 0.64
# to 0.45 per 1k healthy steps and its share of healthy steps in alarm from 6.6% to 2.6%, with
# the same detections of TrainingMonitor (benchmarks/evaluation/CHANGEPOINT.md).
# rule="streak" (with its early change detector): 200, the streak rule's baseline, so while it
# calibrates only the early rule's jump and non-finite checks watch attention. With the CUSUM
# from value 100, TrainingMonitor's false alarms on the 12 extra transformer calibration runs
# rose from 0.72 to 1.30 per 1k healthy steps; with 200 they stay at 0.72 and the early LR
# spike of the calibration set is still caught (CHANGEPOINT.md, "Early rule").
ATTN_MIN_HISTORY = {"cusum": 100, "streak": 200}

__all__ = ["TrainingMonitor", "TrainingStatus"]


@dataclass(frozen=True, slots=True)
class TrainingStatus(MonitorStatus):
    """Combined status of one :meth:`TrainingMonitor.step`.

    ``state`` is the most severe state among the monitors; ``fired`` names the monitors not
    HEALTHY (``"layer"``, ``"attention"``, ``"loss"``, ``"centroid"``, ``"collapse"``), and
    ``reason`` joins their reasons (and, for a HEALTHY layer monitor with absent layers, which
    layers had no value this step). The monitors' own statuses are kept in the other fields
    (None when that monitor is off or has not run yet). ``evaluated`` is False on the calls
    between monitored steps, which repeat the last monitored status. ``step`` is the training
    step (the ``step=`` given to :meth:`TrainingMonitor.step`, by default counted from 0; never
    rewound by a guard's rollback), and the monitors' statuses carry the training step they
    were made at, as every table of the run does; ``intervention`` is what the guard did at
    this step (a :class:`~streamtopo.guard.Intervention`), or None.
    """

    kind: ClassVar[str] = "training"

    fired: tuple[str, ...] = ()
    layer: MonitorStatus | None = None
    attention: MonitorStatus | None = None
    loss: LossStatus | None = None
    centroid: MonitorStatus | None = None
    collapse: MonitorStatus | None = None
    intervention: Any = None


_STATUS_FIELDS = tuple(f.name for f in fields(TrainingStatus))
# the slots' own setters: a frozen dataclass refuses setattr, its slot descriptors do not
_SETTERS = tuple(getattr(TrainingStatus, name).__set__ for name in _STATUS_FIELDS)
_REPEATED = {"evaluated": False, "intervention": None}


def _repeated(status: TrainingStatus, t: int) -> TrainingStatus:
    """``replace(status, step=t, evaluated=False, intervention=None)`` without ``replace``'s
    per-call introspection: the status of every call between monitored steps."""
    new = object.__new__(TrainingStatus)
    for name, set_ in zip(_STATUS_FIELDS, _SETTERS, strict=True):
        set_(new, t if name == "step" else _REPEATED.get(name, getattr(status, name)))
    return new


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
        self._collectors: list[Any] = []
        self._features: Any = None
        self._owned_writer: Any = None
        self.guard = None
        guard = check_guard(guard)
        if guard is not None and guard.state is not None:
            raise InputError("guard is already attached; make one Guard per training loop")
        self._attn: Any = None
        self._out_logit: Any = None
        self.signals = check_signals(signals)
        if "update_ratio" in self.signals and optimizer is None:
            raise InputError(
                "signals includes 'update_ratio' but optimizer is None; pass "
                "TrainingMonitor(..., optimizer=opt) so its step() can be observed"
            )
        self.every = check_positive_int(every, "every")
        self.feature_warmup = check_positive_int(feature_warmup, "feature_warmup", minimum=0)
        self.centroid_every = (
            None if centroid_every is None else check_positive_int(centroid_every, "centroid_every")
        )
        if writer is not None and not callable(writer):
            raise InputTypeError(f"writer must be callable, got {describe(writer)}")
        if writer is not None and log_dir is not None:
            raise InputError("give log_dir or writer, not both")
        resume = check_choice(resume, "resume", RESUME)
        if resume != "never" and log_dir is None:
            raise InputError(f"resume={resume!r} needs log_dir (it is the RunWriter's policy)")
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
            self._register_hooks(
                model,
                groups,
                feature_layer,
                force_attention_weights,
                features=centroid is not None or collapse is not None,
                optimizer=optimizer,
            )
            self.writer = self._build_writer(log_dir, writer, run_id, log_all_ranks, resume)
            self._sink = RowSink(self.writer)
            if config is not None and layer_sigs:  # the LayerMonitor reads and checks it
                if isinstance(layer, Mapping) and "config" in layer:
                    raise InputError("pass config= or layer={'config': ...}, not both; got both")
                if layer is not None and not isinstance(layer, Mapping):
                    raise InputError(
                        "config= configures the LayerMonitor built here; got a ready one"
                    )
                layer = {**(layer or {}), "config": config}
            self._build_monitors(layer, layer_sigs, loss, centroid, collapse)
            self._losses = st_torch.LossBuffer()
            self._init_counters()
            self.model = model
            if guard is not None:
                self._attach_guard(guard, optimizer, scheduler, scaler)
        except BaseException:
            self._close_collectors()
            if self._owned_writer is not None:
                self._owned_writer.close()
            raise
        self._closed = False

    # ------------------------------------------------------------------------------ builders
    def _register_hooks(
        self,
        model: Any,
        groups: Any,
        feature_layer: str,
        force_weights: bool,
        *,
        features: bool,
        optimizer: Any,
    ) -> None:
        """The one place hooks go on the model (close() removes them): one collector per
        signal, and the feature reader when a centroid or collapse monitor needs features."""
        self._layer_collectors = add_collectors(
            self._collectors, model, self.signals, groups, force_weights, optimizer
        )
        for c in self._collectors:
            if c.signal in ATTN_SIGNALS and self._attn is None:
                self._attn = c  # the first attention collector: its layers are the sites
            if c.signal == "out_logit":
                self._out_logit = c
        if features:
            self._features = st_torch.FeatureCollector(model, feature_layer)

    def _build_writer(
        self,
        log_dir: Any,
        writer: Callable[[dict[str, Any]], Any] | None,
        run_id: Any,
        all_ranks: bool,
        resume: str,
    ) -> Callable[[dict[str, Any]], Any] | None:
        """The row sink: the given writer, or a RunWriter on ``log_dir`` (rank 0 unless
        ``log_all_ranks``) that this monitor owns and closes."""
        if log_dir is not None and (self.rank == 0 or all_ranks):
            from ..io.journal import RunWriter

            self._owned_writer = RunWriter(log_dir, run_id=run_id, rank=self.rank, resume=resume)
            return self._owned_writer
        return writer

    def _build_monitors(
        self, layer: Any, layer_sigs: tuple[str, ...], loss: Any, centroid: Any, collapse: Any
    ) -> None:
        writer = self._sink if self.writer is not None else None
        self.layer_monitor = (
            make_layer(layer, self.layer_names, layer_sigs, writer) if layer_sigs else None
        )
        self.attention_monitor = self._make_attention() if self._attn is not None else None
        self.loss_monitor = make_loss(loss, writer)
        self.centroid_monitor = centroid
        self.collapse_monitor = collapse
        # log them into the same run unless they have a writer (both claimed before either is
        # changed: a refused claim leaves the given monitors as they were)
        fed = [m for m in (centroid, collapse) if m is not None and m.writer is None]
        for m in fed if writer is not None else ():
            writer.claim_table(m.table_, m)
        for m in fed if writer is not None else ():
            m.writer = writer

    def _make_attention(self) -> Any:
        from ..monitors.layer import DEFAULT_RULE, LayerMonitor

        return LayerMonitor(
            self._attn.n_layers,
            tuple(s for s in self.signals if s in ATTN_SIGNALS),
            layer_names=self._attn.layer_names,
            escalate_after=ATTN_ESCALATE_AFTER,  # drifts stay WATCH (see its definition)
            min_history=ATTN_MIN_HISTORY[DEFAULT_RULE],
            writer=self._attention_row if self.writer is not None else None,
        )

    def _init_counters(self) -> None:
        self._global = 0  # the next training step: never rewound by a guard's rollback
        self._loss_steps: list[int] = []  # training steps of the buffered losses
        self._started = False  # step() was called (load_state_dict then does not resume)
        self._calls = 0
        self._monitored = 0
        self._armed = True  # the collectors' hooks are on (as built)
        self.host_copies_ = 0
        self.values_: dict[str, Any] = {}
        self.status_: TrainingStatus | None = None
        self._last: dict[str, Any] = {}

    def _attention_row(self, row: dict[str, Any]) -> None:
        if row.get("monitor") == "events":  # an acknowledge(): of the attention table
            self._sink({**row, "table": "attention"})
            return
        self._sink(attention_row(row))

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
            for c in self._layer_collectors:
                if isinstance(c, st_torch.GradNormCollector):
                    c.capture()

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
        item = None
        if loss is not None and self.loss_monitor is not None:
            item = self._losses.prepare(loss)
        y = None
        if monitored:
            y = self._check_labels(labels, t)
        if not self._started and step is not None:
            self._rewind_writer(g)  # a resumed run's first step: its rows supersede from g on
        if item is not None:
            self._losses.append(item)
            self._loss_steps.append(g)
        self._global = g + 1
        self._calls += 1
        self._started = True
        self._sink.at = g
        if not monitored:
            self._arm(self._calls % self.every == 0)
            return self._guarded(self._repeat(g))
        extra = self._losses.take_items()
        values = st_torch.collect(self._collectors, extra=extra)
        self.host_copies_ += 1
        statuses: dict[str, Any] = {}
        if self.loss_monitor is not None and extra is not None:
            self._last["loss"] = self._check_losses(values[-1])
            self._sink.at = g
        by_signal = {c.signal: v for c, v in zip(self._collectors, values, strict=False)}
        self.values_ = by_signal
        # a value a collector did not observe (no gradient: frozen layer, no backward) is
        # absent, not NaN: the monitors leave it out and name it, never a collapse
        missing = {c.signal: missing_of(c) for c in self._collectors}
        for name, mon in (("layer", self.layer_monitor), ("attention", self.attention_monitor)):
            if mon is not None:
                flags = [missing[s] for s in mon.signals]
                statuses[name] = mon.check(
                    {s: by_signal[s] for s in mon.signals},
                    # nothing absent (the usual step): no mask, the monitor's fast path
                    missing=np.stack(flags) if any(f.any() for f in flags) else None,
                )
        if self._out_logit is not None and self.writer is not None:
            # output-logit statistics: logged (a table of their own), not alarmed on
            self._sink(out_logit_row(g, self._out_logit.layer_names, by_signal["out_logit"]))
        if (
            self._features is not None
            and self._features.features_ is not None
            and t >= self.feature_warmup
        ):
            statuses.update(self._feed_features(y))
        self._monitored += 1
        self._last.update({name: at_step(st, g) for name, st in statuses.items()})
        self._arm(self._calls % self.every == 0)
        status = self._combine(g, evaluated=True)
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
            seen = self._combine(status.step, status.evaluated, names=self.guard_on)
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
        if self.centroid_monitor is None or self._features is None:
            raise InputError("observe() needs a centroid monitor (TrainingMonitor(centroid=...))")
        feats = self._features.take()
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

    def _check_losses(self, losses: Any) -> LossStatus:
        """Feed the buffered losses (host values) to the loss monitor, each at its step."""
        status, steps, self._loss_steps = None, self._loss_steps, []
        for v, s in zip(losses, steps, strict=True):
            self._sink.at = s
            status = at_step(self.loss_monitor.check(float(v)), s)
        return status

    def _check_labels(self, labels: Any, t: int) -> Any:
        """The labels as a host int array when the feature monitors will read them (else None);
        raises on labels that do not fit the last forward pass's features."""
        if labels is None or self._features is None or t < self.feature_warmup:
            return None
        feats = self._features.features_
        if feats is None:
            return None
        try:
            y = st_torch.labels_to_numpy(labels)
        except (TypeError, ValueError) as exc:
            raise InputTypeError(f"labels must be class labels, got {describe(labels)}") from exc
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(feats):
            raise InputError(
                f"labels must be a 1-D integer array of {len(feats)} labels (one per row of the "
                f"last forward pass's features), got {describe(labels)}"
            )
        n = None if self.centroid_monitor is None else self.centroid_monitor.n_classes
        if n is not None and y.size and (y.min() < 0 or y.max() >= n):
            bad = y[(y < 0) | (y >= n)]
            raise InputError(
                f"labels must be in [0, n_classes={n}) (the centroid monitor's classes), got "
                f"{bad.size} label(s) out of range (e.g. {int(bad[0])})"
            )
        return y

    def _feed_features(self, y: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.centroid_monitor is not None and y is not None:
            self.centroid_monitor.update(self._features.take(), y, split="train")
            self.host_copies_ += 1
            every = self.centroid_every
            if every is not None and self._monitored % every == every - 1:
                out["centroid"] = self.centroid_monitor.check()
        if self.collapse_monitor is not None:
            out["collapse"] = self.collapse_monitor.check(self._features.features_, y)
        return out

    def _arm(self, on: bool, *, force: bool = False) -> None:
        """Switch the collectors' hooks on (the next call is monitored) or off; a no-op when
        they already are (the calls between monitored steps)."""
        if on == self._armed and not force:
            return
        self._armed = on
        for c in self._collectors:
            c.enabled = on
        if self._features is not None:
            self._features.enabled = on or self.centroid_monitor is not None

    def _repeat(self, t: int) -> TrainingStatus:
        if self.status_ is None:  # after a rollback or load_state_dict: the monitors' last
            return replace(self._combine(t, evaluated=False), intervention=None)
        return _repeated(self.status_, t)

    def _combine(self, t: int, evaluated: bool, names: Sequence[str] = MONITORS) -> TrainingStatus:
        fired, reasons, worst = [], [], State.HEALTHY
        for name in MONITORS:
            st = self._last.get(name) if name in names else None
            if st is None:
                continue
            state = State(st.state)
            if state.severity > worst.severity:
                worst = state
            if state is not State.HEALTHY:
                fired.append(name)
                reasons.append(f"{name}: {st.reason or state.value}")
            elif getattr(st, "absent", ()):  # healthy, but say which layers were not measured
                reasons.append(f"{name}: {st.reason}")
        return TrainingStatus(
            t,
            worst,
            "; ".join(reasons),
            fired=tuple(fired),
            evaluated=evaluated,
            **{name: self._last.get(name) for name in MONITORS},
        )

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
        for c in self._collectors:
            c.reset()
        self._losses.clear()
        self._loss_steps.clear()
        self._calls = self._monitored = self._global = 0
        self.status_ = None
        self._last = {}
        self._arm(True, force=True)

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
        if not isinstance(state, Mapping) or state.get("every") != self.every:
            raise InputError(
                f"state has every={state.get('every') if isinstance(state, Mapping) else None}, "
                f"this monitor has every={self.every}"
            )
        names = set(state.get("monitors", {}))
        if names != set(self.monitors):
            raise InputError(
                f"state has monitors {sorted(names)}, "
                f"this TrainingMonitor has {sorted(self.monitors)}"
            )
        calls, monitored = state.get("calls"), state.get("monitored")
        for key, v in (("calls", calls), ("monitored", monitored)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"state[{key!r}] must be an int >= 0, got {describe(v)}")
        step, stamps = state_steps(state, calls)
        if "guard" in state and self.guard is None:
            raise InputError("state has a guard's state, this TrainingMonitor has no guard")
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
        self._loss_steps.clear()
        self.status_ = None
        # each monitor's last status is part of its state: the combined status continues
        self._last = {
            name: at_step(m.last_status_, stamps.get(name, m.last_status_.step))
            for name, m in self.monitors.items()
            if m.last_status_ is not None
        }
        self._arm(self._calls % self.every == 0, force=True)

    def _rewind_writer(self, step: int) -> None:
        """Rows from ``step`` on supersede those a resumed run recorded after its checkpoint:
        the owned RunWriter, unused so far, reopens with ``rewind_to=step``."""
        old = self._owned_writer
        if old is None or old.resume == "never" or old.rewind_to == step or self._sink.written:
            return
        try:
            new = reopen_writer(old, step)
        except BaseException:
            self._owned_writer = self.writer = self._sink.writer = reopen_writer(old, None)
            raise
        self._owned_writer = self.writer = self._sink.writer = new

    # ------------------------------------------------------------------------------ teardown
    def _close_collectors(self) -> None:
        for c in self._collectors:
            c.close()
        if self._features is not None:
            self._features.close()

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
            if self._owned_writer is not None:
                self._owned_writer.close()

    def _flush_losses(self) -> None:
        """The loss monitor checks the losses of the steps after the last monitored one (one
        host copy, averaged across ranks as at a monitored step); the status is reported."""
        extra = self._losses.take()
        if extra is None:
            return
        self.host_copies_ += 1
        self._last["loss"] = self._check_losses(st_torch.collect([], extra=extra)[-1])
        self.status_ = self._combine(self._global - 1, evaluated=True)
        self._reporter.report(self.status_)

    @property
    def run_dir_(self) -> Any:
        """The run directory written by the RunWriter (None without ``log_dir``)."""
        w = self._owned_writer
        return None if w is None else w.run_dir

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # training failed: no collective for its buffered losses
            self._losses.clear()
        self.close()
