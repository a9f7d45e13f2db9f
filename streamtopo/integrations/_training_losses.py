"""The loss path of a :class:`~streamtopo.integrations.training.TrainingMonitor`.

Each step's loss stays on the device (a :class:`~streamtopo.integrations.torch.LossBuffer`,
no sync) with its training step; at the next monitored step the buffered losses reach the host
in the same copy as the collectors' values and the loss monitor checks them in order, each at
its own step (the TrainingMonitor reads the losses buffered after the last monitored step at
close, in one copy).
"""

from __future__ import annotations

from typing import Any

from ..monitors import LossStatus
from . import torch as st_torch
from ._training_parts import at_step

__all__ = ["LossFeed"]


class LossFeed:
    """The losses given to ``step()`` since the last monitored step, for ``monitor`` (a
    LossRiseDetector, or None: losses are then ignored); ``sink`` (the RowSink) puts each
    loss row at its training step.

    Attributes
    ----------
    buffer : LossBuffer
        The losses, on the device.
    steps : list of int
        Their training steps.
    """

    def __init__(self, monitor: Any, sink: Any) -> None:
        self.monitor, self.sink = monitor, sink
        self.buffer = st_torch.LossBuffer()
        self.steps: list[int] = []

    def prepare(self, loss: Any) -> Any:
        """``loss`` checked (a 0-d float32 tensor), or None when nothing is to be buffered."""
        if loss is None or self.monitor is None:
            return None
        return self.buffer.prepare(loss)

    def append(self, item: Any, step: int) -> None:
        """Buffer a loss :meth:`prepare` gave, with its training step."""
        self.buffer.append(item)
        self.steps.append(step)

    def check(self, losses: Any) -> LossStatus:
        """Feed the buffered losses (host values) to the loss monitor, each at its step."""
        status, steps, self.steps = None, self.steps, []
        for v, s in zip(losses, steps, strict=True):
            self.sink.at = s
            status = at_step(self.monitor.check(float(v)), s)
        return status

    def __len__(self) -> int:
        return len(self.buffer)

    def clear(self) -> None:
        """Drop the buffered losses."""
        self.buffer.clear()
        self.steps.clear()
