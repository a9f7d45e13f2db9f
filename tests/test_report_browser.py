"""The report in a real browser: headless Chromium loads it offline with no console error, the
panels render (plotly's SVG is in the DOM) and the screenshot is not blank."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamtopo import LayerMonitor
from streamtopo.io import RunWriter
from streamtopo.report import build_report

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,2000", "--enable-logging=stderr", "--v=0",
]  # fmt: skip


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path is not None, "chromium is required (.ci/run installs it: apt-get install chromium)"
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(0)
    with RunWriter(tmp, run_id="b") as w:
        mon = LayerMonitor(n_layers=6, signals=("act_norm", "grad_norm"), writer=w)
        for t in range(400):
            v = np.exp(rng.normal(0, 0.05, (2, 6))) * np.arange(1, 7)
            if t >= 250:
                v[:, 2] *= 100.0
            if t >= 380:
                v[0, 4] = np.inf
            v[1, 1] = 0.0 if 100 <= t < 120 else v[1, 1]
            mon.check({"act_norm": v[0], "grad_norm": v[1]})
            state = "HEALTHY" if t < 270 else "WATCH"
            w({"monitor": "loss", "step": t, "wall_time": 0.0, "loss": 1.0 / (t + 1),
               "state": state, "reason": "", "config": {}})  # fmt: skip
    return build_report(w.run_dir, markers={"fault": 250}).html


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip


def test_the_page_loads_offline_without_console_errors_and_renders(report, tmp_path):
    page = report.read_text()
    assert "<script src=" not in page and len(page) > 3_000_000  # plotly.js is inline
    # no network: every host name fails to resolve, so a fetch would be a console error
    offline = ["--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", report.as_uri()]
    proc = _run(offline, tmp_path / "profile")
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln]
    assert console == [], console  # no error, no warning, nothing logged by the page
    dom = proc.stdout
    assert 'id="headline"' in dom and "NOT HEALTHY" in dom
    assert dom.count('class="main-svg"') >= 1  # plotly drew its panels
    assert "training step" in dom and "fault" in dom


def test_the_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "report.png"
    _run([f"--screenshot={shot}", report.as_uri()], tmp_path / "profile")
    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert image.shape == (2000, 1400)
    assert image.std() > 20  # text, lines and heatmaps, not one colour
    assert (image < 200).mean() > 0.05  # a real share of the page is drawn on
    colour = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int64)
    magenta = (colour[..., 0] > 230) & (colour[..., 1] < 40) & (colour[..., 2] > 230)
    assert magenta.sum() > 100  # the non-finite cells have their own colour
    shutil.copy(shot, report.parent / "screenshot.png")
