"""Root pytest configuration: keep doctest collection away from entry points, and away from
modules that need torch when torch is not installed (their tests then skip through
``pytest.importorskip("torch")``; CI installs torch and fails on any skip)."""

from __future__ import annotations

import importlib.abc
import sys

collect_ignore = ["streamtopo/__main__.py"]


class _TorchMissing(importlib.abc.MetaPathFinder):
    """``import torch`` fails as if torch were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if "torch" in sys.modules and sys.modules["torch"] is None:
    # ``sys.modules["torch"] = None`` is the usual way to hide an installed torch, but scipy's
    # array-API helpers read ``sys.modules["torch"].Tensor`` whenever the key exists; a finder
    # that refuses torch hides it the way a missing install does.
    del sys.modules["torch"]
    sys.meta_path.insert(0, _TorchMissing())

try:
    import torch  # noqa: F401
except ImportError:
    # integrations/torch imports torch at module level, training.py through it; hf.py and
    # lightning.py are the trainer callbacks. Their doctests cannot even be collected.
    collect_ignore += [
        "streamtopo/integrations/torch",
        "streamtopo/integrations/training.py",
        "streamtopo/integrations/hf.py",
        "streamtopo/integrations/lightning.py",
        "streamtopo/integrations/_training_parts.py",
        "streamtopo/integrations/_training_hooks.py",
        "streamtopo/integrations/_training_losses.py",
        "tests/naive_attention.py",
    ]
