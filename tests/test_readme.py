"""The README's quick start runs as written and does what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_opens_with_the_two_commands():
    lines = [ln for ln in README.read_text().splitlines() if ln.startswith("python3 -m venv")]
    assert len(lines) >= 2
    assert lines[0].endswith("streamtopo demo")
    assert lines[1].endswith("python -m pytest")


def test_quick_start_names_the_diverging_layer():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_python_blocks()[0], "README quick start", "exec"), {})
    first = out.getvalue().splitlines()[0]
    step, *_ = first.split()
    assert 300 <= int(step) <= 310, first
    assert "('7',)" in first and "layers diverging" in first
