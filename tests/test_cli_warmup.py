"""`streamtopo warmup` warms every kernel module and leaves every kernel the library calls from
Python compiled (or loaded from numba's cache)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from streamtopo.app import cli
from streamtopo.app.warmup import WARMERS, warm

KERNELS = Path(__file__).resolve().parents[1] / "streamtopo" / "_kernels"


def _entry_kernels() -> set[tuple[str, str]]:
    """(module, name) of every ``_kernels`` name imported by a module outside ``_kernels``:
    the kernels the library calls from Python (callees inside a kernel are compiled into it)."""
    root = KERNELS.parent
    out = set()
    for path in root.rglob("*.py"):
        if KERNELS in path.parents:
            continue
        package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            mod = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join([*base, mod] if mod else base)
            if mod.startswith("streamtopo._kernels."):
                out |= {(mod, a.name) for a in node.names}
    return out


def test_there_is_one_warmer_per_kernel_module():
    modules = {p.stem for p in KERNELS.glob("*.py") if not p.stem.startswith("_")}
    assert set(WARMERS) == modules
    assert len(modules) == 9


def test_warmup_runs_every_warmer(capsys):
    assert cli.main(["warmup"]) == 0
    out = capsys.readouterr().out
    for name in WARMERS:
        assert name in out
    assert "total" in out


def test_after_warmup_every_kernel_the_library_calls_is_compiled():
    from numba.core.registry import CPUDispatcher

    warm(WARMERS)
    entries = sorted(_entry_kernels())
    kernels = []
    for mod, name in entries:
        obj = getattr(importlib.import_module(mod), name)
        if isinstance(obj, CPUDispatcher):
            kernels.append((mod, name, obj))
    assert len(kernels) >= 20
    missing = [f"{mod}.{name}" for mod, name, k in kernels if len(k.signatures) == 0]
    assert missing == []


def test_demo_is_listed_first_in_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ")]
    assert listed[0] == "demo"
    assert "warmup" in listed
