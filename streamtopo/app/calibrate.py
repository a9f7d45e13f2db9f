"""``streamtopo calibrate``: choose the layer monitor's alarm knobs from a user's own healthy runs.

For every candidate knob (``fa_per_1k`` of ``rule="cusum"``; ``watch_z`` x ``raise_after`` of
``rule="streak"``, and with them the change detector's ``fa_per_1k`` when the streak monitor
keeps one, as the default does) each run is replayed (the fused replay of
:meth:`LayerMonitor.run`) with the run's recorded configuration. The rule is the one the runs
recorded unless ``rule`` says otherwise:

- **False alarms.** Every alarm episode (a HEALTHY evaluation followed by a WATCH/COLLAPSE one)
  of a healthy run is a false alarm. The rate is per 1,000 evaluations, with the exact
  (Garwood) one-sided Poisson upper confidence bound ``chi2.ppf(c, 2k + 2) / 2`` on the count
  ``k``. A knob *meets* the target when that bound is at most the target: with no alarm at all,
  ``1000 * -ln(1 - c) / target`` evaluations are needed to certify it (29,957 for 0.1 per 1k
  at 95 %).
- **Detection delay.** At ``inject_at`` of each run (60 %) the monitor's state is saved and the
  next ``horizon`` steps are replayed again with a synthetic fault on one layer and signal
  (drawn per run from ``seed``): jumps x2, x5, x30 and drifts reaching x3 and x10 over the
  horizon. The delay is the number of steps until the first alarm; a fault that meets an alarm
  already running is *masked* and not scored.

The chosen knob is, among those that meet the target, the one that detects most injected
faults, then with the smallest mean delay; when none meets it (too few healthy steps), the
observed rate decides and the result says ``certified=False``. Runs are scored in parallel
processes (``workers``, at most the usable cores), each reading its run with a polars lazy
scan (:func:`streamtopo.io.read_run`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_choice, check_positive_int, describe
from ..config import config_document
from ..errors import InputError, InputTypeError

__all__ = ["FAULTS", "Calibration", "calibrate", "candidates", "garwood_upper"]

# (name, kind, factor): a jump multiplies the layer's signal by factor from the injection on;
# a drift multiplies it by factor ** (k / horizon) at the k-th step after the injection
FAULTS: tuple[tuple[str, str, float], ...] = (
    ("jump x2", "jump", 2.0),
    ("jump x5", "jump", 5.0),
    ("jump x30", "jump", 30.0),
    ("drift x3", "drift", 3.0),
    ("drift x10", "drift", 10.0),
)
CUSUM_GRID = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
# raise_after 20: the streak rule's default beside the kept change detector (window 16 + 4)
STREAK_GRID = tuple(
    {"watch_z": w, "raise_after": r} for w in (3.0, 3.5, 4.0) for r in (3, 5, 8, 12, 20)
)
# the default monitor (streak rule + kept change detector): both rules raise alarms, so the
# detector's fa_per_1k is chosen with the streak knobs; raise_after 8 (the streak rule alone's
# default) and 20 (its default beside the detector), the values the evaluation could tell apart
KEPT_GRID = tuple(
    {"watch_z": w, "raise_after": r, "fa_per_1k": f}
    for w in (3.0, 3.5, 4.0)
    for r in (8, 20)
    for f in (0.02, 0.05, 0.1, 0.2, 0.5)
)
_NETWORK = ("n_layers", "signals", "layer_names")  # the run's own description, not settings


def candidates(rule: str, detector: bool = False) -> list[dict[str, Any]]:
    """The knob settings tried for ``rule``.

    ``detector``: the streak monitor keeps its change detector on (``keep_detector=True``, the
    default), so the detector's ``fa_per_1k`` is a knob too.

    >>> [c["fa_per_1k"] for c in candidates("cusum")][:3]
    [0.002, 0.005, 0.01]
    >>> len(candidates("streak")), candidates("streak")[0]
    (15, {'watch_z': 3.0, 'raise_after': 3})
    >>> len(candidates("streak", detector=True)), candidates("streak", detector=True)[0]
    (30, {'watch_z': 3.0, 'raise_after': 8, 'fa_per_1k': 0.02})
    """
    rule = check_choice(rule, "rule", ("cusum", "streak"))
    if rule == "cusum":
        return [{"fa_per_1k": v} for v in CUSUM_GRID]
    return [dict(c) for c in (KEPT_GRID if detector else STREAK_GRID)]


def garwood_upper(k: int, confidence: float = 0.95) -> float:
    """Exact one-sided upper confidence bound on a Poisson mean after observing ``k`` events.

    >>> round(garwood_upper(0), 4), round(garwood_upper(3), 3)
    (2.9957, 7.754)
    """
    from scipy.stats import chi2

    return float(chi2.ppf(confidence, 2 * k + 2) / 2.0)


@dataclass(frozen=True)
class Calibration:
    """The result of :func:`calibrate`.

    Attributes
    ----------
    rule : str
        ``"cusum"`` or ``"streak"``.
    knob : dict
        The chosen setting (``{"fa_per_1k": ...}``, ``{"watch_z": ..., "raise_after": ...}``, and
        with a kept change detector also its ``fa_per_1k``).
    certified : bool
        The chosen knob's upper confidence bound is at most ``target_fa``.
    rows : list of dict
        One row per candidate: ``knob``, ``steps`` (healthy evaluations), ``alarms``,
        ``fa_per_1k`` (observed), ``upper`` (its bound), ``meets``, ``chosen``, and per fault
        ``detected``/``scored``/``masked``/``mean_delay``/``median_delay``.
    config : dict
        The config document (``LayerMonitor(config=...)`` reads it; see
        :mod:`streamtopo.config`).
    """

    rule: str
    knob: dict[str, Any]
    target_fa: float
    confidence: float
    certified: bool
    runs: int
    steps: int
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    note: str = ""
    path: str | None = field(default=None)

    def table(self) -> str:
        """The candidates as a markdown table (the chosen one marked)."""
        faults = [f[0] for f in FAULTS]
        head = ["knob", "FA / 1k", f"upper {self.confidence:.0%}", "meets"]
        head += [f"{f}: found, delay" for f in faults]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            knob = ", ".join(f"{k}={v}" for k, v in r["knob"].items())
            cells = [
                ("**" + knob + "** (chosen)") if r["chosen"] else knob,
                f"{r['fa_per_1k']:.3f} ({r['alarms']} in {r['steps']:,})",
                f"{r['upper']:.3f}",
                "yes" if r["meets"] else "no",
            ]
            for f in faults:
                d = r["faults"][f]
                delay = "—" if d["median_delay"] is None else f"{d['median_delay']:g}"
                cells.append(f"{d['detected']}/{d['scored']}, {delay}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "knob": self.knob, "target_fa": self.target_fa,
            "confidence": self.confidence, "certified": self.certified, "runs": self.runs,
            "steps": self.steps, "note": self.note, "rows": self.rows, "config": self.config,
            "path": self.path,
        }  # fmt: skip


def calibrate(
    runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    target_fa: float = 0.1,
    *,
    rule: str | None = None,
    confidence: float = 0.95,
    out: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    horizon: int = 300,
    inject_at: float = 0.6,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> Calibration:
    """Choose the alarm knob of ``rule`` that meets ``target_fa`` false alarms per 1,000
    evaluations on healthy runs, and estimate its detection delay on injected faults.

    Parameters
    ----------
    runs : path or sequence of paths
        Run directories (``<log_dir>/run=<id>``, written by ``RunWriter``/``TrainingMonitor``)
        of healthy training, or log directories holding them. Every run must record the same
        signals and number of layers.
    target_fa : float, default 0.1
        Target false alarms per 1,000 evaluations.
    rule : {"cusum", "streak"}, optional
        The rule whose knobs are chosen (see :func:`candidates`); default: the rule the runs
        recorded (``"streak"`` for the default monitor, whose kept change detector's
        ``fa_per_1k`` is then chosen with ``watch_z`` and ``raise_after``).
    confidence : float, default 0.95
        Level of the upper confidence bound that must not exceed the target.
    out : path, optional
        Write the config document (JSON) here.
    workers : int, optional
        Processes scoring runs in parallel (default: the usable cores, at most one per run).
    horizon, inject_at, seed : int, float, int
        Steps replayed after an injection, where it happens (fraction of the run), and the seed
        that picks the faulted layer and signal of each run.
    overrides : dict, optional
        LayerMonitor settings that replace the recorded ones (``window``, ``baseline``...).

    Returns
    -------
    Calibration

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from streamtopo import LayerMonitor, RunWriter
    >>> from streamtopo.app.calibrate import calibrate
    >>> rng = np.random.default_rng(0)
    >>> log_dir = tempfile.mkdtemp()
    >>> for r in range(2):
    ...     with RunWriter(log_dir, run_id=f"healthy{r}") as w:
    ...         mon = LayerMonitor(4, window=4, writer=w)
    ...         for _ in range(400):
    ...             _ = mon.check(np.exp(rng.normal(0.0, 0.05, 4) + np.arange(4)))
    >>> cal = calibrate(log_dir, target_fa=5.0, rule="cusum", workers=1)
    >>> cal.rule, cal.runs, cal.steps, cal.config["layer"]["rule"]
    ('cusum', 2, 800, 'cusum')
    """
    paths = _expand(runs)
    target_fa = _positive(target_fa, "target_fa")
    confidence = _positive(confidence, "confidence")
    if not confidence < 1.0:
        raise InputError(f"confidence must be in (0, 1), got {confidence!r}")
    if rule is not None:
        rule = check_choice(rule, "rule", ("cusum", "streak"))
    horizon = check_positive_int(horizon, "horizon", minimum=10)
    inject_at = _positive(inject_at, "inject_at")
    if not inject_at < 1.0:
        raise InputError(f"inject_at must be in (0, 1), got {inject_at!r}")
    seed = check_positive_int(seed, "seed", minimum=0)
    if overrides is not None and not isinstance(overrides, Mapping):
        raise InputTypeError(f"overrides must be a dict, got {describe(overrides)}")
    if out is not None:  # refused before the work, not after it
        if not isinstance(out, (str, os.PathLike)):
            raise InputTypeError(f"out must be a path, got {describe(out)}")
        parent = Path(out).parent
        if not parent.is_dir() or Path(out).is_dir():
            raise InputError(f"out must be a file path in an existing directory, got {str(out)!r}")
    base = _base_config(paths, rule, dict(overrides or {}))
    rule = base["rule"]
    from ..monitors.layer import LayerMonitor

    cands = candidates(rule, detector=rule == "streak" and LayerMonitor(**base).keep_detector)
    jobs = [(str(p), i, base, cands, horizon, inject_at, seed) for i, p in enumerate(paths)]
    results = _map(jobs, workers)
    rows = _aggregate(results, cands, confidence, target_fa)
    chosen, certified, note = _choose(rows, target_fa, confidence)
    steps = rows[0]["steps"]
    settings = {k: v for k, v in base.items() if k not in _NETWORK}
    mon = LayerMonitor(**{**base, **rows[chosen]["knob"]})
    layer = {k: v for k, v in mon.config.items() if k not in (*_NETWORK, "capacity")}
    record = {
        "target_fa": target_fa, "confidence": confidence, "certified": certified,
        "runs": [str(p) for p in paths], "healthy_steps": steps, "rule": rule,
        "knob": rows[chosen]["knob"], "note": note, "base": settings,
        "candidates": rows, "faults": [list(f) for f in FAULTS], "horizon": horizon,
        "inject_at": inject_at, "seed": seed,
    }  # fmt: skip
    doc = config_document(layer, record)
    path = None
    if out is not None:
        path = str(out)
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(_strict(doc), indent=1, allow_nan=False) + "\n")
        tmp.replace(path)
    return Calibration(
        rule, rows[chosen]["knob"], target_fa, confidence, certified, len(paths), steps, rows,
        doc, note, path,
    )  # fmt: skip


# -- inputs -------------------------------------------------------------------------------------
def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a positive number, got {describe(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _expand(runs: Any) -> list[Path]:
    """Run directories: each path itself when it has ``_meta.json``, else its ``run=*``."""
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    if not isinstance(runs, Sequence) or not runs:
        raise InputTypeError(
            f"runs must be a run directory or a list of them, got {describe(runs)}"
        )
    out: list[Path] = []
    for r in runs:
        if not isinstance(r, (str, os.PathLike)):
            raise InputTypeError(f"runs must hold paths, got {describe(r)}")
        p = Path(r)
        if (p / "_meta.json").is_file():
            out.append(p)
            continue
        found = (
            sorted(q for q in p.glob("run=*") if (q / "_meta.json").is_file()) if p.is_dir() else []
        )
        if not found:
            raise InputError(
                f"runs: {p} is neither a run directory (with _meta.json) nor a log directory "
                "holding run=<id> directories"
            )
        out += found
    return out


def _base_config(paths: list[Path], rule: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The LayerMonitor arguments shared by every run (the first run's recorded config); rule
    None: the recorded one."""
    from ..io.replay import read_meta

    first = None
    for p in paths:
        info = read_meta(p)["tables"].get("layer")
        if info is None:
            raise InputError(f"runs: {p} has no layer table (no LayerMonitor rows)")
        shape = (tuple(info["signals"]), len(info["layer_names"]))
        if first is None:
            first = (p, shape, dict(info["config"]), tuple(info["layer_names"]))
        elif shape != first[1]:
            raise InputError(
                f"runs: {p} records signals {shape[0]} and {shape[1]} layers; {first[0]} records "
                f"{first[1][0]} and {first[1][1]}: calibrate runs of one network at a time"
            )
    assert first is not None
    config = first[2]
    config.pop("writer", None)
    from ..monitors.layer import LayerMonitor

    if rule is None:  # the recorded rule (runs from before the rule existed: the z-score one)
        from ..monitors._layer_settings import RULE_ALIASES

        rule = overrides.get("rule", config.get("rule", "streak"))
        rule = RULE_ALIASES.get(rule, rule)
        if rule not in ("cusum", "streak"):
            raise InputError(
                f"runs: {first[0]} records rule={rule!r}; calibrate chooses the knobs of "
                "rule='cusum' or 'streak': pass rule="
            )
    changed = config.get("rule") != rule  # recorded resolved from the run's rule, or absent
    for key in LayerMonitor.rule_derived:  # (recorded before it existed): derived anew, as a
        if key not in overrides and (changed or key not in config):  # monitor built now does
            config[key] = None
    config.update(overrides, rule=rule)
    config["signals"], config["n_layers"] = list(first[1][0]), first[1][1]
    config["layer_names"] = list(first[3])
    return config


# -- scoring (one process per run) ---------------------------------------------------------------
def _map(jobs: list[tuple], workers: int | None) -> list[dict[str, Any]]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = min(len(jobs), cores or 1)
    if workers is not None:
        n = min(check_positive_int(workers, "workers"), len(jobs))
    if n <= 1:
        return [_score_run(*job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: polars and numba's threads do not survive fork()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        return list(pool.map(_score_run, *zip(*jobs, strict=True)))


def _read(path: str, signals: list[str], names: list[str]) -> list[tuple[np.ndarray, Any]]:
    """Per rank: the (T, S, L) values in step order (last copy of a step wins) and the mask of
    missing (null) values, or None."""
    import polars as pl

    from ..io.replay import read_run

    columns = [f"{s}/{n}" for s in signals for n in names]
    data = (
        read_run(path)
        .select("rank", "step", *columns)
        .unique(subset=["rank", "step"], keep="last", maintain_order=True)
        .sort("rank", "step")
        .collect()
    )
    out = []
    for _, part in data.group_by("rank", maintain_order=True):
        shape = (part.height, len(signals), len(names))
        values = part.select(pl.col(columns).cast(pl.Float64)).to_numpy().reshape(shape)
        nulls = part.select(pl.col(c).is_null() for c in columns).to_numpy().reshape(shape)
        out.append((values, nulls if nulls.any() else None))
    return out


def _episodes(states: np.ndarray, before: bool = False) -> int:
    alarm = states != "HEALTHY"
    prev = np.concatenate([[before], alarm[:-1]])
    return int((alarm & ~prev).sum())


def _inject(x: np.ndarray, kind: str, factor: float, s: int, i: int) -> np.ndarray:
    y = x.copy()
    if kind == "jump":
        y[:, s, i] *= factor
    else:
        y[:, s, i] *= factor ** (np.arange(y.shape[0]) / y.shape[0])
    return y


def _score_run(path, index, base, cands, horizon, inject_at, seed) -> dict[str, Any]:
    """Healthy evaluations and false-alarm episodes of every candidate on one run, and the
    delay of each injected fault (None: missed within the horizon; "masked")."""
    from ..monitors.layer import LayerMonitor

    streams = _read(path, base["signals"], base["layer_names"])
    out = [{"steps": 0, "alarms": 0, "faults": {f[0]: [] for f in FAULTS}} for _ in cands]
    for rank, (x, missing) in enumerate(streams):
        T = x.shape[0]
        t0 = int(inject_at * T)
        faults = t0 >= 50 and T - t0 >= 10
        rng = np.random.default_rng([seed, index, rank])
        s, i = int(rng.integers(x.shape[1])), int(rng.integers(x.shape[2]))
        after = slice(t0, min(T, t0 + horizon))
        for c, cand in enumerate(cands):
            mon = LayerMonitor(**{**base, **cand})
            first = mon.run(x[:t0], missing=None if missing is None else missing[:t0])
            snap = mon.state_dict() if faults else None
            rest = mon.run(x[t0:], missing=None if missing is None else missing[t0:])
            states = np.concatenate([first["state"].to_numpy(), rest["state"].to_numpy()])
            evaluated = int(first["evaluated"].sum()) + int(rest["evaluated"].sum())
            out[c]["steps"] += evaluated
            out[c]["alarms"] += _episodes(states)
            if not faults:
                continue
            masked = first.height > 0 and first["state"][-1] != "HEALTHY"
            for name, kind, factor in FAULTS:
                if masked:
                    out[c]["faults"][name].append("masked")
                    continue
                probe = LayerMonitor(**{**base, **cand})
                probe.load_state_dict(snap)
                m = None if missing is None else missing[after]
                got = probe.run(_inject(x[after], kind, factor, s, i), missing=m)
                hit = np.flatnonzero(got["state"].to_numpy() != "HEALTHY")
                out[c]["faults"][name].append(int(hit[0]) if hit.size else None)
    return {"candidates": out}


# -- choice -------------------------------------------------------------------------------------
def _aggregate(results, cands, confidence, target) -> list[dict[str, Any]]:
    rows = []
    for c, cand in enumerate(cands):
        steps = sum(r["candidates"][c]["steps"] for r in results)
        alarms = sum(r["candidates"][c]["alarms"] for r in results)
        upper = 1000.0 * garwood_upper(alarms, confidence) / steps if steps else math.inf
        faults = {}
        for name, _, _ in FAULTS:
            got = [d for r in results for d in r["candidates"][c]["faults"][name]]
            scored = [d for d in got if d != "masked"]
            found = [d for d in scored if d is not None]
            faults[name] = {
                "detected": len(found), "scored": len(scored), "masked": len(got) - len(scored),
                "mean_delay": float(np.mean(found)) if found else None,
                "median_delay": float(np.median(found)) if found else None,
            }  # fmt: skip
        rows.append(
            {
                "knob": dict(cand),
                "steps": steps,
                "alarms": alarms,
                "fa_per_1k": 1000.0 * alarms / steps if steps else math.inf,
                "upper": upper,
                "meets": upper <= target,
                "chosen": False,
                "faults": faults,
            }
        )
    return rows


def _choose(rows, target, confidence) -> tuple[int, bool, str]:
    def score(k: int) -> tuple:
        f = rows[k]["faults"].values()
        found = sum(d["detected"] for d in f)
        delays = [d["mean_delay"] * d["detected"] for d in f if d["detected"]]
        mean = sum(delays) / found if found else math.inf
        return (-found, mean, rows[k]["fa_per_1k"])

    steps = rows[0]["steps"]
    meets = [k for k, r in enumerate(rows) if r["meets"]]
    note = ""
    certified = bool(meets)
    if not meets:
        need = 1000.0 * -math.log(1.0 - confidence) / target
        note = (
            f"no knob is certified: {steps:,} healthy evaluations cannot bound the rate under "
            f"{target} per 1k at {confidence:.0%} (that needs >= {math.ceil(need):,} "
            "evaluations even with no alarm); chosen by the observed rate"
        )
        meets = [k for k, r in enumerate(rows) if r["fa_per_1k"] <= target]
        if not meets:
            best = min(r["fa_per_1k"] for r in rows)
            meets = [k for k, r in enumerate(rows) if r["fa_per_1k"] == best]
            note += f"; no knob observed <= {target} per 1k, so the quietest one"
    chosen = min(meets, key=score)
    rows[chosen]["chosen"] = True
    return chosen, certified, note


def _strict(obj: Any) -> Any:
    """JSON without NaN/inf (None instead)."""
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
