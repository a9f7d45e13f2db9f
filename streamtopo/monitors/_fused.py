"""LayerMonitor's batch path: the rows of a recorded stream through one compiled loop.

:func:`run_rows` drives :mod:`streamtopo._kernels.replay`: it packs the monitor's rule state
into arrays, lets the kernel run every *clean* row (module doc there), unpacks the state, and
hands each other row to the monitor's own per-step code: :meth:`LayerMonitor.check` for a row
the kernel did not touch, the monitor's evaluation (what ``check()`` does after its kernel) for
a row the kernel recorded but did not decide. The statuses and the final state are therefore
exactly those of ``check()`` row by row; ``tests/test_fused_replay.py`` compares them bit for
bit, with and without the JIT, against ``check()`` with its compiled path off.

Live ``check()`` uses the same loop one row at a time (:func:`check_fast`, for a monitor whose
last state is HEALTHY): the rule state then lives in :class:`FastState`'s arrays, and the rule
objects (``log h0`` baseline, alarm counters, peak, patience, summary) are brought up to date
from them when read (``layer._RuleState``); after a step outside the loop the arrays are
packed again. A clean step costs one compiled call instead of the rules' Python code.

The module is the batch half of ``layer.py`` (it reads the same private state, as ``check()``
does); it exists so the per-step module stays readable.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernels.replay import (
    CALIBRATING,
    CHECK,
    EARLY,
    EVALUATED,
    I_BN,
    I_PUSH_FIRST,
    NAMED,
)
from ..alarms import State
from ._records import StatusColumns, status_frame
from ._status import LayerStatus, positional_constructor

if TYPE_CHECKING:  # pragma: no cover
    from .layer import LayerMonitor

__all__ = ["check_fast", "run_rows", "sync_rules"]

BLOCK = 16384  # rows per kernel call: bounds the progress bar's granularity, not the speed
_NO_PUSH = (-1, 0, 0)


def run_rows(mon: LayerMonitor, x: np.ndarray, missing: np.ndarray | None, progress: bool) -> Any:
    """Statuses of every row of ``x`` (T, S, L), as ``status_frame`` of ``check()`` calls."""
    n = x.shape[0]
    bar = _bar(n, progress)
    try:
        if mon.writer is not None or x.dtype.kind != "f":  # a row per writer call / bad input
            out = []
            for t in range(n):
                out.append(mon.check(x[t], missing=None if missing is None else missing[t]))
                if bar is not None:
                    bar.update(1)
            return status_frame(out)
        return _fused(mon, np.ascontiguousarray(x, dtype=np.float64), missing, bar)
    finally:
        if bar is not None:
            bar.close()


def _bar(n: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=n, unit="step", unit_scale=True, desc="replay", leave=False)


def _fused(mon: LayerMonitor, x: np.ndarray, missing: np.ndarray | None, bar: Any) -> Any:
    from .._kernels import replay as kr

    n = x.shape[0]
    cols = StatusColumns(n)
    of = np.zeros((n, 6))
    oi = np.zeros((n, 3), dtype=np.int64)
    oc = np.full((n, mon.max_culprits), -1, dtype=np.int64)
    stops = np.zeros(0, dtype=np.int64)
    if missing is not None:
        stops = np.flatnonzero(missing.reshape(n, -1).any(axis=1))
    i = 0
    while i < n:
        last = mon.last_status_
        held = last is not None and last.state is not State.HEALTHY
        # the streak rule's early change detector has a fused twin only when it is kept
        held = held or (mon._early_python and mon._h0_base.count < mon.baseline)
        k = int(np.searchsorted(stops, i))
        if held or (k < stops.size and stops[k] == i):
            m = None if missing is None else missing[i]
            cols.put(i, mon.check(x[i], missing=m))
            i += 1
            if bar is not None:
                bar.update(1)
            continue
        b = min(n, i + BLOCK, int(stops[k]) if k < stops.size else n)
        code, done = _block(mon, kr, x, i, b, of, oi, oc, cols, last)
        i += done
        if code == kr.CHECK:
            cols.put(i, mon.check(x[i]))
            i += 1
        elif code == kr.FINISH:
            cols.put(i, _finish(mon))
            i += 1
        if bar is not None:
            bar.update(done + (code != kr.DONE))
    return cols.frame()


def _block(mon, kr, x, a, b, of, oi, oc, cols, last) -> tuple[int, int]:
    """One kernel call over rows ``a..b-1``; returns (code, rows committed)."""
    mon._settle_rules()  # the rule objects hold the state (live check() may have run ahead)
    ist, fst, hb, par = _pack(mon, kr)
    (raw, row, log_mode, floor_rel, raise_nf, min_std, ring, ring_steps, work, med, lvec, livec,
     T, P, Tbad, D, B, chunk, out) = mon._kernel_args  # fmt: skip
    args_f = np.array([floor_rel, min_std, chunk], dtype=np.float64)
    common = (raw, row, ring, ring_steps, work, med, lvec, livec, T, P, Tbad, D, B, out)
    step0 = mon.step_
    if mon._cusum:
        code, done = kr.replay_cusum(
            x[a:b], ist, fst, par, args_f, *common, log_mode, raise_nf, mon._detector.stream_buffer,
            mon._detector.detector.kernel_arrays(), of[a:b], oi[a:b],
        )  # fmt: skip
    else:
        cx, det = _kept_detector(mon)
        code, done = kr.replay_zscore(
            x[a:b], ist, fst, hb, par, args_f, *common, log_mode, raise_nf, of[a:b], oi[a:b],
            oc[a:b], mon.keep_detector, cx, det,
        )  # fmt: skip
    _unpack(mon, kr, ist, fst, hb, done)
    if done:
        evaluated = (oi[a : a + done, kr.C_FLAGS] & kr.EVALUATED) > 0
        cols.fill(
            a, a + done, step0, of[a : a + done], oi[a : a + done, kr.C_DIRECTION],
            (oi[a : a + done, kr.C_FLAGS] & kr.CALIBRATING) > 0, evaluated,
            _reasons(mon, oi[a : a + done, kr.C_COUNT], oi[a : a + done, kr.C_FLAGS], kr),
            f"not evaluated (check_every={mon.check_every})", last,
        )  # fmt: skip
        if not mon._cusum:
            _culprit_names(mon, cols, a, oc[a : a + done], evaluated)
        mon._last = cols.row_status(a + done - 1)
    return int(code), int(done)


def _culprit_names(mon, cols, a: int, oc: np.ndarray, evaluated: np.ndarray) -> None:
    """The culprits of the block's rows that name some (``oc``: layer indices, -1 padded),
    and of the rows not evaluated after them (which repeat the last evaluation)."""
    named = oc[:, 0] >= 0
    if not named.any():
        return
    src = np.where(evaluated, np.arange(oc.shape[0]), -1)
    np.maximum.accumulate(src, out=src)
    names = mon.layer_names
    for i in np.flatnonzero((src >= 0) & named[np.maximum(src, 0)]).tolist():
        cols.culprits[a + i] = [names[j] for j in oc[src[i]].tolist() if j >= 0]


_NO_DETECTOR: tuple[np.ndarray, tuple[np.ndarray, ...]] | None = None


def _kept_detector(mon: LayerMonitor) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The stream vector and kernel arrays of the streak rule's kept change detector; a
    monitor without one passes a 1-stream stand-in the loop never calls (one signature)."""
    global _NO_DETECTOR
    if mon.keep_detector:
        rule = mon._detector
        return rule.stream_buffer, rule.detector.kernel_arrays()
    if _NO_DETECTOR is None:
        from ..alarms import ChangeDetector

        _NO_DETECTOR = (np.zeros(1), ChangeDetector(1).kernel_arrays())
    return _NO_DETECTOR


def _reasons(mon, count: np.ndarray, flags: np.ndarray, kr) -> np.ndarray:
    """The reason of each clean row (what ``check()`` says of a HEALTHY evaluation)."""
    reason = np.full(count.shape[0], "ok", dtype=object)
    evaluated = (flags & kr.EVALUATED) > 0
    if mon.rule == "streak":  # the change detector's warm-up rows, then the streak rule's
        said = evaluated & (((flags & kr.EARLY) > 0) | (count < mon.baseline))
        total = mon.baseline
    elif mon.rule == "peak":
        said, total = evaluated & (count <= mon.warmup), mon.warmup
    else:
        said = evaluated & ((flags & kr.CALIBRATING) > 0)
        total = mon._detector.detector.trusted_after
    rows = np.flatnonzero(said)
    if rows.size:
        reason[rows] = [
            _clean_reason(mon.rule, f, c, total, kr)
            for c, f in zip(count[rows].tolist(), flags[rows].tolist(), strict=True)
        ]
    return reason


def _clean_reason(rule: str, flags: int, count: int, total: int, kr) -> str:
    """The reason of one clean evaluated row: ``count`` of ``total`` baseline values (steps
    for the peak rule's warm-up); "ok" once the rule's warm-up is over."""
    if rule == "streak":
        if flags & kr.EARLY:  # what _evaluate_early says of a HEALTHY evaluation
            return f"ok, calibrating ({count}/{total} baseline values, change detector on)"
        if count < total:
            return f"warmup ({count}/{total} baseline values)"
    elif rule == "peak":
        if count <= total:
            return f"warmup ({count}/{total} steps)"
    elif flags & kr.CALIBRATING:
        return f"ok, calibrating ({count}/{total} baseline values)"
    return "ok"


def _finish(mon: LayerMonitor) -> LayerStatus:
    """What ``check()`` does after its kernel, for a row the fused loop recorded but left
    undecided (the kernel consumed the pending baseline push; the input was finite)."""
    mon._settle_rules()  # its evaluation reads the rule objects directly
    step = mon.step_
    full = mon._rows == mon.window
    mon._pending = _NO_PUSH
    mon.ring_.advance()
    if not full:
        mon._rows += 1
    _, _, h0, top, excluded, lzt = mon._out.tolist()
    if mon._cusum or mon.keep_detector:  # the loop has made this row's detector call
        rule = mon._detector
        det = rule.detector
        rule.detector = _Scored(det, int(det.code))
        try:
            if mon._cusum:
                status = mon._evaluate_cusum(step, (), h0, excluded > 0.0)
            else:
                status = mon._evaluate(step, (), h0, int(top), lzt, excluded > 0.0)
        finally:
            rule.detector = det
    else:
        status = mon._evaluate(step, (), h0, int(top), lzt, excluded > 0.0)
    mon._last = status
    mon._step = step + 1
    return status


class _Scored:
    """A change detector whose call for this evaluation the fused loop has already made:
    ``step`` returns that call's state code, everything else is the detector's."""

    def __init__(self, det: Any, code: int) -> None:
        self._det = det
        self._code = code

    def step(self, x: np.ndarray, label: int) -> int:
        return self._code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._det, name)


# -- the rule state as arrays -------------------------------------------------------------------
def _pack(mon, kr) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ist = np.zeros(kr.NI, dtype=np.int64)
    fst = np.zeros(kr.NF)
    hb = np.zeros(mon.baseline)
    pack_into(mon, kr, ist, fst, hb)
    return ist, fst, hb, _params(mon, kr)


def pack_into(mon, kr, ist: np.ndarray, fst: np.ndarray, hb: np.ndarray) -> None:
    """The monitor's counters and rule objects (which must be current) into the arrays."""
    h0_base, alarm, peak, patience, summary = mon._rule_objects()
    hbs = h0_base.state_dict()
    al = alarm.state_dict()
    pk = peak.state_dict()
    sm = summary.state_dict()
    ist[kr.I_STEP], ist[kr.I_ROWS], ist[kr.I_RING] = mon.step_, mon._rows, mon.ring_.count_
    ist[kr.I_BN], ist[kr.I_BPOS], ist[kr.I_BPUSHES] = mon._bn, mon._bpos, mon._bpushes
    ist[kr.I_PUSH_POS], ist[kr.I_PUSH_N], ist[kr.I_PUSH_FIRST] = mon._pending
    ist[kr.I_HB_N], ist[kr.I_HB_POS], ist[kr.I_HB_PUSHES] = hbs["n"], hbs["pos"], hbs["pushes"]
    ist[kr.I_OVER0], ist[kr.I_OVER1] = al["over"]
    ist[kr.I_CRIT0], ist[kr.I_CRIT1] = al["crit"]
    ist[kr.I_PEAK_N] = pk["n"]
    ist[kr.I_PATIENCE] = patience.state_dict()["count"]
    ist[kr.I_SUM_N] = sm["n"]
    ist[kr.I_SUM_FIRST] = -1 if sm["first_step"] is None else sm["first_step"]
    ist[kr.I_SUM_LAST] = -1 if sm["last_step"] is None else sm["last_step"]
    ist[kr.I_PREV_COLLAPSE] = int(sm["prev_collapse"])
    fst[:] = (
        hbs["ref"], hbs["s1"], hbs["s2"], pk["peak"], pk["ratio"], sm["st"], sm["sh"], sm["stt"],
        sm["sth"],
    )  # fmt: skip
    hb[:] = hbs["buf"]


def _params(mon, kr) -> np.ndarray:
    par = np.zeros(kr.NQ)
    par[kr.Q_W], par[kr.Q_REFRESH], par[kr.Q_EVERY] = (
        mon.window, mon.refresh_every, mon.check_every,
    )  # fmt: skip
    par[kr.Q_WATCH_Z], par[kr.Q_COLLAPSE_Z], par[kr.Q_LAYER_Z] = (
        mon.watch_z, mon.collapse_z, mon.layer_z_,
    )  # fmt: skip
    par[kr.Q_RAISE], par[kr.Q_WARMUP], par[kr.Q_MIN_STD] = (
        mon.raise_after, mon.warmup, mon.min_std,
    )  # fmt: skip
    par[kr.Q_PEAK_RULE], par[kr.Q_LAYER_RULE] = float(mon.rule == "peak"), float(mon.layer_rule)
    par[kr.Q_WATCH_RATIO], par[kr.Q_COLLAPSE_RATIO] = mon.watch_ratio, mon.collapse_ratio
    par[kr.Q_COLLAPSE_AFTER] = mon._rule_objects()[1].collapse_after
    par[kr.Q_JUMP] = float(mon._jump_log > 0.0)
    return par


def _unpack(mon, kr, ist, fst, hb, done: int) -> None:
    mon.ring_.advance(done)  # the ring's slots were written by the kernel
    mon._step = int(ist[kr.I_STEP])
    mon._rows = int(ist[kr.I_ROWS])
    mon._bn, mon._bpos, mon._bpushes = (int(v) for v in ist[[kr.I_BN, kr.I_BPOS, kr.I_BPUSHES]])
    mon._pending = tuple(int(v) for v in ist[[kr.I_PUSH_POS, kr.I_PUSH_N, kr.I_PUSH_FIRST]])
    if mon._pending[0] < 0:
        mon._pending = _NO_PUSH
    sync_rules(mon, kr, ist, fst, hb)


def sync_rules(mon, kr, ist: np.ndarray, fst: np.ndarray, hb: np.ndarray) -> None:
    """The rule objects from the arrays (the inverse of :func:`pack_into` for them)."""
    h0_base, alarm, peak, patience, summary = mon._rule_objects()
    h0_base.load_state_dict(
        {
            "buf": hb.tolist(), "n": int(ist[kr.I_HB_N]), "pos": int(ist[kr.I_HB_POS]),
            "pushes": int(ist[kr.I_HB_PUSHES]), "ref": float(fst[kr.F_HB_REF]),
            "s1": float(fst[kr.F_HB_S1]), "s2": float(fst[kr.F_HB_S2]),
        }
    )  # fmt: skip
    al = alarm.state_dict()
    al["over"] = [int(ist[kr.I_OVER0]), int(ist[kr.I_OVER1])]
    al["crit"] = [int(ist[kr.I_CRIT0]), int(ist[kr.I_CRIT1])]
    alarm.load_state_dict(al)
    peak.load_state_dict(
        {"n": int(ist[kr.I_PEAK_N]), "peak": float(fst[kr.F_PEAK]), "ratio": float(fst[kr.F_RATIO])}
    )
    patience.load_state_dict({"count": int(ist[kr.I_PATIENCE])})
    sm = summary.state_dict()
    first, last = int(ist[kr.I_SUM_FIRST]), int(ist[kr.I_SUM_LAST])
    sm.update(
        n=int(ist[kr.I_SUM_N]), st=float(fst[kr.F_ST]), sh=float(fst[kr.F_SH]),
        stt=float(fst[kr.F_STT]), sth=float(fst[kr.F_STH]),
        first_step=None if first < 0 else first, last_step=None if last < 0 else last,
        prev_collapse=bool(ist[kr.I_PREV_COLLAPSE]),
    )  # fmt: skip
    summary.load_state_dict(sm)


# -- live check() through the same loop, one row at a time --------------------------------------
class FastState:
    """The arrays of live ``check()``'s compiled path: the rule state (``ist``, ``fst``, ``hb``,
    as :func:`pack_into` writes them), the parameters, one row's outputs and the loop's full
    argument tuple (``args``; ``call`` is the loop's compiled function once known)."""

    def __init__(self, mon: LayerMonitor) -> None:
        from .._kernels import replay as kr

        self.kr = kr
        self.ist = np.zeros(kr.NI, dtype=np.int64)
        self.fst = np.zeros(kr.NF)
        self.hb = np.zeros(mon.baseline)
        self.of = np.zeros((1, 6))
        self.oi = np.zeros((1, 3), dtype=np.int64)
        self.oc = np.full((1, mon.max_culprits), -1, dtype=np.int64)
        self.of_row, self.oi_row, self.oc_row = self.of[0], self.oi[0], self.oc[0]
        self.counters = self.ist[I_BN : I_PUSH_FIRST + 1]  # what check() mirrors per step
        self.names = mon.layer_names
        (raw, row, log_mode, floor_rel, raise_nf, min_std, ring, ring_steps, work, med, lvec,
         livec, T, P, Tbad, D, B, chunk, out) = mon._kernel_args  # fmt: skip
        args_f = np.array([floor_rel, min_std, chunk], dtype=np.float64)
        common = (raw, row, ring, ring_steps, work, med, lvec, livec, T, P, Tbad, D, B, out)
        par = self.par = _params(mon, kr)
        self.args_f = args_f
        self.rule = mon.rule
        if mon._cusum:
            det = mon._detector.detector
            self.kernel = kr.replay_cusum
            self.args = (
                raw[None], self.ist, self.fst, par, args_f, *common, log_mode, raise_nf,
                mon._detector.stream_buffer, det.kernel_arrays(), self.of, self.oi,
            )  # fmt: skip
            self.total = det.trusted_after
        else:
            cx, kept = _kept_detector(mon)
            self.kernel = kr.replay_zscore
            self.args = (
                raw[None], self.ist, self.fst, self.hb, par, args_f, *common, log_mode,
                raise_nf, self.of, self.oi, self.oc, mon.keep_detector, cx, kept,
            )  # fmt: skip
            self.total = mon.warmup if mon._peak_rule else mon.baseline
        self.call = self.kernel

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this path owns (the rest are the monitor's)."""
        own = (self.ist, self.fst, self.hb, self.of, self.oi, self.oc, self.par, self.args_f)
        return sum(a.nbytes for a in own)


_DIRECTION = ("falling", "", "rising")
_new_status = positional_constructor(LayerStatus)  # as layer.py builds its statuses


def check_fast(mon: LayerMonitor) -> LayerStatus | None:
    """One live ``check()`` of the row already in ``mon._raw`` through the fused loop (the
    monitor's state HEALTHY, no missing values, past the early rule): the status of a clean
    row, or of a row the loop recorded but left undecided (the monitor's own evaluation, as
    :func:`run_rows` does), or None when the loop left the row untouched (``check()``'s own
    code then runs it; only scratch was written)."""
    fast = mon._fast
    if fast is None:
        fast = mon._fast = FastState(mon)
    if mon._arrays_stale:  # the rule objects moved since the last compiled step
        pack_into(mon, fast.kr, fast.ist, fast.fst, fast.hb)
        mon._arrays_stale = False
    call = fast.call
    code, _ = call(*fast.args)
    if call is fast.kernel:  # first call: from now on without the dispatcher
        from .._kernels._jit import compiled

        fast.call = compiled(call, fast.args)
    if code:
        return None if code == CHECK else _finish(mon)
    mon._rules_ahead = True  # the rule objects are behind the arrays until synced
    mon.ring_.advance()
    if mon._rows < mon.window:
        mon._rows += 1
    mon._bn, mon._bpos, mon._bpushes, push, push_n, push_first = fast.counters.tolist()
    mon._pending = (push, push_n, push_first) if push >= 0 else _NO_PUSH
    step = mon._step
    count, direction, flags = fast.oi_row.tolist()
    if not flags & EVALUATED:
        status = mon._skipped(step, ())
    else:
        h0, z, ratio, peak, lz, stat = fast.of_row.tolist()
        # NaN fields as the rules' Python code gives them (the math.nan object, so statuses
        # compare equal as they did): its z-score and statistic, and cusum's layer z
        if fast.rule == "cusum":
            z = lz = math.nan
        elif flags & EARLY:  # _evaluate_early: no z, the detector's statistic
            z = lz = math.nan
        else:
            stat = math.nan
            if z != z:
                z = math.nan
        reason = _clean_reason(fast.rule, flags, count, fast.total, fast.kr)
        culprits: tuple[str, ...] = ()
        if flags & NAMED:
            culprits = tuple(fast.names[i] for i in fast.oc_row.tolist() if i >= 0)
        status = _new_status(
            step, State.HEALTHY, reason, True, bool(flags & CALIBRATING), h0, z, ratio, peak,
            _DIRECTION[direction + 1], culprits, (), lz, stat, (),
        )  # fmt: skip
    mon._last = status
    mon._step = step + 1
    return status
