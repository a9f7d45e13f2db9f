"""Run-directory layout: names, paths, file names, schemas, locks (``_meta.json``: ``_meta.py``).

Layout (DESIGN.md §3)::

    <log_dir>/run=<run_id>/_meta.json
    <log_dir>/run=<run_id>/rank=<r>/part-000000.parquet      layer table, committed, immutable
    <log_dir>/run=<run_id>/rank=<r>/part-000001.arrows       layer table, active journal
    <log_dir>/run=<run_id>/rank=<r>/<kind>-000000.pq         other monitor kinds ("centroid", ...)
    <log_dir>/run=<run_id>/rank=<r>/<kind>-000001.arrows     their journals
    <log_dir>/run=<run_id>/rank=<r>/.lock                    held by the one writer of that rank
    <log_dir>/run=<run_id>/_quarantine/rank=<r>/<file>.corrupt  unreadable files, moved aside

Only the layer table ends in ``.parquet``, so ``pl.scan_parquet(run / "**/*.parquet",
hive_partitioning=True)`` reads exactly the layer table even when other monitors log to the same
run; the other tables are Parquet files too, read with ``run / "rank=*/<kind>-*.pq"``.
Nothing that is not a finished Parquet file ends in ``.parquet`` or ``.pq`` (temporary files end
in ``.tmp``, unreadable parts and journals are moved to ``_quarantine/`` with ``.corrupt``
appended). Symbolic links to ranks, parts or journals are refused by every reader.

Journal files are Arrow IPC streams. The layer journal stores the signal values of a row as one
``fixed_size_list<float32>`` column (one Arrow call per flush instead of one per column); the
roll into Parquet spreads it into the wide ``<signal>/<layer>`` float32 columns. The list of wide
column names travels in the journal's schema metadata, so every journal is self-describing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from .._validation import describe
from ..errors import InputError, InputTypeError, RecoveryError

FORMAT_VERSION = 1
META_NAME = "_meta.json"
LAYER = "layer"
LAYER_PREFIX = "part"
JOURNAL_EXT = "arrows"
MAX_NAME = 200
MAX_RUN_ID = 128
QUARANTINE = "_quarantine"

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_FILE = re.compile(r"(?P<prefix>[a-z][a-z0-9_]*)-(?P<index>[0-9]{6,})\.(?P<ext>parquet|pq|arrows)")
_RANK = re.compile(r"rank=(0|[1-9][0-9]{0,8})")
_RESERVED_KINDS = frozenset({LAYER_PREFIX})

# JSON spelling of the Arrow types a table may hold
TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "string": pa.string(),
    "bool": pa.bool_(),
}
_TYPE_NAMES = {v: k for k, v in TYPES.items()}


# -- names ---------------------------------------------------------------------------------
def check_run_id(run_id: Any) -> str:
    """Return ``run_id`` if it is a safe directory name; raise ``InputError`` otherwise."""
    if not isinstance(run_id, str):
        raise InputTypeError(f"run_id must be a str, got {describe(run_id)}")
    if not 1 <= len(run_id) <= MAX_RUN_ID or _RUN_ID.fullmatch(run_id) is None or ".." in run_id:
        raise InputError(
            f"run_id must be 1-{MAX_RUN_ID} characters from [A-Za-z0-9._-], start with a letter "
            f"or digit and not contain '..', got {describe(run_id)}"
        )
    return run_id


def check_name(value: Any, what: str) -> str:
    """Return a layer/signal name if it is safe in a column name; raise naming ``what``."""
    if not isinstance(value, str):
        raise InputTypeError(f"{what} must be a str, got {describe(value)}")
    bad = (
        not 1 <= len(value) <= MAX_NAME
        or any(c in value for c in "/\\")
        or ".." in value
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    )
    if bad:
        raise InputError(
            f"{what} must be 1-{MAX_NAME} printable characters without '/', '\\' or '..', "
            f"got {describe(value)}"
        )
    return value


def check_names(values: Any, what: str) -> tuple[str, ...]:
    """Validate a sequence of unique names."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InputTypeError(f"{what} must be a sequence of str, got {describe(values)}")
    names = tuple(check_name(v, f"{what}[{i}]") for i, v in enumerate(values))
    if not names:
        raise InputError(f"{what} must not be empty")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{what} must be unique, got duplicates {dup}")
    return names


def check_kind(kind: Any) -> str:
    """Validate a monitor kind (the ``"monitor"`` key of a row)."""
    if not isinstance(kind, str):
        raise InputTypeError(f"row['monitor'] must be a str, got {describe(kind)}")
    if _KIND.fullmatch(kind) is None or kind in _RESERVED_KINDS:
        raise InputError(
            "row['monitor'] must match [a-z][a-z0-9_]{0,31} and not be 'part', "
            f"got {describe(kind)}"
        )
    return kind


def wide_columns(signals: tuple[str, ...], layer_names: tuple[str, ...]) -> list[str]:
    """``<signal>/<layer>`` column names, signal-major (the order of ``values.reshape(-1)``)."""
    return [f"{s}/{name}" for s in signals for name in layer_names]


# -- paths ---------------------------------------------------------------------------------
def inside(path: Path, root: Path) -> Path:
    """Return ``path`` if it resolves strictly inside ``root``; raise ``InputError`` otherwise."""
    real, base = path.resolve(), root.resolve()
    if real == base or not real.is_relative_to(base):
        raise InputError(f"{path} resolves to {real}, outside {base}")
    return path


def run_path(log_dir: Path, run_id: str) -> Path:
    return inside(log_dir / f"run={check_run_id(run_id)}", log_dir)


def rank_path(run_dir: Path, rank: int) -> Path:
    return inside(run_dir / f"rank={rank}", run_dir)


def file_name(kind: str, index: int, ext: str) -> str:
    prefix = LAYER_PREFIX if kind == LAYER else kind
    return f"{prefix}-{index:06d}.{ext}"


def part_ext(kind: str) -> str:
    return "parquet" if kind == LAYER else "pq"


def parse_file(name: str) -> tuple[str, int, str] | None:
    """``(kind, index, ext)`` of a part or journal file name, None for anything else."""
    m = _FILE.fullmatch(name)
    if m is None:
        return None
    prefix, ext = m["prefix"], m["ext"]
    kind = LAYER if prefix == LAYER_PREFIX else prefix
    if ext != JOURNAL_EXT and ext != part_ext(kind):
        return None
    return kind, int(m["index"]), ext


def rank_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """``(rank, directory)`` of every ``rank=<r>`` directory; a symbolic link is refused."""
    out = []
    for child in run_dir.iterdir():
        m = _RANK.fullmatch(child.name)
        if m is None:
            continue
        if child.is_symlink():
            raise RecoveryError(
                f"{child} is a symbolic link; streamtopo refuses links inside a run directory "
                "(a linked rank could pull in another run's rows): replace it by a directory"
            )
        if child.is_dir():
            out.append((int(m[1]), child))
    return sorted(out)


def refuse_link(path: Path) -> Path:
    """Return ``path`` unless it is a symbolic link (a part or journal linked into a run)."""
    if path.is_symlink():
        raise RecoveryError(
            f"{path} is a symbolic link; streamtopo refuses links inside a run directory (it "
            "could pull in another run's rows or make recovery write outside the run): replace "
            "it by the file itself or remove it"
        )
    return path


def quarantine_dir(rank_dir: Path) -> Path:
    """``<run>/_quarantine/rank=<r>`` of a rank directory: where unreadable files are moved
    (created if needed).

    No reader globs it: nothing in it ends in ``.parquet``/``.pq``/``.arrows``, and
    ``pyarrow.dataset`` skips ``_``-prefixed directories anyway.
    """
    run_dir = rank_dir.parent
    top = run_dir / QUARANTINE
    for path in (top, top / rank_dir.name):
        if path.is_symlink():
            raise RecoveryError(f"{path} is a symbolic link; refusing to move files into it")
        path.mkdir(exist_ok=True)
    return inside(top / rank_dir.name, run_dir)


# -- schemas -------------------------------------------------------------------------------
def layer_journal_schema(signals: tuple[str, ...], layer_names: tuple[str, ...]) -> pa.Schema:
    """Journal of the layer table: the signal values of a row as one fixed-size list."""
    wide = wide_columns(signals, layer_names)
    return pa.schema(
        [
            pa.field("step", pa.int64()),
            pa.field("wall_time", pa.float64()),
            pa.field("values", pa.list_(pa.float32(), len(wide))),
            pa.field("h0", pa.float64()),
            pa.field("state", pa.string()),
            pa.field("reason", pa.string()),
        ],
        metadata={
            "streamtopo.kind": LAYER,
            "streamtopo.format_version": str(FORMAT_VERSION),
            "streamtopo.columns": json.dumps(wide),
        },
    )


def layer_table_schema(signals: tuple[str, ...], layer_names: tuple[str, ...]) -> pa.Schema:
    """Parquet schema of the layer table (wide ``<signal>/<layer>`` float32 columns)."""
    return pa.schema(
        [pa.field("step", pa.int64()), pa.field("wall_time", pa.float64())]
        + [pa.field(c, pa.float32()) for c in wide_columns(signals, layer_names)]
        + [
            pa.field("h0", pa.float64()),
            pa.field("state", pa.string()),
            pa.field("reason", pa.string()),
        ]
    )


def scalar_journal_schema(kind: str, table_schema: pa.Schema) -> pa.Schema:
    """Journal of another monitor kind: its Parquet schema plus the kind in the metadata."""
    return table_schema.with_metadata(
        {"streamtopo.kind": kind, "streamtopo.format_version": str(FORMAT_VERSION)}
    )


def journal_schema_for(kind: str, info: dict[str, Any]) -> pa.Schema:
    """Journal schema of table ``kind`` from its ``_meta.json`` description."""
    try:
        if kind == LAYER:
            return layer_journal_schema(tuple(info["signals"]), tuple(info["layer_names"]))
        return scalar_journal_schema(kind, table_schema_from_json(info["schema"]))
    except (KeyError, TypeError) as exc:
        raise RecoveryError(f"{META_NAME} describes table {kind!r} incompletely: {exc!r}") from exc


def table_schema_json(schema: pa.Schema) -> list[list[str]]:
    return [[f.name, _TYPE_NAMES[f.type]] for f in schema]


def table_schema_from_json(items: Any) -> pa.Schema:
    try:
        return pa.schema([pa.field(str(n), TYPES[t]) for n, t in items])
    except (KeyError, TypeError, ValueError) as exc:
        raise RecoveryError(f"{META_NAME} has an unreadable schema: {exc!r}") from exc


# -- _meta.json ----------------------------------------------------------------------------
def open_lock_file(path: Path) -> int:
    """Open (create) a lock file; a symbolic link there is refused, not followed."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise RecoveryError(
            f"lock file {path} cannot be opened ({exc}); a link is refused"
        ) from exc


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True):
    """Exclusive ``flock`` on ``path`` (created if needed); yields False if not acquired."""
    fd = open_lock_file(path)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no inter-process lock
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class RankLock:
    """Exclusive, non-blocking ``flock`` held for a writer's lifetime (one writer per rank)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = open_lock_file(path)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no inter-process lock
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise InputError(
                f"{path.parent} is already open in another RunWriter (one writer per rank); "
                "close it or use another rank/run_id"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
