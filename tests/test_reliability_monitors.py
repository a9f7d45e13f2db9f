"""Issue 16 regressions on the monitors and the CLI (each failed at 66ccfb5): only streamtopo
errors escape, they name the argument, and the monitor is left as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest

import streamtopo as st
from streamtopo.app.cli import main as cli_main
from streamtopo.errors import InputError, InputTypeError
from streamtopo.io import RunWriter


def _state(mon) -> str:
    return json.dumps(mon.state_dict(), sort_keys=True, default=str)


def test_collapse_index_of_values_near_the_float64_limit_equals_the_rescaled_one():
    X = np.random.default_rng(0).normal(size=(60, 6))
    big = st.collapse_components(np.ldexp(X, 1020))  # ~1e307: column sums overflow unscaled
    ref = st.collapse_components(X)
    for key in ("anisotropy", "participation_ratio", "dim_ratio", "effective_rank",
                "persistence_entropy", "beta0", "beta1"):  # fmt: skip
        assert big[key] == ref[key], key
    assert big["scale"] == np.ldexp(ref["scale"], 1020)  # units carried back exactly
    mon = st.CollapseMonitor(check_every=1)
    status = mon.check(np.full((50, 8), 1e308) * np.random.default_rng(1).random((50, 8)))
    assert np.isfinite(status.ci)


def test_collapse_components_must_be_numbers():
    mon = st.CollapseMonitor()
    before = _state(mon)
    with pytest.raises(InputTypeError, match=r"components\['effective_rank'\] must be a number"):
        mon.update(0.2, {"effective_rank": "x"})
    with pytest.raises(InputTypeError, match="ci must be a number"):
        mon.update("abc")
    assert _state(mon) == before
    mon.update(0.2, {"effective_rank": float("nan")})  # NaN: a missing component, accepted


def test_morse_update_near_the_float64_limit_is_not_an_overflow_error():
    X = np.random.default_rng(0).normal(size=(40, 8))
    mon = st.MorseMonitor(scale=0.5)
    mon.initialize(X)
    mon.update(np.full((40, 8), 1e308))  # every point moves to one far place
    assert mon.betti0_ >= 1


def test_cli_rejects_a_negative_seed_with_a_message(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["centroid", "--seed", "-1"])
    assert exc.value.code == 2
    assert "--seed: expected an integer >= 0, got -1" in capsys.readouterr().err


def test_layer_names_the_log_cannot_hold_fail_at_construction(tmp_path):
    with RunWriter(tmp_path, run_id="names") as w:
        with pytest.raises(InputError, match="layer_names"):
            st.LayerMonitor(2, layer_names=["enc/0", "enc/1"], writer=w)
        mon = st.LayerMonitor(2, layer_names=["enc.0", "enc.1"], writer=w)
        assert mon.check([1.0, 2.0]).step == 0
