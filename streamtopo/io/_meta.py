"""``_meta.json`` is input, not truth: a bounded parse and a check of every field before use.

A run directory can be copied, edited or forged, so every reader (``read_run``, ``replay``,
``recover``, the report, a writer reopening the run) goes through :func:`load_meta`, which

- refuses a file larger than :data:`MAX_META_BYTES` before reading it;
- measures the nesting depth of the text (strings blanked first, then a running count of
  brackets) and refuses more than :data:`MAX_DEPTH` levels before ``json.loads`` could recurse;
- checks every field it returns (presence, type, names, schema, bounds) and raises
  :class:`~streamtopo.errors.RecoveryError` naming the field.

Sizes that cost memory when a monitor is rebuilt from the recorded config (``window``,
``capacity``, ``baseline``) are bounded against what the files hold in :func:`check_sizes`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError, RecoveryError, StreamtopoError
from ._layout import (
    FORMAT_VERSION,
    LAYER,
    LAYER_ALARM_COLUMNS,
    META_NAME,
    TYPES,
    check_kind,
    check_names,
    check_run_id,
    column_name_ok,
    file_lock,
    kind_of,
    wide_columns,
)

MAX_META_BYTES = 64 * 2**20
MAX_DEPTH = 64
MAX_TABLES = 256
MAX_COLUMNS = 2**20
# a recorded window/capacity/baseline may exceed the rows a run holds (a short run) up to this
SIZE_FLOOR = 2**14
SIZED_FIELDS = ("window", "capacity", "baseline")

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings do not count)."""
    bare = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    if bare.size == 0:
        return 0
    step = (
        (bare == ord("[")).astype(np.int64)
        + (bare == ord("{"))
        - (bare == ord("]"))
        - (bare == ord("}"))
    )
    return int(np.cumsum(step).max(initial=0))


def parse_bounded(data: bytes, path: Path) -> Any:
    """``json.loads`` after the size and depth checks."""
    if len(data) > MAX_META_BYTES:
        raise RecoveryError(f"{path} is {len(data)} bytes, more than {MAX_META_BYTES}")
    depth = json_depth(data)
    if depth > MAX_DEPTH:
        raise RecoveryError(
            f"{path} nests {depth} levels deep, more than {MAX_DEPTH}; it was not written by "
            "streamtopo"
        )
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecoveryError(f"{path} is not valid JSON ({exc}); fix or remove it") from exc


WALL_TIME = (["wall_time", "timestamp"], ["wall_time", "float64"])  # format 2, format 1


def load_meta(run_dir: Path) -> dict[str, Any] | None:
    """The checked ``_meta.json`` of a run, None if it does not exist."""
    path = run_dir / META_NAME
    if path.is_symlink():
        raise RecoveryError(f"{path} is a symbolic link; streamtopo reads no links in a run")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size > MAX_META_BYTES:
        raise RecoveryError(f"{path} is {size} bytes, more than {MAX_META_BYTES}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecoveryError(f"{path} cannot be read: {exc}") from exc
    return check_meta(parse_bounded(data, path), path)


# -- fields --------------------------------------------------------------------------------
def _bad(path: Path, field: str, what: str, got: Any) -> RecoveryError:
    text = repr(got)
    if len(text) > 60:
        text = text[:57] + "..."
    return RecoveryError(f"{path}: field {field!r} must be {what}, got {text}")


def _field(obj: dict[str, Any], key: str, field: str, path: Path) -> Any:
    if key not in obj:
        raise RecoveryError(f"{path}: field {field!r} is missing")
    return obj[key]


def check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """Check every field of a parsed ``_meta.json``; return it unchanged or raise naming one."""
    if not isinstance(meta, dict) or meta.get("format") != "streamtopo-run":
        raise RecoveryError(f"{path} is not a streamtopo run description (field 'format')")
    version = _field(meta, "format_version", "format_version", path)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecoveryError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise RecoveryError(
            f"{path} has format_version {version}; this streamtopo reads versions up to "
            f"{FORMAT_VERSION} (upgrade streamtopo to read this run)"
        )
    run_id = _field(meta, "run_id", "run_id", path)
    try:
        check_run_id(run_id)
    except StreamtopoError as exc:
        raise _bad(path, "run_id", "a valid run id", run_id) from exc
    tables = meta.get("tables")
    if not isinstance(tables, dict):
        raise RecoveryError(f"{path} has no 'tables' mapping (field 'tables')")
    if len(tables) > MAX_TABLES:
        raise _bad(path, "tables", f"at most {MAX_TABLES} tables", f"{len(tables)} tables")
    for kind, info in tables.items():
        try:
            check_kind(kind)
        except StreamtopoError as exc:
            raise _bad(path, f"tables.{kind}", "a monitor kind [a-z][a-z0-9_]{0,31}", kind) from exc
        if not isinstance(info, dict):
            raise _bad(path, f"tables.{kind}", "an object", info)
        _check_table(kind, info, path)
    for key in ("layer_names", "signal_names"):
        value = meta.get(key)
        if value is not None and not isinstance(value, list):
            raise _bad(path, key, "a list or null", value)
    config = meta.get("monitor_config")
    if config is not None and not isinstance(config, dict):
        raise _bad(path, "monitor_config", "an object or null", config)
    return meta


def _check_table(kind: str, info: dict[str, Any], path: Path) -> None:
    where = f"tables.{kind}"
    files = _field(info, "files", f"{where}.files", path)
    if not isinstance(files, str):
        raise _bad(path, f"{where}.files", "a str", files)
    config = _field(info, "config", f"{where}.config", path)
    if not isinstance(config, dict):
        raise _bad(path, f"{where}.config", "an object", config)
    schema = _field(info, "schema", f"{where}.schema", path)
    if not isinstance(schema, list) or not 2 <= len(schema) <= MAX_COLUMNS:
        raise _bad(path, f"{where}.schema", f"a list of 2-{MAX_COLUMNS} [name, type] pairs", schema)
    for i, item in enumerate(schema):
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], str)
            and item[1] in TYPES
        )
        if not ok:
            raise _bad(path, f"{where}.schema[{i}]", f"[name, one of {sorted(TYPES)}]", item)
    names = [n for n, _ in schema]
    if schema[0] != ["step", "int64"] or schema[1] not in WALL_TIME:
        raise _bad(path, f"{where}.schema", "to start with step int64, wall_time timestamp", schema)
    if len(set(names)) != len(names):
        raise _bad(path, f"{where}.schema", "unique column names", sorted(names))
    if kind_of(kind) == LAYER:
        signals = _names(info, "signals", where, path)
        layers = _names(info, "layer_names", where, path)
        wide = wide_columns(signals, layers)
        if info.get("columns") != wide:
            raise _bad(
                path, f"{where}.columns", "the <signal>/<layer> columns", info.get("columns")
            )
        want = [["step", "int64"], schema[1]]
        want += [[c, "float32"] for c in wide]
        want += [["h0", "float64"], ["state", "string"], ["reason", "string"]]
        alarm = [list(c) for c in LAYER_ALARM_COLUMNS]
        if schema[1] == ["wall_time", "timestamp"]:  # format 2; format 1 had no alarm columns
            want += alarm
        if schema != want:
            raise _bad(path, f"{where}.schema", "the layer-table schema of its names", schema)
        n_layers = config.get("n_layers", len(layers))
        if n_layers != len(layers) or isinstance(n_layers, bool):
            raise _bad(
                path, f"{where}.config.n_layers", f"{len(layers)} (its layer_names)", n_layers
            )
    else:
        for i, name in enumerate(names[2:], start=2):
            if not column_name_ok(name) or name in ("monitor", "config"):
                raise _bad(path, f"{where}.schema[{i}]", "a column name", name)


def _names(info: dict[str, Any], key: str, where: str, path: Path) -> tuple[str, ...]:
    value = _field(info, key, f"{where}.{key}", path)
    if not isinstance(value, list) or len(value) > MAX_COLUMNS:
        raise _bad(path, f"{where}.{key}", "a list of names", value)
    try:
        return check_names(value, f"{where}.{key}")
    except StreamtopoError as exc:
        raise RecoveryError(f"{path}: {exc}") from exc


def check_sizes(config: dict[str, Any], rows: int, *, recorded: bool, where: str) -> None:
    """Bound ``window``/``capacity``/``baseline`` before a monitor allocates them.

    Each must be an int between 1 and ``max(rows, SIZE_FLOOR)``: a monitor never uses more
    history than the run holds, and the floor keeps short runs with a large configured window
    replayable. ``recorded`` says whether the values come from ``_meta.json`` (RecoveryError)
    or from the caller's overrides (InputError).
    """
    bound = max(int(rows), SIZE_FLOOR)
    for key in SIZED_FIELDS:
        if key not in config:
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{where}{key} must be an int, got {value!r}"
            raise RecoveryError(msg) if recorded else InputTypeError(msg)
        if not 1 <= value <= bound:
            msg = (
                f"{where}{key} must be between 1 and {bound} (the run holds {rows} rows; "
                f"larger sizes are refused before allocating), got {value}"
            )
            raise RecoveryError(msg) if recorded else InputError(msg)


# -- writing -------------------------------------------------------------------------------
def write_json_atomic(path: Path, obj: Any, *, fsync: bool = False) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    data = json.dumps(obj, indent=1, sort_keys=False).encode("utf-8")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def register_table(
    run_dir: Path, run_id: str, kind: str, info: dict[str, Any], *, fsync: bool = False
) -> None:
    """Add (or check) the description of table ``kind`` in ``_meta.json``, under a lock so
    several ranks can register concurrently. A different existing description is an error."""
    with file_lock(run_dir / ".meta.lock"):
        meta = load_meta(run_dir)
        if meta is None:
            meta = {
                "format": "streamtopo-run",
                "format_version": FORMAT_VERSION,
                "run_id": run_id,
                "layer_names": None,
                "signal_names": None,
                "monitor_config": None,
                "hive": {"run": "string", "rank": "int64"},
                "tables": {},
            }
        old = meta["tables"].get(kind)
        if old is not None:
            # "files" is the glob of the layout; a format-1 run continued here differs only there
            diff = sorted(
                k for k in set(old) | set(info) if k != "files" and old.get(k) != info.get(k)
            )
            if diff:
                raise InputError(
                    f"run {run_id!r} already records {kind!r} rows with a different {diff}; "
                    "log this monitor to another run_id"
                )
            return
        meta["tables"][kind] = info
        if kind == LAYER:
            meta["layer_names"] = info["layer_names"]
            meta["signal_names"] = info["signals"]
            meta["monitor_config"] = info["config"]
        write_json_atomic(run_dir / META_NAME, meta, fsync=fsync)
