"""Run-directory layout: names, paths, file names, schemas, locks (``_meta.json``: ``_meta.py``).

Layout (DESIGN.md §3, format version 2): one directory per table, so every reader of a
directory gets one schema::

    <log_dir>/run=<run_id>/_meta.json
    <log_dir>/run=<run_id>/table=<kind>/rank=<r>/part-000000.parquet   committed, immutable
    <log_dir>/run=<run_id>/table=<kind>/rank=<r>/part-000001.arrows    active journal
    <log_dir>/run=<run_id>/.rank=<r>.lock                held by the one writer of that rank
    <log_dir>/run=<run_id>/_quarantine/table=<kind>/rank=<r>/<file>.corrupt   moved aside

``kind`` is ``layer``, ``loss``, ``centroid``, ``collapse``, ... (the ``"monitor"`` key of a
row).

**Monitor identity.** A table holds the rows of one monitor: two monitors of one kind on one
writer (a train and an eval LayerMonitor) used to share ``table=layer`` with the same steps,
and replay kept half of them. A monitor given a ``name`` writes table ``<kind>.<name>``
(``LayerMonitor(..., name="eval")`` -> ``table=layer.eval/rank=<r>/``, the key ``layer.eval``
in ``_meta.json``, ``read_run(run, table="layer.eval")``, ``replay(run, table="layer.eval")``),
with its own schema, config and step sequence; an unnamed monitor writes ``table=<kind>`` as
before, so runs recorded before names existed read and replay unchanged. A RunWriter refuses a
second live monitor on a table it already gave to another (``RunWriter.claim_table``): name one
of them. The name is the partition (the directory), not a column: a table keeps one schema.

**Events.** ``table=events`` holds what a user did to a monitor between steps (columns
``table``: the monitor's table key, ``event``: ``"acknowledge"``); its ``step`` is the step of
the monitor's next check. :func:`~streamtopo.io.replay.replay` applies them at those steps, so a
run with an ``acknowledge()`` replays bit-identically.

``pl.scan_parquet(run / "table=layer/**/*.parquet", hive_partitioning=True)`` and
``pyarrow.dataset.dataset(run / "table=layer", partitioning="hive")`` read exactly the layer
table. Nothing that is not a finished Parquet file ends in ``.parquet`` (temporary files end in
``.tmp``, unreadable parts and journals are moved to ``_quarantine/`` with ``.corrupt``
appended). Symbolic links to tables, ranks, parts or journals are refused by every reader.

Format version 1 (still read, and continued by a resumed writer in the new layout) kept every
table of a rank in ``rank=<r>/``: the layer table as ``part-NNNNNN.parquet``, the others as
``<kind>-NNNNNN.pq``.

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

FORMAT_VERSION = 2
META_NAME = "_meta.json"
LAYER = "layer"
EVENTS = "events"  # acknowledgements (and other user actions) between a monitor's steps
LAYER_PREFIX = "part"
JOURNAL_EXT = "arrows"
MAX_NAME = 200
MAX_RUN_ID = 128
QUARANTINE = "_quarantine"

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
# a table: a monitor kind, or ``<kind>.<name>`` for a named monitor (LayerMonitor(name="eval"))
_TABLE_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}(?:\.[a-z0-9][a-z0-9_]{0,31})?")
_FILE = re.compile(r"(?P<prefix>[a-z][a-z0-9_]*)-(?P<index>[0-9]{6,})\.(?P<ext>parquet|pq|arrows)")
_RANK = re.compile(r"rank=(0|[1-9][0-9]{0,8})")
_TABLE = re.compile(r"table=([a-z][a-z0-9_]{0,31}(?:\.[a-z0-9][a-z0-9_]{0,31})?)")
_PART = re.compile(r"part-(?P<index>[0-9]{6,})\.(?P<ext>parquet|arrows)")
_RESERVED_KINDS = frozenset({LAYER_PREFIX})

WALL = pa.timestamp("us", tz="UTC")  # wall_time (format 1: float64 seconds)

# JSON spelling of the Arrow types a table may hold
TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": WALL,
    "list<string>": pa.list_(pa.string()),
}

# the layer table's alarm columns after reason: why a step is in its state
LAYER_ALARM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("z", "float64"),
    ("stat", "float64"),
    ("culprits", "list<string>"),
    ("direction", "string"),
    ("calibrating", "bool"),
)
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
    """Validate a table key (the ``"monitor"`` key of a row): a monitor kind, or
    ``<kind>.<name>`` for a named monitor."""
    if not isinstance(kind, str):
        raise InputTypeError(f"row['monitor'] must be a str, got {describe(kind)}")
    if _TABLE_KEY.fullmatch(kind) is None or kind_of(kind) in _RESERVED_KINDS:
        raise InputError(
            "row['monitor'] must match [a-z][a-z0-9_]{0,31} (a monitor kind other than 'part'), "
            f"optionally followed by .<name> ([a-z0-9][a-z0-9_]{{0,31}}), got {describe(kind)}"
        )
    return kind


def table_key(kind: str, name: str | None) -> str:
    """The table of a monitor: its kind, or ``<kind>.<name>`` when it has a name."""
    return kind if name is None else f"{kind}.{name}"


def kind_of(table: str) -> str:
    """The monitor kind of a table key (``"layer.eval"`` -> ``"layer"``)."""
    return table.split(".", 1)[0]


def column_name_ok(key: Any) -> bool:
    """A column name of a scalar table: a plain name, or ``<signal>/<layer>`` (one column
    naming rule for every per-layer signal, as in the layer table)."""
    if not isinstance(key, str) or not key or len(key) > 2 * MAX_NAME + 1:
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in key) or "\\" in key or ".." in key:
        return False
    parts = key.split("/")
    return len(parts) == 1 or (len(parts) == 2 and all(parts))


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
    """``rank=<r>`` directory of the format-1 layout (read, never written)."""
    return inside(run_dir / f"rank={rank}", run_dir)


def table_path(run_dir: Path, kind: str, rank: int) -> Path:
    """``table=<kind>/rank=<r>``: where a rank writes table ``kind``."""
    return inside(run_dir / f"table={kind}" / f"rank={rank}", run_dir)


def lock_path(run_dir: Path, rank: int) -> Path:
    """The lock file held by the one writer of a rank (hidden: no reader globs it)."""
    return inside(run_dir / f".rank={rank}.lock", run_dir)


def file_name(kind: str, index: int, ext: str) -> str:
    """Name of a part (``ext="parquet"``) or journal (``"arrows"``) in a table directory."""
    return f"part-{index:06d}.{ext}"


def part_ext(kind: str) -> str:
    return "parquet"


def part_name(journal_name: str) -> str:
    """Name of the part a journal becomes (format 1: ``<kind>-NNNNNN.pq`` for other tables)."""
    stem = journal_name.removesuffix(f".{JOURNAL_EXT}")
    return f"{stem}.parquet" if stem.startswith(f"{LAYER_PREFIX}-") else f"{stem}.pq"


def parse_file(name: str) -> tuple[str, int, str] | None:
    """``(kind, index, ext)`` of a format-1 part or journal file name, None for anything else."""
    m = _FILE.fullmatch(name)
    if m is None:
        return None
    prefix, ext = m["prefix"], m["ext"]
    kind = LAYER if prefix == LAYER_PREFIX else prefix
    if ext != JOURNAL_EXT and ext != ("parquet" if kind == LAYER else "pq"):
        return None
    return kind, int(m["index"]), ext


def parse_path(path: Path, name: str | None = None) -> tuple[str, int, str] | None:
    """``(kind, index, ext)`` of a part or journal of either layout (the table from the
    ``table=<kind>`` directory above the rank), None for anything else. ``name`` replaces
    ``path.name`` (a quarantined file's name without ``.corrupt``)."""
    name = path.name if name is None else name
    table = _TABLE.fullmatch(path.parent.parent.name)
    if table is None:
        return parse_file(name)
    m = _PART.fullmatch(name)
    return None if m is None else (table[1], int(m["index"]), m["ext"])


def _refuse_dir_link(child: Path) -> None:
    if child.is_symlink():
        raise RecoveryError(
            f"{child} is a symbolic link; streamtopo refuses links inside a run directory "
            "(a linked rank or table could pull in another run's rows): replace it by a directory"
        )


def _rank_children(parent: Path) -> list[tuple[int, Path]]:
    out = []
    for child in parent.iterdir():
        m = _RANK.fullmatch(child.name)
        if m is None:
            continue
        _refuse_dir_link(child)
        if child.is_dir():
            out.append((int(m[1]), child))
    return sorted(out)


def rank_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """``(rank, directory)`` of every directory holding a rank's files, in both layouts
    (``rank=<r>`` of format 1 first, then ``table=<kind>/rank=<r>``); links are refused."""
    out = _rank_children(run_dir)
    for _, table_dir in table_dirs(run_dir):
        out += _rank_children(table_dir)
    return out


def table_dirs(run_dir: Path) -> list[tuple[str, Path]]:
    """``(kind, directory)`` of every ``table=<kind>`` directory; a link is refused."""
    out = []
    for child in run_dir.iterdir():
        m = _TABLE.fullmatch(child.name)
        if m is None:
            continue
        _refuse_dir_link(child)
        if child.is_dir():
            out.append((m[1], child))
    return sorted(out)


def ranks_of(run_dir: Path) -> dict[int, list[Path]]:
    """Every rank of a run and the directories holding its files (see :func:`rank_dirs`)."""
    out: dict[int, list[Path]] = {}
    for rank, path in rank_dirs(run_dir):
        out.setdefault(rank, []).append(path)
    return dict(sorted(out.items()))


def refuse_link(path: Path) -> Path:
    """Return ``path`` unless it is a symbolic link (a part or journal linked into a run)."""
    if path.is_symlink():
        raise RecoveryError(
            f"{path} is a symbolic link; streamtopo refuses links inside a run directory (it "
            "could pull in another run's rows or make recovery write outside the run): replace "
            "it by the file itself or remove it"
        )
    return path


def quarantine_dir(rank_dir: Path, *, create: bool = True) -> Path:
    """``<run>/_quarantine/[table=<kind>/]rank=<r>`` of a directory holding a rank's files:
    where its unreadable files are moved (created if ``create``).

    No reader globs it: nothing in it ends in ``.parquet``/``.pq``/``.arrows``, and
    ``pyarrow.dataset`` skips ``_``-prefixed directories anyway.
    """
    if _TABLE.fullmatch(rank_dir.parent.name) is not None:
        run_dir, rel = rank_dir.parent.parent, [rank_dir.parent.name, rank_dir.name]
    else:
        run_dir, rel = rank_dir.parent, [rank_dir.name]
    path = run_dir / QUARANTINE
    for part in [None, *rel]:
        path = path if part is None else path / part
        if path.is_symlink():
            raise RecoveryError(f"{path} is a symbolic link; refusing to move files into it")
        if create:
            path.mkdir(exist_ok=True)
    return inside(path, run_dir)


# -- schemas -------------------------------------------------------------------------------
def layer_journal_schema(
    signals: tuple[str, ...], layer_names: tuple[str, ...], *, version: int = FORMAT_VERSION
) -> pa.Schema:
    """Journal of the layer table: the signal values of a row as one fixed-size list
    (``version=1``: the format-1 journal, float64 wall_time and no alarm columns)."""
    wide = wide_columns(signals, layer_names)
    alarm = [] if version == 1 else [pa.field(n, TYPES[t]) for n, t in LAYER_ALARM_COLUMNS]
    return pa.schema(
        [
            pa.field("step", pa.int64()),
            pa.field("wall_time", pa.float64() if version == 1 else WALL),
            pa.field("values", pa.list_(pa.float32(), len(wide))),
            pa.field("h0", pa.float64()),
            pa.field("state", pa.string()),
            pa.field("reason", pa.string()),
            *alarm,
        ],
        metadata={
            "streamtopo.kind": LAYER,
            "streamtopo.format_version": str(version),
            "streamtopo.columns": json.dumps(wide),
        },
    )


def layer_table_schema(signals: tuple[str, ...], layer_names: tuple[str, ...]) -> pa.Schema:
    """Parquet schema of the layer table (wide ``<signal>/<layer>`` float32 columns)."""
    return pa.schema(
        [pa.field("step", pa.int64()), pa.field("wall_time", WALL)]
        + [pa.field(c, pa.float32()) for c in wide_columns(signals, layer_names)]
        + [
            pa.field("h0", pa.float64()),
            pa.field("state", pa.string()),
            pa.field("reason", pa.string()),
        ]
        + [pa.field(n, TYPES[t]) for n, t in LAYER_ALARM_COLUMNS]
    )


def scalar_journal_schema(
    kind: str, table_schema: pa.Schema, *, version: int = FORMAT_VERSION
) -> pa.Schema:
    """Journal of another monitor kind: its Parquet schema plus the kind in the metadata."""
    return table_schema.with_metadata(
        {"streamtopo.kind": kind, "streamtopo.format_version": str(version)}
    )


def journal_schema_for(kind: str, info: dict[str, Any]) -> pa.Schema:
    """Journal schema of table ``kind`` from its ``_meta.json`` description."""
    try:
        table = table_schema_from_json(info["schema"])
        version = 1 if table.field("wall_time").type == pa.float64() else FORMAT_VERSION
        if kind_of(kind) == LAYER:
            names = tuple(info["signals"]), tuple(info["layer_names"])
            return layer_journal_schema(*names, version=version)
        return scalar_journal_schema(kind, table, version=version)
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
                f"{path.parent} rank {path.name[6:-5]} is already open in another RunWriter "
                "(one writer per rank); "
                "close it or use another rank/run_id"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
