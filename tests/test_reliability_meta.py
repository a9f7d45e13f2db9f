"""Issue 16 item 6: ``_meta.json`` is input, not truth. Every reader (read_run, replay, recover,
the report, a writer reopening the run) refuses a bad field by name, before using it, and
changes no file."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from streamtopo import LayerMonitor
from streamtopo.errors import RecoveryError
from streamtopo.io import RunWriter, read_meta, read_run, recover, replay
from streamtopo.report import build_report
from tests.reliability_io_helpers import hashes


def monitored_run(log_dir: Path) -> Path:
    with RunWriter(log_dir, run_id="m", flush_rows=16) as w:
        mon = LayerMonitor(n_layers=4, window=4, writer=w)
        for s in range(40):
            mon.check([1.0 + s % 3, 2.0, 3.0, 4.0 + s % 5])
    return w.run_dir


def _set(meta: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    obj = meta
    for key in path:
        obj = obj[key]
    obj[last] = value


def _drop(meta: dict, dotted: str) -> None:
    *path, last = dotted.split(".")
    obj = meta
    for key in path:
        obj = obj[key]
    del obj[last]


# (name, edit, text the error must contain: the field)
EDITS = [
    ("missing schema", lambda m: _drop(m, "tables.layer.schema"), "tables.layer.schema"),
    ("missing config", lambda m: _drop(m, "tables.layer.config"), "tables.layer.config"),
    ("missing files", lambda m: _drop(m, "tables.layer.files"), "tables.layer.files"),
    ("missing signals", lambda m: _drop(m, "tables.layer.signals"), "tables.layer.signals"),
    ("missing run_id", lambda m: _drop(m, "run_id"), "run_id"),
    ("missing tables", lambda m: _drop(m, "tables"), "tables"),
    ("missing format_version", lambda m: _drop(m, "format_version"), "format_version"),
    ("bool version", lambda m: _set(m, "format_version", True), "format_version"),
    ("bad run_id", lambda m: _set(m, "run_id", "../x"), "run_id"),
    ("tables a list", lambda m: _set(m, "tables", []), "tables"),
    ("table a string", lambda m: _set(m, "tables.layer", "x"), "tables.layer"),
    ("bad kind", lambda m: m["tables"].update({"Bad/Kind": {}}), "tables.Bad/Kind"),
    ("schema a dict", lambda m: _set(m, "tables.layer.schema", {}), "tables.layer.schema"),
    ("unknown type", lambda m: m["tables"]["layer"]["schema"][3].__setitem__(1, "int128"),
     "tables.layer.schema[3]"),
    ("schema without step", lambda m: m["tables"]["layer"]["schema"].pop(0),
     "tables.layer.schema"),
    ("layer name with slash", lambda m: m["tables"]["layer"]["layer_names"].__setitem__(0, "a/b"),
     "tables.layer.layer_names[0]"),
    ("columns differ", lambda m: m["tables"]["layer"]["columns"].reverse(),
     "tables.layer.columns"),
    ("config a list", lambda m: _set(m, "tables.layer.config", [1]), "tables.layer.config"),
    ("n_layers differs", lambda m: _set(m, "tables.layer.config.n_layers", 5),
     "tables.layer.config.n_layers"),
    ("layer_names a dict", lambda m: _set(m, "layer_names", {}), "layer_names"),
    ("monitor_config a list", lambda m: _set(m, "monitor_config", []), "monitor_config"),
]  # fmt: skip


def _readers(run: Path, tmp: Path):
    return {
        "read_meta": lambda: read_meta(run),
        "read_run": lambda: read_run(run),
        "replay": lambda: replay(run),
        "recover": lambda: recover(run),
        "report": lambda: build_report(run, tmp / "out" / "r.html"),
        "writer": lambda: RunWriter(run.parent, run_id="m", resume="allow"),
    }


@pytest.mark.parametrize("name,edit,field", EDITS, ids=[e[0] for e in EDITS])
def test_a_bad_field_is_named_by_every_reader_and_nothing_changes(tmp_path, name, edit, field):
    run = monitored_run(tmp_path)
    meta = json.loads((run / "_meta.json").read_text())
    edit(meta)
    (run / "_meta.json").write_text(json.dumps(meta))
    before = hashes(run)
    for reader, call in _readers(run, tmp_path).items():
        with pytest.raises(RecoveryError) as info:
            call()
        assert field in str(info.value), (reader, str(info.value))
    assert hashes(run) == before


@pytest.mark.parametrize("key", ["window", "capacity", "baseline"])
def test_a_huge_size_is_refused_before_any_allocation(tmp_path, key):
    run = monitored_run(tmp_path)
    meta = json.loads((run / "_meta.json").read_text())
    meta["tables"]["layer"]["config"][key] = 10**9
    (run / "_meta.json").write_text(json.dumps(meta))
    tracemalloc.start()
    try:
        with pytest.raises(RecoveryError, match=f"tables.layer.config.{key}"):
            replay(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # 1e9 steps x 4 layers would be >= 30 GB
    # the caller may still override it explicitly (an argument, checked the same way)
    meta["tables"]["layer"]["config"][key] = 4 if key == "window" else 200
    (run / "_meta.json").write_text(json.dumps(meta))
    from streamtopo.errors import InputError

    with pytest.raises(InputError, match=f"{key} must be between 1 and"):
        replay(run, **{key: 10**9})


def test_a_size_above_the_rows_but_under_the_floor_still_replays(tmp_path):
    """A short run with a large configured capacity is legitimate."""
    with RunWriter(tmp_path, run_id="short") as w:
        mon = LayerMonitor(n_layers=4, window=4, capacity=4096, writer=w)
        for s in range(10):
            mon.check([1.0, 2.0, 3.0, 4.0 + s])
    assert replay(w.run_dir).height == 10


def test_deep_nesting_is_refused_before_json_recursion(tmp_path):
    run = monitored_run(tmp_path)
    depth = 200_000
    (run / "_meta.json").write_text(
        '{"format": "streamtopo-run", "x": ' + "[" * depth + "]" * depth + "}"
    )
    for reader, call in _readers(run, tmp_path).items():
        with pytest.raises(RecoveryError, match="nests 200001 levels"):
            call()
        del reader


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    with RunWriter(tmp_path, run_id="b") as w:
        w(
            {
                "monitor": "note",
                "step": 0,
                "wall_time": 0.0,
                "text": "[[[[",
                "config": {"k": "{" * 500},
            }
        )
    assert read_run(w.run_dir, table="note").collect()["text"].to_list() == ["[[[["]


def test_an_oversized_meta_is_refused_unread(tmp_path):
    run = monitored_run(tmp_path)
    with open(run / "_meta.json", "r+b") as f:
        f.truncate(65 * 2**20)  # sparse: no 65 MB written
    with pytest.raises(RecoveryError, match="more than"):
        read_run(run)


def test_a_symlinked_meta_is_refused(tmp_path):
    run = monitored_run(tmp_path)
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes((run / "_meta.json").read_bytes())
    (run / "_meta.json").unlink()
    (run / "_meta.json").symlink_to(outside)
    with pytest.raises(RecoveryError, match="symbolic link"):
        read_run(run)
