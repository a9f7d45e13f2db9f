"""Per-evaluation kernel of the sequential change detector (two-sided CUSUM, Page 1954).

Notation: N streams (one value each per evaluation), A the absorption buffer length
(``absorb_after``), t the evaluation index. ``f`` is the (NF, N) float64 per-stream state with
rows CNT (accepted values), MEAN (the prediction m; NaN before a stream's first value), VAR (the
prediction-error variance v), NV (errors in v), RHO (lag-1 autocorrelation of the residuals),
ZPREV (the last clipped residual), SP/SN (the upward/downward CUSUMs), Z (the last residual);
ZRAW, DEV, S (the larger CUSUM side) and JMP (the jump check's statistic, 0 when the stream did
not jump) are per-call scratch. ``ist`` holds the int64 scalars (t, state, alarm
start, ...), ``par`` the float64 parameters, ``buf`` the (A, N) ring of the vectors seen during
an alarm. Per stream and evaluation: residual ``r = x - m``; Student-t value
``r / sqrt(v (1 + 1/n))`` (n the effective count of the mean, at most ``2 mean_window - 1``)
mapped to a normal quantile (Wallace 1959); CUSUM ``S+ = max(0, S+ + z - k)``,
``S- = max(0, S- - z - k)``; a stream's statistic is the larger of its S and its jump check's
``h_watch + (h_collapse - h_watch) (|r| / jump - 1)`` (when ``|r| > jump`` and
``|r| > jump_sd sqrt(v (1 + 1/n))`` after ``jump_after`` accepted values); the statistic is the
largest over streams.

Exactness: this is a transcription of the pure-numpy reference
(``tests/naive_changepoint.py``, from ``benchmarks/evaluation/changepoint.py``), element by
element and in the same order of operations, so the only differences are in the last bits of
``log1p``/``sqrt`` where numba's libm calls and numpy's ufunc loops may round differently; the
lockstep test compares the statuses exactly and the statistics to 1e-9 relative. The
buffer means and variances follow numpy's axis-0 reductions (sequential sums, ``sum / n``
then ``sum((x - mean)^2) / (n - 1)``). Everything is deterministic: a state restored from
``state_dict`` continues bit-identically. Nothing is allocated per call.
"""

from __future__ import annotations

import math

from ._jit import jit

# rows of f
CNT, MEAN, VAR, NV, RHO, ZPREV, SP, SN, Z, ZRAW, DEV, S, JMP = range(13)
NF = 13
# entries of ist
T, STATE, ALARM_START, ABSORBED, BUF_LEN, BUF_POS, ALARM_LABEL, ABSORBED_LABEL = range(8)
NI = 8
# entries of par
(
    P_K, P_H_WATCH, P_H_COLLAPSE, P_MEAN_WINDOW, P_SCALE_WINDOW, P_MIN_HISTORY, P_TRUSTED_AFTER,
    P_JUMP, P_HOLD_Z, P_ESCALATE_AFTER, P_CLEAR_BELOW, P_MIN_STD, P_AUTOCORR, P_Z_CAP, P_PENDING,
    P_WINSOR, P_RESTART, P_JUMP_AFTER, P_JUMP_SD, P_CAL_CAP,
) = range(20)  # fmt: skip
NP = 20
# entries of out
O_STAT, O_DIRECTION, O_N_OVER, O_CALIBRATING, O_ABSORBED, O_JUMPED = range(6)
NO = 6
HEALTHY, WATCH, COLLAPSE = 0, 1, 2


@jit
def _maximum(a, b):
    """``np.maximum``: NaN propagates."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a >= b else b


@jit
def _minimum(a, b):
    if a != a:
        return a
    if b != b:
        return b
    return a if a <= b else b


@jit
def _clip(a, lo, hi):
    """``np.clip``: ``min(max(a, lo), hi)``."""
    return _minimum(_maximum(a, lo), hi)


@jit
def _scale_w(nv, scale_window):
    """Memory of the error variance: cumulative for 10 errors, then half the errors seen, at
    most ``scale_window``."""
    return _clip(_maximum(nv, 1.0), 1.0, _clip(nv / 2.0, 10.0, scale_window))


@jit
def t_to_z(t, nu):
    """Standard normal quantile of a Student-t value with ``nu`` dof (Wallace 1959)."""
    nu = _maximum(nu, 1.0)
    z = math.sqrt(nu * math.log1p(t * t / nu)) * (8.0 * nu + 1.0) / (8.0 * nu + 3.0)
    if t > 0.0:
        return z
    if t < 0.0:
        return -z
    return 0.0 * z


@jit
def _enter_alarm(ist, t, label, level):
    if ist[STATE] == HEALTHY:
        ist[ALARM_START] = t
        ist[ALARM_LABEL] = label
        ist[BUF_LEN] = 0
        ist[BUF_POS] = 0
    if level > ist[STATE]:
        ist[STATE] = level


@jit
def _half_stats(buf, ist, j, lo, hi):
    """Mean and ddof=1 variance of stream j over buffer entries ``lo..hi-1`` (oldest first)."""
    A = buf.shape[0]
    first = ist[BUF_POS] - ist[BUF_LEN] + A  # oldest entry (kept non-negative for %)
    n = hi - lo
    s = 0.0
    for i in range(lo, hi):
        s += buf[(first + i) % A, j]
    mean = s / n
    q = 0.0
    for i in range(lo, hi):
        d = buf[(first + i) % A, j] - mean
        q += d * d
    return mean, q / (n - 1)


@jit
def _held(f, ist, par, buf):
    """Is every stream's level the same in both halves of the alarm buffer?"""
    nb = ist[BUF_LEN]
    h = nb // 2
    hold_z = par[P_HOLD_Z]
    min_std = par[P_MIN_STD]
    for j in range(f.shape[1]):
        ma, va = _half_stats(buf, ist, j, 0, h)
        mc, vc = _half_stats(buf, ist, j, h, nb)
        se = _maximum(math.sqrt(va / h + vc / (nb - h)), min_std)
        if not abs(mc - ma) <= hold_z * se:
            return False
    return True


@jit
def _absorb(f, ist, buf):
    nb = ist[BUF_LEN]
    h = nb // 2
    for j in range(f.shape[1]):
        mc, vc = _half_stats(buf, ist, j, h, nb)
        f[MEAN, j] = mc
        f[VAR, j] = _maximum(f[VAR, j], vc)
        f[SP, j] = 0.0
        f[SN, j] = 0.0
    ist[ABSORBED] = ist[ALARM_START]
    ist[ABSORBED_LABEL] = ist[ALARM_LABEL]
    ist[STATE] = HEALTHY
    ist[ALARM_START] = -1
    ist[ALARM_LABEL] = -1
    ist[BUF_LEN] = 0
    ist[BUF_POS] = 0


@jit
def _accept(f, par):
    """Baseline update of the streams whose statistic is at most ``pending * h_watch``."""
    N = f.shape[1]
    limit = par[P_PENDING] * par[P_H_WATCH]
    min_history = par[P_MIN_HISTORY]
    min_var = par[P_MIN_STD] * par[P_MIN_STD]
    c = par[P_WINSOR]
    c2_margin = 0.98 * c * c
    mean_window = par[P_MEAN_WINDOW]
    inv_mean_window = 1.0 / mean_window
    scale_window = par[P_SCALE_WINDOW]
    inv_scale_window = 1.0 / scale_window
    autocorr = par[P_AUTOCORR] > 0.0
    for j in range(N):
        if not f[S, j] <= limit:
            continue
        cnt0 = f[CNT, j]
        cnt = cnt0 + 1.0
        dev = f[DEV, j]
        r = dev
        if cnt0 >= min_history:
            mv = _maximum(f[VAR, j], min_var)
            if not dev * dev < c2_margin * mv:  # well inside the clip: no sqrt needed
                sd = math.sqrt(mv)
                r = _clip(dev, -c * sd, c * sd)
        # 1/x is monotone, so max(1/cnt, 1/w) is 1/w exactly once cnt >= w: no division
        am = inv_mean_window if cnt >= mean_window else _maximum(1.0 / cnt, inv_mean_window)
        nv = f[NV, j] + 1.0
        if nv >= 2.0 * scale_window and nv >= 20.0:  # the scale memory is at its maximum
            av = inv_scale_window
        else:
            av = 1.0 / _scale_w(nv, scale_window)
        f[MEAN, j] = f[MEAN, j] + am * r
        f[VAR, j] = f[VAR, j] + av * (r * r - f[VAR, j])
        if autocorr:  # rho is read only with autocorr
            zc = _clip(f[ZRAW, j], -4.0, 4.0)
            if nv >= 3.0:
                ar = _maximum(1.0 / _maximum(nv - 2.0, 1.0), inv_scale_window)
                f[RHO, j] = f[RHO, j] + ar * (zc * f[ZPREV, j] - f[RHO, j])
            f[ZPREV, j] = zc
        f[CNT, j] = cnt
        f[NV, j] = nv


@jit
def _over_streams(f, par, order, nonfinite, x):
    """Write into ``order`` the streams whose statistic (CUSUM or jump) is over ``h_watch``
    (the non-finite ones when ``nonfinite``), largest first (ties by index); return how many."""
    N = f.shape[1]
    h_watch = par[P_H_WATCH]
    n = 0
    for j in range(N):
        if nonfinite:
            hit = not math.isfinite(x[j])
            key = 0.0
        else:
            key = _maximum(f[S, j], f[JMP, j])
            hit = key >= h_watch
        if not hit:
            continue
        k = n  # insertion: stable, descending by key
        while k > 0:
            p = order[k - 1]
            kp = _maximum(f[S, p], f[JMP, p])
            if nonfinite or kp >= key:
                break
            order[k] = p
            k -= 1
        order[k] = j
        n += 1
    return n


@jit
def _calibrating(f, par):
    trusted = par[P_TRUSTED_AFTER]
    for j in range(f.shape[1]):
        if f[CNT, j] < trusted:
            return 1.0
    return 0.0


@jit
def changepoint_step(x, f, ist, par, buf, out, order, label):
    """Score one evaluation's N stream values ``x``; return the state code (0/1/2).

    ``out`` receives the statistic (inf on a non-finite value), the direction of its largest
    contributor (+1/-1/0), the number of streams written to ``order`` (over ``h_watch``,
    largest first; the non-finite ones when those fired), whether the detector is still
    calibrating, 1.0 when a held shift was absorbed at this call (``ist[ABSORBED]``/
    ``ist[ABSORBED_LABEL]`` then hold its first evaluation / label) and 1.0 when the statistic
    is a jump check's.
    ``label`` is the caller's name for this evaluation (e.g. its training step), recorded at
    alarm start.
    """
    N = f.shape[1]
    t = ist[T]
    ist[T] = t + 1
    out[O_ABSORBED] = 0.0
    out[O_JUMPED] = 0.0
    for j in range(N):
        if not math.isfinite(x[j]):  # absolute check: COLLAPSE, nothing enters a baseline
            _enter_alarm(ist, t, label, COLLAPSE)
            out[O_STAT] = math.inf
            out[O_DIRECTION] = 0.0
            out[O_N_OVER] = _over_streams(f, par, order, True, x)
            out[O_CALIBRATING] = _calibrating(f, par)
            return COLLAPSE
    k = par[P_K]
    jump = par[P_JUMP]
    jump_after = par[P_JUMP_AFTER]
    jump_sd = par[P_JUMP_SD]
    h_w = par[P_H_WATCH]
    h_span = par[P_H_COLLAPSE] - h_w
    min_history = par[P_MIN_HISTORY]
    min_var = par[P_MIN_STD] * par[P_MIN_STD]
    z_cap = par[P_Z_CAP]
    scale_window = par[P_SCALE_WINDOW]
    n_mean_max = 2.0 * par[P_MEAN_WINDOW] - 1.0  # effective count of an EW mean of that window
    autocorr = par[P_AUTOCORR] > 0.0
    k2_margin = 0.98 * k * k
    stat = 0.0
    top = 0
    first_stat = True
    jmax = 0.0
    # the calibration cap reads the counts before this call's values are accepted
    capped = par[P_CAL_CAP] > 0.0 and _calibrating(f, par) > 0.0
    for j in range(N):
        xj = x[j]
        if math.isnan(f[MEAN, j]):  # first value of a stream: its own baseline (counted later)
            f[MEAN, j] = xj
        dev = xj - f[MEAN, j]
        f[DEV, j] = dev
        cnt = f[CNT, j]
        nv = f[NV, j]
        live = cnt >= min_history
        n_mean = _minimum(_maximum(cnt, 1.0), n_mean_max)
        var = _maximum(f[VAR, j], min_var) * (1.0 + 1.0 / n_mean)
        js = 0.0
        if cnt >= jump_after and abs(dev) > jump and abs(dev) > jump_sd * math.sqrt(var):
            js = h_w + h_span * (abs(dev) / jump - 1.0)  # the jump check of a settled stream
        f[JMP, j] = js
        if js > jmax:
            jmax = js
        # small-sample residual
        if not autocorr and (
            not live or (f[SP, j] == 0.0 and f[SN, j] == 0.0 and dev * dev < k2_margin * var)
        ):
            # the residual cannot move a CUSUM: |z| <= |t| < k (the margin covers rounding), so
            # both stay exactly 0. Without autocorr nothing else reads it: skip log1p and sqrt.
            f[SP, j] = 0.0
            f[SN, j] = 0.0
            f[S, j] = 0.0
            f[Z, j] = math.nan
            if first_stat or js > stat:
                stat = js
                top = j
                first_stat = False
            continue
        z = 0.0
        if nv >= 2.0:
            z = t_to_z(
                dev / math.sqrt(var),
                _maximum(_minimum(nv, _scale_w(nv, scale_window)) - 1.0, 1.0),
            )
        f[ZRAW, j] = z
        if autocorr:
            r = _clip(f[RHO, j], 0.0, 0.95)
            z = z / math.sqrt((1.0 + r) / (1.0 - r))
        f[Z, j] = z
        # CUSUM
        if live:
            zl = _clip(z, -z_cap, z_cap)
            f[SP, j] = _maximum(0.0, f[SP, j] + zl - k)
            f[SN, j] = _maximum(0.0, f[SN, j] - zl - k)
        else:
            f[SP, j] = 0.0
            f[SN, j] = 0.0
        s = _maximum(f[SP, j], f[SN, j])
        f[S, j] = s
        key = _maximum(s, js)
        if first_stat or key > stat or (key != key and stat == stat):
            stat = key
            top = j
            first_stat = False
    direction = 0.0
    if stat != 0.0:
        if f[JMP, top] > f[S, top]:
            direction = 1.0 if f[DEV, top] > 0.0 else -1.0
            out[O_JUMPED] = 1.0
        else:
            direction = 1.0 if f[SP, top] >= f[SN, top] else -1.0
    # state
    if stat >= par[P_H_COLLAPSE]:
        level = COLLAPSE
        if capped and not jmax >= par[P_H_COLLAPSE]:  # the CUSUM alone, while calibrating
            level = WATCH
    elif stat >= par[P_H_WATCH]:
        level = WATCH
    else:
        level = HEALTHY
    if level != HEALTHY:
        _enter_alarm(ist, t, label, level)
    elif ist[STATE] != HEALTHY and stat < par[P_CLEAR_BELOW] * par[P_H_WATCH]:
        ist[STATE] = HEALTHY
        ist[ALARM_START] = -1
        ist[ALARM_LABEL] = -1
        ist[BUF_LEN] = 0
        ist[BUF_POS] = 0
        if par[P_RESTART] > 0.0:  # restart after an alarm (so episodes are not clustered)
            for j in range(N):
                f[SP, j] = 0.0
                f[SN, j] = 0.0
    if ist[STATE] != HEALTHY:
        A = buf.shape[0]
        pos = ist[BUF_POS]
        for j in range(N):
            buf[pos, j] = x[j]
        ist[BUF_POS] = (pos + 1) % A
        if ist[BUF_LEN] < A:
            ist[BUF_LEN] += 1
        age = t - ist[ALARM_START] + 1
        if age >= A and ist[BUF_LEN] >= 4 and _held(f, ist, par, buf):
            _absorb(f, ist, buf)
            out[O_STAT] = 0.0
            out[O_DIRECTION] = 0.0
            out[O_N_OVER] = 0.0
            out[O_CALIBRATING] = _calibrating(f, par)
            out[O_ABSORBED] = 1.0
            out[O_JUMPED] = 0.0
            return HEALTHY
        if age >= par[P_ESCALATE_AFTER] and not capped:
            ist[STATE] = COLLAPSE
    else:  # baseline hygiene: accept only outside alarms and below the pending level
        _accept(f, par)
    out[O_STAT] = stat
    out[O_DIRECTION] = direction
    out[O_N_OVER] = _over_streams(f, par, order, False, x)
    out[O_CALIBRATING] = _calibrating(f, par)
    return ist[STATE]
