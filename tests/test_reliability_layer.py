"""Issue 16 regressions on the LayerMonitor's input path (each failed at 66ccfb5)."""

from __future__ import annotations

import numpy as np
import pytest

from streamtopo import LayerMonitor
from streamtopo.errors import InputError, InputTypeError, StreamtopoError

torch = pytest.importorskip("torch")  # CI installs torch and fails on any skip


def _state(mon: LayerMonitor) -> str:
    import json

    return json.dumps(mon.state_dict(), sort_keys=True, default=str)


def test_bfloat16_tensor_is_widened_not_a_type_error():
    mon = LayerMonitor(4, window=2)
    ref = LayerMonitor(4, window=2)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.bfloat16)
    got = mon.check(x)
    want = ref.check(x.float().numpy())
    assert got.h0 == want.h0 and got.state == want.state


def test_bfloat16_dict_of_tensors():
    mon = LayerMonitor(3, ("a", "b"), window=2)
    st = mon.check({"a": torch.ones(3, dtype=torch.bfloat16), "b": torch.arange(1, 4).bfloat16()})
    assert st.step == 0 and np.isfinite(st.h0)


@pytest.mark.parametrize(
    "bad",
    [
        [[1.0, 2.0, 3.0], [1.0]],  # ragged list of lists
        [[1.0, 2.0, 3.0], "abc"],
    ],
)
def test_ragged_input_is_a_streamtopo_error_and_changes_nothing(bad):
    mon = LayerMonitor(3, ("a", "b"), window=2)
    mon.check({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 4.0]})
    before = _state(mon)
    with pytest.raises(StreamtopoError, match="values"):
        mon.check(bad)
    assert _state(mon) == before


def test_masked_array_is_refused_naming_the_mask():
    mon = LayerMonitor(3, window=2)
    before = _state(mon)
    m = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    with pytest.raises(InputTypeError, match="masked"):
        mon.check(m)
    with pytest.raises(InputTypeError, match="masked"):
        mon.check(np.ma.masked_array(np.ones((1, 3)), mask=False))
    assert _state(mon) == before


def test_finite_value_above_float32_range_is_reported_as_overflow():
    mon = LayerMonitor(3, window=2, nonfinite="flag")
    st = mon.check([1.0, 1e39, 2.0])
    assert st.nonfinite == (1,)
    assert "overflow" in st.reason and "non-finite value" not in st.reason
    st = mon.check([np.nan, 1e39, 2.0])
    assert "overflow" in st.reason and "non-finite value in layers [0]" in st.reason


def test_nonfinite_raise_mode_still_raises_input_error():
    mon = LayerMonitor(3, window=2, nonfinite="raise")
    with pytest.raises(InputError):
        mon.check([1.0, np.inf, 2.0])
