"""RunWriter.append_layer (the field-by-field path LayerMonitor logs through) writes exactly what
the dict path writes, checks its fields the same way, and changes nothing when one is bad."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from streamtopo import LayerMonitor
from streamtopo.errors import InputError, InputTypeError, StreamtopoError
from streamtopo.io import RunWriter, read_run
from tests.journal_rows import layer_row

_FIELDS = ("values", "h0", "state", "reason", "z", "stat", "culprits", "direction", "calibrating")


def append(w: RunWriter, row: dict, table: str = "layer") -> None:
    w.append_layer(
        table, row["step"], row["values"], row["h0"], row["state"], row["reason"],
        row.get("z", math.nan), row.get("stat", math.nan), row.get("culprits", ()),
        row.get("direction", ""), row.get("calibrating", False), row.get("missing"),
        row["signals"], row["layer_names"], row["config"],
    )  # fmt: skip


def rows_of(run_dir) -> pl.DataFrame:
    return read_run(run_dir).collect().drop("wall_time", "run")


def varied_row(step: int) -> dict:
    row = layer_row(step)
    if step % 5 == 3:
        row.update(z=4.5, stat=-3.25, culprits=("blocks.2.mlp",), direction="rising")
        row.update(state="WATCH", reason="layer blocks.2.mlp rising")
    if step % 7 == 2:
        row["missing"] = np.array([[False, True, False, False], [False] * 4])
    row["calibrating"] = step < 4
    return row


def test_append_layer_writes_what_the_dict_path_writes(tmp_path):
    with RunWriter(tmp_path, run_id="dict", flush_rows=4) as a:
        for s in range(30):
            a(varied_row(s))
    with RunWriter(tmp_path, run_id="fields", flush_rows=4) as b:
        for s in range(30):
            append(b, varied_row(s))
    got, want = rows_of(b.run_dir), rows_of(a.run_dir)
    assert got.height == 30
    assert got.equals(want)


@pytest.mark.parametrize(
    "field,value,error,match",
    [
        ("values", np.zeros((2, 3), np.float32), InputError, r"row\['values'\]"),
        ("state", 1, InputTypeError, r"row\['state'\]"),
        ("h0", "x", InputTypeError, r"row\['h0'\]"),
        ("z", None, InputTypeError, r"row\['z'\]"),
        ("culprits", "blocks.2.mlp", InputTypeError, r"row\['culprits'\]"),
        ("culprits", (1,), InputTypeError, r"row\['culprits'\]"),
        ("direction", 3, InputTypeError, r"row\['direction'\]"),
        ("calibrating", 1, InputTypeError, r"row\['calibrating'\]"),
        ("missing", np.zeros((2, 4)), InputError, r"row\['missing'\]"),
        ("step", -1, InputError, r"row\['step'\]"),
        ("step", 1.0, InputTypeError, r"row\['step'\]"),
        ("layer_names", ("a", "b", "c", "d"), InputError, "layer_names"),
    ],
)
def test_a_bad_field_raises_and_changes_nothing(tmp_path, field, value, error, match):
    with RunWriter(tmp_path, run_id="bad", flush_rows=4) as w:
        for s in range(3):
            append(w, layer_row(s))
        with pytest.raises(error, match=match):
            append(w, {**layer_row(3), field: value})
        w.flush()
        assert w.rows_written_ == 3
        for s in range(3, 6):
            append(w, layer_row(s))
    assert rows_of(w.run_dir)["step"].to_list() == list(range(6))


def test_append_layer_after_close_raises(tmp_path):
    w = RunWriter(tmp_path, run_id="closed")
    append(w, layer_row(0))
    w.close()
    with pytest.raises(StreamtopoError, match="closed"):
        append(w, layer_row(1))
    assert rows_of(w.run_dir)["step"].to_list() == [0]


def test_an_alarm_row_is_flushed_at_once(tmp_path):
    with RunWriter(tmp_path, run_id="urgent", flush_rows=512) as w:
        append(w, layer_row(0))
        assert w.rows_written_ == 0
        append(w, layer_row(1, state="WATCH"))
        assert w.rows_written_ == 2  # on disk before the call returns


class DictWriter:
    """A writer that is not a RunWriter: rows arrive as dicts (the generic contract)."""

    def __init__(self, inner: RunWriter) -> None:
        self.inner = inner

    def __call__(self, row: dict) -> None:
        self.inner(row)


def test_a_monitor_logs_the_same_rows_through_either_path(tmp_path):
    rng = np.random.default_rng(0)
    x = np.exp(rng.normal(size=(300, 2, 6))).astype(np.float32)
    x[200:, :, 2] *= 50.0  # an alarm, culprits and a direction
    miss = np.zeros((2, 6), bool)
    miss[:, 4] = True
    runs = []
    for run_id, wrap in (("direct", lambda w: w), ("dicts", DictWriter)):
        with RunWriter(tmp_path, run_id=run_id) as w:
            mon = LayerMonitor(6, ["a", "b"], window=4, baseline=20, writer=wrap(w))
            states = [
                mon.check(v, missing=miss if t % 9 == 0 else None).state for t, v in enumerate(x)
            ]
        runs.append(rows_of(w.run_dir))
    assert {str(s) for s in states} - {"HEALTHY"}  # the rows carry an alarm
    assert runs[0].height == 300
    assert runs[0].equals(runs[1])
