"""RunWriter: round trips, flush triggers, layout, resume, ranks, other tables, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from streamtopo.errors import InputError, InputTypeError, StreamtopoError
from streamtopo.io import RunWriter, read_run, recover
from tests.journal_rows import CONFIG, SIGNALS, centroid_row, expected_values, layer_row

ROOT = Path(__file__).resolve().parents[1]


def write_rows(writer, steps, n_layers=4, **kw):
    for s in steps:
        writer(layer_row(s, n_layers, **kw))


def check_cells(df: pl.DataFrame, n_layers: int, n_signals: int = 2) -> None:
    """Every recorded cell equals the value its step determines."""
    names = [f"{s}/blocks.{i}.mlp" for s in SIGNALS[:n_signals] for i in range(n_layers)]
    got = df.select(names).to_numpy()
    want = np.stack([expected_values(s, n_layers, n_signals).reshape(-1) for s in df["step"]])
    np.testing.assert_array_equal(got, want)


def journals(rank_dir: Path) -> list[str]:
    return sorted(p.name for p in rank_dir.glob("*.arrows"))


# -- round trips ---------------------------------------------------------------------------
def test_round_trip_columns_values_and_scan_parquet(tmp_path):
    with RunWriter(tmp_path, run_id="rt", flush_rows=7, roll_rows=20) as w:
        write_rows(w, range(53), state="HEALTHY")
    df = pl.scan_parquet(w.run_dir / "table=layer/**/*.parquet", hive_partitioning=True).collect()
    assert df.columns[:2] == ["step", "wall_time"]
    assert df.columns[2:10] == [f"{s}/blocks.{i}.mlp" for s in SIGNALS for i in range(4)]
    assert df.columns[10:] == [
        "h0",
        "state",
        "reason",
        "z",
        "stat",
        "culprits",
        "direction",
        "calibrating",
        "run",
        "table",
        "rank",
    ]
    assert df.schema["grad_norm/blocks.0.mlp"] == pl.Float32
    assert df.schema["step"] == pl.Int64 and df.schema["h0"] == pl.Float64
    df = df.sort("step")
    assert df["step"].to_list() == list(range(53))
    check_cells(df, 4)
    assert df["h0"].to_list() == [s / 7 for s in range(53)]
    assert df.schema["wall_time"] == pl.Datetime("us", "UTC")
    seconds = df["wall_time"].dt.epoch("us").to_numpy() / 1e6
    assert seconds.tolist() == [1.7e9 + s for s in range(53)]
    assert set(df["run"]) == {"rt"} and set(df["rank"]) == {0}
    # three parts of 21 rows (7-row flushes crossing roll_rows=20) and one of 11
    parts = sorted(p.name for p in w.rank_dir.glob("*.parquet"))
    assert parts == [f"part-{i:06d}.parquet" for i in range(3)]
    assert [pq.ParquetFile(w.rank_dir / p).metadata.num_rows for p in parts] == [21, 21, 11]
    assert journals(w.rank_dir) == []
    assert read_run(w.run_dir).collect().drop("run", "rank").equals(df.drop("run", "table", "rank"))


def test_parquet_encoding_zstd_byte_stream_split_no_float_dictionary(tmp_path):
    with RunWriter(tmp_path, run_id="enc", flush_rows=16) as w:
        write_rows(w, range(100), n_layers=3)
    md = pq.ParquetFile(next(w.rank_dir.glob("*.parquet"))).metadata
    rg = md.row_group(0)
    seen = {}
    for j in range(rg.num_columns):
        col = rg.column(j)
        seen[col.path_in_schema] = (col.compression, set(col.encodings))
    for name, (compression, encodings) in seen.items():
        assert compression == "ZSTD", name
        if name in ("state", "reason", "direction"):
            assert "RLE_DICTIONARY" in encodings or "PLAIN_DICTIONARY" in encodings
        elif name in ("h0", "z", "stat") or "/" in name:
            assert "BYTE_STREAM_SPLIT" in encodings, (name, encodings)
            assert not encodings & {"RLE_DICTIONARY", "PLAIN_DICTIONARY"}, (name, encodings)


def test_meta_json_describes_the_run(tmp_path):
    with RunWriter(tmp_path, run_id="meta") as w:
        write_rows(w, range(3), n_layers=2)
    meta = json.loads((w.run_dir / "_meta.json").read_text())
    assert meta["format_version"] == 2 and meta["run_id"] == "meta"
    assert meta["layer_names"] == ["blocks.0.mlp", "blocks.1.mlp"]
    assert meta["signal_names"] == list(SIGNALS)
    assert meta["monitor_config"] == CONFIG
    schema = dict(meta["tables"]["layer"]["schema"])
    assert schema["step"] == "int64" and schema["act_norm/blocks.1.mlp"] == "float32"
    assert schema["state"] == "string" and schema["wall_time"] == "timestamp"
    assert schema["culprits"] == "list<string>" and schema["calibrating"] == "bool"


def test_nonfinite_values_are_recorded_as_data(tmp_path):
    row = layer_row(0, 3)
    row["values"] = np.array([[np.nan, np.inf, -np.inf], [1e-30, 3e38, 0.0]], np.float32)
    row["h0"] = float("nan")
    with RunWriter(tmp_path, run_id="nan") as w:
        w(row)
    df = read_run(w.run_dir).collect()
    got = df.select(c for c in df.columns if "/" in c)
    np.testing.assert_array_equal(got.to_numpy()[0], row["values"].reshape(-1))
    assert np.isnan(df["h0"][0])


# -- flush triggers ------------------------------------------------------------------------
def test_flush_on_row_count_and_alarm_state_change(tmp_path):
    w = RunWriter(tmp_path, run_id="fl", flush_rows=10, flush_seconds=3600)
    write_rows(w, range(9))
    assert w.flushed_step_ == -1 and journals(w.rank_dir) == []
    w(layer_row(9))
    assert w.flushed_step_ == 9
    w(layer_row(10, state="WATCH"))  # change to an alarm: immediately on disk
    assert w.flushed_step_ == 10
    w(layer_row(11, state="WATCH"))  # same state again: buffered
    assert w.flushed_step_ == 10
    w(layer_row(12, state="HEALTHY"))  # back to healthy: no hurry
    assert w.flushed_step_ == 10
    w(layer_row(13, state="COLLAPSE"))
    assert w.flushed_step_ == 13
    # what a flush wrote is readable by another reader before any Parquet part exists
    live = read_run(w.run_dir, include_journal=True).collect()
    assert live["step"].to_list() == list(range(14))
    assert read_run(w.run_dir).collect().height == 0
    w.close()
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(14))


def test_flush_on_elapsed_time_even_when_training_stalls(tmp_path):
    w = RunWriter(tmp_path, run_id="t", flush_rows=1000, flush_seconds=0.1)
    write_rows(w, range(3))
    deadline = time.monotonic() + 10
    while w.flushed_step_ != 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # no more rows: the background thread must flush on its own
    assert w.flushed_step_ == 2
    assert read_run(w.run_dir, include_journal=True).collect()["step"].to_list() == [0, 1, 2]
    w.close()


def test_explicit_flush_and_close_is_idempotent(tmp_path):
    w = RunWriter(tmp_path, run_id="c", flush_rows=100)
    write_rows(w, range(5))
    w.flush()
    assert w.flushed_step_ == 4
    w.close()
    w.close()
    assert w.closed
    with pytest.raises(StreamtopoError, match="closed"):
        w(layer_row(5))


# -- resume, ranks, locks ------------------------------------------------------------------
def test_resume_appends_new_parts_and_never_overwrites(tmp_path):
    with RunWriter(tmp_path, run_id="res", flush_rows=4, roll_rows=8) as w:
        write_rows(w, range(10))
    first = {p.name: p.read_bytes() for p in w.rank_dir.glob("*.parquet")}
    with RunWriter(tmp_path, run_id="res", flush_rows=4, roll_rows=8, resume="allow") as w2:
        assert w2.next_step_ == 10
        write_rows(w2, range(10, 15))
    for name, data in first.items():  # committed parts are immutable
        assert (w.rank_dir / name).read_bytes() == data
    assert len(list(w.rank_dir.glob("*.parquet"))) == len(first) + 1
    df = read_run(w.run_dir).collect()
    assert df["step"].to_list() == list(range(15))
    check_cells(df, 4)


def test_step_offset_continue_renumbers_a_restarted_monitor(tmp_path):
    with RunWriter(tmp_path, run_id="off") as w:
        write_rows(w, range(6))
    with RunWriter(tmp_path, run_id="off", step_offset="continue", resume="allow") as w2:
        w2(layer_row(0))
        w2(layer_row(1))
        assert w2.next_step_ == 8
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(8))


def test_resume_with_other_layers_is_rejected(tmp_path):
    with RunWriter(tmp_path, run_id="x") as w:
        write_rows(w, range(2), n_layers=4)
    with RunWriter(tmp_path, run_id="x", resume="allow") as w2:
        with pytest.raises(InputError, match="different"):
            w2(layer_row(2, n_layers=5))


def test_one_writer_per_rank_and_ranks_write_their_own_directory(tmp_path):
    w0 = RunWriter(tmp_path, run_id="mr", rank=0, flush_rows=3)
    with pytest.raises(InputError, match="already open"):
        RunWriter(tmp_path, run_id="mr", rank=0)
    w1 = RunWriter(tmp_path, run_id="mr", rank=1, flush_rows=3)
    write_rows(w0, range(5))
    write_rows(w1, range(7))
    w0.close()
    w1.close()
    df = read_run(w0.run_dir).collect()
    assert df.group_by("rank").len().sort("rank").rows() == [(0, 5), (1, 7)]
    scanned = pl.scan_parquet(
        w0.run_dir / "table=layer/**/*.parquet", hive_partitioning=True
    ).collect()
    assert scanned.drop("table").sort("rank", "step").equals(df.sort("rank", "step"))
    with pytest.raises(InputError, match="run_id is required"):
        RunWriter(tmp_path, rank=1)


def test_default_run_id_is_unique_and_valid(tmp_path):
    with RunWriter(tmp_path) as a, RunWriter(tmp_path) as b:
        assert a.run_id != b.run_id
        assert a.run_dir.parent == tmp_path and a.run_dir.name.startswith("run=")


# -- other monitor kinds -------------------------------------------------------------------
def test_other_kinds_get_their_own_table_and_the_layer_glob_still_works(tmp_path):
    with RunWriter(tmp_path, run_id="mix", flush_rows=4, roll_rows=8) as w:
        for s in range(20):
            w(layer_row(s))
            if s % 2 == 0:
                w(centroid_row(s))
    # the documented raw-polars recipe reads the layer table only
    layer = pl.scan_parquet(
        w.run_dir / "table=layer/**/*.parquet", hive_partitioning=True
    ).collect()
    assert layer.height == 20 and "h0_gap" not in layer.columns
    cen = read_run(w.run_dir, table="centroid").collect()
    assert cen.columns == [
        "step", "wall_time", "h0_gap", "n_classes", "state", "alert", "run", "rank"
    ]  # fmt: skip
    assert cen["step"].to_list() == list(range(0, 20, 2))
    assert cen["alert"].to_list() == [True] * 10 and cen["n_classes"].dtype == pl.Int64
    raw = pl.scan_parquet(
        w.run_dir / "table=centroid/rank=*/*.parquet", hive_partitioning=True
    ).collect()
    assert raw.sort("step")["h0_gap"].to_list() == cen["h0_gap"].to_list()
    meta = json.loads((w.run_dir / "_meta.json").read_text())
    assert sorted(meta["tables"]) == ["centroid", "layer"]
    with pytest.raises(InputError, match="table='nope'"):
        read_run(w.run_dir, table="nope")


def test_bad_rows_of_other_kinds_leave_the_writer_unchanged(tmp_path):
    with RunWriter(tmp_path, run_id="bk", flush_rows=100) as w:
        w(centroid_row(0))
        bad = [
            {**centroid_row(1), "h0_gap": "high"},
            {**centroid_row(1), "extra": 1.0},
            {k: v for k, v in centroid_row(1).items() if k != "n_classes"},
            {**centroid_row(1), "n_classes": 2.5},
        ]
        for row in bad:
            with pytest.raises((InputError, InputTypeError)):
                w(row)
        w(centroid_row(1))
        with pytest.raises(InputTypeError, match="must be an int, float, str or bool"):
            w({"monitor": "morse", "step": 0, "wall_time": 0.0, "x": [1], "config": {}})
        with pytest.raises(InputError, match="monitor"):
            w({**centroid_row(0), "monitor": "../evil"})
    assert read_run(w.run_dir, table="centroid").collect()["step"].to_list() == [0, 1]


# -- bad names, paths and rows -------------------------------------------------------------
@pytest.mark.parametrize(
    "run_id", ["", "..", "a/b", "a\\b", "../x", ".hidden", "x" * 129, "a..b", "a b", "é", 3]
)
def test_bad_run_ids_are_rejected_before_anything_is_written(tmp_path, run_id):
    with pytest.raises((InputError, InputTypeError), match="run_id"):
        RunWriter(tmp_path / "logs", run_id=run_id)
    assert not (tmp_path / "logs").exists() or list((tmp_path / "logs").iterdir()) == []


@pytest.mark.parametrize(
    "field,value",
    [
        ("layer_names", ("a", "b/c", "d", "e")),
        ("layer_names", ("a", "..", "d", "e")),
        ("layer_names", ("a", "a", "d", "e")),
        ("layer_names", ("a", "", "d", "e")),
        ("layer_names", ("a", "x" * 201, "d", "e")),
        ("layer_names", ("a", "tab\there", "d", "e")),
        ("signals", ("grad/norm", "act_norm")),
        ("signals", "grad_norm"),
    ],
)
def test_bad_names_are_rejected(tmp_path, field, value):
    with RunWriter(tmp_path, run_id="names") as w:
        with pytest.raises((InputError, InputTypeError), match=field):
            w({**layer_row(0), field: value})
    assert not (w.run_dir / "_meta.json").exists()


def test_dotted_layer_names_are_fine(tmp_path):
    row = {**layer_row(0, 2), "layer_names": ("encoder.layers.0", "encoder.layers.1")}
    with RunWriter(tmp_path, run_id="dots") as w:
        w(row)
    assert "grad_norm/encoder.layers.1" in read_run(w.run_dir).collect().columns


def test_symlinked_run_directory_outside_log_dir_is_rejected(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "run=evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="outside"):
        RunWriter(logs, run_id="evil")
    assert list(outside.iterdir()) == []


def test_bad_layer_rows_leave_the_buffer_unchanged(tmp_path):
    w = RunWriter(tmp_path, run_id="bad", flush_rows=100)
    write_rows(w, range(3))
    bad = [
        {**layer_row(3), "values": np.zeros((2, 5), np.float32)},
        {**layer_row(3), "values": np.zeros(8, np.float32)},
        {**layer_row(3), "values": [[1.0] * 4] * 2},
        {**layer_row(3), "values": np.array([["a"] * 4] * 2)},
        {**layer_row(3), "step": 3.0},
        {**layer_row(3), "wall_time": "now"},
        {**layer_row(3), "h0": "1.0"},
        {**layer_row(3), "state": None},
        {**layer_row(3), "signals": ("act_norm", "grad_norm")},
        {k: v for k, v in layer_row(3).items() if k != "reason"},
        "not a row",
        {"step": 3},
    ]
    for row in bad:
        with pytest.raises((InputError, InputTypeError)):
            w(row)
    write_rows(w, range(3, 5))
    w.close()
    df = read_run(w.run_dir).collect()
    assert df["step"].to_list() == list(range(5))
    check_cells(df, 4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flush_rows": 0},
        {"flush_rows": 1.5},
        {"flush_seconds": 0},
        {"flush_seconds": "5"},
        {"roll_rows": -1},
        {"fsync": "sometimes"},
        {"rank": -1},
        {"step_offset": "later"},
    ],
)
def test_bad_parameters_are_rejected(tmp_path, kwargs):
    name = next(iter(kwargs))
    with pytest.raises((InputError, InputTypeError), match=name):
        RunWriter(tmp_path, run_id="p", **kwargs)


def test_fsync_modes_write_the_same_data(tmp_path):
    for mode in ("part", "flush"):
        with RunWriter(tmp_path, run_id=mode, fsync=mode, flush_rows=3, roll_rows=6) as w:
            write_rows(w, range(10))
        assert read_run(w.run_dir).collect()["step"].to_list() == list(range(10))


# -- readers that do not import streamtopo ---------------------------------------------------
def test_scan_parquet_works_without_streamtopo(tmp_path):
    with RunWriter(tmp_path, run_id="plain", flush_rows=5, roll_rows=10) as w:
        write_rows(w, range(23))
    code = (
        "import sys, polars as pl\n"
        f"df = pl.scan_parquet({str(w.run_dir / 'table=layer/**/*.parquet')!r}, "
        "hive_partitioning=True)"
        ".collect()\n"
        "assert not any(m.startswith('streamtopo') for m in sys.modules), 'imported'\n"
        "print(df.height, sorted(df['step'].to_list()) == list(range(23)), df['run'][0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["23", "True", "plain"]


def test_journal_is_a_plain_arrow_stream(tmp_path):
    w = RunWriter(tmp_path, run_id="ipc", flush_rows=2)
    write_rows(w, range(4))
    (journal,) = w.rank_dir.glob("*.arrows")
    with open(journal, "rb") as f:
        reader = ipc.open_stream(f)
        batches = list(reader)
    assert [b.num_rows for b in batches] == [2, 2]
    w.close()
    assert recover(w.run_dir).clean


# -- threads and forks ---------------------------------------------------------------------
def test_writer_opened_in_a_worker_thread(tmp_path):
    errors = []

    def work():
        try:
            with RunWriter(tmp_path, run_id="thr", flush_rows=3) as w:
                write_rows(w, range(10))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert errors == []
    assert read_run(tmp_path / "run=thr").collect()["step"].to_list() == list(range(10))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process.*fork:DeprecationWarning")
def test_forked_child_cannot_write_the_parents_files(tmp_path):
    w = RunWriter(tmp_path, run_id="fork", flush_rows=4)
    write_rows(w, range(6))  # 2 rows still buffered when the child is forked
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            w(layer_row(100))
        except StreamtopoError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    write_rows(w, range(6, 9))
    w.close()
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(9))


def test_float64_values_are_stored_as_float32(tmp_path):
    row = layer_row(0, 2)
    row["values"] = np.array([[1e300, -1e300], [0.1, 2.0**-140]], np.float64)
    with RunWriter(tmp_path, run_id="f64") as w:
        w(row)
    got = read_run(w.run_dir).collect().select(pl.col(pl.Float32)).to_numpy()[0]
    want = np.array([np.inf, -np.inf, np.float32(0.1), np.float32(2.0**-140)], np.float32)
    np.testing.assert_array_equal(got, want)


def test_numpy_scalars_in_rows(tmp_path):
    row = {**layer_row(0), "step": np.int32(0), "wall_time": np.float32(2.5), "h0": np.float64(1)}
    with RunWriter(tmp_path, run_id="npscalar") as w:
        w(row)
        w({**layer_row(1), "step": np.int64(1), "wall_time": 3, "h0": 0})
    df = read_run(w.run_dir).collect()
    wall = df["wall_time"].dt.epoch("us").to_list()
    assert df.select("step", "h0").rows() == [(0, 1.0), (1, 0.0)] and wall == [2_500_000, 3_000_000]


def test_writing_never_imports_polars():
    code = (
        "import sys, tempfile, numpy as np\n"
        "from streamtopo.io.journal import RunWriter\n"
        "from tests.journal_rows import layer_row\n"
        "with RunWriter(tempfile.mkdtemp(), run_id='np') as w:\n"
        "    w(layer_row(0))\n"
        "print('polars' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_two_rank_processes_share_one_run(tmp_path):
    code = (
        "import sys\n"
        "from streamtopo.io import RunWriter\n"
        "from tests.journal_rows import layer_row, centroid_row\n"
        "rank = int(sys.argv[1])\n"
        "with RunWriter(sys.argv[2], run_id='ddp', rank=rank, flush_rows=50, roll_rows=400) as w:\n"
        "    for s in range(1500 + 100 * rank):\n"
        "        w(layer_row(s))\n"
        "        if s % 10 == 0:\n"
        "            w(centroid_row(s))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(r), str(tmp_path)], env=env, cwd=ROOT)
        for r in (0, 1)
    ]
    assert [p.wait(120) for p in procs] == [0, 0]
    run_dir = tmp_path / "run=ddp"
    df = read_run(run_dir).collect()
    assert df.group_by("rank").len().sort("rank").rows() == [(0, 1500), (1, 1600)]
    for r, n in ((0, 1500), (1, 1600)):
        part = df.filter(pl.col("rank") == r)
        assert part["step"].to_list() == list(range(n))
        check_cells(part, 4)
    cen = read_run(run_dir, table="centroid").collect()
    assert cen.group_by("rank").len().sort("rank").rows() == [(0, 150), (1, 160)]
    meta = json.loads((run_dir / "_meta.json").read_text())
    assert sorted(meta["tables"]) == ["centroid", "layer"]
    assert not list(run_dir.glob("**/*.arrows")) and not list(run_dir.glob("**/*.tmp"))


def test_layer_rows_keep_the_alarm_fields(tmp_path):
    with RunWriter(tmp_path, run_id="why") as w:
        w(layer_row(0))  # the alarm fields are optional: NaN, NaN, [], "", False
        w({**layer_row(1), "z": 4.5, "stat": -3.25, "culprits": ("blocks.2.mlp",),
           "direction": "rising", "calibrating": np.bool_(True)})  # fmt: skip
        with pytest.raises(InputTypeError, match=r"row\['culprits'\]"):
            w({**layer_row(2), "culprits": "blocks.2.mlp"})
        with pytest.raises(InputTypeError, match=r"row\['calibrating'\]"):
            w({**layer_row(2), "calibrating": 1})
    df = read_run(w.run_dir).collect()
    got = df.select("z", "stat", "culprits", "direction", "calibrating").rows()
    assert np.isnan(got[0][0]) and np.isnan(got[0][1]) and got[0][2:] == ([], "", False)
    assert got[1] == (4.5, -3.25, ["blocks.2.mlp"], "rising", True)
    assert df.height == 2
