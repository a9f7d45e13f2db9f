"""Committed Parquet parts as input: does a part open, does it hold the recorded columns, which
steps does it hold, and where do the steps of a rank have a hole.

A part that exists is complete when streamtopo wrote it (``.tmp`` then ``os.replace``), but a
run directory can be truncated, overwritten or partly deleted by hand, a sync tool or a full
disk. Readers check each part's footer (cheap: the footer is what any Parquet reader opens
first) and name the file that fails; :func:`~streamtopo.io.recover` also decodes every page.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import RecoveryError

__all__ = ["Piece", "bad_part_error", "check_part", "part_problem", "step_gaps"]

_READ_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError)


@dataclass(frozen=True)
class Piece:
    """One file's rows of a rank, in write order: its name and the range of its steps."""

    name: str
    first: int
    last: int
    rows: int


def _same_columns(got: pa.Schema, want: pa.Schema) -> bool:
    return got.names == want.names and all(a.type == b.type for a, b in zip(got, want, strict=True))


def part_problem(path: Path, schema: pa.Schema | None, *, full: bool = False) -> str | None:
    """Why the part at ``path`` cannot be read as a part of ``schema`` (None if it can).

    ``full`` also decodes every page (slow for big runs: used by :func:`recover`).
    """
    try:
        with pq.ParquetFile(path) as pf:
            got = pf.schema_arrow
            if schema is not None and not _same_columns(got, schema):
                return f"its columns differ from _meta.json ({len(got)} vs {len(schema)})"
            if full:
                for g in range(pf.metadata.num_row_groups):
                    pf.read_row_group(g)
    except _READ_ERRORS as exc:
        return f"not a readable Parquet file: {exc}"
    return None


def bad_part_error(path: Path, run_dir: Path, why: str) -> RecoveryError:
    return RecoveryError(
        f"{path} cannot be read ({why}). Run `streamtopo recover {run_dir}` to move it aside "
        f"into {run_dir / '_quarantine'} (its bytes are kept) and read the rest of the run"
    )


def check_part(path: Path, schema: pa.Schema, run_dir: Path) -> Piece:
    """The :class:`Piece` of a readable part; RecoveryError naming the file otherwise."""
    try:
        with pq.ParquetFile(path) as pf:
            got = pf.schema_arrow
            if not _same_columns(got, schema):
                why = f"its columns differ from _meta.json ({len(got)} vs {len(schema)})"
                raise bad_part_error(path, run_dir, why)
            return _piece(path, pf)
    except _READ_ERRORS as exc:
        raise bad_part_error(path, run_dir, f"not a readable Parquet file: {exc}") from exc


def part_piece(path: Path) -> Piece:
    """Step range of a part from its footer statistics (the step column if they are absent)."""
    with pq.ParquetFile(path) as pf:
        return _piece(path, pf)


def _piece(path: Path, pf: pq.ParquetFile) -> Piece:
    md = pf.metadata
    lo: int | None = None
    hi: int | None = None
    for g in range(md.num_row_groups):
        stats = md.row_group(g).column(0).statistics
        if stats is None or not stats.has_min_max:
            return table_piece(path.name, pf.read(columns=["step"]))
        lo = int(stats.min) if lo is None else min(lo, int(stats.min))
        hi = int(stats.max) if hi is None else max(hi, int(stats.max))
    if lo is None or hi is None:
        return Piece(path.name, 0, -1, 0)
    return Piece(path.name, lo, hi, md.num_rows)


def table_piece(name: str, table: pa.Table) -> Piece:
    """Step range of rows read from a journal."""
    if table.num_rows == 0:
        return Piece(name, 0, -1, 0)
    steps = table.column("step")
    return Piece(name, int(pc.min(steps).as_py()), int(pc.max(steps).as_py()), len(steps))


def step_gaps(pieces: list[Piece]) -> list[tuple[int, int, str, str]]:
    """Holes between consecutive files of one rank: ``(first missing, last missing, file
    before, file after)``.

    The stride is what every regular file agrees on (a file of n >= 2 rows whose steps span
    exactly ``(n - 1) * stride``; every step: 1, every 5th: 5); when the files disagree or none
    is regular, no hole can be told from a sparse schedule and none is reported. Overlaps (a run
    resumed from an older checkpoint) are not holes.
    """
    full = [p for p in pieces if p.rows > 0]
    strides = {
        (p.last - p.first) // (p.rows - 1)
        for p in full
        if p.rows >= 2 and p.last > p.first and (p.last - p.first) % (p.rows - 1) == 0
    }
    if len(strides) != 1:
        return []
    stride = strides.pop()
    gaps = []
    for prev, cur in itertools.pairwise(full):
        if cur.first - prev.last > stride:
            gaps.append((prev.last + stride, cur.first - stride, prev.name, cur.name))
    return gaps
