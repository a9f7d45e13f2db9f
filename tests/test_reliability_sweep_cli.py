"""The sweep of bad command-line arguments (issue 16): every command, run in-process through
``main(argv)``. Each exits non-zero, prints exactly one ``error:`` line naming the argument on
stderr and no traceback, and leaves the run directory's files unchanged."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from streamtopo import LayerMonitor, LossRiseDetector
from streamtopo.app.cli import main
from streamtopo.io import RunWriter
from tests.reliability_io_helpers import hashes


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A run (a layer and a loss table) and a few input files, made once."""
    root = tmp_path_factory.mktemp("cli")
    with RunWriter(root / "logs", run_id="r", flush_rows=8) as w:
        mon, loss = LayerMonitor(3, window=2, writer=w), LossRiseDetector(writer=w)
        for s in range(20):
            mon.check([1.0, 2.0, 3.0 + s % 2])
            loss.check(1.0 / (s + 1))
    rng = np.random.default_rng(0)
    np.save(root / "pts.npy", rng.normal(size=(12, 3)))
    np.save(root / "pts3d.npy", rng.normal(size=(2, 3, 4)))
    np.save(root / "nonsquare.npy", rng.normal(size=(4, 3)))
    np.save(root / "cplx.npy", rng.normal(size=(5, 2)) * 1j)
    np.save(root / "labels.npy", np.arange(7))
    (root / "obj.npy").write_bytes(pickle.dumps([1, 2]))  # not a .npy at all
    np.save(root / "objarr.npy", np.array([object()] * 3), allow_pickle=True)
    (root / "text.csv").write_text("a,b\nc,d\n")
    (root / "empty.csv").write_text("")
    (root / "ragged.csv").write_text("1,2,3\n4,5\n")
    (root / "not_a_dir").write_text("x")
    return root


R = "{root}/logs/run=r"
CASES: list[tuple[list[str], str]] = [
    # no command / unknown command / unknown option
    (["nope"], "COMMAND"),
    (["h0", "--nope"], "--nope"),
    (["warmup", "--fast"], "--fast"),
    # h0
    (["h0", "{root}/missing.npy"], "missing.npy"),
    (["h0", "{root}/obj.npy"], "obj.npy"),
    (["h0", "{root}/objarr.npy"], "objarr.npy"),
    (["h0", "{root}/pts3d.npy"], "pts3d.npy"),
    (["h0", "{root}/cplx.npy"], "cplx.npy"),
    (["h0", "{root}/text.csv"], "text.csv"),
    (["h0", "{root}/empty.csv"], "empty.csv"),
    (["h0", "{root}/ragged.csv"], "ragged.csv"),
    (["h0", "{root}/not_a_dir"], "not_a_dir"),
    (["h0", "{root}"], "{root}"),
    (["h0", "--metric", "manhattan"], "--metric"),
    (["h0", "{root}/nonsquare.npy", "--metric", "precomputed"], "precomputed"),
    (["h0", "--json", "yes"], "yes"),
    # collapse
    (["collapse", "{root}/missing.npy"], "missing.npy"),
    (["collapse", "{root}/pts3d.npy"], "pts3d.npy"),
    (["collapse", "{root}/text.csv"], "text.csv"),
    (["collapse", "{root}/pts.npy", "--labels", "{root}/labels.npy"], "labels"),
    (["collapse", "{root}/pts.npy", "--labels", "{root}/missing.csv"], "missing.csv"),
    (["collapse", "{root}/pts.npy", "--labels", "{root}/pts.npy"], "pts.npy"),
    (["collapse", "--variant", "x"], "--variant"),
    (["collapse", "--max-points", "0"], "--max-points"),
    (["collapse", "--max-points", "-5"], "--max-points"),
    (["collapse", "--max-points", "x"], "--max-points"),
    (["collapse", "--seed", "-1"], "--seed"),
    (["collapse", "--seed", "1.5"], "--seed"),
    # centroid
    (["centroid", "--train-fraction", "0"], "--train-fraction"),
    (["centroid", "--train-fraction", "1"], "--train-fraction"),
    (["centroid", "--train-fraction", "nan"], "--train-fraction"),
    (["centroid", "--train-fraction", "inf"], "--train-fraction"),
    (["centroid", "--train-fraction", "x"], "--train-fraction"),
    (["centroid", "--train-fraction", "0.0001"], "--train-fraction"),
    (["centroid", "--seed", "-1"], "--seed"),
    (["centroid", "--seed", "x"], "--seed"),
    # demo (argument errors only: nothing trains)
    (["demo", "--fault", "x"], "--fault"),
    (["demo", "--steps", "10"], "--steps"),
    (["demo", "--steps", "x"], "--steps"),
    (["demo", "--seed", "-2"], "--seed"),
    (["demo", "--model", "x"], "--model"),
    (["demo", "--model", "transformer", "--fault", "dead-relu"], "--fault"),
    (["demo", "--out", "{root}/not_a_dir"], "--out"),
    # recover
    (["recover"], "run"),
    (["recover", "{root}/missing"], "missing"),
    (["recover", "{root}/not_a_dir"], "not_a_dir"),
    (["recover", "{root}/logs"], "logs"),
    (["recover", R, "--fsync", "1"], "1"),
    # replay
    (["replay"], "run"),
    (["replay", "{root}/missing"], "missing"),
    (["replay", "{root}/not_a_dir"], "not_a_dir"),
    (["replay", R, "--window", "0"], "--window"),
    (["replay", R, "--window", "-3"], "--window"),
    (["replay", R, "--window", "x"], "--window"),
    (["replay", R, "--window", "1000000000"], "--window"),
    (["replay", R, "--transform", "sqrt"], "--transform"),
    (["replay", R, "--rule", "x"], "--rule"),
    (["replay", R, "--check-every", "0"], "--check-every"),
    (["replay", R, "--check-every", "x"], "--check-every"),
    (["replay", R, "--rank", "-1"], "--rank"),
    (["replay", R, "--rank", "5"], "--rank"),
    (["replay", R, "--rank", "x"], "--rank"),
    (["replay", R, "--table", "loss"], "--table"),
    (["replay", R, "--table", "layer.x"], "--table"),
    (["replay", R, "--table", "../x"], "--table"),
    (["replay", R, "--out", "{root}/missing/dir/s.parquet"], "--out"),
    (["replay", R, "--out", "{root}"], "--out"),
    (["replay", R, "--out", R + "/s.parquet"], "--out"),
    # report
    (["report"], "run"),
    (["report", "{root}/missing"], "missing"),
    (["report", "{root}/logs"], "logs"),
    (["report", R, "--out", R + "/report.html"], "--out"),
    (["report", R, "--out", "{root}/not_a_dir/r.html"], "--out"),
    (["report", R, "--out", "{root}"], "--out"),
    # train (argument errors only: nothing trains)
    (["train", "--dataset", "x"], "--dataset"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "-1"], "--epochs"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "x"], "--lr"),
    (["train", "--hidden", "0"], "--hidden"),
    (["train", "--gap-threshold", "nan"], "--gap-threshold"),
    (["train", "--gap-threshold", "x"], "--gap-threshold"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--model", "x"], "--model"),
    (["train", "--lr-search", "x"], "--lr-search"),
    (["train", "--search-epochs", "0"], "--search-epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--eps", "-1"], "--eps"),
    (["train", "--eps", "nan"], "--eps"),
    (["train", "--threads", "0"], "--threads"),
    # calibrate
    (["calibrate", "{root}/missing_run"], "missing_run"),
    (["calibrate", "{root}/not_a_dir"], "not_a_dir"),
    (["calibrate", R, "--target-fa", "0"], "--target-fa"),
    (["calibrate", R, "--target-fa", "nan"], "--target-fa"),
    (["calibrate", R, "--target-fa", "-1"], "--target-fa"),
    (["calibrate", R, "--rule", "peak"], "--rule"),
    (["calibrate", R, "--confidence", "1.5"], "--confidence"),
    (["calibrate", R, "--confidence", "0"], "--confidence"),
    (["calibrate", R, "--workers", "0"], "--workers"),
    (["calibrate", R, "--horizon", "0"], "--horizon"),
    (["calibrate", R, "--seed", "-1"], "--seed"),
    (["calibrate", R, "--out", "{root}/no/such/dir/c.json"], "--out"),
]


def _ids() -> list[str]:
    return [" ".join(a.replace("{root}/", "").replace(R, "RUN") for a in argv) for argv, _ in CASES]


@pytest.mark.parametrize("argv,name", CASES, ids=_ids())
def test_bad_cli_arguments(files, capsys, argv, name):
    root = str(files)
    argv = [a.replace("{root}", root) for a in argv]
    name = name.replace("{root}", root)
    before = hashes(files)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    # the option as typed (--check-every), or the parameter it sets (check_every)
    assert name in lines[0] or name.lstrip("-").replace("-", "_") in lines[0], err
    assert hashes(files) == before


def test_the_cli_sweep_covers_every_command():
    from streamtopo.app.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    swept = {argv[0] for argv, _ in CASES}
    assert set(sub.choices) <= swept
    assert len(CASES) >= 80
