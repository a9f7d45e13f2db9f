"""Fused replay of the layer monitor: many recorded steps per call.

Notation: n rows of the chunk ``values`` (n, S, L), S signals, L layers, W window, K baseline.
Each row goes through exactly the per-step kernel of a live ``check()``
(:func:`streamtopo._kernels.layer.layer_step`, and for ``rule="cusum"``
:func:`streamtopo._kernels.changepoint.changepoint_step`), called from this loop instead of once
per Python call, so a replay is bit-identical to the live run by construction. What a live
``check()`` does in Python around that kernel is transcribed here only for the *clean* case: an
evaluated step whose input is finite, whose window holds no non-finite value, and that starts
and stays HEALTHY (almost every step of a healthy run; under the z-score rules it may name
culprits: the layers whose own z is over ``layer_z``, as ``LayerMonitor._culprits`` names
them). The z-score rules' state (the ``log h0`` baseline, the consecutive counters, the peak,
patience and the summary sums) travels in ``ist``/``fst``/``hb``; the arithmetic is the same
IEEE operations, in the same order, as :class:`~streamtopo.alarms.RollingBaseline`,
:class:`~streamtopo.alarms.ZScoreAlarm`, :class:`~streamtopo.alarms.PeakRule` and the monitor's
run summary.

Everything else returns to the caller, which runs the live Python code for that one row:

- ``CHECK`` (row ``i`` untouched: only scratch was written): non-finite or negative input, a
  window still holding a non-finite value, or a state that is not HEALTHY before the row. The
  caller calls ``check()``.
- ``FINISH`` (row ``i`` recorded by ``layer_step``, and for cusum scored by the detector, but
  no rule state committed): the row raises an alarm, is absorbed, could jump (``jump``), or its
  ``log h0`` push would trigger the baseline's exact (``math.fsum``) refresh; under
  ``rule="cusum"`` also a row that names culprits. The caller runs the monitor's own
  evaluation for it.
- ``DONE``: every row was clean.

Rows ``< i`` are committed; per row ``of`` receives (h0, z, ratio, peak, layer z, stat), ``oi``
(count for the reason text, direction -1/0/+1, flags: 1 calibrating, 2 evaluated, 4 decided by
the streak rule's early change detector, 8 names culprits) and, under the z-score rules, ``oc``
the culprits' layer indices (largest |z| first, -1 after the last).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .changepoint import CNT, O_ABSORBED, O_CALIBRATING, O_STAT, changepoint_step
from .layer import OK, layer_step

DONE, CHECK, FINISH = 0, 1, 2
F32_LIMIT = 3.4028235677973366e38  # 2**128 - 2**103: the smallest float64 rounding to inf
# ist: int64 state
(
    I_STEP, I_ROWS, I_RING, I_BN, I_BPOS, I_BPUSHES, I_PUSH_POS, I_PUSH_N, I_PUSH_FIRST, I_HB_N,
    I_HB_POS, I_HB_PUSHES, I_OVER0, I_OVER1, I_CRIT0, I_CRIT1, I_PEAK_N, I_PATIENCE, I_SUM_N,
    I_SUM_FIRST, I_SUM_LAST, I_PREV_COLLAPSE,
) = range(22)  # fmt: skip
NI = 22
# fst: float64 state
F_HB_REF, F_HB_S1, F_HB_S2, F_PEAK, F_RATIO, F_ST, F_SH, F_STT, F_STH = range(9)
NF = 9
# par: float64 parameters
(
    Q_W, Q_REFRESH, Q_EVERY, Q_WATCH_Z, Q_COLLAPSE_Z, Q_LAYER_Z, Q_RAISE, Q_WARMUP,
    Q_MIN_STD, Q_PEAK_RULE, Q_LAYER_RULE, Q_WATCH_RATIO, Q_COLLAPSE_RATIO, Q_COLLAPSE_AFTER,
    Q_JUMP,
) = range(15)  # fmt: skip
NQ = 15
# of columns
O_H0, O_Z, O_RATIO, O_PEAK, O_LZ, O_STAT_COL = range(6)
# oi columns and flags
C_COUNT, C_DIRECTION, C_FLAGS = range(3)
CALIBRATING, EVALUATED, EARLY, NAMED = 1, 2, 4, 8


@jit
def record_row(x, ist, par, args_f, raw, row, ring, ring_steps, work, med, lvec, livec, T, P,
               Tbad, D, B, out, log_mode, raise_nonfinite, bn_arg):  # fmt: skip
    """One row through ``layer_step`` with the arguments a live ``check()`` derives from the
    monitor's counters; returns False (nothing recorded) when the row must go to ``check()``."""
    S, L = raw.shape
    for s in range(S):
        for i in range(L):
            if not abs(x[s, i]) < F32_LIMIT:  # non-finite once recorded as float32 (or NaN)
                return False
    for i in range(L):
        if livec[0, i] > 0:  # a non-finite value is still in this layer's window
            return False
        for s in range(S):
            raw[s, i] = x[s, i]
    W = int(par[Q_W])
    step = ist[I_STEP]
    rows = ist[I_ROWS]
    full = rows == W
    cap = ring.shape[1] // 2
    scale = 1.0 / math.sqrt(float((W if full else rows + 1) * S))
    layer_step(
        raw, row, log_mode, args_f[0], raise_nonfinite, args_f[1], ring, ring_steps, work, med,
        lvec, livec, T, P, Tbad, D, B, int(args_f[2]), out, ist[I_RING] % cap, step, step % W,
        full, (step + 1) % int(par[Q_REFRESH]) == 0, step % int(par[Q_EVERY]) == 0, scale, bn_arg,
        ist[I_PUSH_POS], ist[I_PUSH_N], ist[I_PUSH_FIRST],
    )  # fmt: skip
    return out[0] == OK


@jit
def _advance(ist, par):
    """The counters a live ``check()`` moves once its kernel has recorded the row."""
    ist[I_PUSH_POS] = -1
    ist[I_PUSH_N] = 0
    ist[I_PUSH_FIRST] = 0
    ist[I_RING] += 1
    if ist[I_ROWS] < int(par[Q_W]):
        ist[I_ROWS] += 1
    ist[I_STEP] += 1


@jit
def _zscore(x, ist, fst, hb, par):
    """``RollingBaseline.zscore`` of the ``log h0`` baseline."""
    n = ist[I_HB_N]
    if n < hb.shape[0]:
        return np.nan
    m = fst[F_HB_S1] / n
    var = fst[F_HB_S2] / n - m * m
    sd = max(math.sqrt(var) if var > 0.0 else 0.0, par[Q_MIN_STD])
    # sd >= min_std > 0 (the monitor refuses min_std <= 0): RollingBaseline's sd == 0 case
    # cannot occur here
    return (x - (fst[F_HB_REF] + fst[F_HB_S1] / n)) / sd


@jit
def _peak_update(h0, ist, fst, par):
    """``PeakRule.update`` (h0 finite or not); returns its state code."""
    ist[I_PEAK_N] += 1
    peak = fst[F_PEAK]
    if ist[I_PEAK_N] <= int(par[Q_WARMUP]) or h0 != h0:
        fst[F_RATIO] = h0 / peak if peak > 0.0 else 1.0
        return 0
    if h0 > peak:
        peak = h0
        fst[F_PEAK] = h0
    ratio = h0 / peak if peak > 0.0 else 1.0
    fst[F_RATIO] = ratio
    if ratio < par[Q_COLLAPSE_RATIO]:
        return 2
    if ratio < par[Q_WATCH_RATIO]:
        return 1
    return 0


@jit
def _summary_record(step, h0, ist, fst):
    """The run summary of a HEALTHY evaluated row (its least-squares sums)."""
    ist[I_PREV_COLLAPSE] = 0
    ist[I_PATIENCE] = 0
    if math.isfinite(h0):
        t = float(step)
        ist[I_SUM_N] += 1
        fst[F_ST] += t
        fst[F_SH] += h0
        fst[F_STT] += t * t
        fst[F_STH] += t * h0
        if ist[I_SUM_FIRST] < 0:
            ist[I_SUM_FIRST] = step
        ist[I_SUM_LAST] = step


@jit
def _counter(z, k, ist, par):
    """One detector of ``ZScoreAlarm.update`` from HEALTHY: the new (over, crit) counts."""
    over = ist[I_OVER0 + k]
    crit = ist[I_CRIT0 + k]
    if z != z:
        return over, crit
    a = abs(z)
    watch = par[Q_WATCH_Z] if k == 0 else par[Q_LAYER_Z]
    collapse = par[Q_COLLAPSE_Z] if k == 0 else math.inf
    if a > watch:
        over += 1
        crit = crit + 1 if a > collapse else 0
    else:
        over = 0
        crit = 0
    return over, crit


@jit
def culprits(lz, threshold, oc):
    """The layers ``LayerMonitor._culprits`` names on a HEALTHY step: by |z| descending (NaN
    last, ties in layer order: numpy's stable argsort of ``-|z|``), the first ``len(oc)``, of
    those the ones over ``threshold``, into ``oc`` (-1 after the last)."""
    L = lz.shape[0]
    prev_v = np.inf
    prev_i = -1
    for c in range(oc.shape[0]):
        oc[c] = -1
    for c in range(oc.shape[0]):
        best_i = -1
        best_v = 0.0
        for i in range(L):
            v = abs(lz[i])
            if v != v:
                v = -1.0
            if v > prev_v or (v == prev_v and i <= prev_i):
                continue  # already taken: ranks before the previous pick
            if best_i < 0 or v > best_v:
                best_i = i
                best_v = v
        if best_i < 0 or not best_v > threshold:
            return
        oc[c] = best_i
        prev_v = best_v
        prev_i = best_i


@jit
def replay_zscore(values, ist, fst, hb, par, args_f, raw, row, ring, ring_steps, work, med, lvec,
                  livec, T, P, Tbad, D, B, out, log_mode, raise_nonfinite, of, oi, oc, keep, cx,
                  det):  # fmt: skip
    """Rules ``"streak"`` and ``"peak"`` over ``values``; returns ``(code, i)`` (module doc).
    With ``keep`` (the streak rule's kept change detector) every evaluation first calls the
    detector's kernel on ``cx`` (stream 0 held, then the median-relative values; ``det`` as in
    :func:`replay_cusum`), and a row it does not leave HEALTHY is ``FINISH``: every ``FINISH``
    row has then been scored by the detector. While the ``log h0`` baseline fills (fewer than K
    values) that detector decides alone, as ``LayerMonitor._evaluate_early`` does: a clean
    row is then one it leaves HEALTHY, whose values all enter the baselines. ``oc``
    (n, max_culprits) receives each row's culprits."""
    n = values.shape[0]
    K = hb.shape[0]
    S, L = raw.shape
    chunk = int(args_f[2])
    u_size = S * L
    raise_after = int(par[Q_RAISE])
    collapse_after = int(par[Q_COLLAPSE_AFTER])
    peak_rule = par[Q_PEAK_RULE] > 0.0
    layer_rule = par[Q_LAYER_RULE] > 0.0
    dout = det[4]
    u = work[1]
    for r in range(n):
        for c in range(oc.shape[1]):
            oc[r, c] = -1
        bn = ist[I_BN]
        bn_arg = bn if bn == K else 0
        if not record_row(values[r], ist, par, args_f, raw, row, ring, ring_steps, work, med,
                          lvec, livec, T, P, Tbad, D, B, out, log_mode, raise_nonfinite,
                          bn_arg):  # fmt: skip
            return CHECK, r
        step = ist[I_STEP]
        if step % int(par[Q_EVERY]) != 0:  # recorded only: the caller repeats the last status
            oi[r, C_FLAGS] = 0
            _advance(ist, par)
            continue
        if keep:
            if layer_rule:
                for s in range(S):
                    for i in range(L):
                        cx[1 + s * L + i] = u[s, i]
            if changepoint_step(cx, *det, step) != 0 or dout[O_ABSORBED] > 0.0:
                return FINISH, r
        h0 = out[2]
        top = int(out[3])
        lzt = out[5]
        logh = math.log(h0) if h0 > 0.0 else -math.inf
        early = keep and ist[I_HB_N] < K  # the early detector alone: no z, counters held
        if early:
            z = np.nan
            o0, c0, o1, c1 = ist[I_OVER0], ist[I_CRIT0], ist[I_OVER1], ist[I_CRIT1]
            named = False
        else:
            z = _zscore(logh, ist, fst, hb, par)
            # clean needs: no counter reaching raise_after, and no fsum refresh
            o0, c0 = _counter(np.nan if peak_rule else z, 0, ist, par)
            o1, c1 = _counter(lzt if layer_rule else np.nan, 1, ist, par)
            if o0 >= raise_after or o1 >= raise_after or max(c0, c1) >= collapse_after:
                return FINISH, r
            if keep and max(o0, o1) >= collapse_after:
                # with the detector kept, log h0 stays out of its baseline once a counter is
                # past the 8-evaluation debounce (LayerMonitor._evaluate)
                logh = -math.inf
            named = top >= 0 and abs(lzt) > par[Q_LAYER_Z]
            if named and par[Q_JUMP] > 0.0 and layer_rule:  # the jump rule looks at this row
                return FINISH, r
        refresh = logh > -math.inf and (ist[I_HB_PUSHES] + 1) % (10 * K) == 0
        if refresh:
            return FINISH, r
        # the peak rule can raise too: decide on a copy
        peak_n, peak, ratio = ist[I_PEAK_N], fst[F_PEAK], fst[F_RATIO]
        ratio_state = _peak_update(h0, ist, fst, par)
        if peak_rule and ratio_state > 0:
            ist[I_PEAK_N], fst[F_PEAK], fst[F_RATIO] = peak_n, peak, ratio
            return FINISH, r
        # commit: counters, reason count, baselines (RollingBaseline.push), summary
        ist[I_OVER0], ist[I_CRIT0], ist[I_OVER1], ist[I_CRIT1] = o0, c0, o1, c1
        warm = ist[I_PEAK_N] if peak_rule else ist[I_HB_N]
        if logh > -math.inf:
            pos = ist[I_HB_POS]
            if ist[I_HB_N] == K:
                d = hb[pos] - fst[F_HB_REF]
                fst[F_HB_S1] -= d
                fst[F_HB_S2] -= d * d
            else:
                if ist[I_HB_N] == 0:
                    fst[F_HB_REF] = logh
                    fst[F_HB_S1] = 0.0
                    fst[F_HB_S2] = 0.0
                ist[I_HB_N] += 1
            hb[pos] = logh
            d = logh - fst[F_HB_REF]
            fst[F_HB_S1] += d
            fst[F_HB_S2] += d * d
            ist[I_HB_POS] = (pos + 1) % K
            ist[I_HB_PUSHES] += 1
        push_pos, push_first = -1, 0
        if o1 == 0 or early:  # per-layer push, done by the next row's layer_step
            push_pos = ist[I_BPOS]
            push_first = (ist[I_BPUSHES] * chunk) % u_size
            ist[I_BPOS] = (push_pos + 1) % K
            ist[I_BN] = min(bn + 1, K)
            ist[I_BPUSHES] += 1
        _summary_record(step, h0, ist, fst)
        if named:
            culprits(lvec[2], par[Q_LAYER_Z], oc[r])
        of[r, O_H0] = h0
        of[r, O_Z] = z
        of[r, O_RATIO] = fst[F_RATIO]
        of[r, O_PEAK] = fst[F_PEAK]
        of[r, O_LZ] = np.nan if early else lzt
        of[r, O_STAT_COL] = dout[O_STAT] if early else np.nan
        oi[r, C_COUNT] = warm
        direction = 0
        if z == z and abs(z) > par[Q_WATCH_Z]:
            direction = 1 if z > 0 else -1
        oi[r, C_DIRECTION] = direction
        calibrating = ist[I_PEAK_N] <= int(par[Q_WARMUP]) if peak_rule else ist[I_HB_N] < K
        flags = EVALUATED | (CALIBRATING if calibrating or early else 0)
        oi[r, C_FLAGS] = flags | (EARLY if early else 0) | (NAMED if oc[r, 0] >= 0 else 0)
        _advance(ist, par)
        if push_pos >= 0:
            ist[I_PUSH_POS], ist[I_PUSH_N], ist[I_PUSH_FIRST] = push_pos, bn, push_first
    return DONE, n


@jit
def replay_cusum(values, ist, fst, par, args_f, raw, row, ring, ring_steps, work, med, lvec,
                 livec, T, P, Tbad, D, B, out, log_mode, raise_nonfinite, cx, det, of,
                 oi):  # fmt: skip
    """Rule ``"cusum"`` over ``values``: each evaluation calls the change detector's own kernel
    on ``cx`` = (``log h0``, the median-relative values when ``layer_rule``) with the detector's
    arrays ``det`` (``ChangeDetector.kernel_arrays()``, in the kernel's argument order, state
    ``f`` first and ``out`` fifth); returns ``(code, i)`` (module doc)."""
    n = values.shape[0]
    f = det[0]
    dout = det[4]
    S, L = raw.shape
    layer_rule = par[Q_LAYER_RULE] > 0.0
    u = work[1]
    for r in range(n):
        if not record_row(values[r], ist, par, args_f, raw, row, ring, ring_steps, work, med,
                          lvec, livec, T, P, Tbad, D, B, out, log_mode, raise_nonfinite,
                          0):  # fmt: skip
            return CHECK, r
        step = ist[I_STEP]
        if step % int(par[Q_EVERY]) != 0:
            oi[r, C_FLAGS] = 0
            _advance(ist, par)
            continue
        h0 = out[2]
        cx[0] = math.log(h0) if h0 > 0.0 else -math.inf
        if layer_rule:
            for s in range(S):
                for i in range(L):
                    cx[1 + s * L + i] = u[s, i]
        code = changepoint_step(cx, *det, step)
        if code != 0 or dout[O_ABSORBED] > 0.0:
            return FINISH, r
        _peak_update(h0, ist, fst, par)
        _summary_record(step, h0, ist, fst)
        calibrating = dout[O_CALIBRATING] > 0.0
        history = 0.0
        if calibrating:  # the reason names the fewest accepted values of any stream
            history = f[CNT, 0]
            for j in range(1, f.shape[1]):
                history = min(history, f[CNT, j])
        of[r, O_H0] = h0
        of[r, O_Z] = np.nan
        of[r, O_RATIO] = fst[F_RATIO]
        of[r, O_PEAK] = fst[F_PEAK]
        of[r, O_LZ] = np.nan
        of[r, O_STAT_COL] = dout[O_STAT]
        oi[r, C_COUNT] = int(history)
        oi[r, C_DIRECTION] = 0
        oi[r, C_FLAGS] = EVALUATED | (CALIBRATING if calibrating else 0)
        _advance(ist, par)
    return DONE, n
