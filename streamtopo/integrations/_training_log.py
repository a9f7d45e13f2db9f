"""Where a :class:`~streamtopo.integrations.training.TrainingMonitor`'s rows go.

:class:`RunLog` is the writer given as ``writer=``, or a RunWriter on ``log_dir`` the monitor
opens (rank 0 unless ``log_all_ranks``), reopens when a resumed run rewinds, and closes; in front
of it a :class:`RowSink` puts every table on the training-step axis. :func:`attention_row` and
:func:`out_logit_row` shape the rows of the attention and output-logit tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InputError

__all__ = ["RowSink", "RunLog", "attention_row", "out_logit_row", "reopen_writer"]


class RowSink:
    """The monitors' writer: every row on the training-step axis, no table repeating a step.

    The monitors number their rows with their own counters (a LayerMonitor counts monitored
    steps, a guard's rollback rewinds them). The TrainingMonitor sets :attr:`at` to the training
    step before a monitor runs, and each row with a step is stamped with it, so the layer, loss,
    attention, centroid, collapse and interventions tables share one axis. A row at or before
    its table's last written step (``check_centroid()`` twice between two steps) goes right
    after it. An ``events`` row (an ``acknowledge()``; its step is "the next check of table
    ``row['table']``") is held until that table's next row and written with that row's step,
    so replay applies it before the same row the live monitor did, after a rollback too;
    :meth:`flush` writes the held ones (at their table's last step + 1) when the run ends.

    A RunWriter's ``claim_table`` is passed on, so a second live monitor on one table is
    refused at construction through this sink too.
    """

    def __init__(self, writer: Callable[[dict[str, Any]], Any] | None) -> None:
        self.writer = writer
        self.at: int | None = None  # the training step of the rows being written
        self._last: dict[str, int] = {}  # table -> last step written
        self._held: list[dict[str, Any]] = []  # events rows waiting for their table's next row

    @property
    def written(self) -> bool:
        """Whether a row went through this sink."""
        return bool(self._last)

    def claim_table(self, table: Any, owner: object) -> None:
        """The writer's ``claim_table`` (if it has one); the refusal says how a TrainingMonitor
        names its layer and loss monitors."""
        claim = getattr(self.writer, "claim_table", None)
        if claim is None:
            return
        try:
            claim(table, owner)
        except InputError as exc:
            kind = str(table).split(".")[0]
            if kind not in ("layer", "loss"):
                raise
            raise InputError(
                f"{exc}; through a TrainingMonitor, name its {kind} monitor with "
                f"TrainingMonitor(..., {kind}={{'name': 'eval'}}) (writes table '{kind}.eval')"
            ) from None

    def __call__(self, row: dict[str, Any]) -> None:
        kind, step = row.get("monitor"), row.get("step")
        if not (isinstance(step, int) and isinstance(kind, str)):
            self.writer(row)
            return
        if kind == "events" and isinstance(row.get("table"), str):
            self._held.append(row)  # its step is that of its table's next row
            return
        step = self._stamp(kind, step)
        row["step"] = step
        self.writer(row)
        self._last[kind] = step

    @property
    def append_layer(self) -> Callable[..., None] | None:
        """The writer's field-by-field layer path (``RunWriter.append_layer``) with the step
        stamped as :meth:`__call__` stamps it; None when the writer has none (a LayerMonitor
        then sends a dict row)."""
        if getattr(self.writer, "append_layer", None) is None:
            return None
        return self._append_layer

    def _append_layer(self, table: str, step: int, *fields: Any) -> None:
        step = self._stamp(table, step)
        self.writer.append_layer(table, step, *fields)
        self._last[table] = step

    def _stamp(self, table: str, step: int) -> int:
        """The training step a row of ``table`` is written at (held events go first)."""
        if self.at is not None:
            step = self.at
        last = self._last.get(table)
        if last is not None and step <= last:
            step = last + 1
        self._write_held(table, step)
        return step

    def _write_held(self, table: str, step: int) -> None:
        while any(e["table"] == table for e in self._held):
            event = next(e for e in self._held if e["table"] == table)
            self.writer({**event, "step": step})
            self._held.remove(event)

    def flush(self) -> None:
        """Write the held events rows whose table got no row since (the run ended first)."""
        while self._held:
            table = self._held[0]["table"]
            last = self._last.get(table, self.at if self.at is not None else -1)
            self._write_held(table, last + 1)


def attention_row(row: dict[str, Any]) -> dict[str, Any]:
    """The attention LayerMonitor's row for its own table: attention layers differ from the
    layer groups, one ``attn_entropy/<layer>`` column per layer (the ``<signal>/<layer>`` rule
    of the layer table)."""
    out = {k: row[k] for k in ("step", "wall_time", "h0", "state", "reason", "config")}
    out["monitor"] = "attention"
    for signal, values in zip(row["signals"], row["values"], strict=True):
        for name, value in zip(row["layer_names"], values, strict=True):
            out[f"{signal}/{name}"] = float(value)
    return out


def out_logit_row(step: int, names: Sequence[str], values: Any) -> dict[str, Any]:
    """The row of the output-logit statistics (a table of their own)."""
    row = {"monitor": "out_logit", "step": step, "wall_time": time.time(), "config": {}}
    row.update({k: float(v) for k, v in zip(names, values, strict=True)})
    return row


def reopen_writer(writer: Any, rewind_to: int | None) -> Any:
    """Close ``writer`` (a RunWriter) and open its run and rank again with ``rewind_to``."""
    from ..io.journal import RunWriter

    kwargs = {"run_id": writer.run_id, "rank": writer.rank, "resume": writer.resume}
    writer.close()
    return RunWriter(writer.log_dir, rewind_to=rewind_to, **kwargs)


class RunLog:
    """The rows' way into the run: ``writer``, or a RunWriter on ``log_dir`` opened here
    (rank ``rank``; only on rank 0 unless ``all_ranks``) and closed by :meth:`close`, behind
    :attr:`sink` (a :class:`RowSink`). :attr:`writer` is None when rows go nowhere."""

    def __init__(
        self,
        log_dir: Any,
        writer: Callable[[dict[str, Any]], Any] | None,
        run_id: Any,
        rank: int,
        all_ranks: bool,
        resume: str,
    ) -> None:
        self.owned: Any = None  # the RunWriter opened here
        if log_dir is not None and (rank == 0 or all_ranks):
            from ..io.journal import RunWriter

            self.owned = writer = RunWriter(log_dir, run_id=run_id, rank=rank, resume=resume)
        self.writer = writer
        self.sink = RowSink(writer)

    def attention(self, row: dict[str, Any]) -> None:
        """The attention LayerMonitor's writer: its rows go to the ``attention`` table."""
        if row.get("monitor") == "events":  # an acknowledge(): of the attention table
            self.sink({**row, "table": "attention"})
            return
        self.sink(attention_row(row))

    def adopt(self, monitors: list[Any]) -> None:
        """Log ``monitors`` (a CentroidMonitor, a CollapseMonitor) into this run unless they
        have a writer; all are claimed before any is changed, so a refused claim leaves the
        given monitors as they were."""
        if self.writer is None:
            return
        fed = [m for m in monitors if m.writer is None]
        for m in fed:
            self.sink.claim_table(m.table_, m)
        for m in fed:
            m.writer = self.sink

    def rewind(self, step: int) -> None:
        """Rows from ``step`` on supersede those a resumed run recorded after its checkpoint:
        the owned RunWriter, unused so far, reopens with ``rewind_to=step``."""
        old = self.owned
        if old is None or old.resume == "never" or old.rewind_to == step or self.sink.written:
            return
        try:
            new = reopen_writer(old, step)
        except BaseException:
            self.owned = self.writer = self.sink.writer = reopen_writer(old, None)
            raise
        self.owned = self.writer = self.sink.writer = new

    def close(self) -> None:
        """Close the RunWriter opened here (if any)."""
        if self.owned is not None:
            self.owned.close()
