"""The sweep of bad inputs over every public monitor (issue 16): construction and each per-step
verb. Only StreamtopoError subclasses escape, each message names the argument, a refused call
leaves ``state_dict()`` unchanged, and a refused construction leaves the writer as it was (no
file written, no table claimed). ``test_reliability_sweep.py`` sweeps the writer and readers,
``test_reliability_sweep_cli.py`` the command line; ``test_conformance.py`` holds the
per-monitor round trips these cases do not repeat."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import streamtopo as st
from streamtopo.errors import StreamtopoError
from streamtopo.io import RunWriter
from tests.reliability_io_helpers import hashes

NAN, INF = math.nan, math.inf

# -- construction -----------------------------------------------------------------------------
# (class, valid kwargs, {parameter: [bad values]}): every bad value must be refused naming it
SPECS: list[tuple[type, dict[str, Any], dict[str, list[Any]]]] = [
    (
        st.LayerMonitor,
        {"n_layers": 4},
        {
            "n_layers": [1, 0, -3, 2.5, "4", None, True, 10**20 + 0.5],
            "signals": ["grad_norm", [], ["a", "a"], [1], None, 5, ["a", None]],
            "window": [0, -1, 1.5, "16", None],
            "transform": ["sqrt", None, 1],
            "rule": ["nope", None, 3],
            "baseline": [1, 0, "x"],
            "watch_z": [0, -1, NAN, INF, "3", None, True],
            "collapse_z": [2.0, NAN, "x"],
            "raise_after": [0, 1.5],
            "escalate_after": [0, None],
            "clear_after": [0, -1],
            "layer_rule": ["yes", 1],
            "layer_z": [0, NAN, "x"],
            "watch_ratio": ["x", 2.0, NAN, None],
            "collapse_ratio": [0.7, -0.1, None, "x", NAN],
            "warmup": [-1, "x"],
            "patience": [0, 2.0],
            "check_every": [0, "1"],
            "nonfinite": ["ignore", None],
            "capacity": [0, 3],
            "layer_names": ["abcd", ["a", "b"], [1, 2, 3, 4], ["a", "a", "b", "c"], 5],
            "refresh_every": [0],
            "min_std": [0, -1, "x", NAN, INF, None],
            "max_culprits": [0],
            "fa_per_1k": [0, NAN, "x", -1],
            "writer": [5, "x"],
            "name": ["Eval", 5, "a.b", ""],
        },
    ),
    (
        st.CentroidMonitor,
        {"n_classes": 3},
        {
            "n_classes": [1, 0, "3", 2.5, None],
            "class_names": [["a", "b"], "abc", [1, 2, 3], ["a", "a", "b"]],
            "rule": ["x", None],
            "patience": [0, "3"],
            "metric": ["manhattan", None],
            "mode": ["x"],
            "half_life": [0, -1, NAN, "x", INF],
            "matched_size": ["max", 0, -1, 1.5],
            "groups": [0, 100, "8"],
            "k": [0, NAN, "x", -1],
            "gap_threshold": [NAN, "x", None],
            "warmup": [-1, 1.5],
            "baseline_checks": [0],
            "precision": ["float16", None],
            "history": ["val", 5],
            "seed": [-1, "x", 1.5, None],
            "writer": [5],
            "name": ["A", 5],
        },
    ),
    (
        st.CollapseMonitor,
        {},
        {
            "check_every": [0, "5", 1.5],
            "threshold": [NAN, "x", None, INF],
            "variant": ["x", None],
            "baseline_checks": [0],
            "mode": ["x"],
            "z": [0, NAN, "x", -1],
            "direction": ["sideways", None],
            "writer": [5],
            "name": [5, "a-b"],
            "max_points": [0, -1, "x"],
            "seed": [-1, "x", None],
            "rel_floor": [-1, NAN, "x"],
            "ci_floor": [NAN, -1, "x"],
            "topology": ["yes", 1, None],
        },
    ),
    (
        st.LossRiseDetector,
        {},
        {
            "span": [0, 1.5, "x", None],
            "factor": [0, NAN, "x", -1, INF, None],
            "patience": [0, "5"],
            "warmup": [-1, "x"],
            "stop_patience": [0, None],
            "writer": [5],
            "name": [".", "x" * 33],
        },
    ),
    (
        st.MorseMonitor,
        {},
        {
            "scale": [-1, NAN, "x", INF],
            "change_threshold": [-1, NAN, "x", None],
            "tolerance": [-1, NAN, "x", None],
            "metric": ["x", None, "precomputed"],
            "rebuild_fraction": [0, -1, NAN, "x", None],
            "writer": [5],
            "name": ["a b"],
        },
    ),
]

CTOR = [
    (cls, base, param, bad) for cls, base, params in SPECS for param, bads in params.items()
    for bad in bads
]  # fmt: skip


def _ctor_id(case) -> str:
    cls, _, param, bad = case
    text = repr(bad)
    return f"{cls.__name__}-{param}-{text[:20]}"


@pytest.mark.parametrize("case", CTOR, ids=[_ctor_id(c) for c in CTOR])
def test_bad_constructor_arguments(tmp_path, case):
    cls, base, param, bad = case
    with RunWriter(tmp_path, run_id="r") as w:
        before = hashes(tmp_path)
        kwargs = {**base, "writer": w, param: bad}
        with pytest.raises(StreamtopoError) as info:
            cls(**kwargs)
        assert param in str(info.value), str(info.value)
        assert hashes(tmp_path) == before
        cls(**base, writer=w)  # the refused monitor claimed no table


def test_layer_names_the_writer_cannot_hold_are_refused(tmp_path):
    with RunWriter(tmp_path, run_id="r") as w:
        for names in (["a/b", "c", "d", "e"], ["..", "c", "d", "e"], ["a\n", "b", "c", "d"]):
            with pytest.raises(StreamtopoError, match=r"layer_names\[0\]"):
                st.LayerMonitor(4, layer_names=names, writer=w)
        with pytest.raises(StreamtopoError, match=r"signals\[0\]"):
            st.LayerMonitor(4, signals=("g/x",), writer=w)


# -- per-step verbs --------------------------------------------------------------------------
def _state(mon) -> str:
    return json.dumps(mon.state_dict(), sort_keys=True, default=str)


def _refused(mon, call: Callable[[Any], Any], name: str) -> None:
    """``call(mon)`` raises a streamtopo error naming ``name``, and changes nothing: the
    monitor's state, and no row reaches its writer."""
    rows: list[dict[str, Any]] = []
    mon.writer = rows.append
    before = _state(mon)
    with pytest.raises(StreamtopoError) as info:
        call(mon)
    assert name in str(info.value), str(info.value)
    assert _state(mon) == before
    assert rows == []


def _layer() -> st.LayerMonitor:
    mon = st.LayerMonitor(4, ("g", "a"), window=3, baseline=5, layer_names=list("wxyz"))
    rng = np.random.default_rng(0)
    for _ in range(12):
        mon.check(np.exp(rng.normal(size=(2, 4))))
    return mon


def _masked():
    return np.ma.masked_array(np.ones((2, 4)), mask=[[1, 0, 0, 0], [0, 0, 0, 0]])


def _ragged():
    return [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]


LAYER_CALLS: list[tuple[str, Callable[[Any], Any], str]] = [
    ("short", lambda m: m.check(np.ones((2, 3))), "values"),
    ("1d", lambda m: m.check(np.ones(4)), "values"),
    ("3d", lambda m: m.check(np.ones((1, 2, 4))), "values"),
    ("str", lambda m: m.check("abc"), "values"),
    ("none", lambda m: m.check(None), "values"),
    ("ragged", lambda m: m.check(_ragged()), "values"),
    ("complex", lambda m: m.check(np.ones((2, 4)) * 1j), "values"),
    ("object", lambda m: m.check(np.array([[object()] * 4] * 2)), "values"),
    ("strings", lambda m: m.check(np.array([["1"] * 4] * 2)), "values"),
    ("negative", lambda m: m.check(-np.ones((2, 4))), "values"),
    ("masked", lambda m: m.check(_masked()), "values"),
    ("dict-missing", lambda m: m.check({"g": np.ones(4)}), "a"),
    ("dict-extra", lambda m: m.check({"g": np.ones(4), "a": np.ones(4), "q": np.ones(4)}), "q"),
    ("dict-short", lambda m: m.check({"g": np.ones(3), "a": np.ones(4)}), "g"),
    ("dict-str", lambda m: m.check({"g": "x", "a": np.ones(4)}), "g"),
    ("missing-shape", lambda m: m.check(np.ones((2, 4)), missing=[True, False]), "missing"),
    ("missing-str", lambda m: m.check(np.ones((2, 4)), missing="x"), "missing"),
    ("missing-float", lambda m: m.check(np.ones((2, 4)), missing=[0.5] * 4), "missing"),
    ("run-shape", lambda m: m.run(np.ones((3, 2, 5))), "values"),
    ("run-missing", lambda m: m.run(np.ones((3, 2, 4)), missing=np.ones(2, bool)), "missing"),
    ("load-int", lambda m: m.load_state_dict(5), "state"),
    ("load-empty", lambda m: m.load_state_dict({}), "state"),
    ("load-other", lambda m: m.load_state_dict(st.LayerMonitor(4).state_dict()), "config"),
]


@pytest.mark.parametrize("what,call,name", LAYER_CALLS, ids=[c[0] for c in LAYER_CALLS])
def test_bad_layer_monitor_calls(what, call, name):
    mon = _layer()
    _refused(mon, call, name)


def test_layer_monitor_nonfinite_raise_changes_nothing():
    mon = st.LayerMonitor(4, nonfinite="raise")
    mon.check(np.ones(4))
    before = _state(mon)
    for bad in ([1.0, NAN, 1.0, 1.0], [INF, 1.0, 1.0, 1.0], [1.0, 1.0, 1e39, 1.0]):
        with pytest.raises(StreamtopoError, match="values"):
            mon.check(bad)
        assert _state(mon) == before


def _loss() -> st.LossRiseDetector:
    mon = st.LossRiseDetector(span=5)
    for v in np.linspace(2.0, 1.0, 10):
        mon.check(float(v))
    return mon


LOSS_CALLS = [
    ("str", lambda m: m.check("1.0")),
    ("none", lambda m: m.check(None)),
    ("list", lambda m: m.check([1.0, 2.0])),
    ("array", lambda m: m.check(np.array([1.0, 2.0]))),
    ("complex", lambda m: m.check(1j)),
    ("bool", lambda m: m.check(True)),
    ("dict", lambda m: m.check({"loss": 1.0})),
    ("big-int", lambda m: m.check(10**400)),
]


@pytest.mark.parametrize("what,call", LOSS_CALLS, ids=[c[0] for c in LOSS_CALLS])
def test_bad_loss_monitor_calls(what, call):
    mon = _loss()
    _refused(mon, call, "loss")


def _centroid() -> st.CentroidMonitor:
    rng = np.random.default_rng(1)
    mon = st.CentroidMonitor(3, warmup=0, baseline_checks=1)
    X, y = rng.normal(size=(30, 4)), np.arange(30) % 3
    mon.update(X, y)
    mon.update(X + 0.1, y, split="test")
    mon.check()
    mon.update(X, y)
    return mon


_X = np.random.default_rng(2).normal(size=(12, 4))
_Y = np.arange(12) % 3
CENTROID_CALLS = [
    ("labels-high", lambda m: m.update(_X, _Y + 3), "labels"),
    ("labels-negative", lambda m: m.update(_X, _Y - 1), "labels"),
    ("labels-float", lambda m: m.update(_X, _Y + 0.5), "labels"),
    ("labels-short", lambda m: m.update(_X, _Y[:-1]), "labels"),
    ("labels-str", lambda m: m.update(_X, np.array(["a"] * 12)), "labels"),
    ("labels-2d", lambda m: m.update(_X, _Y[:, None]), "labels"),
    ("features-dims", lambda m: m.update(_X[:, :3], _Y), "features"),
    ("features-1d", lambda m: m.update(_X[:, 0], _Y), "features"),
    ("features-bool", lambda m: m.update(_X > 0, _Y), "features"),
    ("features-empty", lambda m: m.update(np.zeros((0, 4)), _Y[:0]), "features"),
    ("features-str", lambda m: m.update("abc", _Y), "features"),
    ("features-complex", lambda m: m.update(_X * 1j, _Y), "features"),
    ("features-ragged", lambda m: m.update([[1.0, 2.0], [1.0]], [0, 1]), "features"),
    ("split", lambda m: m.update(_X, _Y, split="val"), "split"),
    ("split-none", lambda m: m.update(_X, _Y, split=None), "split"),
    ("check-loss-str", lambda m: m.check(test_loss="low"), "test_loss"),
    ("check-loss-list", lambda m: m.check(test_loss=[1.0]), "test_loss"),
    ("check-oneshot-half", lambda m: m.check(_X, _Y), "check"),
    ("load-other", lambda m: m.load_state_dict(st.CentroidMonitor(4).state_dict()), "config"),
    ("merge-other", lambda m: m.merge(st.CentroidMonitor(4)), "n_classes"),
    ("merge-type", lambda m: m.merge(5), "other"),
    ("linkage-split", lambda m: m.linkage("val"), "split"),
]


@pytest.mark.parametrize("what,call,name", CENTROID_CALLS, ids=[c[0] for c in CENTROID_CALLS])
def test_bad_centroid_monitor_calls(what, call, name):
    mon = _centroid()
    _refused(mon, call, name)


def _collapse() -> st.CollapseMonitor:
    rng = np.random.default_rng(3)
    mon = st.CollapseMonitor(check_every=1, baseline_checks=1, topology=False)
    for _ in range(3):
        mon.check(rng.normal(size=(30, 5)), rng.integers(0, 3, 30))
    return mon


_E = np.random.default_rng(4).normal(size=(30, 5))
COLLAPSE_CALLS = [
    ("1d", lambda m: m.check(_E[:, 0]), "embeddings"),
    ("dims", lambda m: m.check(_E[:, :3]), "embeddings"),
    ("few-rows", lambda m: m.check(_E[:2]), "embeddings"),
    ("str", lambda m: m.check("abc"), "embeddings"),
    ("complex", lambda m: m.check(_E * 1j), "embeddings"),
    ("labels-short", lambda m: m.check(_E, np.zeros(29, int)), "labels"),
    ("labels-2d", lambda m: m.check(_E, np.zeros((30, 2), int)), "labels"),
    ("ci-nan", lambda m: m.check(ci=NAN), "ci"),
    ("ci-str", lambda m: m.check(ci="x"), "ci"),
    ("step-back", lambda m: m.check(_E, step=0), "step"),
    ("step-str", lambda m: m.check(_E, step="9"), "step"),
    ("step-negative", lambda m: m.check(_E, step=-5), "step"),
    ("update-str", lambda m: m.update("abc"), "ci"),
    ("update-component", lambda m: m.update(0.2, {"effective_rank": "x"}), "effective_rank"),
    ("update-components-type", lambda m: m.update(0.2, [1.0]), "components"),
    ("update-inf", lambda m: m.update(INF), "ci"),
    ("report-format", lambda m: m.report(format="pdf"), "format"),
]


@pytest.mark.parametrize("what,call,name", COLLAPSE_CALLS, ids=[c[0] for c in COLLAPSE_CALLS])
def test_bad_collapse_monitor_calls(what, call, name):
    mon = _collapse()
    _refused(mon, call, name)


def _morse() -> st.MorseMonitor:
    mon = st.MorseMonitor(scale=1.0)
    mon.initialize(np.random.default_rng(5).normal(size=(20, 3)))
    return mon


_P = np.random.default_rng(6).normal(size=(20, 3))
MORSE_CALLS = [
    ("init-1d", lambda m: m.initialize(_P[:, 0]), "X"),
    ("init-str", lambda m: m.initialize("abc"), "X"),
    ("init-nan", lambda m: m.initialize(np.where(_P > 1, NAN, _P)), "X"),
    ("check-rows", lambda m: m.check(_P[:5]), "X"),
    ("check-dims", lambda m: m.check(_P[:, :2]), "X"),
    ("check-inf", lambda m: m.check(np.where(_P > 1, INF, _P)), "X"),
    ("update-rows", lambda m: m.update(_P[:5]), "X_new"),
    ("update-complex", lambda m: m.update(_P * 1j), "X_new"),
    ("add-dims", lambda m: m.add_points(_P[:3, :2]), "X_add"),
    ("add-nan", lambda m: m.add_points(np.full((2, 3), NAN)), "X_add"),
    ("remove-range", lambda m: m.remove_points([25]), "indices"),
    ("remove-negative", lambda m: m.remove_points([-30]), "indices"),
    ("remove-float", lambda m: m.remove_points([1.5]), "indices"),
    ("remove-str", lambda m: m.remove_points("a"), "indices"),
    ("remove-all", lambda m: m.remove_points(np.arange(20)), "indices"),
    ("load-other", lambda m: m.load_state_dict(st.MorseMonitor(scale=2.0).state_dict()), "config"),
]


@pytest.mark.parametrize("what,call,name", MORSE_CALLS, ids=[c[0] for c in MORSE_CALLS])
def test_bad_morse_monitor_calls(what, call, name):
    mon = _morse()
    _refused(mon, call, name)


def test_the_monitor_sweep_is_large_enough():
    calls = LAYER_CALLS + LOSS_CALLS + CENTROID_CALLS + COLLAPSE_CALLS + MORSE_CALLS
    assert len(CTOR) + len(calls) >= 250
