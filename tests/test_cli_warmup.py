"""`streamtopo warmup` compiles or loads every H0 kernel and reports each warmer's time."""

from __future__ import annotations

from streamtopo import cli
from streamtopo.warmup import WARMERS


def test_warmup_runs_every_warmer(capsys):
    assert cli.main(["warmup"]) == 0
    out = capsys.readouterr().out
    assert "h0" in WARMERS
    for name in WARMERS:
        assert name in out
    assert "total" in out
