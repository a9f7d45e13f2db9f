"""LayerMonitor: per-step H0 of the layers of a network, from per-layer training signals.

At step t each signal s (gradient norm, activation norm, ...) gives one value per layer. Layer
i becomes the point ``p_i = (f(v_s[i, t-W+1..t]) for s in signals)`` and the monitor reports
``h0`` = total H0 persistence (MST length) of the L points under ``|p_i - p_j| / sqrt(W*S)``,
with ``f = log`` (zeros floored at ``1e-8`` x the step's largest value), so a global rescaling
of every layer (LR decay, loss scaling, clipping) leaves h0 unchanged. See DESIGN.md §2.

Alarms (``rule="streak"``, default; ``"zscore"`` is its old name): the alarm engine's
sequential change detector (:class:`~streamtopo.alarms.ChangeDetector`) on every layer's
median-relative value decides from the first evaluation (``early_rule``, ``keep_detector``);
beside it, once ``baseline`` values are accepted, a two-sided z-score of ``log h0`` against
them (the *topology* rule) and, per layer, a z-score of its own median-relative log value (the
*layer* rule, which also names the culprits), raised after ``raise_after`` consecutive
evaluations, catches slow drifts; the state is the more severe of the two. ``rule="cusum"``: the
same
streams (``log h0`` and every layer's median-relative value) feed the alarm engine's sequential
change detector (:class:`~streamtopo.alarms.ChangeDetector`), live from the first evaluation,
with one knob ``fa_per_1k``. ``rule="peak"`` is ph-training's ratio-to-peak rule; with
``transform="none", window=1`` h0 is exactly ``max - min`` of the raw values, as in
ph-training's ``LayerPHMonitor``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from .._kernels.layer import NEGATIVE, NONFINITE, baseline_push, compiled, layer_step
from .._validation import describe
from ..alarms import (
    Patience,
    PeakRule,
    RollingBaseline,
    State,
    ZScoreAlarm,
)
from ..config import read_config
from ..errors import InputError, InputTypeError
from ..ring import ArrowRing
from ._base import Monitor
from ._cusum_rule import CusumRule, evaluations
from ._fused import check_fast
from ._held import HeldShift
from ._inputs import as_stream, fill_row, missing_mask, split_absent
from ._layer_settings import DEFAULT_RULE, SETTINGS_ARGS, layer_settings
from ._records import RunSummary, status_frame
from ._status import LayerStatus, positional_constructor

__all__ = ["LayerMonitor", "status_frame"]

_ABSORB_MAX = math.log(30.0)  # larger held moves (log units) are not absorbed
_STATES = (State.HEALTHY, State.WATCH, State.COLLAPSE)
# Zeros are floored at this fraction of the step's largest value before the log: relative, so
# the transform stays exactly scale-invariant; 1e-8 caps a zero layer 18.4 log units below the
# largest one (float32 resolution is 6e-8, so smaller values are noise anyway).
_FLOOR_REL = 1e-8
_STATE_NAME = {s: str(s) for s in State}  # the str of a state, without the enum call per step
_CONFIG_KEYS = (
    "n_layers", "signals", "window", "transform", "rule", "baseline", "watch_z", "collapse_z",
    "raise_after", "escalate_after", "clear_after", "layer_rule", "layer_z", "watch_ratio",
    "collapse_ratio", "warmup", "patience", "check_every", "nonfinite", "capacity", "layer_names",
    "refresh_every", "min_std", "max_culprits", "fa_per_1k", "min_history", "early_rule",
    "keep_detector", "absorb_after", "jump",
)  # fmt: skip
# what a config may set: everything but the network's own description
_FROM_CONFIG = tuple(k for k in _CONFIG_KEYS if k not in ("n_layers", "signals", "layer_names"))
# LayerStatus from all its fields positionally (step, state, reason, evaluated, calibrating, h0,
# z, ratio, peak, direction, culprits, nonfinite, layer_z, stat, absent): half the cost of the
# frozen dataclass __init__, once per step
_new_status = positional_constructor(LayerStatus)
_NO_PUSH = (-1, 0, 0)  # (slot, values held, first refreshed entry) of a pending baseline push
_DEBOUNCE_BEFORE = 8  # the streak rule's debounce before the detector was kept


class _RuleState:
    """A rule object of the streak/peak rules (``log h0`` baseline, alarm counters, peak,
    patience, run summary) whose state live ``check()``'s compiled path may have moved ahead
    in arrays (``_fused.FastState``): reading the attribute brings the object up to date
    first, and marks the arrays stale (the reader may change the object), so every reader --
    ``state_dict``, the summary, the batch path -- sees exactly the state a row-by-row
    ``check()`` would have left. The rules' own per-step code runs only after ``check()`` (or
    the batch path) has settled the objects, and reads them as ``_obj_<name>`` directly."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = "_obj" + name

    def __get__(self, mon: Any, owner: type | None = None) -> Any:
        if mon is None:
            return self
        mon._settle_rules()
        return mon.__dict__[self.key]

    def __set__(self, mon: Any, value: Any) -> None:
        mon.__dict__[self.key] = value
        mon._arrays_stale = True


class LayerMonitor(Monitor):
    """Per-step topological health of a network's layers from per-layer signals.

    Parameters
    ----------
    n_layers : int
        Number of layers (points), at least 2.
    signals : sequence of str, default ("grad_norm",)
        Signal names; pass a dict ``{name: vector}`` to :meth:`check` when there are several.
    window : int, default 16
        Steps per point (W). 16 is the window of the study behind the default thresholds.
    transform : {"log", "none"}, default "log"
        ``"log"`` needs non-negative signals (norms, entropies) and makes h0 invariant to a
        global rescaling; ``"none"`` uses raw values (ph-training compatibility).
    rule : {"streak", "cusum", "peak"}, default "streak"
        Alarm rule (see DESIGN.md §2 "Status"). ``"streak"`` (alias ``"zscore"``, its name in
        runs recorded before the change detector): z-scores against the previous ``baseline``
        values, raised after ``raise_after`` consecutive evaluations. ``"cusum"``: a two-sided
        CUSUM on ``log h0`` and every layer's median-relative log value, live from the first
        evaluation: a non-finite value is COLLAPSE at once; from a layer's 6th evaluation a
        x30 move against its own history is WATCH at once (x900: COLLAPSE); from its 41st a
        small persistent shift fires once its evidence accumulates; a shift that holds for 30
        evaluations is absorbed (the reason says "shift absorbed (held N evaluations)").
        ``status.calibrating`` stays True until every stream has 100 accepted values.
        ``"peak"``: ph-training's ratio to the peak. See ``early_rule`` and
        ``keep_detector`` for the change detector that decides beside the streak rule.
    baseline : int, default 200
        K, the number of previous accepted values each z-score is taken against (alarms are
        active once K values exist). Calibrated on recorded digits runs
        (``benchmarks/eval_detection.py``): K = 200 with ``raise_after=8`` gave 0.06 false
        alarms per 1,000 healthy steps on the calibration seeds, against 0.30 for the
        K = 100, 5-step rule of the first study, and still caught every visible injected
        failure; see README "Does it warn early?".
    watch_z, collapse_z : float, default 3.0, 6.0
        |z| thresholds of the topology rule (``collapse_z`` must exceed ``watch_z``).
    raise_after : int or None, default None
        Consecutive steps over a threshold before the streak rule's WATCH/COLLAPSE (calibrated
        with ``baseline``). None: ``window + 4`` (20) when the change detector keeps deciding
        after the warm-up (``keep_detector``: abrupt changes are then its to catch, the streak
        rule is left the persistent ones, and a one-step spike, which holds the windowed h0 up
        for ``window`` evaluations, is not reported twice; with the final default the digits
        runs of seeds 1000+ have 0.063 false alarms per 1k healthy steps against 0.156 for
        session 5's 8, and slow failures are seen 12 steps later), else 8. COLLAPSE keeps the
        8-evaluation timing (see ``keep_detector``).
    escalate_after : int, default 50
        WATCH lasting this many steps (with a rule still over) becomes COLLAPSE.
    clear_after : int, default 5
        Consecutive calm steps that end an alarm.
    layer_rule : bool or None, default None
        Let the per-layer rule raise WATCH on its own (largest |z| > ``layer_z`` for
        ``raise_after`` steps; with ``rule="cusum"``: feed the per-layer streams to the
        detector, not only ``log h0``). None: on for ``"streak"`` and ``"cusum"``, off for
        ``"peak"``.
    layer_z : float or None, default None
        Threshold of the per-layer rule; layers beyond it are named as culprits. None: 3.0
        corrected for the number n = n_layers x n_signals of z-scores whose largest is taken
        (Šidák: the largest of n independent normal z-scores exceeds it as often as one z-score
        exceeds 3, i.e. 0.27 % of steps). It is 3.0 for n = 1, 3.76 for 16, 4.34 for 192. On a
        healthy synthetic stream of 64 layers x 3 signals the uncorrected 3.0 kept the monitor in
        alarm on 52 % of steps, the corrected one on 0.5 % (benchmarks/RESULTS.md, "LayerMonitor").
        The value used is ``layer_z_``.
    watch_ratio, collapse_ratio : float, default 0.6, 0.3
        Thresholds of ``rule="peak"`` (ratio of h0 to its peak).
    warmup : int, default 10
        Steps before the peak is tracked.
    patience : int, default 3
        ``should_stop`` after this many truly consecutive COLLAPSE evaluations.
    check_every : int, default 1
        Evaluate H0 and the rules every k-th step (steps 0, k, 2k, ...); signals are recorded
        every step. Skipped steps return the last evaluation with ``evaluated=False``; counts
        (``raise_after``, ``patience``, ``baseline``...) are in evaluations.
    nonfinite : {"collapse", "flag", "raise"}, default "collapse"
        A step with NaN/inf: COLLAPSE, keep the state but flag it, or raise (nothing recorded).
        Either way those layers stay out of H0 while the value is in their window, and steps
        with a layer left out neither score z nor enter a baseline. With mixed precision pass
        unscaled norms: a single overflow step that GradScaler skips is one COLLAPSE status,
        which ``should_stop`` ignores unless it repeats ``patience`` times in a row.
    capacity : int, default 1024
        Raw steps kept in the ring (:attr:`ring_`), at least ``window``.
    layer_names : sequence of str, optional
        Names used in culprits and logs (default ``"0"``, ``"1"``, ...).
    refresh_every : int, default 1024
        Rebuild the windowed distance matrix from scratch every this many steps to bound the
        drift of its running sums. Drift can only affect which of two nearly tied edges Prim
        picks: every chosen edge is re-evaluated exactly, so deaths carry none.
    min_std : float, default 1e-3
        Floor of every baseline std, in log units: a log value steady to 0.1 % over the
        baseline counts as varying by 0.1 %, so a constant signal cannot give infinite z.
        (With ``transform="none"`` the per-layer floor is in the signal's own units.)
    max_culprits : int, default 3
        Most layers named in ``Status.culprits``.
    fa_per_1k : float, default 0.1
        ``rule="cusum"``'s knob: expected false alarms per 1,000 evaluations of a healthy run
        (sets the CUSUM thresholds; COLLAPSE is the threshold of a 100x smaller rate). Larger
        is faster and noisier. ``escalate_after`` applies to it too; its floor of the
        prediction-error sd is its own (0.01 log units, ``ChangeDetector(min_std=)``).
    min_history : int or None, default None
        Accepted values of a stream before the change detector's CUSUM runs (the non-finite
        and jump checks run before). None: 40 under ``rule="cusum"``, 100 for the streak
        rule's early detector (a transformer's healthy LR warm-up moves one block's update ratio
        against the others; with 40 the transformer demo was stopped before its fault).
        TrainingMonitor's attention monitor uses 100 under ``"cusum"`` and 200 under
        ``"streak"``: attention statistics move by factors of 2-3 per block during the LR
        warm-up (heads forming), which the CUSUM took for changes
        (benchmarks/evaluation/CHANGEPOINT.md).
    early_rule : {"cusum", "none"} or None, default None
        ``rule="streak"`` only: what decides while the streak rule's ``log h0`` baseline fills
        (its first ``baseline`` accepted evaluations, when it has no z-score yet). ``"cusum"``
        (None's value under ``"streak"``): the change detector of ``rule="cusum"`` on the same
        streams, so the monitor is live from step 0: a non-finite value is COLLAPSE at once; a
        x30 move of a layer against its own first values is WATCH from its 6th evaluation; a
        persistent shift is WATCH once its evidence accumulates (from the ``min_history``-th
        value). Its alarms are WATCH at most (the monitor is still calibrating); values seen
        during them do not enter the streak baselines, so a failure in the first evaluations
        is not what the run is later judged against. ``"none"``: the streak rule alone, blind
        (HEALTHY, reason ``warmup (n/K baseline values)``) until the baseline is full -- how
        runs recorded before this parameter replay. Measured in README "Does it warn early?".
    keep_detector : bool or None, default None
        With ``early_rule="cusum"``: keep the change detector deciding after the streak
        rule's baseline is full (None: True; False: the streak rule alone from then on, how
        runs recorded before this parameter replay). The monitor's state is then the more
        severe of the two rules: the detector watches each layer's median-relative value
        and catches abrupt changes (a x30 jump at once, a persistent shift once its evidence
        accumulates; reason ``cusum: ...`` with its statistic ``S``); the streak rule (with
        ``raise_after`` 20) catches the slow drifts that the detector's adaptive scale
        follows, and owns the topology (``log h0``) stream. The detector's alarms are WATCH
        (a non-finite value: COLLAPSE), which the absorption can end; COLLAPSE, which stops a
        run and triggers a guard, is the streak rule's and keeps the timing of the old
        8-evaluation debounce (topology |z| > ``collapse_z`` for 8 evaluations, a WATCH
        escalating ``escalate_after`` evaluations after that debounce); only its WATCH waits
        ``raise_after``. Values seen during either rule's alarm stay out of the per-layer
        baselines; ``log h0`` enters its own as it did with the 8-evaluation debounce. On
        the digits runs of seeds 1000+ the first alarm after an LR spike came 4 steps after
        the loss showed it (streak alone: 8), after dead ReLUs 1 (7); README "Does it warn
        early?".
    absorb_after : int or None, default None
        ``rule="streak"`` only: a WATCH whose evaluations hold one level for this many of them
        (every stream's mean -- ``log h0`` and each layer's median-relative value -- equal in
        both halves, within 4 standard errors) is absorbed: the state returns to HEALTHY with
        the reason ``shift absorbed (held N evaluations)`` and the baselines (and
        the early detector) start afresh, as after :meth:`acknowledge`. A shift that keeps
        moving, a held move beyond x30 (``transform="log"``) and a COLLAPSE are not absorbed.
        None: 30 under ``"streak"`` (on the transformer calibration runs the share of healthy
        steps in alarm fell from 30% to 3.5%; 50: 5.8%, 100: 21%), else 0 (off; how runs
        recorded before this parameter replay). With ``escalate_after`` <= ``absorb_after`` a
        held WATCH escalates before it can be absorbed.
    jump : float or None, default None (off)
        ``rule="streak"`` only, once its baselines are full: a layer whose median-relative value
        moves by more than this factor against its baseline mean (and whose z is beyond
        ``layer_z``) raises WATCH at that evaluation instead of after ``raise_after`` (reason
        ``... (jump x77 > x30)``; ``transform="log"`` only). Off by default: on the digits
        calibration seeds ``jump=30`` moved the first alarm on LR spikes from 8 to 4 steps
        after the loss showed them at no extra false alarm, but on the fresh seeds the lead did
        not move, and a Guard acting on the earlier alarms stopped 4 of 6 exploding-layer runs
        that finish well without it (README "Live from step 0, and alarms that end").
    writer : callable, optional
        Called with one row dict after every :meth:`check` (see ``streamtopo.io``).
    name : str, optional
        The monitor's identity in the run log ([a-z0-9_], at most 32 characters): its rows go
        to table ``layer.<name>`` instead of ``layer`` (e.g. ``"eval"`` beside a train monitor
        on the same writer, which refuses two unnamed monitors of one kind).
    signal_name : str, optional
        ph-training spelling of a single signal (``signals=(signal_name,)``).
    config : path or dict, optional
        A config written by ``streamtopo calibrate`` (a JSON path, or the same document as a
        dict; a dict without ``"format"`` is the ``"layer"`` section itself): its settings
        (``rule``, ``fa_per_1k``, ``window``...) *replace* the corresponding arguments. An
        unknown key raises. See :mod:`streamtopo.config`.

    Examples
    --------
    >>> import numpy as np
    >>> mon = LayerMonitor(n_layers=4, transform="none", window=1, rule="peak", warmup=0)
    >>> [mon.check(v).state.value for v in ([1.0, 2, 3, 5], [1.0, 1.5, 2, 2.5], [1.0, 1, 1, 1.1])]
    ['HEALTHY', 'WATCH', 'COLLAPSE']
    >>> mon.check([2.0, 1, 3, 9]).h0  # max - min
    8.0
    >>> mon.summary()["collapse_events"]
    1

    The default: log signals over a 16-step window; the change detector on each layer's
    median-relative value from step 0 and, once 200 values are accepted, the z-score rules
    against them too. Layer fc3 blows up at step 240 (x100: the change detector's WATCH at
    once, the topology rule's COLLAPSE 8 evaluations later):

    >>> rng = np.random.default_rng(0)
    >>> mon = LayerMonitor(8, ("grad_norm", "act_norm"), layer_names=[f"fc{i}" for i in range(8)])
    >>> levels = rng.normal(size=(2, 8))
    >>> for t in range(250):
    ...     x = np.exp(levels + 0.05 * rng.normal(size=(2, 8)))
    ...     if t >= 240:
    ...         x[:, 3] *= 100.0
    ...     status = mon.check({"grad_norm": x[0], "act_norm": x[1]})
    >>> status.state.value, status.culprits[0], status.direction, mon.should_stop
    ('COLLAPSE', 'fc3', 'rising', True)
    >>> status.reason.split(":")[0]
    'topology'

    The change detector sees the same jump at once (WATCH: a x30-x900 jump of a settled layer),
    live from step 0. While it is ``calibrating`` (100 accepted values) the CUSUM alone raises
    WATCH, not COLLAPSE (a non-finite value or a x900 jump would):

    >>> mon = LayerMonitor(8, rule="cusum", layer_names=[f"fc{i}" for i in range(8)])
    >>> for t in range(45):
    ...     x = np.exp(levels[0] + 0.05 * rng.normal(size=8))
    ...     if t >= 40:
    ...         x[3] *= 100.0
    ...     status = mon.check(x)
    ...     if t in (39, 40, 44):
    ...         print(t, status.state.value, status.calibrating, status.culprits)
    39 HEALTHY True ()
    40 WATCH True ('fc3',)
    44 WATCH True ('fc3',)
    """

    kind = "layer"
    _config_keys = _CONFIG_KEYS
    # runs and states from before the early rule ran without it (and replay bit-identically)
    legacy_defaults: ClassVar[dict[str, Any]] = {
        "early_rule": "none", "min_history": 40, "absorb_after": 0, "jump": 0.0,
        "keep_detector": False,
    }  # fmt: skip
    #: Parameters whose default depends on ``rule``: a config whose rule is changed (replay
    #: or calibrate with another rule) derives them anew unless they are given too.
    rule_derived: ClassVar[tuple[str, ...]] = (
        "layer_rule", "early_rule", "keep_detector", "raise_after", "min_history",
        "absorb_after", "jump",
    )  # fmt: skip
    _optional_state_: ClassVar[tuple[str, ...]] = ("_held",)  # absent from older states
    # the declared state (DESIGN.md: declared once; reset/state_dict/load_state_dict follow)
    _state_ = (
        "_rows", "_bn", "_bpos", "_bpushes", "_h0_base", "_alarm", "_peak", "_patience",
        "_summary", "ring_", "_T", "_P", "_Tbad", "_nbad", "_D", "_B", "_ref", "_s1", "_s2",
        "_detector", "_held",
    )  # fmt: skip
    _h0_base = _RuleState()
    _alarm = _RuleState()
    _peak = _RuleState()
    _patience = _RuleState()
    _summary = _RuleState()

    def __init__(
        self,
        n_layers: int,
        signals: Sequence[str] = ("grad_norm",),
        *,
        window: int = 16,
        transform: str = "log",
        rule: str = DEFAULT_RULE,
        baseline: int = 200,
        watch_z: float = 3.0,
        collapse_z: float = 6.0,
        raise_after: int | None = None,
        escalate_after: int = 50,
        clear_after: int = 5,
        layer_rule: bool | None = None,
        layer_z: float | None = None,
        watch_ratio: float = 0.6,
        collapse_ratio: float = 0.3,
        warmup: int = 10,
        patience: int = 3,
        check_every: int = 1,
        nonfinite: str = "collapse",
        capacity: int = 1024,
        layer_names: Sequence[str] | None = None,
        refresh_every: int = 1024,
        min_std: float = 1e-3,
        max_culprits: int = 3,
        fa_per_1k: float = 0.1,
        min_history: int | None = None,
        early_rule: str | None = None,
        keep_detector: bool | None = None,
        absorb_after: int | None = None,
        jump: float | None = None,
        writer: Callable[[dict[str, Any]], Any] | None = None,
        name: str | None = None,
        signal_name: str | None = None,
        config: Any = None,
    ) -> None:
        if config is not None:  # the config's settings replace the arguments it names
            args = {k: v for k, v in locals().items() if k not in ("self", "config")}
            LayerMonitor.__init__(self, **{**args, **read_config(config, "layer", _FROM_CONFIG)})
            return
        settings = layer_settings(**{k: v for k, v in locals().items() if k in SETTINGS_ARGS})
        for key, value in settings.items():
            setattr(self, key, value)
        if writer is not None and not callable(writer):
            raise InputTypeError(f"writer must be callable or None, got {describe(writer)}")
        check_names = getattr(writer, "check_layer_names", None)
        if check_names is not None:  # a name the log cannot hold fails here, not at every check
            check_names(self.signals, self.layer_names)
        self._attach(writer, name)
        self.reset()

    def __repr__(self) -> str:
        return (
            f"LayerMonitor(n_layers={self.n_layers}, signals={self.signals!r}, "
            f"window={self.window}, transform={self.transform!r}, rule={self.rule!r}, "
            f"step={self._step})"
        )

    # -- state -----------------------------------------------------------------------------
    def _init_state(self) -> None:
        """Allocate every buffer (once, here, never per step) and zero the counters."""
        S, L, W, K = len(self.signals), self.n_layers, self.window, self.baseline
        # the compiled path of check() (streak and peak rules): its arrays, built on first use
        self._fast = None
        self._rules_ahead = False  # its arrays hold a newer rule state than the rule objects
        self._arrays_stale = True  # the rule objects hold a newer state than its arrays
        self._early_done = False  # the early rule's baseline is full (see _early_over)
        self.ring_ = ArrowRing(self.signals, L, self.capacity)
        # window of transformed rows and the summed squared distances between layers
        self._T = np.zeros((W, S, L))
        self._P = np.zeros((L, W * S))  # the same window by layer: the points
        self._Tbad = np.zeros((W, L), dtype=np.bool_)
        self._D = np.zeros((L, L))
        # grouped work arrays of the fused kernel (see streamtopo._kernels.layer)
        self._work = np.zeros((7, S, L))
        self._y, self._u, self._ref, self._s1, self._s2 = self._work[:5]
        self._lvec = np.zeros((3, L))
        self._lz = self._lvec[2]
        self._livec = np.zeros((4, L), dtype=np.int64)
        self._nbad, self._bad = self._livec[0], self._livec[3]
        self._med = np.zeros(S)
        self._raw = np.zeros((S, L))
        self._raw_rows = list(self._raw)  # views, for the input fast path
        self._row = np.zeros((S, L), dtype=np.float32)
        self._out = np.zeros(6)
        # per-layer baseline ring of median-relative values (sums live in self._work)
        self._B = np.zeros((1 if self.rule == "cusum" else K, S, L))  # unused by cusum
        self._bn = self._bpos = self._bpushes = 0
        self._chunk = -(-(S * L) // K)  # baseline entries refreshed exactly per push
        self._pending = _NO_PUSH
        self._rows = 0
        self._h0_base = RollingBaseline(K, min_std=self.min_std)
        # With the detector kept, everything that leads to COLLAPSE (which stops a run and
        # triggers a guard) keeps the timing of the 8-evaluation debounce the guard was
        # calibrated with: |z| > collapse_z for 8 evaluations, a WATCH escalating 50 after
        # that debounce would have raised it (and log h0 held out from then, below); only
        # the WATCH waits 20.
        escalate_after, collapse_after = self.escalate_after, None
        if self.keep_detector:  # COLLAPSE (|z| > collapse_z) keeps the 8-evaluation debounce
            collapse_after = min(self.raise_after, _DEBOUNCE_BEFORE)
            escalate_after = max(1, self.escalate_after - (self.raise_after - collapse_after))
        self._alarm = ZScoreAlarm(
            ("topology", "layer"),
            watch_z=(self.watch_z, self.layer_z_),
            collapse_z=(self.collapse_z, math.inf),
            raise_after=self.raise_after,
            escalate_after=escalate_after,
            clear_after=self.clear_after,
            collapse_after=collapse_after,
        )
        self._peak = PeakRule(
            watch_ratio=self.watch_ratio, collapse_ratio=self.collapse_ratio, warmup=self.warmup
        )
        self._patience = Patience(self.patience)
        self._summary = RunSummary()
        self._peak_rule = self.rule == "peak"
        self._cusum = self.rule == "cusum"
        self._fast_rule = True  # check()'s compiled path is on (the tests' reference: off)
        self._early = self.early_rule == "cusum"
        # the early change detector of a streak rule that does not keep it: no compiled twin
        self._early_python = self._early and not self.keep_detector
        self._detector = None
        if self._cusum or self._early:  # streams: log h0, then each layer's median-relative value
            self._detector = CusumRule(
                S, L, self.layer_rule, self.fa_per_1k, self.escalate_after, self.min_history,
                topology=not self.keep_detector,
            )  # fmt: skip
        # the streak rule's held-shift test: log h0, then every (signal, layer)'s value
        self._held = HeldShift(max(self.absorb_after, 1), 1 + S * L, min_std=self.min_std)
        self._hrow = np.zeros(1 + S * L)
        self._bind_kernel_args()

    def _rule_objects(self) -> tuple[Any, ...]:
        """The rule objects as they are (not brought up to date): for the array packing."""
        d = self.__dict__
        return (
            d["_obj_h0_base"], d["_obj_alarm"], d["_obj_peak"], d["_obj_patience"],
            d["_obj_summary"],
        )  # fmt: skip

    def _settle_rules(self) -> None:
        """Bring the rule objects up to date with the compiled path's arrays; they are then
        the state (the arrays are re-packed before that path runs again)."""
        if self._rules_ahead:
            self._rules_ahead = False
            from ._fused import sync_rules

            fast = self._fast
            sync_rules(self, fast.kr, fast.ist, fast.fst, fast.hb)
        self._arrays_stale = True

    def _baseline_count(self) -> int:
        """Values in the ``log h0`` baseline, without settling the rule objects."""
        if self._rules_ahead:
            return int(self._fast.ist[self._fast.kr.I_HB_N])
        return self.__dict__["_obj_h0_base"].count

    def _early_over(self) -> bool:
        """The streak rule's early change detector, when it is not kept (it then has no
        compiled twin: until its baseline is full every step runs in ``check()``'s own code),
        is done deciding."""
        if not self._early_done:
            self._early_done = self._baseline_count() >= self.baseline
        return self._early_done

    def _bind_kernel_args(self) -> None:
        """The fixed leading arguments of ``layer_step`` (buffers are reused, never replaced
        between resets), unpacked from one tuple per call."""
        self._kernel_args = (
            self._raw, self._row, self.transform == "log", _FLOOR_REL, self.nonfinite == "raise",
            self.min_std, *self.ring_.kernel_buffers(), self._work, self._med, self._lvec,
            self._livec, self._T, self._P, self._Tbad, self._D, self._B, self._chunk, self._out,
        )  # fmt: skip
        # the same with non-finite values kept: a step whose only NaNs are absent values
        self._kernel_args_keep = (*self._kernel_args[:4], False, *self._kernel_args[5:])
        self._kernel = layer_step  # its compiled function once known (same argument types)

    @property
    def step(self) -> int:
        """Number of steps checked so far (the next status's ``step``); same as ``step_``."""
        return self._step

    @property
    def nbytes(self) -> int:
        """Bytes held in numpy buffers (ring, window, distances, baselines, scratch, and the
        compiled path's rule state once it has run)."""
        fast = 0 if self._fast is None else self._fast.nbytes
        return (
            self.ring_.nbytes
            + fast
            + sum(
                v.nbytes
                for v in vars(self).values()
                if isinstance(v, np.ndarray) and v.base is None
            )
        )

    @property
    def should_stop(self) -> bool:
        """True after ``patience`` truly consecutive COLLAPSE evaluations."""
        if self._rules_ahead:  # read on every training step: from the compiled path's arrays
            fast = self._fast
            return int(fast.ist[fast.kr.I_PATIENCE]) >= self.patience
        return self.__dict__["_obj_patience"].should_stop

    @property
    def peak_(self) -> float:
        """Highest h0 after warm-up."""
        if self._rules_ahead:
            fast = self._fast
            return float(fast.fst[fast.kr.F_PEAK])
        return self.__dict__["_obj_peak"].peak

    def acknowledge(self) -> None:
        """End the current alarm and re-baseline on purpose: the z-score baselines (or the
        change detector) forget their values and refill from the next steps.

        With a writer, the acknowledgement is logged first (a row of table ``events``:
        ``table`` = this monitor's table, ``event="acknowledge"``, ``step`` = the next check's
        step), so :func:`~streamtopo.io.replay` repeats it and stays bit-identical to the live
        run; if the writer refuses the row, the monitor is left unchanged.
        """
        if self.writer is not None:
            self.writer(
                {
                    "monitor": "events",
                    "step": self._step,
                    "wall_time": time.time(),
                    "config": {},
                    "table": self.table_,
                    "event": "acknowledge",
                }
            )
        self._forget()

    def _forget(self) -> None:
        """Baselines, alarm, change detector and patience start afresh (acknowledge, absorb)."""
        self._held.reset()
        if self._detector is not None:
            self._detector.reset()
        self._alarm.reset()
        self._h0_base.reset()
        self._bn = self._bpos = self._bpushes = 0
        self._pending = _NO_PUSH  # the accepted value is forgotten with the rest
        self._s1.fill(0.0)  # sums over the (now empty) per-layer baseline
        self._s2.fill(0.0)
        self._patience.reset()
        self._fast = None  # the reset detector has new arrays
        self._early_done = False

    # -- the per-step call -----------------------------------------------------------------
    def check(self, values: Any, *, missing: Any = None) -> LayerStatus:
        """Record one step of signals and return its :class:`~streamtopo.monitors.LayerStatus`.

        Parameters
        ----------
        values : array-like, dict or tensor
            ``n_layers`` values (numpy array, list of floats or of 0-d tensors, 1-D tensor) for a
            single signal; a dict ``{signal: vector}`` or an ``(n_signals, n_layers)`` array for
            several. Bad input raises ``ValueError``/``TypeError`` and changes nothing.
        missing : array-like of bool, optional
            Values not measured this step (a frozen layer has no gradient): one flag per layer
            (``(n_layers,)``) or per signal and layer (``(n_signals, n_layers)``). A layer with a
            missing value is *absent*: recorded as NaN (logged as null), left out of H0 and the
            rules while the value is in its window (as a non-finite value is), named in
            ``status.absent``, and never a COLLAPSE. Its value in ``values`` is ignored.

        Examples
        --------
        >>> mon = LayerMonitor(3, layer_names=["a", "b", "c"])
        >>> st = mon.check([1.0, 2.0, 0.0], missing=[False, False, True])
        >>> st.state.value, st.absent, st.reason
        ('HEALTHY', ('c',), 'layers [c] absent (no value this step)')
        """
        last = self._last
        if (
            missing is None
            and self._fast_rule
            and last is not None
            and last.state is State.HEALTHY
            and not self._held.count
            and (not self._early_python or self._early_over())
        ):  # the usual step: through the fused replay's compiled loop (_fused.check_fast)
            fill_row(values, self.signals, self.n_layers, self._raw, self._raw_rows)
            status = check_fast(self)
            if status is not None:
                if self.writer is not None:
                    self._write(status, None)
                return status
        if self._rules_ahead:  # the rules' code below reads the rule objects directly
            self._settle_rules()
        self._arrays_stale = True  # and the counters move outside the compiled path
        mask = None if missing is None else missing_mask(missing, len(self.signals), self.n_layers)
        fill_row(values, self.signals, self.n_layers, self._raw, self._raw_rows)
        args = self._kernel_args
        if mask is not None:
            self._raw[mask] = math.nan
            if args[4] and np.isfinite(self._raw.astype(np.float32)[~mask]).all():
                args = self._kernel_args_keep  # only absent values are NaN: nothing to raise
        step = self._step
        W = self.window
        rows = self._rows
        full = rows == W
        evaluate = step % self.check_every == 0
        scale = 1.0 / math.sqrt((W if full else rows + 1) * len(self.signals))
        ring = self.ring_
        bn = self._bn
        push_pos, push_n, push_first = self._pending
        kernel = self._kernel
        kernel(
            *args, ring.count_ % self.capacity, step, step % W, full,
            (step + 1) % self.refresh_every == 0, evaluate, scale,
            bn if bn == self.baseline and not self._cusum else 0, push_pos, push_n, push_first,
        )  # fmt: skip
        if kernel is layer_step:  # first call: from now on without the dispatcher
            self._kernel = compiled(
                layer_step,
                (*args, 0, step, 0, full, False, evaluate, scale, 0, push_pos, push_n, 0),
            )
        code, n_bad, h0, top, excluded, lzt = self._out.tolist()
        if code == NEGATIVE:
            s, i = divmod(int(n_bad), self.n_layers)
            raise InputError(
                f"values[{self.signals[s]!r}] has a negative value {float(self._row[s, i])!r} at "
                f"layer {self.layer_names[i]!r}; transform='log' needs values >= 0 (norms, "
                "entropies), use transform='none' for signed signals"
            )
        if code == NONFINITE:
            raise InputError(
                f"values has {int(n_bad)} NaN/inf value(s) in layers {self._bad_names()} "
                "(nonfinite='raise')"
            )
        # the kernel has recorded the step (and done the pending baseline push)
        self._pending = _NO_PUSH
        ring.advance()
        if not full:
            self._rows = rows + 1
        nonfinite = tuple(np.flatnonzero(self._bad).tolist()) if n_bad else ()
        absent: tuple[int, ...] = ()
        if mask is not None and nonfinite:
            nonfinite, absent = split_absent(nonfinite, mask, self._row)
        if evaluate and self._cusum:
            status = self._evaluate_cusum(step, nonfinite, h0, excluded > 0.0 or bool(absent))
            if absent:
                status = replace(
                    status,
                    absent=tuple(self.layer_names[i] for i in absent),
                    reason=self._absent_reason(absent)
                    + ("" if status.state is State.HEALTHY else f"; {status.reason}"),
                )
        elif evaluate:
            status = self._evaluate(step, nonfinite, h0, int(top), lzt, excluded > 0.0, absent)
        else:
            status = self._skipped(step, nonfinite, absent)
        if nonfinite and status.state is State.COLLAPSE and not status.culprits:
            # the non-finite layers are what the COLLAPSE is about
            culprits = tuple(self.layer_names[i] for i in nonfinite[: self.max_culprits])
            status = replace(status, culprits=culprits)
        self._last = status  # what Monitor._record does, inlined on the per-step path
        self._step = step + 1
        if self.writer is not None:
            self._write(status, mask)
        return status

    def _write(self, status: LayerStatus, mask: np.ndarray | None) -> None:
        """The writer's row of a checked step (``self._row`` holds its recorded values)."""
        step = status.step
        writer = self.writer
        append = getattr(writer, "append_layer", None)  # a RunWriter: no dict, no copy
        if append is not None:
            append(
                self._table or self.kind, step, self._row, status.h0, _STATE_NAME[status.state],
                status.reason, status.z, self._firing_stat(status), status.culprits,
                status.direction, status.calibrating, mask, self.signals, self.layer_names,
                self._config_cache,
            )  # fmt: skip
        elif writer is not None:  # no row built (nor values copied) without a writer
            self._emit(
                step,
                signals=self.signals,
                layer_names=self.layer_names,
                values=self._row.copy(),
                h0=status.h0,
                state=str(status.state),
                reason=status.reason,
                z=status.z,
                stat=self._firing_stat(status),
                culprits=status.culprits,
                direction=status.direction,
                calibrating=status.calibrating,
                **({} if mask is None else {"missing": mask}),
            )

    def _firing_stat(self, status: LayerStatus) -> float:
        """The statistic of the rule that holds the state: NaN when HEALTHY or for non-finite
        input (no statistic), the ratio to peak under ``rule="peak"``, the CUSUM statistic under
        ``rule="cusum"``, else the topology z when
        over ``watch_z`` and the largest per-layer z otherwise."""
        if status.state is State.HEALTHY or status.nonfinite:
            return math.nan
        if self.rule == "peak":
            return float(status.ratio)
        if self.rule == "cusum" or status.stat == status.stat:  # (streak: its early rule)
            return float(status.stat)  # the CUSUM statistic S that crossed its threshold
        z = float(status.z)
        return z if abs(z) >= self.watch_z else float(status.layer_z)

    def _bad_names(self) -> list[str]:
        return [self.layer_names[i] for i in np.flatnonzero(self._bad)]

    def _skipped(
        self, step: int, nonfinite: tuple[int, ...], absent: tuple[int, ...] = ()
    ) -> LayerStatus:
        last = self._last
        assert last is not None  # step 0 is always evaluated
        state, reason = last.state, f"not evaluated (check_every={self.check_every})"
        if absent:
            reason = self._absent_reason(absent)
        if nonfinite:
            reason = self._nonfinite_reason(nonfinite)
            if self.nonfinite == "collapse":
                state = State.COLLAPSE
        return replace(
            last,
            step=step,
            state=state,
            reason=reason,
            nonfinite=nonfinite,
            evaluated=False,
            absent=tuple(self.layer_names[i] for i in absent),
        )

    def _absent_reason(self, absent: tuple[int, ...]) -> str:
        return (
            f"layers [{', '.join(self.layer_names[i] for i in absent)}] absent (no value this step)"
        )

    def _nonfinite_reason(self, nonfinite: tuple[int, ...]) -> str:
        # a finite input beyond float32's range (the ring's type) is an overflow, not a NaN
        over = [i for i in nonfinite if np.isfinite(self._raw[:, i]).all()]
        parts = []
        bad = [self.layer_names[i] for i in nonfinite if i not in over]
        if bad:
            parts.append(f"non-finite value in layers [{', '.join(bad)}]")
        if over:
            names = ", ".join(self.layer_names[i] for i in over)
            parts.append(f"overflow: value beyond float32 range (3.4e38) in layers [{names}]")
        return f"{'; '.join(parts)} (nonfinite={self.nonfinite!r})"

    def _evaluate(
        self,
        step: int,
        nonfinite: tuple[int, ...],
        h0: float,
        top: int,
        lzt: float,
        excluded: bool,
        absent: tuple[int, ...] = (),
    ) -> LayerStatus:
        """Rules, baselines and the status of an evaluated step (``top``: layer with the
        largest |z|, ``lzt`` its z; ``excluded``: some layer is left out of H0; ``absent``:
        layers without a value this step)."""
        excluded = excluded or bool(nonfinite) or bool(absent)
        K = self.baseline
        base, peak, alarm, peak_rule = (
            self._obj_h0_base,
            self._obj_peak,
            self._obj_alarm,
            self._peak_rule,
        )
        if self._early and base.count < K:
            return self._evaluate_early(step, nonfinite, h0, excluded, absent)
        logh = math.log(h0) if h0 > 0.0 else -math.inf
        z = math.nan if excluded else base.zscore(logh)
        ratio_state = peak.update(math.nan if excluded else h0)
        alarm_state = alarm.update(
            (
                math.nan if peak_rule else z,
                lzt if (self.layer_rule and not excluded) else math.nan,
            )
        )
        jumped = 0.0
        if (
            self._jump_log
            and alarm_state is State.HEALTHY
            and not excluded
            and top >= 0
            and abs(lzt) > self.layer_z_
            and self.layer_rule
        ):
            jumped = self._jump_move(top)
            if jumped > self._jump_log:  # orders of magnitude: WATCH now, not in 8 steps
                alarm_state = alarm.raise_now(1)
            else:
                jumped = 0.0
        if peak_rule and ratio_state.severity > alarm_state.severity:
            state = ratio_state
        else:
            state = alarm_state
        if nonfinite and self.nonfinite == "collapse":
            state = State.COLLAPSE
        streak_state, det, absorbed = state, None, False
        if self.keep_detector:  # the change detector keeps deciding after the warm-up
            rule = self._detector
            scored = None
            if not (excluded or nonfinite or rule._u is None):
                scored = rule.score(step, self._u)  # the usual step: HEALTHY, nothing to say
                absorbed = rule.detector.absorbed  # (this call's: stale on a held step)
            if scored is not State.HEALTHY or absorbed:
                # its alarms are WATCH (only a non-finite value collapses): COLLAPSE, which
                # stops a run and triggers a guard, stays the streak rule's (CHANGEPOINT.md,
                # "Kept detector": a detector COLLAPSE made the guard stop exploding-layer runs)
                det = self._detector_step(
                    step, nonfinite, h0, excluded, cap=True, peak=False, scored=scored
                )
                if det[0].severity > state.severity:
                    state = det[0]
                if (
                    state is State.HEALTHY
                    and absorbed
                    and self._held.count
                    and self._held_within_bound()
                ):  # the detector absorbed a held shift the streak rule would absorb too
                    return self._absorbed(step, h0, z, lzt, rule.detector.absorbed_length)
        if (
            self.absorb_after
            and not excluded
            and (state is not State.HEALTHY or self._held.count)  # else nothing to do
            and self._holds(step, state, logh)
        ):
            return self._absorbed(step, h0, z, lzt)
        healthy = state is State.HEALTHY
        direction = ""
        if z == z and abs(z) > self.watch_z:
            direction = "rising" if z > 0 else "falling"
        elif peak_rule and ratio_state is not State.HEALTHY:
            direction = "falling"
        culprits: tuple[str, ...] = ()
        if top >= 0 and (not healthy or abs(lzt) > self.layer_z_):
            culprits = self._culprits(diverging=not healthy and direction == "rising")
        if healthy and not excluded and (not peak.warming_up if peak_rule else base.count == K):
            reason = "ok"  # what _reason says then, without the call (the per-step case)
        else:
            reason = self._reason(state, z, lzt, top, nonfinite, excluded)
        if jumped:
            reason += f" (jump x{math.exp(min(jumped, 700.0)):.0f} > x{self.jump:g})"
        stat = math.nan
        if det is not None and det[0] is State.HEALTHY and absorbed:
            # the detector restarts on its own; the streak rule keeps its memory (a held move
            # beyond x30 -- dead layers -- must still escalate and reach a guard) -- or the
            # detector absorbed with no held-shift record (absorb_after=0)
            held = evaluations(self._detector.detector.absorbed_length)
            reason += f"; change detector: shift absorbed (held {held})"
        if det is not None and det[0] is not State.HEALTHY and not nonfinite:
            # the change detector's alarm: its statistic, direction and layers (the streak
            # rule's reason first when both rules are over their thresholds)
            if det[0].severity > streak_state.severity or streak_state is State.HEALTHY:
                direction, culprits, reason, stat = det[2], det[3], det[4], det[5]
            else:
                reason += f"; {det[4]}"
        if absent:
            held = nonfinite or not healthy
            reason = self._absent_reason(absent) + (f"; {reason}" if held else "")
        # values seen while an alarm is active (or with layers left out) never enter a baseline;
        # per-layer values also stay out while the layer rule is over its threshold but not yet
        # for raise_after steps, or a jump of one layer would inflate the spread it is judged
        # against (115 -> 5 in four steps) and the wrong layer would be named. The h0 baseline
        # keeps absorbing such values: windowed h0 is autocorrelated, and holding it out turns
        # slow healthy wander into alarms. With the detector kept, the detector's own alarm
        # does not stop it (held out, a one-step spike's `window` evaluations made a topology
        # COLLAPSE), and the streak rule's 20-evaluation debounce does not extend it: log h0
        # enters as it did with the 8-evaluation debounce, until a detector has been over
        # for 8 evaluations. So the topology z -- and COLLAPSE, |z| > 6 for 8 -- evolve as
        # before; letting 20 values in pulled the z of LR spikes under 6 and the guard never
        # acted (CHANGEPOINT.md "Kept detector").
        if self.keep_detector and (alarm.active or alarm.longest_over >= alarm.collapse_after):
            logh = -math.inf
        if healthy and not excluded:
            self._accept(logh, not alarm.pending(1))
        elif streak_state is State.HEALTHY and not excluded:
            self._accept(logh, False)
        self._obj_patience.update(state)
        # calibrating: no trusted baseline yet (z-score baseline filling, or peak warm-up)
        calibrating = peak.warming_up if peak_rule else base.count < K
        status = _new_status(
            step, state, reason, True, calibrating, h0, z, peak.ratio, peak.peak, direction,
            culprits, nonfinite, lzt, stat,
            tuple(self.layer_names[i] for i in absent) if absent else (),
        )  # fmt: skip
        self._obj_summary.record(status)
        return status

    def _accept(self, logh: float, layers: bool) -> None:
        """Let this evaluation's values into the streak rule's baselines: ``log h0`` now, the
        per-layer values (when ``layers``) at the start of the next check (one kernel call per
        step; the counts move now)."""
        if logh > -math.inf:
            self._obj_h0_base.push(logh)
        if layers:
            K = self.baseline
            bpos, bn, bpushes = self._bpos, self._bn, self._bpushes
            self._pending = (bpos, bn, (bpushes * self._chunk) % self._u.size)
            self._bpos = (bpos + 1) % K
            self._bn = bn + 1 if bn < K else K
            self._bpushes = bpushes + 1

    def _layer_means(self) -> np.ndarray:
        """(signals, layers) means of the per-layer baseline (``_bn`` > 0 values)."""
        return self._ref + self._s1 / self._bn

    def _jump_move(self, i: int) -> float:
        """Layer ``i``'s largest move (over signals, log units) of its median-relative value
        from its baseline mean."""
        return float(np.abs(self._u[:, i] - self._layer_means()[:, i]).max())

    def _holds(self, step: int, state: State, logh: float) -> bool:
        """Feed an alarm's evaluation to the held-shift test; True when a WATCH has held one
        level for ``absorb_after`` evaluations (the shift is then absorbed)."""
        held = self._held
        if state is State.HEALTHY:
            if held.count:
                held.reset()
            return False
        row = self._hrow
        row[0] = logh
        row[1:] = self._u.ravel()
        if not np.isfinite(row).all():  # h0 = 0: no level to compare
            return False
        held.push(row, step)
        if state is not State.WATCH or not held.held():
            return False
        return self._held_within_bound()

    def _held_within_bound(self) -> bool:
        """The held level is within x30 of the baselines (``transform="log"``): a shift of
        orders of magnitude is a failure, not a new level, and is not absorbed."""
        if self.transform != "log" or self._bn == 0:
            return True
        base = self._hrow
        base[0] = self._obj_h0_base.mean
        base[1:] = self._layer_means().ravel()
        return bool(np.abs(self._held.level() - base).max() <= _ABSORB_MAX)

    def _absorbed(
        self, step: int, h0: float, z: float, lzt: float, held: int | None = None
    ) -> LayerStatus:
        """Absorb the held shift (held for ``held`` evaluations, this one included; default:
        the held-shift test's): the baselines (and the early detector) restart from the next
        evaluation, as after :meth:`acknowledge`; this evaluation is HEALTHY and says so (in
        evaluations, not steps: a TrainingMonitor's steps are not the monitor's)."""
        if held is None:
            held = (step - self._held.start) // self.check_every + 1
        self._forget()
        reason = (
            f"shift absorbed (held {evaluations(held)}); ok, "
            f"calibrating (0/{self.baseline} baseline values"
            + (", change detector on)" if self._early else ")")
        )
        peak = self._obj_peak
        status = _new_status(
            step, State.HEALTHY, reason, True, True, h0, z, peak.ratio, peak.peak, "", (), (),
            lzt, math.nan, (),
        )  # fmt: skip
        self._obj_summary.record(status)
        return status

    def _evaluate_early(
        self,
        step: int,
        nonfinite: tuple[int, ...],
        h0: float,
        excluded: bool,
        absent: tuple[int, ...],
    ) -> LayerStatus:
        """``rule="streak"`` while its ``log h0`` baseline fills, with ``early_rule="cusum"``:
        the change detector decides (the streak rule has no z yet). A value enters the streak
        baselines only while the detector is HEALTHY, so a failure in the first evaluations
        does not become the baseline it is later judged against; once the baseline holds
        ``baseline`` values the streak rule takes over."""
        state, capped, direction, culprits, reason, stat = self._detector_step(
            step, nonfinite, h0, excluded, cap=True
        )
        healthy = state is State.HEALTHY
        count = self._obj_h0_base.count
        if not excluded:
            if healthy:  # the streak's count, and an absorbed shift if the detector says so
                _, absorbed, note = reason.partition("; ")
                reason = f"ok, calibrating ({count}/{self.baseline} baseline values, change "
                reason += "detector on)" + (f"; {note}" if absorbed else "")
            elif capped and state is State.WATCH:
                reason += f"; WATCH while calibrating ({count}/{self.baseline} baseline values)"
        if absent:
            held = nonfinite or not healthy
            reason = self._absent_reason(absent) + (f"; {reason}" if held else "")
        if healthy and not excluded:
            self._accept(math.log(h0) if h0 > 0.0 else -math.inf, True)
        self._obj_patience.update(state)
        peak = self._obj_peak
        status = _new_status(
            step, state, reason, True, True, h0, math.nan, peak.ratio, peak.peak,
            direction, culprits, nonfinite, math.nan, stat,
            tuple(self.layer_names[i] for i in absent) if absent else (),
        )  # fmt: skip
        self._obj_summary.record(status)
        return status

    def _detector_step(
        self,
        step: int,
        nonfinite: tuple[int, ...],
        h0: float,
        excluded: bool,
        *,
        cap: bool,
        peak: bool = True,
        scored: State | None = None,
    ) -> tuple[State, bool, str, tuple[str, ...], str, float]:
        """The change detector's verdict on this evaluation (it holds on an ``excluded`` one):
        ``(state, capped, direction, culprits, reason, statistic)``; with ``cap`` a COLLAPSE
        of finite evidence is WATCH (``capped``); ``peak``: also feed the peak tracker (the
        streak rule's own evaluation does that after its warm-up); ``scored``: the
        detector has already scored this evaluation (:meth:`CusumRule.score`'s state)."""
        rule = self._detector
        if peak:
            self._obj_peak.update(math.nan if excluded else h0)  # peak_h0 of the summary
        if scored is not None:
            state = scored
        else:
            state = rule.state if excluded else rule.update(step, h0, self._u)
        capped = cap and state is State.COLLAPSE and rule.detector.stat != math.inf
        if capped:  # calibrating: the early rule warns; only a non-finite value collapses
            state = State.WATCH
        if nonfinite and self.nonfinite == "collapse":
            state = State.COLLAPSE
        if excluded:
            reason = self._reason(state, math.nan, math.nan, -1, nonfinite, excluded)
            return state, capped, "", (), reason, math.nan
        direction, culprits, reason, stat = rule.describe(
            state, self.layer_names, self.signals, self.max_culprits, self.escalate_after,
            self.transform == "log",
        )  # fmt: skip
        return state, capped, direction, culprits, reason, stat

    def _evaluate_cusum(
        self, step: int, nonfinite: tuple[int, ...], h0: float, excluded: bool
    ) -> LayerStatus:
        """``rule="cusum"``: feed ``log h0`` and the per-layer median-relative values (left in
        ``self._u`` by the kernel) to the change detector. Steps with a layer left out of H0
        are not comparable: the detector holds (its alarm, if any, persists)."""
        excluded = excluded or bool(nonfinite)
        state, _, direction, culprits, reason, stat = self._detector_step(
            step, nonfinite, h0, excluded, cap=False
        )
        calibrating = self._detector.detector.calibrating
        self._obj_patience.update(state)
        status = _new_status(
            step, state, reason, True, calibrating, h0, math.nan, self._obj_peak.ratio,
            self._obj_peak.peak, direction, culprits, nonfinite, math.nan, stat, (),
        )  # fmt: skip
        self._obj_summary.record(status)
        return status

    def _culprits(self, diverging: bool = False) -> tuple[str, ...]:
        """The layers behind the state: those over the layer rule's threshold now (largest
        |z| first); with none over and the layers ``diverging`` (log h0 rising), the layers
        most isolated in the window (a spike that left this step's values but not the
        window); else the largest |z|."""
        a = np.abs(self._lz)
        a[np.isnan(a)] = -1.0
        order = np.argsort(-a, kind="stable")[: self.max_culprits]
        over = [i for i in order if a[i] > self.layer_z_]
        if not over and diverging:
            return self._isolated()
        chosen = over if over else [i for i in order if a[i] >= 0.0]
        return tuple(self.layer_names[i] for i in chosen)

    def _isolated(self) -> tuple[str, ...]:
        """Layers by their distance to their nearest neighbour in the window, largest first
        (the MST edges that make h0 large); layers left out of H0 are not named."""
        d = self._D + np.diag(np.full(self.n_layers, np.inf))
        nearest = d.min(axis=1)
        nearest[self._nbad > 0] = -1.0
        order = np.argsort(-nearest, kind="stable")[: self.max_culprits]
        return tuple(self.layer_names[i] for i in order if nearest[i] >= 0.0)

    def _reason(self, state, z, lzt, top, nonfinite, excluded) -> str:
        if nonfinite:
            return self._nonfinite_reason(nonfinite)
        if excluded:
            names = ", ".join(self.layer_names[i] for i in np.flatnonzero(self._nbad))
            return f"layers [{names}] left out of H0 (non-finite or absent value in window)"
        if state is State.HEALTHY:
            if self.rule == "streak" and not self._obj_h0_base.ready:
                return f"warmup ({self._obj_h0_base.count}/{self.baseline} baseline values)"
            if self.rule == "peak" and self._obj_peak.warming_up:
                return f"warmup ({self._obj_peak.n}/{self.warmup} steps)"
            return "ok"
        parts = []
        fired = self._obj_alarm.raised_by if self._obj_alarm.active else ()
        if "topology" in fired:
            how = "layers diverging" if z > 0 else "layers converging"
            parts.append(f"topology: log h0 z={z:+.2f} ({how})")
        if self.rule == "peak" and self._obj_peak.ratio < self.watch_ratio:
            thr = (
                self.collapse_ratio
                if self._obj_peak.ratio < self.collapse_ratio
                else self.watch_ratio
            )
            parts.append(f"topology: h0 at {self._obj_peak.ratio:.2f} of peak (< {thr})")
        if "layer" in fired and top >= 0:
            parts.append(f"layer: {self.layer_names[top]} z={lzt:+.2f}")
        label = "+".join(dict.fromkeys(p.split(":")[0] for p in parts)) or "alarm"
        text = "; ".join(p.split(": ", 1)[1] for p in parts) or "alarm held (no rule over now)"
        if state is State.COLLAPSE and self._obj_alarm.over_steps > self._obj_alarm.escalate_after:
            text += f"; WATCH lasted > {self._obj_alarm.escalate_after} steps"
        return f"{label}: {text}"

    def _flush_pending(self) -> None:
        """Do the baseline push the next check would do (same arguments, same result)."""
        self._settle_rules()
        if self._pending[0] >= 0:
            baseline_push(
                self._u, self._B, self._ref, self._s1, self._s2, *self._pending, self._chunk
            )
            self._pending = _NO_PUSH

    # -- batch / replay --------------------------------------------------------------------
    def run(self, values: Any, *, missing: Any = None, progress: bool = False) -> Any:
        """Check every row of a recorded stream and return the statuses as a polars DataFrame.

        ``values`` is a (T, n_signals, n_layers) array (or (T, n_layers) for one signal, or a dict
        ``{signal: (T, n_layers)}``). The result is bit-identical to :meth:`check` called row by
        row from the same state (a fresh monitor, or one restored with
        :meth:`load_state_dict`), and so is the monitor's state afterwards. Without a writer
        the rows run through one compiled loop (``streamtopo._kernels.replay``) that calls the
        live per-step kernel; a row that raises an alarm, names culprits or holds a non-finite
        value goes through :meth:`check`'s own code. ``missing``: a bool array of the same
        shape, the ``missing`` argument of each :meth:`check` (rows run one by one then).
        ``progress``: show a progress bar (tqdm) on stderr.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> x = np.exp(rng.normal(size=(1, 6)) + 0.05 * rng.normal(size=(300, 6)))
        >>> x[250:, 2] *= 100.0
        >>> df = LayerMonitor(6).run(x)
        >>> df.height, df["state"][249], df["state"][299], df["culprits"][299].to_list()
        (300, 'HEALTHY', 'COLLAPSE', ['2'])
        """
        arr = as_stream(values, self.signals, self.n_layers)
        if not isinstance(progress, bool):
            raise InputTypeError(f"progress must be a bool, got {describe(progress)}")
        m = None
        if missing is not None:
            m = np.asarray(missing)
            if m.dtype != np.bool_ or m.size != arr.size:
                raise InputError(
                    f"missing must be a bool array with one flag per value {arr.shape}, "
                    f"got {describe(missing)}"
                )
            m = m.reshape(arr.shape)
        from ._fused import run_rows

        return run_rows(self, arr, m, progress)

    # -- summary and persistence -----------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Run summary: ph-training's keys (``h0_trend``, ``collapse_events``,
        ``final_status``) plus steps, peak_h0, last_h0, watch_steps, collapse_steps,
        first_collapse_step, nonfinite_steps, should_stop."""
        s = self._summary
        last = self._last
        return {
            "h0_trend": s.trend(),
            "collapse_events": s.collapse_events,
            "final_status": str(last.state) if last else str(State.HEALTHY),
            "steps": self._step,
            "peak_h0": self._peak.peak,
            "last_h0": last.h0 if last else math.nan,
            "watch_steps": s.watch_steps,
            "collapse_steps": s.collapse_steps,
            "first_collapse_step": s.first_collapse_step,
            "nonfinite_steps": s.nonfinite_steps,
            "should_stop": self.should_stop,
        }

    def _before_state_dict(self) -> None:
        self._flush_pending()  # the saved baseline already holds the last accepted value
