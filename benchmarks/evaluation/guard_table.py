"""What the two guard tables share (digits: ``benchmarks/eval_guard.py``, transformers:
``guard_transformer.py``): every run is scored beside the same seed's healthy run without a
guard, grouped by variant (no guard first, then ``default``, then the others) and scenario, and
described by the same rollback columns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence


def reference_runs(rows: list[dict]) -> dict[int, dict]:
    """Seed -> its healthy run without guard (the reference of that seed's runs)."""
    return {r["seed"]: r for r in rows if r["fault"] == "healthy" and r["variant"] == "none"}


def variant_order(rows: list[dict]) -> list[str]:
    """The variants of ``rows``: no guard, the default Guard, then the others by name."""
    return sorted({r["variant"] for r in rows}, key=lambda v: (v != "none", v != "default", v))


def saved_without_guard(
    rows: list[dict], healthy: dict[int, dict], saved: Callable[[dict, dict], bool]
) -> dict[tuple[str, int], bool]:
    """(scenario, seed) -> whether its run without guard was saved (``saved(run, reference)``)."""
    return {
        (r["fault"], r["seed"]): saved(r, healthy[r["seed"]])
        for r in rows
        if r["variant"] == "none" and r["seed"] in healthy
    }


def scenario_groups(
    rows: list[dict], variant: str, faults: Sequence[str], healthy: dict[int, dict]
) -> Iterator[tuple[str, list[dict], list[dict]]]:
    """``(scenario, runs, their references)`` of ``variant``, per scenario with runs."""
    for f in faults:
        fr = [
            r for r in rows if r["variant"] == variant and r["fault"] == f and r["seed"] in healthy
        ]
        if fr:
            yield f, fr, [healthy[r["seed"]] for r in fr]


def rollback_columns(runs: list[dict], refs: list[dict]) -> tuple[int, float, int]:
    """Rollbacks, steps redone per rollback, and runs with the same losses as their reference."""
    rb = sum(r["rollbacks"] for r in runs)
    redone = sum(r["steps_redone"] for r in runs) / rb if rb else 0.0
    same = sum(r["loss_hash"] == h["loss_hash"] for r, h in zip(runs, refs, strict=True))
    return rb, redone, same
