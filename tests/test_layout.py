"""Run layout (format 2): one directory per table; format-1 runs are still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from streamtopo.errors import InputError, RecoveryError
from streamtopo.io import RunWriter, read_run, recover
from tests.journal_rows import centroid_row, expected_values, layer_row

FORMAT1 = Path(__file__).parent / "data" / "format1" / "run=v1"


def _files(run: Path) -> list[tuple[str, bytes]]:
    return sorted(
        (str(p.relative_to(run)), p.read_bytes())
        for p in run.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    )


def _mixed_run(tmp_path: Path) -> Path:
    with RunWriter(tmp_path, run_id="mix", flush_rows=4, roll_rows=8) as w:
        for s in range(20):
            w(layer_row(s))
            if s % 2 == 0:
                w(centroid_row(s))
    return w.run_dir


def test_every_table_has_its_own_directory_of_parquet_parts(tmp_path):
    run = _mixed_run(tmp_path)
    tables = sorted(p.name for p in run.iterdir() if p.name.startswith("table="))
    assert tables == ["table=centroid", "table=layer"]
    for table in tables:
        names = [p.name for p in (run / table / "rank=0").iterdir()]
        assert names and all(n.startswith("part-") and n.endswith(".parquet") for n in names)
    meta = json.loads((run / "_meta.json").read_text())
    assert meta["format_version"] == 2
    assert meta["tables"]["centroid"]["files"] == "table=centroid/rank=*/part-*.parquet"
    assert not list(run.glob("rank=*"))  # nothing in the format-1 place


def test_pyarrow_dataset_on_table_layer_reads_only_layer_rows(tmp_path):
    run = _mixed_run(tmp_path)
    table = ds.dataset(run / "table=layer", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 20
    assert "h0_gap" not in table.column_names and "grad_norm/blocks.0.mlp" in table.column_names
    assert sorted(table.column("step").to_pylist()) == list(range(20))
    cen = ds.dataset(run / "table=centroid", format="parquet", partitioning="hive").to_table()
    assert cen.num_rows == 10 and "h0_gap" in cen.column_names


def test_a_format1_run_is_read_recovered_replayed_and_continued(tmp_path):
    run = tmp_path / "run=v1"
    shutil.copytree(FORMAT1, run)
    before = _files(run)
    layer = read_run(run).collect()
    assert layer["step"].to_list() == list(range(20))
    got = layer.select([c for c in layer.columns if "/" in c]).to_numpy()
    assert np.array_equal(got[7], expected_values(7, 4).reshape(-1))
    cen = read_run(run, table="centroid").collect()
    assert cen["step"].to_list() == list(range(0, 20, 2))
    assert recover(run).clean
    assert _files(run) == before  # nothing moved or rewritten
    # appending to it is refused before anything changes
    with pytest.raises(InputError, match=r"run format 1.*choose another run_id"):
        RunWriter(tmp_path, run_id="v1", resume="allow")
    assert _files(run) == before


def test_a_format1_run_with_a_leftover_journal_is_recovered_in_place(tmp_path):
    run = tmp_path / "run=v1"
    shutil.copytree(FORMAT1, run)
    part = run / "rank=0" / "part-000002.parquet"
    rows = read_run(run).collect().height
    # the last part back as the journal a crash of a format-1 writer left (rows 16..19)
    part.unlink()
    shutil.copy(FORMAT1.parent / "part-000002.arrows", run / "rank=0" / "part-000002.arrows")
    assert read_run(run, include_journal=True).collect().height == rows
    report = recover(run)
    assert report.parts_written == ["rank=0/part-000002.parquet"]
    assert read_run(run).collect()["step"].to_list() == list(range(20))


@pytest.mark.parametrize("kind", ["layer", "centroid"])
def test_a_table_directory_that_is_a_link_is_refused(tmp_path, kind):
    run = _mixed_run(tmp_path)
    other = _mixed_run(tmp_path / "other")
    shutil.rmtree(run / f"table={kind}")
    (run / f"table={kind}").symlink_to(other / f"table={kind}", target_is_directory=True)
    with pytest.raises(RecoveryError, match="symbolic link"):
        read_run(run, table=kind)
    with pytest.raises(RecoveryError, match="symbolic link"):
        recover(run)


def test_the_live_layer_table_says_why_a_step_is_in_its_state(tmp_path):
    from streamtopo.monitors import LayerMonitor

    rng = np.random.default_rng(0)
    names = [f"fc{i}" for i in range(8)]
    with RunWriter(tmp_path, run_id="why") as w:
        mon = LayerMonitor(8, ("grad_norm", "act_norm"), layer_names=names, writer=w)
        levels = rng.normal(size=(2, 8))
        statuses = []
        for t in range(250):
            x = np.exp(levels + 0.05 * rng.normal(size=(2, 8)))
            if t >= 240:
                x[:, 3] *= 100.0
            statuses.append(mon.check({"grad_norm": x[0], "act_norm": x[1]}))
    df = read_run(w.run_dir).collect()
    last, row = statuses[-1], df.row(-1, named=True)
    assert row["state"] == "COLLAPSE" and row["culprits"] == list(last.culprits)
    assert row["culprits"][0] == "fc3" and row["direction"] == "rising"
    assert row["z"] == last.z and abs(row["stat"]) >= mon.watch_z
    assert df["calibrating"].to_list() == [s.calibrating for s in statuses]
    assert df["calibrating"][0] and not df["calibrating"][-1]
    healthy = df.filter(df["state"] == "HEALTHY")
    assert healthy["stat"].is_nan().all() and healthy.height > 200
