"""Read a run back (:func:`read_run`) and re-run a monitor over its recorded signals
(:func:`replay`).

polars is imported inside the functions, so a training process that only writes logs never
loads it.
"""

from __future__ import annotations

import copy
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_positive_int, describe
from ..errors import InputError, InputTypeError, RecoveryError, StepGapWarning, StreamtopoError
from ._layout import (
    EVENTS,
    JOURNAL_EXT,
    LAYER,
    META_NAME,
    kind_of,
    parse_path,
    part_name,
    ranks_of,
    refuse_link,
    table_schema_from_json,
)
from ._meta import check_sizes, load_meta
from ._parts import Piece, check_part, step_gaps, table_piece
from .recovery import read_journal, wide_table

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["read_meta", "read_run", "replay", "run_summary", "summarize"]


def _run_dir(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InputTypeError(f"path must be a run directory path, got {describe(path)}")
    return Path(path)


def _meta_of(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise RecoveryError(f"path {run_dir} is not a directory")
    meta = load_meta(run_dir)
    if meta is None:
        raise RecoveryError(
            f"path {run_dir} has no {META_NAME} (not a run directory, or no row yet)"
        )
    return meta


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's ``_meta.json``, checked field by field before anything uses it.

    The size, the nesting depth (before ``json.loads`` could recurse), every field's presence
    and type, names and the table schemas are checked; a bad field raises
    :class:`~streamtopo.errors.RecoveryError` naming it.

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> run = Path(tempfile.mkdtemp()) / "run=x"
    >>> run.mkdir()
    >>> _ = (run / "_meta.json").write_text(json.dumps(
    ...     {"format": "streamtopo-run", "format_version": 1, "run_id": "x",
    ...      "tables": {"layer": {"files": "", "config": {}}}}))
    >>> read_meta(run)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamtopo.errors.RecoveryError: .../_meta.json: field 'tables.layer.schema' is missing
    """
    return _meta_of(_run_dir(path))


def _table_info(meta: dict[str, Any], table: Any, run_dir: Path) -> dict[str, Any]:
    if not isinstance(table, str):
        raise InputTypeError(f"table must be a str, got {describe(table)}")
    info = meta["tables"].get(table)
    if info is None:
        raise InputError(
            f"table={table!r} is not in run {run_dir}; it has {sorted(meta['tables'])}"
        )
    return info


def read_run(
    path: str | os.PathLike[str], include_journal: bool = False, *, table: str = LAYER
) -> pl.LazyFrame:
    """All rows of a run, every rank, as a polars LazyFrame.

    Parameters
    ----------
    path : path
        The ``run=<id>`` directory.
    include_journal : bool, default False
        Also read rows still in journals (a live or crashed run), up to each journal's first
        torn batch. Nothing is modified on disk.
    table : str, default "layer"
        Table to read: a monitor kind (``"layer"``, or e.g. ``"centroid"``), or
        ``"<kind>.<name>"`` for a named monitor (``LayerMonitor(..., name="eval")`` writes
        ``"layer.eval"``), or ``"events"`` (acknowledgements).

    Returns
    -------
    polars.LazyFrame
        The columns of ``_meta.json``'s schema plus ``run`` (String) and ``rank`` (Int64).
        Within a rank, rows come in the order they were written (parts by index).

    Notes
    -----
    ``run`` and ``rank`` are the hive partitions of the layout, added from the directory names
    this function walks rather than by polars' ``hive_partitioning``, which parses every
    ``key=value`` directory of the full path (a ``log_dir`` such as ``/data/lr=3e-4/`` would add
    an ``lr`` column). Plain ``pl.scan_parquet(run_dir / "table=layer/**/*.parquet",
    hive_partitioning=True)`` works too (format-2 runs).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from streamtopo.io import RunWriter, read_run
    >>> log_dir = tempfile.mkdtemp()
    >>> with RunWriter(log_dir, run_id="demo") as w:
    ...     for step in range(4):
    ...         w({"monitor": "layer", "step": step, "wall_time": 0.0, "signals": ("g",),
    ...            "layer_names": ("a", "b"), "values": np.full((1, 2), step, np.float32),
    ...            "h0": 0.5, "state": "HEALTHY", "reason": "", "config": {}})
    >>> read_run(w.run_dir).select("run", "rank", "step", "g/b").collect().rows()
    [('demo', 0, 0, 0.0), ('demo', 0, 1, 1.0), ('demo', 0, 2, 2.0), ('demo', 0, 3, 3.0)]
    """
    frame, _ = _read(path, include_journal, table, stacklevel=3)
    return frame


def _read(
    path: Any, include_journal: Any, table: Any, *, stacklevel: int, gaps: bool = True
) -> tuple[pl.LazyFrame, int]:
    """read_run's frame and its number of rows (from the footers and the journals read)."""
    import polars as pl

    run_dir = _run_dir(path)
    if not isinstance(include_journal, bool):
        raise InputTypeError(f"include_journal must be a bool, got {describe(include_journal)}")
    meta = _meta_of(run_dir)
    info = _table_info(meta, table, run_dir)
    schema = table_schema_from_json(info["schema"])
    pl_schema = pl.from_arrow(schema.empty_table()).schema
    run_id = str(meta["run_id"])
    frames = []
    n_rows = 0
    for rank, folders in ranks_of(run_dir).items():
        parts, journals = _rank_files(folders, table)
        pieces: list[pl.LazyFrame] = []
        tables = []
        if include_journal:
            for index, journal in journals:
                if index in parts:
                    continue  # mid-roll: the part is complete, the journal a leftover
                try:
                    jschema, batches, _ = read_journal(journal)
                except FileNotFoundError:  # rolled while we listed: read its part instead
                    part = journal.with_name(part_name(journal.name))
                    if part.exists():
                        parts[index] = part
                    continue
                if jschema is not None and batches:
                    tables.append((index, wide_table(jschema, batches)))
        ordered: list[tuple[int, Any]] = sorted([*parts.items(), *tables], key=lambda item: item[0])
        steps: list[Piece] = []
        for _, item in ordered:
            piece = (
                check_part(item, schema, run_dir)
                if isinstance(item, Path)
                else table_piece("journal", item)
            )
            steps.append(piece)
            n_rows += piece.rows
        if gaps:  # events are sparse by nature: no hole to report
            _warn_gaps(run_dir, rank, table, steps, stacklevel + 1)
        run_of_parts: list[Path] = []
        for _, item in [*ordered, (None, None)]:
            if isinstance(item, Path):
                run_of_parts.append(item)
                continue
            if run_of_parts:  # consecutive parts: one scan keeps their order
                pieces.append(pl.scan_parquet(run_of_parts, schema=pl_schema))
                run_of_parts = []
            if item is not None:
                pieces.append(pl.from_arrow(item.cast(schema)).lazy())
        if pieces:
            frames.append(
                pl.concat(pieces, how="vertical").with_columns(
                    pl.lit(run_id, pl.String).alias("run"), pl.lit(rank, pl.Int64).alias("rank")
                )
            )
    if not frames:
        empty = pl.DataFrame(schema=pl_schema).lazy()
        empty = empty.with_columns(
            pl.lit(run_id, pl.String).alias("run"), pl.lit(0, pl.Int64).alias("rank")
        ).clear()
        return empty, 0
    return pl.concat(frames, how="vertical"), n_rows


def _warn_gaps(run_dir: Path, rank: int, table: str, pieces: list[Piece], stacklevel: int) -> None:
    gaps = step_gaps(pieces)
    if gaps:
        holes = "; ".join(f"steps {a}..{b} (between {x} and {y})" for a, b, x, y in gaps)
        warnings.warn(
            f"{run_dir} rank {rank} table {table!r} has no rows for {holes}: a file was deleted "
            "or lost (or the writer dropped rows it could not write)",
            StepGapWarning,
            stacklevel=stacklevel,
        )


def _rank_files(folders: list[Path], table: str) -> tuple[dict[int, Path], list[tuple[int, Path]]]:
    parts: dict[int, Path] = {}
    journals: list[tuple[int, Path]] = []
    for p in (p for folder in folders for p in folder.iterdir()):
        parsed = parse_path(p)
        if parsed is None or parsed[0] != table:
            continue
        refuse_link(p)
        _, index, ext = parsed
        if ext == JOURNAL_EXT:
            journals.append((index, p))
        else:
            parts[index] = p
    return parts, sorted(journals)


# -- replay --------------------------------------------------------------------------------
def _layer_monitor_class() -> Any:
    try:
        from ..monitors.layer import LayerMonitor
    except ImportError as exc:
        raise StreamtopoError(
            "replay needs streamtopo.monitors.layer.LayerMonitor, which this installation "
            "does not have yet; read_run() still reads the recorded signals"
        ) from exc
    return LayerMonitor


def replay(
    path: str | os.PathLike[str],
    monitor: Any = None,
    *,
    rank: int | None = None,
    include_journal: bool = False,
    chunk: int = 65536,
    progress: bool = False,
    table: str = LAYER,
    interventions: bool = True,
    **overrides: Any,
) -> pl.DataFrame:
    """Re-run a LayerMonitor over a run's recorded signals; return its statuses.

    With the recorded configuration (``monitor=None`` and no overrides) the replayed ``h0`` and
    ``state`` are bit-identical to what the live run logged, which the output carries beside
    them as ``live_h0`` and ``live_state``, also across a guard's rollbacks: the run's
    ``interventions`` table says at which step the live monitor's state was restored and from
    which snapshot step, and the replay does the same (it keeps its monitor's state at exactly
    the snapshot steps it will need, read from the table up front).

    Parameters
    ----------
    path : path
        The ``run=<id>`` directory.
    monitor : LayerMonitor, optional
        Monitor to run; it is ``reset()`` before each rank. Default: a new LayerMonitor built
        from the run's recorded configuration, updated with ``overrides``.
    rank : int, optional
        Replay one rank only (default: every rank, each from a fresh monitor).
    include_journal : bool, default False
        Also use rows still in journals (see :func:`read_run`).
    chunk : int, default 65536
        Steps per call of the monitor's batch method (bounds memory; progress granularity).
    progress : bool, default False
        Show a progress bar (tqdm) on stderr, updated every ``chunk`` steps.
    table : str, default "layer"
        The layer table to replay: ``"layer"``, or ``"layer.<name>"`` for a monitor built
        with ``name=`` (e.g. the eval monitor beside the train one).
    interventions : bool, default True
        Apply the guard's rollbacks recorded in the run (``False``: replay the rows as one
        stream, as if no state had been restored). A snapshot or rollback between two layer
        rows (``TrainingMonitor(every>1)``) applies after the row before it, where the live
        monitor's state last changed.
    **overrides
        Monitor parameters to change (``window=``, ``transform=``, ``rule=`` ...). The other
        parameters keep their recorded values, except ``layer_rule``, which follows a new
        ``rule`` unless given too.

    Returns
    -------
    polars.DataFrame
        ``rank``, then the monitor's status columns (``step``, ``h0``, ``state``, ``reason`` ...),
        then ``live_h0``, ``live_state`` and ``intervention`` (the guard's action at that step,
        e.g. ``"rollback to 400"``, null on the other steps). Steps logged twice (a run resumed
        from an older checkpoint) count once, the later copy winning, as the resumed monitor saw
        it. ``acknowledge()`` calls logged in the ``events`` table are repeated before the steps
        they preceded.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from streamtopo import LayerMonitor, RunWriter, replay
    >>> rng = np.random.default_rng(0)
    >>> with RunWriter(tempfile.mkdtemp(), run_id="demo") as writer:
    ...     monitor = LayerMonitor(n_layers=6, window=4, writer=writer)
    ...     live = [monitor.check(rng.lognormal(size=6)) for _ in range(30)]
    >>> statuses = replay(writer.run_dir)
    >>> statuses.height, statuses["h0"].to_list() == [s.h0 for s in live]
    (30, True)
    >>> (statuses["state"] == statuses["live_state"]).all()
    True
    """
    import polars as pl

    run_dir = _run_dir(path)
    if rank is not None:
        rank = check_positive_int(rank, "rank", minimum=0)
    chunk = check_positive_int(chunk, "chunk")
    for name, flag in (("progress", progress), ("interventions", interventions)):
        if not isinstance(flag, bool):
            raise InputTypeError(f"{name} must be a bool, got {describe(flag)}")
    meta = _meta_of(run_dir)
    info = _table_info(meta, table, run_dir)
    if kind_of(table) != LAYER:
        raise InputError(f"table must be a layer table ('layer' or 'layer.<name>'), got {table!r}")
    signals, names = tuple(info["signals"]), tuple(info["layer_names"])
    frame, n_rows = _read(run_dir, include_journal, table, stacklevel=3)
    acks = _acknowledged(run_dir, meta, table, include_journal)
    if monitor is None:
        monitor = _rebuild(run_dir, info["config"], overrides, n_rows)
    elif overrides:
        raise InputError(f"pass either monitor= or overrides, got both ({sorted(overrides)})")
    if not callable(getattr(monitor, "run", None)):
        raise InputTypeError(f"monitor must be a LayerMonitor, got {describe(monitor)}")
    if tuple(monitor.signals) != signals or monitor.n_layers != len(names):
        raise InputError(
            f"monitor has signals {tuple(monitor.signals)} and n_layers={monitor.n_layers}; the "
            f"run recorded signals {signals} and {len(names)} layers"
        )
    columns = [f"{s}/{n}" for s in signals for n in names]
    try:
        data = frame.select("rank", "step", "h0", "state", *columns).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise RecoveryError(
            f"reading {run_dir} failed ({exc}); run `streamtopo recover {run_dir}`: it decodes "
            "every part and moves unreadable ones aside into _quarantine/ (bytes kept)"
        ) from exc
    if rank is not None:
        present = sorted(data["rank"].unique().to_list())
        if rank not in present:
            raise InputError(f"rank {rank} has no rows in {run_dir}; ranks present: {present}")
        data = data.filter(pl.col("rank") == rank)
    ordered = data.select(
        ((pl.col("rank").diff() > 0) | (pl.col("step").diff() > 0) & (pl.col("rank").diff() == 0))
        .fill_null(True)
        .all()
    ).item()
    if not ordered:  # steps logged twice (resumed from an older checkpoint) or out of order
        data = data.unique(subset=["rank", "step"], keep="last", maintain_order=True).sort(
            "rank", "step"
        )
    actions = _interventions(run_dir, meta, include_journal) if interventions else {}
    out = []
    for (r,), part in data.group_by("rank", maintain_order=True):
        monitor.reset()
        cuts = set(np.flatnonzero(part["step"].is_in(acks.get(r, [])).to_numpy()).tolist())
        shape = (part.height, len(signals), len(names))
        values = part.select(columns).to_numpy().reshape(shape)
        # nulls are values that were not measured: passed back as check(..., missing=...)
        nulls = part.select(pl.col(c).is_null() for c in columns).to_numpy().reshape(shape)
        missing = nulls if nulls.any() else None
        steps = part["step"].to_list()
        keep_at, restore_at, labels = _plan(actions.get(r, []), steps, run_dir, r)
        statuses = []
        saved: dict[int, Any] = {}
        bar = _bar(part.height, f"replay rank {r}") if progress else None
        a = 0
        for b in _segments(part.height, chunk, sorted({*keep_at, *restore_at}), cuts):
            if a in cuts:
                monitor.acknowledge()  # as the live monitor did before this step
            m = None if missing is None else missing[a:b]
            statuses.append(monitor.run(values[a:b], missing=m))
            if b - 1 in keep_at:  # a snapshot step a later rollback goes back to
                saved[keep_at[b - 1]] = copy.deepcopy(monitor.state_dict())
            if b - 1 in restore_at:  # the live run restored its monitors here
                monitor.load_state_dict(copy.deepcopy(saved[restore_at[b - 1]]))
            if bar is not None:
                bar.update(b - a)
            a = b
        if bar is not None:
            bar.close()
        st = pl.concat(statuses, how="vertical") if statuses else None
        if st is None:
            continue
        # the monitor numbers steps from its own counter; report the recorded ones
        st = st.with_columns(step=part["step"])
        live = part.select(live_h0="h0", live_state="state").with_columns(
            intervention=pl.Series([labels.get(i) for i in range(part.height)], dtype=pl.String)
        )
        out.append(
            pl.concat([pl.DataFrame({"rank": [r] * part.height}), st, live], how="horizontal")
        )
    if not out:
        return pl.DataFrame(
            {"rank": [], "step": [], "h0": [], "state": []},
            schema={"rank": pl.Int64, "step": pl.Int64, "h0": pl.Float64, "state": pl.String},
        )
    return pl.concat(out, how="vertical")


def _bar(total: int, desc: str) -> Any:
    """A tqdm progress bar on stderr (tqdm: one small pure-Python dependency that draws in a
    terminal, a log file and a notebook alike)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", unit_scale=True, file=sys.stderr)


def _acknowledged(
    run_dir: Path, meta: dict[str, Any], table: str, include_journal: bool
) -> dict[int, list[int]]:
    """Steps before which ``table``'s monitor was acknowledged, per rank (none for runs
    recorded before acknowledgements were logged)."""
    import polars as pl

    if EVENTS not in meta["tables"]:
        return {}
    events, _ = _read(run_dir, include_journal, EVENTS, stacklevel=4, gaps=False)
    try:
        acks = (
            events.filter((pl.col("table") == table) & (pl.col("event") == "acknowledge"))
            .select("rank", "step")
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise RecoveryError(
            f"reading the events table of {run_dir} failed ({exc}); run `streamtopo recover "
            f"{run_dir}`"
        ) from exc
    out: dict[int, list[int]] = {}
    for rank, step in acks.iter_rows():
        out.setdefault(rank, []).append(step)
    return out


def _interventions(run_dir: Path, meta: dict[str, Any], include_journal: bool) -> dict[int, list]:
    """The guard's actions by rank, in step order: ``[(step, action, restored_step), ...]``."""
    import polars as pl

    if "interventions" not in meta["tables"]:
        return {}
    with warnings.catch_warnings():  # a guard acts at sparse steps: no hole to report
        warnings.simplefilter("ignore", StepGapWarning)
        frame, _ = _read(run_dir, include_journal, "interventions", stacklevel=4)
    try:
        rows = frame.select("rank", "step", "action", "restored_step").collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise RecoveryError(f"reading the interventions table of {run_dir} failed: {exc}") from exc
    out: dict[int, list] = {}
    for r, t, action, s in rows.sort("rank", "step", maintain_order=True).iter_rows():
        out.setdefault(r, []).append((t, action, s))
    return out


def _plan(
    actions: list[tuple[int, str, int]], steps: list[int], run_dir: Path, rank: int
) -> tuple[dict[int, int], dict[int, int], dict[int, str]]:
    """Row indices after which the replay keeps its monitor's state (-> snapshot step), after
    which it restores one (-> snapshot step), and each action's label by row index.

    The layer monitor's state changes only at its rows, so its state at a step is its state
    after the last row at or before that step: a snapshot or a rollback between two monitored
    steps (``TrainingMonitor(every>1)``) maps to the row before it."""
    import bisect

    keep_at: dict[int, int] = {}
    restore_at: dict[int, int] = {}
    labels: dict[int, str] = {}
    for t, action, s in actions:
        i = bisect.bisect_right(steps, t) - 1  # the last row at or before the action
        if action != "rollback":
            if i >= 0:
                labels[i] = action if i not in labels else f"{labels[i]}; {action}"
            continue
        j = bisect.bisect_right(steps, s) - 1
        if j < 0 or not j <= i:
            raise RecoveryError(
                f"{run_dir} rank {rank}: the guard rolled back at step {t} to a snapshot of "
                f"step {s}, before the layer table's first row (step {steps[0] if steps else '-'})"
                "; replay(..., interventions=False) replays the rows as one stream"
            )
        keep_at[j] = s
        restore_at[i] = s
        label = f"rollback to {s}"
        labels[i] = label if i not in labels else f"{labels[i]}; {label}"
    return keep_at, restore_at, labels


def _segments(n: int, chunk: int, cuts: list[int], before: set[int]) -> list[int]:
    """Ends of the row ranges to run: every ``chunk`` rows, right after each ``cuts`` row and
    right before each ``before`` row."""
    ends = sorted({*range(chunk, n, chunk), *(c + 1 for c in cuts), *before, n})
    return [e for e in ends if 0 < e <= n]


def _rebuild(run_dir: Path, recorded: dict[str, Any], overrides: dict[str, Any], rows: int) -> Any:
    """A LayerMonitor from the recorded config and the caller's overrides, sizes bounded first."""
    cls = _layer_monitor_class()
    field = f"{run_dir / META_NAME}: field 'tables.layer.config."
    check_sizes(recorded, rows, recorded=True, where=field)
    check_sizes(overrides, rows, recorded=False, where="")
    config = dict(recorded)
    # a config without a rule was recorded before rules were named: under the streak rule,
    # whatever LayerMonitor's default is now (so such runs keep replaying bit-identically)
    config.setdefault("rule", "streak")
    for key, value in cls.legacy_defaults.items():  # parameters added after such runs
        config.setdefault(key, value)
    if overrides.get("rule", config["rule"]) != config["rule"]:
        for key in cls.rule_derived:  # recorded resolved from the old rule
            if key in config and key not in overrides:
                config[key] = None  # derived anew from the new one
    config.update(overrides)
    try:
        return cls(**config)
    except (TypeError, ValueError, OverflowError, StreamtopoError) as exc:
        if overrides:
            raise InputError(
                f"the recorded config with overrides {sorted(overrides)} does not build a "
                f"LayerMonitor: {exc}"
            ) from exc
        raise RecoveryError(
            f"{run_dir / META_NAME}: field 'tables.layer.config' does not build a LayerMonitor: "
            f"{exc}"
        ) from exc


def run_summary(frame: pl.DataFrame) -> pl.DataFrame:
    """The one run summary of a status table (a layer table, or :func:`replay`'s statuses):
    one row per ``rank`` (rank 0 when the frame has no rank column), rows in step order.

    Columns: ``steps`` (rows), ``first_step``/``last_step`` (of the first and last row),
    ``peak_h0`` (the largest *finite* h0 over the rows; null when none is finite — not the
    peak rule's warm-up peak, which ``LayerMonitor.summary()`` reports), ``last_h0`` (the last
    row's h0, NaN included), ``watch_steps``, ``collapse_steps``, ``alarm_episodes`` (runs of
    consecutive rows not HEALTHY), ``first_alarm_step``, ``first_watch_step``,
    ``first_collapse_step`` (null when never), ``final_status`` (the last row's state) and,
    when the frame has ``intervention`` (replay), ``interventions`` (the guard's actions), and
    when it has ``live_state``/``live_h0`` (replay), ``differ_from_live`` (rows whose
    state or h0 differ from the live run, NaN equal to NaN).

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"step": [0, 1, 2, 3], "h0": [1.0, float("inf"), 3.0, float("nan")],
    ...                    "state": ["HEALTHY", "WATCH", "HEALTHY", "COLLAPSE"]})
    >>> s = run_summary(df).row(0, named=True)
    >>> s["peak_h0"], s["alarm_episodes"], s["first_collapse_step"], s["final_status"]
    (3.0, 2, 3, 'COLLAPSE')
    """
    import polars as pl

    if "rank" not in frame.columns:
        frame = frame.with_columns(rank=pl.lit(0, dtype=pl.Int64))
    state, step, h0 = pl.col("state"), pl.col("step"), pl.col("h0")
    alarm = state != "HEALTHY"
    aggs = [
        pl.len().alias("steps"),
        step.first().alias("first_step"),
        step.last().alias("last_step"),
        h0.filter(h0.is_finite()).max().alias("peak_h0"),
        h0.last().alias("last_h0"),
        (state == "WATCH").sum().alias("watch_steps"),
        (state == "COLLAPSE").sum().alias("collapse_steps"),
        (alarm & ~alarm.shift(1).fill_null(False)).sum().alias("alarm_episodes"),
        step.filter(alarm).first().alias("first_alarm_step"),
        step.filter(state == "WATCH").first().alias("first_watch_step"),
        step.filter(state == "COLLAPSE").first().alias("first_collapse_step"),
        state.last().alias("final_status"),
    ]
    if "intervention" in frame.columns:
        aggs.append(pl.col("intervention").is_not_null().sum().alias("interventions"))
    if "live_state" in frame.columns:
        same_h0 = (h0 == pl.col("live_h0")) | (h0.is_nan() & pl.col("live_h0").is_nan())
        aggs.append(((state != pl.col("live_state")) | ~same_h0).sum().alias("differ_from_live"))
    return frame.group_by("rank", maintain_order=True).agg(aggs)


def summarize(statuses: pl.DataFrame) -> pl.DataFrame:
    """One row per rank of :func:`replay`'s statuses: :func:`run_summary` (the old name)."""
    return run_summary(statuses)
