"""Hugging Face ``Trainer`` callback running a :class:`TrainingMonitor`.

``transformers`` is imported when the callback is first used, not when this module is
imported::

    from streamtopo.integrations.hf import StreamtopoTrainerCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[StreamtopoTrainerCallback(log_dir="runs", stop=True)])

Gradients are read in ``on_pre_optimizer_step`` (after clipping, before ``zero_grad``), the
step is counted in ``on_step_end`` at ``state.global_step`` (1 after the first optimizer
step): the step of every status and of every row of the run, as in ``state.log_history``
and the ``checkpoint-<step>`` directories. The loss-rise alarm gets the loss of each
optimizer step's last forward pass, read by a forward hook on the model from its output
(``output.loss``, ``output["loss"]``, or a scalar first element of a tuple) while the model is
training. With ``stop=True`` a ``should_stop`` of the monitor sets
``control.should_training_stop``.

With ``guard=Guard(...)`` the guard is attached in ``on_train_begin``
(:meth:`TrainingMonitor.attach_guard`) to the Trainer's model, optimizer (accelerate's wrapper
is opened), LR scheduler and, under fp16 mixed precision, the accelerator's GradScaler (the
one ``Trainer`` saves as ``accelerator.scaler``, which accelerate hands to the wrapped
optimizer as ``optimizer.scaler``), and to the callback's TrainingMonitor, which shows it every
status, as in a plain loop: it may roll them back in place (the Trainer's step counter and
data loader move on), ``status_.intervention`` says so and the interventions go into the
run's log. A guard that used up its rollbacks sets ``control.should_training_stop``.

The monitor is built in ``on_init_end``, i.e. when ``Trainer(...)`` is constructed, so a
signal this model cannot give (e.g. ``"attn_entropy"`` without attention layers) fails there;
misspelled arguments fail when the callback itself is constructed. At each ``on_log`` of the
training loss the ``streamtopo/...`` scalars of
:func:`~streamtopo.integrations.loggers.status_scalars` are added to ``logs`` (and to that
``state.log_history`` entry). ``report_to`` backends are callbacks too and the Trainer calls
them before user callbacks: :meth:`attach` puts this callback ahead of them, so every backend
receives the keys. The monitor's state is saved with every checkpoint (in the Trainer state's
``stateful_callbacks["streamtopo"]``, plain JSON) and restored by
``train(resume_from_checkpoint=...)``: a resumed run continues the monitor's steps; with
``log_dir`` give ``run_id`` and ``resume="allow"`` to continue the same run (rows the run
recorded after the checkpoint are superseded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import InputError
from ..guard import check_guard

_LOG = logging.getLogger("streamtopo")
_STATE_KEY = "streamtopo"  # not a class name: HF's restore_callback_states leaves it alone

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
            from .callbacks import check_labels, check_monitor_kwargs

            self.monitor_kwargs = check_monitor_kwargs(
                monitor_kwargs, "StreamtopoTrainerCallback", ("stop", "labels", "guard")
            )
            self.guard = check_guard(guard)
            if self.guard is not None and self.guard.state is not None:
                raise InputError("guard is already attached; make one Guard per training loop")
            self.intervention_: Any = None
            self.stop = bool(stop)
            self.labels = check_labels(labels)
            self.monitor: Any = None
            self.status_: Any = None
            self._loss: Any = None
            self._handle: Any = None

        def attach(self, trainer: Any) -> Any:
            """Put this callback right after the Trainer's DefaultFlowCallback (ahead of the
            ``report_to`` backends, so they receive the ``streamtopo/...`` keys); returns it."""
            cbs = trainer.callback_handler.callbacks
            if self in cbs:
                cbs.remove(self)
            else:
                self.on_init_end(trainer.args, trainer.state, trainer.control, model=trainer.model)
            flow = [i for i, c in enumerate(cbs) if type(c).__name__ == "DefaultFlowCallback"]
            cbs.insert(flow[0] + 1 if flow else 0, self)
            return self

        def _build(self, model: Any) -> None:
            from .training import TrainingMonitor

            self.monitor = TrainingMonitor(model, **self.monitor_kwargs)

        def on_init_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
            if self.monitor is None and model is not None:
                self._build(model)  # at Trainer(...): errors about the model surface here

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
            saved = (state.stateful_callbacks or {}).get(_STATE_KEY)
            if self.monitor is None:
                self._build(model)
            if saved and self._handle is None:
                self.monitor.load_state_dict(saved)  # train(resume_from_checkpoint=...)
            if self._handle is None:
                if self.guard is not None and self.monitor.guard is None:
                    opt, sched = kw.get("optimizer"), kw.get("lr_scheduler")
                    try:
                        self.monitor.attach_guard(
                            self.guard,
                            opt,
                            getattr(sched, "scheduler", sched),
                            getattr(opt, "scaler", None),  # accelerate's: accelerator.scaler
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
            self.status_ = self.monitor.step(loss, step=state.global_step)
            self.intervention_ = self.status_.intervention
            if self.monitor.guard is not None and self.monitor.guard.should_stop:
                control.should_training_stop = True  # the guard said why (a WARNING)
            if self.stop and self.monitor.should_stop and not control.should_training_stop:
                _LOG.warning(
                    "streamtopo stops the Trainer at global step %s: %s",
                    self.status_.step,
                    self.status_.reason or self.status_.state,
                )
                control.should_training_stop = True
            if control.should_save or control.should_training_stop:
                # read by Trainer._save_checkpoint right after this hook
                state.stateful_callbacks[_STATE_KEY] = self.monitor.state_dict()
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any):
            if self.status_ is None or not isinstance(logs, dict) or "loss" not in logs:
                return control
            from .loggers import status_scalars

            scalars = status_scalars(self.status_)
            logs.update(scalars)
            last = state.log_history[-1] if state.log_history else None
            if isinstance(last, dict) and last.get("step") == state.global_step and "loss" in last:
                last.update(scalars)
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any):
            if self._handle is not None:
                self._handle.remove()
                self._handle = None
            if self.monitor is not None:
                self.monitor.close()  # and its guard

    StreamtopoTrainerCallback.__module__ = __name__
    return StreamtopoTrainerCallback


_CACHE: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == "StreamtopoTrainerCallback":
        if name not in _CACHE:
            _CACHE[name] = _build()
        return _CACHE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
