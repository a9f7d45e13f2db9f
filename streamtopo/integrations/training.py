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
from dataclasses import dataclass
from typing import Any

from .._validation import check_positive_int, describe
from ..errors import InputError, InputTypeError
from ..monitors.loss import LossRiseDetector, LossStatus
from ..status import State
from . import torch as st_torch

__all__ = ["TrainingMonitor", "TrainingStatus"]

_SIGNALS = ("act_norm", "grad_norm", "attn_entropy")
_LAYER_SIGNALS = ("act_norm", "grad_norm")


@dataclass(frozen=True, slots=True)
class TrainingStatus:
    """Combined status of one :meth:`TrainingMonitor.step`.

    ``state`` is the most severe state among the monitors; ``fired`` names the monitors not
    HEALTHY (``"layer"``, ``"attention"``, ``"loss"``, ``"centroid"``, ``"collapse"``), and
    ``reason`` joins their reasons. The monitors' own statuses are kept in the other fields
    (None when that monitor is off or has not run yet). ``evaluated`` is False on the calls
    between monitored steps, which repeat the last monitored status.
    """

    step: int
    state: State
    fired: tuple[str, ...]
    reason: str
    layer: Any = None
    attention: Any = None
    loss: LossStatus | None = None
    centroid: Any = None
    collapse: Any = None
    evaluated: bool = True


class TrainingMonitor:
    """Watch a ``torch.nn.Module`` train: layer signals → LayerMonitor, loss → loss-rise alarm.

    Parameters
    ----------
    model : torch.nn.Module
        The model (for DDP, the wrapped ``.module`` or the wrapper; hooks go on submodules).
    log_dir : str or Path, optional
        Write a run directory there with :class:`streamtopo.io.journal.RunWriter` (rank 0 only
        unless ``log_all_ranks``).
    signals : sequence of {"act_norm", "grad_norm", "attn_entropy"}
        Per-layer signals for the LayerMonitor. ``"attn_entropy"`` (one value per attention
        module, see :class:`~streamtopo.integrations.torch.AttentionEntropyCollector`) feeds a
        second LayerMonitor, reported as ``"attention"``, because its layers differ.
    centroid : CentroidMonitor, optional
        Fed with penultimate features and the ``labels`` given to :meth:`step` (train split) or
        to :meth:`observe` (any split); checked by :meth:`check_centroid` (e.g. after an
        evaluation pass), or every ``centroid_every`` monitored steps if that is set.
    collapse : CollapseMonitor, optional
        Given the penultimate features (and labels) of every monitored step; it reads them
        (one host copy) only on its own ``check_every`` steps.
    every : int
        Monitor every k-th call of :meth:`step` (the first call is monitored).
    groups : "auto", regex or list of module names
        Layer groups (see :func:`~streamtopo.integrations.torch.layer_groups`).
    layer : dict or LayerMonitor, optional
        Keyword arguments for the LayerMonitor, or a ready one (its ``n_layers`` and
        ``signals`` must match).
    loss : bool, dict or LossRiseDetector
        The loss-rise alarm (on by default; used when :meth:`step` gets a loss).
    writer : callable, optional
        A row sink instead of ``log_dir`` (any callable; see the writer contract).
    run_id : str, optional
        Run id for the RunWriter.
    stop_on : sequence of str
        Monitors whose ``should_stop`` makes :attr:`should_stop` true.
    feature_warmup : int
        Calls of :meth:`step` before the centroid/collapse monitors are fed, so their baselines
        come from a formed representation rather than from the first steps of learning.
    feature_layer : str
        Where :class:`~streamtopo.integrations.torch.FeatureCollector` reads features.
    force_attention_weights : bool
        See :class:`~streamtopo.integrations.torch.AttentionEntropyCollector`.

    Attributes
    ----------
    values_ : dict
        Signal name → float32 array of the last monitored step's per-layer values.
    status_ : TrainingStatus or None
        The last status.
    host_copies_ : int
        Device→host copies made so far (one per monitored step, plus one per feature read).

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
    (5, 'HEALTHY', 4, 3)
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
        log_all_ranks: bool = False,
        centroid_every: int | None = None,
        stop_on: Sequence[str] = ("layer", "attention", "loss", "centroid", "collapse"),
        feature_layer: str = "auto",
        feature_warmup: int = 0,
        force_attention_weights: bool = False,
    ) -> None:
        if isinstance(signals, str) or not all(isinstance(s, str) for s in signals):
            raise InputTypeError(f"signals must be a sequence of str, got {describe(signals)}")
        signals = tuple(signals)
        unknown = [s for s in signals if s not in _SIGNALS]
        if unknown or not signals or len(set(signals)) != len(signals):
            raise InputError(f"signals must be distinct names from {_SIGNALS}, got {signals!r}")
        self.signals = signals
        self.every = check_positive_int(every, "every")
        self.feature_warmup = check_positive_int(feature_warmup, "feature_warmup", minimum=0)
        self.centroid_every = (
            None if centroid_every is None else check_positive_int(centroid_every, "centroid_every")
        )
        if writer is not None and not callable(writer):
            raise InputTypeError(f"writer must be callable, got {describe(writer)}")
        if writer is not None and log_dir is not None:
            raise InputError("give log_dir or writer, not both")
        self.stop_on = tuple(stop_on)

        # --- collectors (hooks are registered here; close() removes them) ---
        self._collectors: list[Any] = []
        self.rank = st_torch.rank()
        try:
            layer_sigs = [s for s in signals if s in _LAYER_SIGNALS]
            groups_ = st_torch.layer_groups(model, groups) if layer_sigs else []
            self.layer_names = tuple(g.name for g in groups_)
            if layer_sigs and len(groups_) < 2:
                raise InputError(
                    f"groups={groups!r} gives {len(groups_)} layer group(s) "
                    f"({list(self.layer_names)}), the LayerMonitor needs at least 2"
                )
            if "act_norm" in signals:
                self._collectors.append(st_torch.ActivationNormCollector(model, groups))
            if "grad_norm" in signals:
                self._collectors.append(st_torch.GradNormCollector(model, groups))
            self._layer_collectors = list(self._collectors)
            self._attn = None
            if "attn_entropy" in signals:
                self._attn = st_torch.AttentionEntropyCollector(
                    model, force_weights=force_attention_weights
                )
                self._collectors.append(self._attn)
            self._features = (
                st_torch.FeatureCollector(model, feature_layer)
                if centroid is not None or collapse is not None
                else None
            )
        except BaseException:
            self._close_collectors()
            raise

        try:
            # --- writer and monitors ---
            self._owned_writer = None
            if log_dir is not None and (self.rank == 0 or log_all_ranks):
                from ..io.journal import RunWriter

                self._owned_writer = RunWriter(log_dir, run_id=run_id, rank=self.rank)
                writer = self._owned_writer
            self.writer = writer
            self.layer_monitor = self._make_layer(layer, tuple(layer_sigs)) if layer_sigs else None
            self.attention_monitor = None
            if self._attn is not None:
                from ..monitors.layer import LayerMonitor

                if self._attn.n_layers < 2:
                    raise InputError(
                        "signals includes 'attn_entropy' but the model has "
                        f"{self._attn.n_layers} attention layer(s), at least 2 are needed"
                    )
                self.attention_monitor = LayerMonitor(
                    self._attn.n_layers,
                    ("attn_entropy",),
                    layer_names=self._attn.layer_names,
                    writer=self._attention_row if writer is not None else None,
                )
            if isinstance(loss, LossRiseDetector):
                self.loss_monitor: LossRiseDetector | None = loss
            elif loss is True:
                self.loss_monitor = LossRiseDetector(writer=writer)
            elif isinstance(loss, Mapping):
                self.loss_monitor = LossRiseDetector(**{"writer": writer, **loss})
            elif loss is False or loss is None:
                self.loss_monitor = None
            else:
                raise InputTypeError(
                    f"loss must be True/False, a dict or a LossRiseDetector, got {describe(loss)}"
                )
        except BaseException:
            self._close_collectors()
            if self._owned_writer is not None:
                self._owned_writer.close()
            raise
        self.centroid_monitor = centroid
        self.collapse_monitor = collapse
        for m in (centroid, collapse):  # log them into the same run unless they have a writer
            if m is not None and writer is not None and getattr(m, "writer", 1) is None:
                m.writer = writer
        self._losses = st_torch.LossBuffer()
        self._calls = 0
        self._monitored = 0
        self.host_copies_ = 0
        self.values_: dict[str, Any] = {}
        self.status_: TrainingStatus | None = None
        self._last: dict[str, Any] = {}
        self._closed = False

    def _make_layer(self, layer: Any, signals: tuple[str, ...]) -> Any:
        from ..monitors.layer import LayerMonitor

        if isinstance(layer, LayerMonitor):
            if layer.n_layers != len(self.layer_names) or tuple(layer.signals) != signals:
                raise InputError(
                    f"layer monitor has n_layers={layer.n_layers}, signals={layer.signals}; "
                    f"expected n_layers={len(self.layer_names)}, signals={signals}"
                )
            return layer
        if layer is not None and not isinstance(layer, Mapping):
            raise InputTypeError(
                "layer must be a dict of LayerMonitor options or a LayerMonitor, "
                f"got {describe(layer)}"
            )
        kwargs = {"layer_names": self.layer_names, "writer": self.writer, **(layer or {})}
        return LayerMonitor(len(self.layer_names), signals, **kwargs)

    def _attention_row(self, row: dict[str, Any]) -> None:
        # attention layers differ from the layer groups: their own table, one
        # attn_entropy/<layer> column per layer (the layer table's <signal>/<layer> rule)
        out = {k: row[k] for k in ("step", "wall_time", "h0", "state", "reason", "config")}
        out["monitor"] = "attention"
        for name, value in zip(row["layer_names"], row["values"][0], strict=True):
            out[f"attn_entropy/{name}"] = float(value)
        self.writer(out)

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

    def step(self, loss: Any = None, labels: Any = None) -> TrainingStatus:
        """Advance one training step; returns the combined :class:`TrainingStatus`.

        Call after ``optimizer.step()`` and before ``optimizer.zero_grad()`` (or use
        :meth:`capture_grads`). ``loss`` (a tensor or number) feeds the loss-rise alarm;
        ``labels`` of the batch feed the centroid/collapse monitors with the penultimate
        features of the last forward pass.
        """
        if self._closed:
            raise InputError("this TrainingMonitor is closed")
        if loss is not None and self.loss_monitor is not None:
            self._losses.add(loss)
        t = self._calls
        self._calls += 1
        if t % self.every:
            self._arm(self._calls % self.every == 0)
            return self._repeat(t)
        for c in self._collectors:
            # no forward pass since the last monitored step: activation norms would be NaN
            # (0 / 0) and the layer monitor would report a non-finite COLLAPSE that is not there
            if isinstance(c, st_torch.ActivationNormCollector) and not any(c._counts):
                raise InputError(
                    "no forward pass since the last monitored step(): activation norms are "
                    "missing; call step() once per optimizer step, after forward and backward"
                )
        extra = self._losses.take()
        values = st_torch.collect(self._collectors, extra=extra)
        self.host_copies_ += 1
        statuses: dict[str, Any] = {}
        if self.loss_monitor is not None and extra is not None:
            for v in values[-1]:
                statuses["loss"] = self.loss_monitor.check(float(v))
        by_signal = {c.signal: v for c, v in zip(self._collectors, values, strict=False)}
        self.values_ = by_signal
        if self.layer_monitor is not None:
            statuses["layer"] = self.layer_monitor.check(
                {s: by_signal[s] for s in self.layer_monitor.signals}
            )
        if self.attention_monitor is not None:
            statuses["attention"] = self.attention_monitor.check(by_signal["attn_entropy"])
        if (
            self._features is not None
            and self._features.features_ is not None
            and t >= self.feature_warmup
        ):
            statuses.update(self._feed_features(labels))
        self._monitored += 1
        self._last.update(statuses)
        self._arm(self._calls % self.every == 0)
        status = self._combine(t, evaluated=True)
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
        status = self.centroid_monitor.check(**kwargs)
        self._last["centroid"] = status
        return status

    def _feed_features(self, labels: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        y = None if labels is None else st_torch.labels_to_numpy(labels)
        if self.centroid_monitor is not None and y is not None:
            self.centroid_monitor.update(self._features.take(), y, split="train")
            self.host_copies_ += 1
            every = self.centroid_every
            if every is not None and self._monitored % every == every - 1:
                out["centroid"] = self.centroid_monitor.check()
        if self.collapse_monitor is not None:
            out["collapse"] = self.collapse_monitor.check(self._features.features_, y)
        return out

    def _arm(self, on: bool) -> None:
        for c in self._collectors:
            c.enabled = on
        if self._features is not None:
            self._features.enabled = on or self.centroid_monitor is not None

    def _repeat(self, t: int) -> TrainingStatus:
        if self.status_ is None:  # pragma: no cover - step 0 is always monitored
            return TrainingStatus(t, State.HEALTHY, (), "", evaluated=False)
        s = self.status_
        return TrainingStatus(
            t, s.state, s.fired, s.reason, s.layer, s.attention, s.loss, s.centroid,
            s.collapse, evaluated=False,
        )  # fmt: skip

    def _combine(self, t: int, evaluated: bool) -> TrainingStatus:
        fired, reasons, worst = [], [], State.HEALTHY
        for name in ("layer", "attention", "loss", "centroid", "collapse"):
            st = self._last.get(name)
            state = _state_of(st)
            if state is None:
                continue
            if state.severity > worst.severity:
                worst = state
            if state is not State.HEALTHY:
                fired.append(name)
                reasons.append(f"{name}: {getattr(st, 'reason', '') or state.value}")
        return TrainingStatus(
            t,
            worst,
            tuple(fired),
            "; ".join(reasons),
            self._last.get("layer"),
            self._last.get("attention"),
            self._last.get("loss"),
            self._last.get("centroid"),
            self._last.get("collapse"),
            evaluated,
        )

    # ------------------------------------------------------------------------------ state
    @property
    def monitors(self) -> dict[str, Any]:
        """The active monitors by name."""
        found = {
            "layer": self.layer_monitor,
            "attention": self.attention_monitor,
            "loss": self.loss_monitor,
            "centroid": self.centroid_monitor,
            "collapse": self.collapse_monitor,
        }
        return {k: v for k, v in found.items() if v is not None}

    @property
    def should_stop(self) -> bool:
        """True when a monitor named in ``stop_on`` says stop."""
        return any(
            bool(getattr(m, "should_stop", False))
            for name, m in self.monitors.items()
            if name in self.stop_on
        )

    @property
    def step_(self) -> int:
        """Calls of :meth:`step` so far."""
        return self._calls

    def summary(self) -> dict[str, Any]:
        """Each monitor's ``summary()`` (where it has one) by name."""
        return {name: m.summary() for name, m in self.monitors.items() if hasattr(m, "summary")}

    def reset(self) -> None:
        """Forget every step (monitors reset, collector sums and buffered losses dropped)."""
        for m in self.monitors.values():
            m.reset()
        for c in self._collectors:
            c.reset()
        self._losses.clear()
        self._calls = self._monitored = 0
        self.status_ = None
        self._last = {}
        self._arm(True)

    def state_dict(self) -> dict[str, Any]:
        """Counters and every monitor's ``state_dict()`` (JSON + numpy arrays, no pickle).

        Losses buffered between monitored steps are not saved: save right after a monitored
        step (``status.evaluated``) to lose nothing.
        """
        return {
            "calls": self._calls,
            "monitored": self._monitored,
            "every": self.every,
            "monitors": {name: m.state_dict() for name, m in self.monitors.items()},
        }

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
        for name, m in self.monitors.items():
            m.load_state_dict(state["monitors"][name])
        self._calls = int(state["calls"])
        self._monitored = int(state["monitored"])
        self._losses.clear()
        self.status_ = None
        self._last = {}
        self._arm(self._calls % self.every == 0)

    # ------------------------------------------------------------------------------ teardown
    def _close_collectors(self) -> None:
        for c in getattr(self, "_collectors", []):
            c.close()
        feats = getattr(self, "_features", None)
        if feats is not None:
            feats.close()

    def close(self) -> None:
        """Remove every hook and close the run writer this monitor opened (idempotent)."""
        if getattr(self, "_closed", True):
            self._close_collectors()
            return
        self._closed = True
        self._close_collectors()
        if self._owned_writer is not None:
            self._owned_writer.close()

    @property
    def run_dir_(self) -> Any:
        """The run directory written by the RunWriter (None without ``log_dir``)."""
        w = self._owned_writer
        return None if w is None else getattr(w, "run_dir", None)

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _state_of(status: Any) -> State | None:
    if status is None:
        return None
    st = getattr(status, "state", None)
    if st is not None:
        return State(str(st))
    alert = getattr(status, "alert", None) or getattr(status, "is_collapsing", None)
    return State.WATCH if alert else State.HEALTHY
