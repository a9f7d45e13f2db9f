"""The per-step positional constructor of status records builds exactly what ``cls(...)`` does."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest

from streamtopo.alarms import State
from streamtopo.monitors._status import (
    LayerStatus,
    LossStatus,
    positional_constructor,
    status_from_dict,
    status_to_dict,
)


@pytest.mark.parametrize("cls", [LayerStatus, LossStatus])
def test_positional_constructor_matches_dataclass_init(cls):
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for k, f in enumerate(dataclasses.fields(cls)):
        if f.name == "state":
            values[f.name] = State.WATCH
        elif f.name == "reason" or f.name == "direction":
            values[f.name] = f"text{k}"
        elif f.name in ("evaluated", "calibrating"):
            values[f.name] = f.name == "calibrating"
        elif f.name in ("culprits", "absent"):
            values[f.name] = (f"l{k}", "x")
        elif f.name == "nonfinite":
            values[f.name] = (k, 1)
        elif f.name in ("step", "streak"):
            values[f.name] = k + 7
        else:
            values[f.name] = k + 0.5
    make = positional_constructor(cls)
    fast = make(*(values[n] for n in names))
    ref = cls(**values)
    assert type(fast) is cls
    assert fast == ref and hash(fast) == hash(ref) and repr(fast) == repr(ref)
    assert [getattr(fast, n) for n in names] == [values[n] for n in names]
    assert status_to_dict(fast) == status_to_dict(ref)
    assert status_to_dict(status_from_dict(status_to_dict(fast))) == status_to_dict(ref)
    assert dataclasses.replace(fast, step=99) == dataclasses.replace(ref, step=99)
    assert pickle.loads(pickle.dumps(fast)) == ref  # in memory only (copy/multiprocessing)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.step = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        make(*(values[n] for n in names[:-1]))  # every field is required


def test_layer_status_nan_fields_compare_like_the_dataclass():
    make = positional_constructor(LayerStatus)
    fast = make(0, State.HEALTHY, "ok", True, False, 1.0, math.nan, 1.0, 0.0, "", (), (),
                math.nan, math.nan, ())  # fmt: skip
    ref = LayerStatus(0, State.HEALTHY, "ok", 1.0)
    assert repr(fast) == repr(ref)
    assert status_to_dict(fast).keys() == status_to_dict(ref).keys()
