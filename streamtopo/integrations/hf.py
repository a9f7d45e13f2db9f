"""Hugging Face ``Trainer`` callback running a :class:`TrainingMonitor`.

``transformers`` is imported when the callback is first used, not when this module is
imported::

    from streamtopo.integrations.hf import StreamtopoTrainerCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[StreamtopoTrainerCallback(log_dir="runs", stop=True)])

Gradients are read in ``on_pre_optimizer_step`` (after clipping, before ``zero_grad``), the
step is counted in ``on_step_end``. The loss-rise alarm gets the loss of each optimizer step's
last forward pass, read by a forward hook on the model from its output (``output.loss``,
``output["loss"]``, or a scalar first element of a tuple) while the model is training. With
``stop=True`` a ``should_stop`` of the monitor sets ``control.should_training_stop``.

With ``guard=Guard(...)`` the guard is attached in ``on_train_begin`` to the Trainer's model,
optimizer (accelerate's wrapper is opened) and LR scheduler, and to the callback's
TrainingMonitor; it sees every status in ``on_step_end`` and may roll them back in place (the
Trainer's step counter and data loader move on). A guard that used up its rollbacks sets
``control.should_training_stop``. Under mixed precision the accelerator's GradScaler is not
captured (the callback does not see it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..guard import check_guard

__all__ = ["StreamtopoTrainerCallback"]  # noqa: F822 - built lazily by __getattr__


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(
            "StreamtopoTrainerCallback needs transformers: pip install transformers"
        ) from exc
    return transformers


def _loss_of(output: Any) -> Any:
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, dict):
        loss = output.get("loss")
    if loss is None and isinstance(output, tuple) and output:
        first = output[0]
        if getattr(first, "ndim", None) == 0:
            loss = first
    return loss


def _build() -> type:
    transformers = _transformers()

    class StreamtopoTrainerCallback(transformers.TrainerCallback):
        """Run a TrainingMonitor inside ``transformers.Trainer.train``.

        Parameters
        ----------
        stop : bool
            Set ``control.should_training_stop`` when the monitor says stop.
        labels : callable, optional
            ``labels(inputs) -> labels``; not available in HF callbacks, kept for symmetry
            with the Lightning callback (centroid monitors need the raw loop).
        guard : streamtopo.Guard, optional
            Roll back on alarms (see the module docs).
        **monitor_kwargs
            Passed to :class:`~streamtopo.integrations.training.TrainingMonitor`.

        Attributes
        ----------
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
            self.guard = check_guard(guard)
            self.intervention_: Any = None
            self.stop = bool(stop)
            self.labels = labels
            self.monitor_kwargs = monitor_kwargs
            self.monitor: Any = None
            self.status_: Any = None
            self._loss: Any = None
            self._handle: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
            if self.monitor is None:
                from .training import TrainingMonitor

                self.monitor = TrainingMonitor(model, **self.monitor_kwargs)
                if self.guard is not None and self.guard.state is None:
                    try:
                        sched = kw.get("lr_scheduler")
                        self.guard.attach(
                            model=model,
                            optimizer=kw.get("optimizer"),
                            scheduler=getattr(sched, "scheduler", sched),
                            monitors=[self.monitor],
                        )
                    except BaseException:
                        self.monitor.close()
                        self.monitor = None
                        raise
                self._handle = model.register_forward_hook(self._grab_loss)

        def _grab_loss(self, module: Any, args: Any, output: Any) -> None:
            if module.training:
                loss = _loss_of(output)
                if loss is not None:
                    self._loss = loss.detach()

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any):
            if self.monitor is not None:
                self.monitor.capture_grads()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any):
            if self.monitor is None:
                return control
            loss, self._loss = self._loss, None
            self.status_ = self.monitor.step(loss)
            if self.guard is not None:  # before the stop check: a rollback resets the monitors
                self.intervention_ = self.guard.step(state.global_step, self.status_)
                if self.guard.should_stop:
                    control.should_training_stop = True
            if self.stop and self.monitor.should_stop:
                control.should_training_stop = True
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any):
            if self._handle is not None:
                self._handle.remove()
                self._handle = None
            if self.monitor is not None:
                self.monitor.close()
            if self.guard is not None:
                self.guard.close()

    StreamtopoTrainerCallback.__module__ = __name__
    return StreamtopoTrainerCallback


_CACHE: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == "StreamtopoTrainerCallback":
        if name not in _CACHE:
            _CACHE[name] = _build()
        return _CACHE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
