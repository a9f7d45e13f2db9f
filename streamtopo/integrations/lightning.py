"""Lightning callback: a :class:`~streamtopo.integrations.training.TrainingMonitor` in a Trainer.

``lightning`` (or the older ``pytorch_lightning``) is imported when the callback is first
used, not when this module is imported::

    from streamtopo.integrations.lightning import StreamtopoCallback
    trainer = lightning.Trainer(callbacks=[StreamtopoCallback(log_dir="runs", stop=True)])

Gradients are read in ``on_before_optimizer_step`` (after Lightning's AMP unscaling and
before ``zero_grad``); the step is counted in ``on_train_batch_end`` with the batch loss,
only for batches that ended with an optimizer step (gradient accumulation), at the Trainer's
``global_step`` (1 after the first optimizer step): the step of every status and of every row
of the run, as in Lightning's own logs and checkpoints. With ``stop=True`` a ``should_stop``
of the monitor sets ``trainer.should_stop``.

With ``guard=Guard(...)`` the guard is attached in ``on_train_start``
(:meth:`TrainingMonitor.attach_guard`) to the LightningModule, the Trainer's optimizer, its
LR scheduler (if any), the precision plugin's GradScaler (if any) and the callback's
TrainingMonitor, which shows it every status, as in a plain loop: it may roll them back in
place (Lightning's step counter and data loader move on), ``status_.intervention`` says so
and the interventions go into the run's log. A guard that used up its rollbacks sets
``trainer.should_stop``.

At every monitored step the ``streamtopo/...`` scalars of
:func:`~streamtopo.integrations.loggers.status_scalars` go to ``pl_module.log_dict`` (so to
every Lightning logger; ``streamtopo/state`` also to the progress bar), and a stop is logged
as a WARNING on ``logging.getLogger("streamtopo")``. Arguments are checked when the callback
is constructed. Its ``state_dict`` holds plain containers only, so checkpoints load under
``torch.load(weights_only=True)`` and ``fit(ckpt_path=...)`` continues the monitor's steps;
with ``log_dir`` give ``run_id`` and ``resume="allow"`` to continue the same run (rows the run
recorded after the checkpoint are superseded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import InputError
from ..guard import check_guard

_LOG = logging.getLogger("streamtopo")

__all__ = ["StreamtopoCallback"]  # noqa: F822 - built lazily by __getattr__


def _lightning() -> Any:
    try:
        import lightning.pytorch as pl
    except ImportError:
        try:
            import pytorch_lightning as pl
        except ImportError as exc:
            raise ImportError("StreamtopoCallback needs Lightning: pip install lightning") from exc
    return pl


def _build() -> type:
    pl = _lightning()

    class StreamtopoCallback(pl.Callback):
        """Run a TrainingMonitor inside ``lightning.Trainer.fit``.

        Parameters
        ----------
        stop : bool
            Set ``trainer.should_stop`` when the monitor says stop.
        labels : callable, optional
            ``labels(batch) -> labels`` for the centroid/collapse monitors.
        guard : streamtopo.Guard, optional
            Roll back on alarms (see the module docs); one optimizer only.
        **monitor_kwargs
            Passed to :class:`~streamtopo.integrations.training.TrainingMonitor`.

        Attributes
        ----------
        monitor : TrainingMonitor or None
            Created in ``setup("fit")``, closed at ``teardown``.
        status_ : TrainingStatus or None
            The last status.
        intervention_ : Intervention or None
            What the guard did at the last step.
        """

        def __init__(
            self,
            *,
            stop: bool = False,
            labels: Callable[[Any], Any] | None = None,
            guard: Any = None,
            **monitor_kwargs: Any,
        ) -> None:
            from .callbacks import check_labels, check_monitor_kwargs

            super().__init__()
            self.monitor_kwargs = check_monitor_kwargs(
                monitor_kwargs, "StreamtopoCallback", ("stop", "labels", "guard")
            )
            self.guard = check_guard(guard)
            if self.guard is not None and self.guard.state is not None:
                raise InputError("guard is already attached; make one Guard per training loop")
            self.intervention_: Any = None
            self.stop = bool(stop)
            self.labels = check_labels(labels)
            self.monitor: Any = None
            self.status_: Any = None
            self._stepped = False
            self._pending: dict[str, Any] | None = None

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if stage == "fit" and self.monitor is None:
                from .training import TrainingMonitor

                self.monitor = TrainingMonitor(pl_module, **self.monitor_kwargs)
                if self._pending:
                    self.monitor.load_state_dict(self._pending)
                self._pending = None

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if self.guard is None or self.monitor is None or self.monitor.guard is not None:
                return
            optimizers = list(trainer.optimizers)
            schedulers = [c.scheduler for c in getattr(trainer, "lr_scheduler_configs", [])]
            if len(optimizers) != 1 or len(schedulers) > 1:
                raise InputError(
                    "guard= needs one optimizer and at most one LR scheduler, the Trainer has "
                    f"{len(optimizers)} optimizer(s) and {len(schedulers)} scheduler(s)"
                )
            self.monitor.attach_guard(
                self.guard,
                optimizers[0],
                schedulers[0] if schedulers else None,
                getattr(trainer.precision_plugin, "scaler", None),
            )

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            if self.monitor is not None:
                self.monitor.capture_grads()
                self._stepped = True

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            if self.monitor is None or not self._stepped:
                return
            self._stepped = False
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            accumulate = getattr(trainer, "accumulate_grad_batches", 1)
            if loss is not None and accumulate > 1:
                loss = loss * accumulate  # Lightning hands over the loss divided by it
            labels = self.labels(batch) if self.labels is not None else None
            self.status_ = self.monitor.step(loss, labels=labels, step=trainer.global_step)
            self.intervention_ = self.status_.intervention
            if self.status_.evaluated:
                self._log(pl_module, self.status_)
            if self.monitor.guard is not None and self.monitor.guard.should_stop:
                trainer.should_stop = True  # the guard said why (a WARNING)
            if self.stop and self.monitor.should_stop and not trainer.should_stop:
                _LOG.warning(
                    "streamtopo stops the Trainer at global step %s: %s",
                    self.status_.step,
                    self.status_.reason or self.status_.state,
                )
                trainer.should_stop = True

        @staticmethod
        def _log(pl_module: Any, status: Any) -> None:
            from .loggers import status_scalars

            scalars = status_scalars(status)
            state = scalars.pop("streamtopo/state")
            kw = {"on_step": True, "on_epoch": False, "batch_size": 1}
            pl_module.log("streamtopo/state", state, prog_bar=True, **kw)
            pl_module.log_dict(scalars, **kw)

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if stage == "fit" and self.monitor is not None:
                self.monitor.close()  # and its guard

        def state_dict(self) -> dict[str, Any]:
            return {} if self.monitor is None else self.monitor.state_dict()

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            if self.monitor is None:
                self._pending = state_dict  # applied in setup("fit")
            elif state_dict:
                self.monitor.load_state_dict(state_dict)

    StreamtopoCallback.__module__ = __name__
    return StreamtopoCallback


_CACHE: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == "StreamtopoCallback":
        if name not in _CACHE:
            _CACHE[name] = _build()
        return _CACHE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
