"""PHTrainer (seed 004's pipeline) and the ``streamtopo train`` command: real torch training on
the bundled digits, the four phases printed, the measured claims in the result, clear errors."""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
import pytest

from streamtopo.app import train as app_train
from streamtopo.compat import pipeline as pl
from streamtopo.compat.ph_training import PHTrainer, TrainingResult
from streamtopo.errors import InputError, InputTypeError

torch = pytest.importorskip("torch")  # CI installs torch and fails on any skip

PHASES = ("Phase 1: Difficulty", "Phase 2: LR", "Phase 3: Training", "Phase 4: Analysis")


@pytest.fixture(scope="module")
def digits_run():
    out = io.StringIO()
    result = PHTrainer(dataset="digits", epochs=3, adversarial=True, file=out).run()
    return result, out.getvalue()


def test_trainer_runs_the_four_phases_on_digits(digits_run):
    result, text = digits_run
    assert isinstance(result, TrainingResult)
    for phase in PHASES:
        assert phase in text
    # seed README fields
    assert result.difficulty in ("easy", "medium", "hard")
    assert result.h0_ep1 > 0 and 0 <= result.best_acc <= 100 and 1 <= result.best_epoch <= 3
    assert result.best_lr in (3e-4, 1e-3, 3e-3)
    assert len(result.confusion_pairs) == 5
    w, a, b = result.confusion_pairs[0]
    assert isinstance(w, float) and a in "0123456789" and b in "0123456789"
    assert result.early_stop is False and result.early_stopped is False
    assert (
        [h["epoch"] for h in result.history] == [1, 2, 3] == [h["epoch"] for h in result.epoch_log]
    )
    assert {"train_acc", "test_acc", "h0_train", "h0_test", "h0_gap", "status"} <= set(
        result.history[0]
    )
    # the difficulty label prints the H0 value and the measured correlation
    assert f"H0_ep1 = {result.h0_ep1:.4f}" in text and "r = +0.67" in text and "r > 0.9" in text


def test_trainer_shows_both_lr_choices(digits_run):
    result, text = digits_run
    search = result.lr_search
    assert result.lr_method == "val_loss" and result.best_lr == search.choice["val_loss"]
    assert set(search.choice) == {"h0cv", "val_loss"}
    assert [r["lr"] for r in search.table] == [3e-4, 1e-3, 3e-3]
    assert "min H0 CV (seed 004)" in text and "min validation loss" in text
    for row in search.table:
        assert row["h0_cv"] >= 0 and math.isfinite(row["val_loss"])


def test_trainer_reports_confusion_overlap_and_fgsm(digits_run):
    result, text = digits_run
    assert set(result.overlap) == {3, 5}
    assert all(0.0 <= v <= 1.0 for v in result.overlap.values())
    assert "Epoch-1 merges among the top confused pairs" in text
    adv = result.adversarial
    assert adv is not None and len(adv.pairs) == 45
    assert adv.adv_acc < adv.clean_acc
    assert -1.0 <= adv.r_merge <= 1.0 and "seed 004 claims r = -0.71" in text
    assert len(result.dendrogram) == 9 and len(result.dendrogram[-1]["classes"]) == 10


def test_confusion_helpers():
    cm = np.array([[5, 2, 0], [3, 4, 1], [0, 0, 9]])
    assert pl.top_confused_pairs(cm, 2) == [(0, 1, 5), (1, 2, 1)]
    assert pl.confusion_overlap([(1, 0), (0, 2)], cm, 2) == 0.5
    y = np.array([0, 0, 1, 2])
    assert pl.confusion_matrix(y, np.array([0, 1, 1, 2]), 3).tolist() == [
        [1, 1, 0],
        [0, 1, 0],
        [0, 0, 1],
    ]


def test_fgsm_moves_every_input_by_eps_within_the_data_range():
    data = pl.load_dataset("digits")
    model = pl.build_model("mlp", data, 16, 0)
    X, y = data.X_test[:50], data.y_test[:50]
    adv = pl.fgsm(model, X, y, 0.1)
    assert adv.shape == X.shape and adv.min() >= X.min() and adv.max() <= X.max()
    step = np.abs(adv - X)
    assert np.all(step <= 0.1 + 1e-6)
    assert np.mean(np.isclose(step, 0.1, atol=1e-6)) > 0.3  # interior pixels move by eps


def test_trainer_takes_arrays_and_torch_datasets_and_models():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 2, 6, 6)).astype(np.float32)
    y = np.arange(240) % 3
    X[np.arange(240), 0, y, y] += 3.0
    out = io.StringIO()
    r = PHTrainer((X, y), epochs=1, lr=1e-3, hidden=8, model="cnn", file=out).run()
    assert r.dataset == "arrays" and r.model == "cnn" and r.lr_method == "manual"
    assert "Phase 2: LR = 0.001 (manual)" in out.getvalue()
    ds = torch.utils.data.TensorDataset(torch.tensor(X.reshape(240, -1)), torch.tensor(y))
    r = PHTrainer(ds, epochs=1, lr=1e-3, hidden=8, model="mlp", verbose=False).run()
    assert r.dataset == "TensorDataset" and len(r.history) == 1


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"dataset": "imagenet"}, InputError, "dataset must be one of"),
        ({"epochs": 0}, InputError, "epochs"),
        ({"epochs": 2.5}, InputTypeError, "epochs"),
        ({"lr": -1.0}, InputError, "lr"),
        ({"lr": "fast"}, InputError, "lr"),
        ({"hidden": 1}, InputError, "hidden"),
        ({"gap_threshold": float("nan")}, InputError, "gap_threshold"),
        ({"model": "rnn"}, InputError, "model"),
        ({"lr_search": "grid"}, InputError, "lr_search"),
        ({"lr_grid": ()}, InputError, "lr_grid"),
        ({"eps": 0}, InputError, "eps"),
    ],
)
def test_trainer_argument_errors_name_the_argument(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        PHTrainer(**kwargs)


@pytest.mark.parametrize(
    ("dataset", "model", "words"),
    [
        ("mnist", "purefield", "needs torchvision"),
        ("cifar", "purefield", "needs torchvision"),
        ((np.ones((10, 4)), np.arange(10) % 2), "cnn", "model='cnn' needs image rows"),
        ((np.ones((10, 4)), np.zeros(10, int)), "mlp", "at least 2 classes"),
        ((np.ones((10, 4)), np.arange(9) % 2), "mlp", "one per row"),
        (3, "mlp", "dataset must be one of"),
    ],
)
def test_bad_datasets_are_clear_errors(dataset, model, words):
    with pytest.raises((InputError, InputTypeError), match=words):
        PHTrainer(dataset, epochs=1, lr=1e-3, model=model, verbose=False).run()


def test_named_datasets_need_torchvision_and_are_never_downloaded(tmp_path):
    with pytest.raises(ImportError):
        import torchvision  # noqa: F401  (not a dependency: the error path is what runs here)
    with pytest.raises(InputError, match="needs torchvision, which is not installed"):
        pl.load_dataset("fashion", root=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def _parse(argv):
    parser = argparse.ArgumentParser(prog="streamtopo")
    sub = parser.add_subparsers(dest="command")
    app_train.add_train_parser(sub)
    return parser, parser.parse_args(argv)


def test_train_command_exits_0_and_prints_the_four_phases(capsys):
    from streamtopo.app.cli import main as cli_main

    argv = ["train", "--dataset", "digits", "--epochs", "2", "--search-epochs", "2"]
    assert cli_main(argv) == 0  # the real `streamtopo train` entry point
    out = capsys.readouterr().out
    for phase in PHASES:
        assert phase in out
    assert "SUMMARY - DIGITS" in out and "<- h0cv" in out and "<- val_loss" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "--dataset", "imagenet"], "--dataset"),
        (["train", "--lr", "fast"], "--lr"),
        (["train", "--epochs", "two"], "--epochs"),
        (["train", "--model", "rnn"], "--model"),
    ],
)
def test_train_command_rejects_bad_arguments(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        _parse(argv)
    assert info.value.code == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--dataset", "mnist"], "needs torchvision"),
        (["--epochs", "0"], "epochs must be an integer >= 1"),
        (["--hidden", "1"], "hidden"),
        (["--gap-threshold", "-1"], "gap_threshold"),
    ],
)
def test_train_main_reports_streamtopo_errors(argv, words, capsys):
    assert app_train.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("streamtopo train: error:") and words in err


def test_purefield_tension_example_runs(monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "purefield_tension.py"
    monkeypatch.setattr(sys, "argv", [path.name, "--steps", "60", "--fault-at", "40"])
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "step 40: fault" in out
    assert "LayerMonitor: first alarm before the fault" in out
    assert "LayerPHMonitor summary: {'steps_monitored': 60" in out


def test_compat_and_train_imports_are_light():
    import subprocess
    import sys

    code = (
        "import sys, streamtopo.compat.ph_training, streamtopo.compat.collapse_skill, "
        "streamtopo.app.train; print(sorted(m for m in ('torch', 'scipy', 'ripser', "
        "'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_trainer_stops_after_three_alerts_past_epoch_5_as_the_seed_does():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = np.arange(200) % 3
    X[np.arange(200), y] += 2.0
    out = io.StringIO()
    r = PHTrainer((X, y), epochs=10, lr=1e-2, hidden=8, model="mlp", gap_threshold=0.0, file=out)
    result = r.run()
    assert result.early_stop and [h["status"] for h in result.history] == ["ALERT"] * 6
    assert "Early stop (3 consecutive ALERTs, epoch 6)" in out.getvalue()
