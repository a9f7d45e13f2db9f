"""Reopening a run: what a rank already holds, the run-id reuse policy, and the step floor.

A RunWriter opened on an existing ``run_id`` follows ``resume``:

- ``"never"`` (default): a rank that already holds rows is an error naming the run id. Reusing a
  run id used to append silently, so a second training run with the same id mixed its steps
  0..k into the first run's (a report with two interleaved h0 lines); now that takes a decision.
- ``"allow"``: continue the run; a new rank starts empty.
- ``"must"``: continue the run; a rank that holds no rows is an error (a typo in the id).

Continuing never writes a step twice by accident: each table's rows must have steps above the
last step the rank recorded (the *floor*), so a fresh monitor restarting at step 0 is refused with
the last recorded step and the two ways on (``step_offset="continue"``, or ``rewind_to=`` the
checkpoint's step when training really restarted from an older checkpoint, whose later rows
then supersede the recorded ones in replay).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_choice, check_positive_int, describe
from ..errors import InputError, InputTypeError, RecoveryWarning, WriteError
from ._layout import (
    FORMAT_VERSION,
    JOURNAL_EXT,
    RankLock,
    lock_path,
    parse_path,
    quarantine_dir,
    ranks_of,
)
from ._meta import load_meta
from ._parts import part_piece
from .recovery import RecoveryReport, expected_schemas, part_schemas, recover_rank

__all__ = [
    "RESUME",
    "STEP_LIMIT",
    "check_resume_args",
    "open_rank",
    "scan_rank",
    "start_steps",
    "step_error",
]

RESUME = ("never", "allow", "must")
STEP_LIMIT = 2**62  # steps stay far from int64 overflow after any offset or difference


def _base(name: str) -> str:
    return name.split(".corrupt")[0]


def _rank_files(run_dir: Path, rank: int) -> list[tuple[Path, str, bool]]:
    """``(path, name without .corrupt, quarantined)`` of every file of a rank, both layouts."""
    out = []
    if not run_dir.is_dir():
        return out
    for folder in ranks_of(run_dir).get(rank, []):
        out += [(p, p.name, False) for p in folder.iterdir()]
        quarantine = quarantine_dir(folder, create=False)
        if quarantine.is_dir():
            out += [(p, _base(p.name), True) for p in quarantine.iterdir()]
    return out


def holds_rows(run_dir: Path, rank: int) -> bool:
    """True if the rank has a part or journal in the run (rows were recorded there)."""
    return any(parse_path(p, name) is not None for p, name, _ in _rank_files(run_dir, rank))


def check_resume(resume: str, run_id: str, rank: int, run_dir: Path) -> bool:
    """Apply the run-id policy before anything is created; return whether the rank holds rows."""
    held = holds_rows(run_dir, rank)
    if held and resume == "never":
        raise InputError(
            f"run_id {run_id!r} already holds rows of rank {rank} in {run_dir}; "
            "pass resume='allow' to continue it, or choose another run_id (run_id=None picks a "
            "new unique one)"
        )
    if not held and resume == "must":
        raise InputError(
            f"resume='must' but run_id {run_id!r} holds no rows of rank {rank} in "
            f"{run_dir}; check the run_id, or pass resume='allow'"
        )
    return held


def check_resume_args(
    resume: Any, rewind_to: Any, step_offset: Any
) -> tuple[str, int | None, int | str]:
    """Checked ``(resume, rewind_to, step_offset)`` of a RunWriter."""
    if step_offset != "continue":
        if isinstance(step_offset, bool) or not isinstance(step_offset, (int, np.integer)):
            raise InputTypeError(
                f"step_offset must be an int or 'continue', got {describe(step_offset)}"
            )
        if not 0 <= step_offset < STEP_LIMIT:
            raise InputError(f"step_offset must be in [0, 2**62), got {step_offset}")
        step_offset = int(step_offset)
    resume = check_choice(resume, "resume", RESUME)
    if rewind_to is not None:
        rewind_to = check_positive_int(rewind_to, "rewind_to", minimum=0)
        if rewind_to >= STEP_LIMIT:
            raise InputError(f"rewind_to must be < 2**62, got {rewind_to}")
        if resume == "never" or step_offset == "continue":
            raise InputError(
                "rewind_to continues a recorded run from an older step: it needs "
                f"resume='allow' or 'must' and an int step_offset, got resume={resume!r}, "
                f"step_offset={step_offset!r}"
            )
    return resume, rewind_to, step_offset


def open_rank(
    run_dir: Path, rank: int, run_id: str, resume: str, *, fsync: bool
) -> tuple[RankLock, RecoveryReport, dict[str, int], dict[str, int]]:
    """Check, create, lock and recover a writer's rank.

    Every check that can fail (``_meta.json``, the run-id policy) runs before anything is
    created or changed. Returns the held lock, the recovery report (unreadable files moved
    aside are also announced with a RecoveryWarning), and the rank's next part index and last
    recorded step per table.
    """
    meta = load_meta(run_dir) if run_dir.is_dir() else None
    if meta is not None and meta["format_version"] < FORMAT_VERSION:
        raise InputError(
            f"run_id {run_id!r} in {run_dir} was written in run format "
            f"{meta['format_version']}; streamtopo reads it (read_run, replay, report, recover) "
            f"but writes only format {FORMAT_VERSION}: choose another run_id"
        )
    check_resume(resume, run_id, rank, run_dir)
    try:
        run_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise WriteError(f"RunWriter cannot create {run_dir}: {exc!r}") from exc
    lock = RankLock(lock_path(run_dir, rank))
    try:
        report = recover_rank(
            run_dir, rank, expected_schemas(meta), fsync=fsync, parts=part_schemas(meta)
        )
        next_index, last_step = scan_rank(run_dir, rank)
    except BaseException:
        lock.release()
        raise
    if report.quarantined:
        warnings.warn(
            f"RunWriter moved unreadable files of rank {rank} of {run_dir} aside (bytes kept): "
            + "; ".join(report.quarantined),
            RecoveryWarning,
            stacklevel=3,
        )
    return lock, report, next_index, last_step


def scan_rank(run_dir: Path, rank: int) -> tuple[dict[str, int], dict[str, int]]:
    """Next part index and last recorded step per table kind, from the committed parts (the
    rank was recovered and checked first, so every part opens). Quarantined files keep their
    index taken."""
    next_index: dict[str, int] = {}
    last_step: dict[str, int] = {}
    for path, name, quarantined in _rank_files(run_dir, rank):
        parsed = parse_path(path, name)
        if parsed is None:
            continue
        kind, index, ext = parsed
        next_index[kind] = max(next_index.get(kind, 0), index + 1)
        if ext != JOURNAL_EXT and not quarantined:
            piece = part_piece(path)
            if piece.rows:
                last_step[kind] = max(last_step.get(kind, -1), piece.last)
    return next_index, last_step


def start_steps(last: int, step_offset: int | str, rewind_to: int | None) -> tuple[int, int]:
    """``(offset, floor)`` of a table whose rank recorded steps up to ``last`` (-1: none)."""
    offset = last + 1 if step_offset == "continue" else int(step_offset)
    floor = last if rewind_to is None else min(last, rewind_to - 1)
    return offset, floor


def step_error(kind: str, rank_dir: Path, step: int, offset: int, floor: int) -> InputError:
    """The error for a row whose step is out of range or at/below the rank's floor."""
    stored = step + offset
    if step < 0 or stored >= STEP_LIMIT:
        return InputError(
            f"row['step'] must be an int in [0, 2**62) after step_offset={offset}, got {step}"
        )
    shown = f"step {step}" if offset == 0 else f"step {step} (+ step_offset = {stored})"
    return InputError(
        f"row['step'] is {shown}, but {rank_dir} already records table {kind!r} up to step "
        f"{floor} (or rewind_to={floor + 1} was given); steps must continue after it. A monitor "
        f"that restarted at step 0: pass step_offset='continue' (or step_offset={floor + 1}). "
        "Training resumed from an older checkpoint: pass rewind_to=<the checkpoint's step> "
        "(later rows then supersede the recorded ones in replay)"
    )
