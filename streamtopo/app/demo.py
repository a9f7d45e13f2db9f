"""``streamtopo demo``: train a small MLP on the bundled digits, break it, watch the monitors.

A healthy phase, then at 60% of the steps an injected failure:

``lr-spike``
    the learning rate jumps ×40 for ``steps // 12`` steps (50 of 600), then returns (training
    diverges unless something rolls it back);
``dead-relu``
    one hidden layer's bias is pushed to −20, so its ReLUs die and the layers after it starve;
``label-noise``
    half of the training labels are replaced by random ones from then on;
``none``
    nothing happens (a healthy run: the monitors should stay quiet).

A :class:`~streamtopo.integrations.training.TrainingMonitor` watches activation and gradient
norms of every layer (LayerMonitor) and the loss (loss-rise alarm), plus the CentroidMonitor and
CollapseMonitor on the penultimate features. Before training it runs the numba warmers
(:mod:`.warmup`) its monitors need. It writes a run directory,
replays it, and writes ``report.html`` (or ``summary.md``). Everything is seeded.

With ``guard=True`` (``streamtopo demo --guard``) a :class:`~streamtopo.Guard` with its
defaults watches the statuses: it snapshots the training state while HEALTHY and, on an alarm,
rolls the model and optimizer back and cuts the learning rate. Two shadow copies of the model
train on the same batches without any monitor — one with the same fault, one without — so the
summary can say, with their final test loss and accuracy, whether the guard saved the run.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FAULTS", "TORCH_MISSING", "run_demo"]

FAULTS = ("lr-spike", "dead-relu", "label-noise", "none")
TORCH_MISSING = (
    "streamtopo demo needs PyTorch, which is not installed. Install it with\n"
    "    pip install torch==2.13.0\n"
    "or together with streamtopo's torch extra:\n"
    '    pip install "streamtopo[torch]"'
)
_WIDTH = 64
_DEPTH = 8  # Linear layers: 7 hidden + the head


#: Kernel modules whose warmers (:mod:`.warmup`) the demo runs before training: the layer
#: monitor, H0 of class centroids and of the collapse subsample, single linkage.
DEMO_WARMERS = ("layer", "mst", "unionfind", "centroid")


def warm_numba_cache() -> float:
    """Compile (first run) or load (later runs) the numba kernels the monitors use; seconds."""
    from .warmup import warm

    return sum(seconds for _, seconds in warm(DEMO_WARMERS))


def _build_model(torch: Any) -> Any:
    nn = torch.nn
    layers: list[Any] = [nn.Linear(64, _WIDTH), nn.ReLU()]
    for _ in range(_DEPTH - 2):
        layers += [nn.Linear(_WIDTH, _WIDTH), nn.ReLU()]
    layers.append(nn.Linear(_WIDTH, 10))
    model = nn.Sequential(*layers)
    # He initialisation keeps the signal alive through 8 ReLU layers (torch's default init
    # shrinks it layer after layer and the first ~200 steps would be spent at chance)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def _monitors() -> tuple[Any, Any]:
    from ..monitors.centroid import CentroidMonitor
    from ..monitors.collapse import CollapseMonitor

    return CentroidMonitor(n_classes=10, patience=5), CollapseMonitor(check_every=10)


def _bar(done: int, total: int, width: int = 20) -> str:
    k = round(width * done / max(total, 1))
    return "[" + "#" * k + "." * (width - k) + "]"


def _fmt_layer(st: Any) -> str:
    if st is None:
        return "layer -"
    z = "" if st.z is None or not math.isfinite(st.z) else f" z {st.z:+.1f}"
    culprit = f" culprit {st.culprits[0]}" if st.state != "HEALTHY" and st.culprits else ""
    return f"layer {st.state.value:<8} h0 {st.h0:.3f}{z}{culprit}"


def _fmt_centroid(st: Any) -> str:
    if st is None:
        return ""
    gap = getattr(st, "h0_gap", float("nan"))
    alert = " ALERT" if getattr(st, "alert", False) else ""
    return f" | gap {gap:+.3f}{alert}"


def _fmt_collapse(st: Any) -> str:
    if st is None:
        return ""
    ci = getattr(st, "ci", None)
    state = getattr(st, "state", None)
    text = f" | CI {ci:.2f}" if isinstance(ci, float) and math.isfinite(ci) else " | CI -"
    return text + (f" {state}" if state is not None and str(state) != "HEALTHY" else "")


def run_demo(
    fault: str = "lr-spike",
    steps: int = 600,
    out: str | Path = "streamtopo-demo",
    *,
    seed: int = 0,
    print_every: int | None = None,
    stream: Any = None,
    guard: bool = False,
) -> dict[str, Any]:
    """Run the demo; return a dict with the run directory, files written and first alarms.

    Raises ``ImportError`` (with :data:`TORCH_MISSING` as message) when torch is missing.
    """
    if fault not in FAULTS:
        from ..errors import InputError

        hint = " (attn-growth needs model='transformer', --model transformer)"
        raise InputError(
            f"fault must be one of {FAULTS} with the MLP demo, got {fault!r}"
            + (hint if fault == "attn-growth" else "")
        )
    stream = sys.stdout if stream is None else stream

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    try:
        import torch
    except ImportError as exc:
        raise ImportError(TORCH_MISSING) from exc

    t_start = time.perf_counter()
    warm = warm_numba_cache()
    say(f"numba kernels ready in {warm:.1f} s (compiled once, then loaded from numba's cache)")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 64-wide layers: thread hand-offs cost more than they save
    try:
        return _train(torch, fault, steps, out, seed, print_every, say, t_start, guard)
    finally:
        torch.set_num_threads(threads)


def _train(
    torch: Any,
    fault: str,
    steps: int,
    out: Path,
    seed: int,
    print_every: int | None,
    say: Any,
    t_start: float,
    guarded: bool = False,
) -> dict[str, Any]:
    from ..data import load_digits
    from ..integrations.training import TrainingMonitor

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    X, y = load_digits()
    order = rng.permutation(len(y))
    X = (X - X.mean(0)) / (X.std(0) + 1e-3)
    n_train = 1500
    tr, te = order[:n_train], order[n_train:]
    Xtr, ytr = torch.from_numpy(X[tr]), torch.from_numpy(y[tr])
    Xte, yte = torch.from_numpy(X[te]), torch.from_numpy(y[te])
    ytr_live = ytr.clone()

    model = _build_model(torch)
    lr = 0.01
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    # with a guard: the same model trained on the same batches without monitors, with the
    # fault ("unguarded") and without ("healthy"), to measure what the guard saved
    shadows = _Shadows(torch, model, lr, fault) if guarded else None
    guard = None
    if guarded:
        from ..guard import Guard

        guard = Guard()
    centroid, collapse = _monitors()
    run_id = f"demo-{fault}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    fault_at = int(steps * 0.6)
    spike_len = max(10, steps // 12)
    warmup = fault_at // 2  # centroid/collapse baselines start once the digits are learnt
    tm = TrainingMonitor(
        model,
        log_dir=out,
        run_id=run_id,
        centroid=centroid,
        collapse=collapse,
        feature_warmup=warmup,
        # the centroid monitor's test-loss patience is early stopping, not a failure alarm:
        # the demo shows it and the collapse index, and stops on the layer and loss alarms
        # (with a guard: the guard acts on those, and the run stops only when it gives up)
        stop_on=() if guarded else ("layer", "loss"),
        guard_on=("layer", "loss"),
        optimizer=opt,
        guard=guard,
    )
    print_every = print_every or max(10, steps // 20)
    eval_every = max(10, steps // 30)
    batch = 64
    say(
        f"training an {_DEPTH}-layer MLP on {n_train} digits ({len(te)} held out) for {steps} "
        f"steps; fault '{fault}' at step {fault_at}"
    )
    first: dict[str, int] = {}  # first alarm to start at or after the fault step, per monitor
    before: dict[str, int] = {}  # first alarm of each monitor before it (on a healthy model)
    before_rule: dict[str, str] = {}  # ... and the rule that raised it
    firing: set[str] = set()  # monitors in alarm at the previous step
    live_layer: list[Any] = []
    acc = float("nan")
    status = None
    try:
        for step in range(steps):
            if step == fault_at:
                _inject(fault, torch, model, opt, ytr_live, rng, lr)
                if shadows is not None:
                    shadows.inject(fault, lr)
                if fault != "none":
                    say(f"  >>> step {step}: injected fault '{fault}'")
            if fault == "lr-spike" and step == fault_at + spike_len:
                for g in opt.param_groups:
                    g["lr"] = lr  # the spike ends (a rollback restores lr before it anyway)
                if shadows is not None:
                    shadows.end_spike(lr)
            if fault == "lr-spike" and fault_at <= step < fault_at + spike_len:
                for g in opt.param_groups:  # the spike is a property of the step: a rollback
                    g["lr"] = lr * 40  # does not end it
            idx = torch.from_numpy(rng.integers(0, n_train, batch))
            xb, yb = Xtr[idx], ytr_live[idx]
            if shadows is not None:
                shadows.step(xb, yb, ytr[idx])
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            status = tm.step(loss, labels=yb)
            if status.intervention is not None:
                say(f"  >>> guard: {status.intervention.message}")
            live_layer.append(status.layer)
            for name in set(status.fired) - firing:  # an alarm that starts at this step
                (first if step >= fault_at else before).setdefault(name, step)
                if step < fault_at:
                    before_rule.setdefault(name, _rule_of(name, getattr(status, name, None)))
            firing = set(status.fired)
            if step % eval_every == eval_every - 1 or step == steps - 1:
                acc = _evaluate(torch, model, tm, Xte, yte, centroid if step >= warmup else None)
            if step % print_every == print_every - 1 or step == steps - 1:
                loss_state = "ALARM" if status.loss is not None and status.loss.alarm else "ok"
                say(
                    f"{_bar(step + 1, steps)} {step + 1:>5}/{steps} loss {loss.item():7.3f} "
                    f"acc {acc:5.1%} | {_fmt_layer(status.layer)} | loss-rise {loss_state}"
                    f"{_fmt_centroid(status.centroid)}{_fmt_collapse(status.collapse)}"
                )
            if tm.should_stop:
                say(f"  >>> step {step}: should_stop is True ({status.reason}); stopping")
                break
    finally:
        tm.close()
    train_s = time.perf_counter() - t_start
    run_dir = tm.run_dir_
    result: dict[str, Any] = {
        "fault": fault,
        "fault_at": fault_at,
        "steps_run": len(live_layer),
        "first_alarm": first,
        "alarms_before_fault": before,
        "alarm_rules_before_fault": before_rule,
        "run_dir": run_dir,
        "final_state": None if status is None else status.state.value,
        "test_acc": acc,
        "summary": tm.summary(),
    }
    if shadows is not None:
        result["guard"] = shadows.verdict(_test_metrics(torch, model, Xte, yte), Xte, yte)
        result["guard"]["interventions"] = [i.message for i in tm.interventions_]
    result["replay_identical"] = _replay(run_dir, live_layer, say)
    result["files"] = _write_outputs(out, run_dir, result, say)
    say("")
    say(_verdict(fault, fault_at, first, before_rule))
    say(_alarm_text(fault, fault_at, first, before))
    if "guard" in result:
        say(_guard_text(result["guard"]))
    for line in _pre_fault_lines(before, before_rule):
        say(line)
    say(f"run directory : {run_dir}")
    for f in result["files"]:
        say(f"wrote         : {f}")
    say(f"total time    : {time.perf_counter() - t_start:.1f} s (training {train_s:.1f} s)")
    return result


def _inject(fault: str, torch: Any, model: Any, opt: Any, labels: Any, rng: Any, lr: float):
    if fault == "lr-spike":
        for g in opt.param_groups:
            g["lr"] = lr * 40
    elif fault == "dead-relu":
        with torch.no_grad():
            model[6].bias.fill_(-20.0)  # the 4th hidden Linear: its ReLU outputs die
    elif fault == "label-noise":
        n = len(labels)
        flip = rng.random(n) < 0.5
        labels[torch.from_numpy(flip)] = torch.from_numpy(rng.integers(0, 10, int(flip.sum())))


def _test_metrics(torch: Any, model: Any, Xte: Any, yte: Any) -> tuple[float, float]:
    """(test loss, test accuracy) of ``model``, in eval mode, without touching any monitor."""
    model.eval()
    with torch.no_grad():
        logits = model(Xte)
        test_loss = float(torch.nn.functional.cross_entropy(logits, yte))
        acc = float((logits.argmax(1) == yte).float().mean())
    model.train()
    return test_loss, acc


class _Shadows:
    """Two unmonitored copies of the model on the same batches: with the fault and without."""

    def __init__(self, torch: Any, model: Any, lr: float, fault: str) -> None:
        import copy

        self.torch = torch
        self.models = {"unguarded": copy.deepcopy(model), "healthy": copy.deepcopy(model)}
        self.opts = {
            k: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9) for k, m in self.models.items()
        }
        self.labels: Any = None  # label-noise: the unguarded copy sees the noisy labels
        self.fault = fault

    def inject(self, fault: str, lr: float) -> None:
        m, opt = self.models["unguarded"], self.opts["unguarded"]
        if fault == "lr-spike":
            for g in opt.param_groups:
                g["lr"] = lr * 40
        elif fault == "dead-relu":
            with self.torch.no_grad():
                m[6].bias.fill_(-20.0)

    def end_spike(self, lr: float) -> None:
        for g in self.opts["unguarded"].param_groups:
            g["lr"] = lr

    def step(self, xb: Any, y_live: Any, y_clean: Any) -> None:
        F = self.torch.nn.functional
        for name, m in self.models.items():
            opt = self.opts[name]
            loss = F.cross_entropy(m(xb), y_live if name == "unguarded" else y_clean)
            opt.zero_grad()
            loss.backward()
            opt.step()

    def verdict(self, guarded: tuple[float, float], Xte: Any, yte: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"guarded": guarded}
        for name, m in self.models.items():
            out[name] = _test_metrics(self.torch, m, Xte, yte)
        (g_loss, g_acc), (h_loss, h_acc) = guarded, out["healthy"]
        u_loss = out["unguarded"][0]
        # saved: test accuracy within 2 points of the healthy copy's, and the unguarded copy
        # clearly worse (otherwise there was nothing to save)
        out["saved"] = bool(
            math.isfinite(g_loss) and g_acc >= h_acc - 0.02 and not (u_loss <= 1.5 * h_loss)
        )
        return out


def _guard_text(g: dict[str, Any]) -> str:
    (gl, ga), (ul, ua), (hl, ha) = g["guarded"], g["unguarded"], g["healthy"]
    n = len(g["interventions"])
    head = (
        "the guard SAVED the run"
        if g["saved"]
        else "the guard did not save the run"
        if n
        else "the guard did not intervene"
    )
    return (
        f"guard: {head} ({n} intervention(s)); final test loss / accuracy: guarded "
        f"{gl:.3f} / {ga:.1%}, same fault without the guard {ul:.3f} / {ua:.1%}, no fault "
        f"{hl:.3f} / {ha:.1%}"
    )


def _evaluate(torch: Any, model: Any, tm: Any, Xte: Any, yte: Any, centroid: Any) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(Xte)
        test_loss = float(torch.nn.functional.cross_entropy(logits, yte))
        acc = float((logits.argmax(1) == yte).float().mean())
    model.train()
    if centroid is not None:
        tm.observe(yte, split="test")
        tm.check_centroid(test_loss=test_loss)
    return acc


#: monitors whose alarm is a statement about the network's topology (a false alarm if raised
#: on a healthy model); the loss rule and test-loss patience are not
_TOPOLOGY = ("layer", "attention", "collapse", "centroid")
_PATIENCE = "test-loss patience (early stopping, not a topology alarm)"


def _rule_of(name: str, status: Any) -> str:
    """The rule behind a monitor's alarm, in words."""
    if status is None:
        return "?"
    if name == "centroid" and not getattr(status, "alert", False):  # the gap rule is quiet
        return _PATIENCE
    reason = str(getattr(status, "reason", "") or "")
    return reason.split(":", 1)[0].strip() or reason or "?"


def _false_alarms(rules: dict[str, str]) -> list[str]:
    """Monitors whose alarm before the fault was the topology's (not the loss, not patience)."""
    return sorted(n for n, r in rules.items() if n in _TOPOLOGY and r != _PATIENCE)


def _verdict(fault: str, fault_at: int, first: dict[str, int], rules: dict[str, str]) -> str:
    """One plain line: was the run healthy, and was the fault seen."""
    wolves = _false_alarms(rules)
    cried = f"topology false alarms before step {fault_at}: {', '.join(wolves)}"
    if fault == "none":
        if wolves:
            return f"verdict       : NOT clean: no fault injected, but {cried}"
        return "verdict       : healthy: no fault injected and no topology alarm"
    seen = f"fault seen at step {min(first.values())}" if first else "fault NOT detected"
    healthy = f"NOT clean before the fault ({cried})" if wolves else "healthy before the fault"
    return f"verdict       : {healthy}; {seen}"


def _pre_fault_lines(before: dict[str, int], rules: dict[str, str]) -> list[str]:
    """One line per monitor that alarmed before the fault: its step and rule."""
    return [
        f"  before the fault: {name} at step {step} by rule '{rules.get(name, '?')}'"
        + (
            ""
            if name in _false_alarms(rules) or rules.get(name) == _PATIENCE
            else " (not a topology false alarm)"
        )
        for name, step in sorted(before.items())
    ]


def _first_text(first: dict[str, int], fault_at: int) -> str:
    if not first:
        return "none"
    return ", ".join(
        f"{k} at step {v} ({v - fault_at} steps after)" for k, v in sorted(first.items())
    )


def _alarm_text(fault: str, fault_at: int, first: dict[str, int], before: dict[str, int]) -> str:
    """Alarms after the injection, and (separately, never as a lead) alarms before it."""
    pre = ", ".join(f"{k} at step {v}" for k, v in sorted(before.items())) or "none"
    note = (
        "alarms before the fault step: "
        f"{pre} (on a still-healthy model: false alarms, or test-loss patience when the model "
        "starts to overfit)"
    )
    if fault == "none":
        return f"no fault injected; {note}"
    return (
        f"fault '{fault}' injected at step {fault_at}; first alarms after it: "
        f"{_first_text(first, fault_at)}; {note}"
    )


def _replay(run_dir: Any, live: list[Any], say: Any) -> bool | None:
    """Replay the run and compare with the live statuses (a guard's rollbacks are in the run's
    ``interventions`` table, and replay restores the monitors' state where the live run did)."""
    if run_dir is None:
        return None
    from ..io.replay import replay

    rep = replay(run_dir)
    live_h0 = np.array([s.h0 for s in live if s is not None], dtype=np.float64)
    live_state = [s.state.value for s in live if s is not None]
    same = rep.height == len(live_h0) and bool(
        np.array_equal(rep["h0"].to_numpy(), live_h0, equal_nan=True)
        and rep["state"].to_list() == live_state
    )
    say(f"replayed {rep.height} steps from the run directory: identical to live = {same}")
    return same


def _write_outputs(out: Path, run_dir: Any, result: dict[str, Any], say: Any) -> list[Path]:
    files: list[Path] = []
    if run_dir is not None:
        from ..report import build_report

        markers = (
            {} if result["fault"] == "none" else {f"fault {result['fault']}": result["fault_at"]}
        )
        paths = build_report(run_dir, out / "report.html", markers=markers)
        files += [paths.html, paths.markdown]
    md = out / "summary.md"
    md.write_text(_markdown(result), encoding="utf-8")
    files.append(md)
    return files


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# streamtopo demo: fault `{result['fault']}`",
        "",
        "- **"
        + _verdict(
            result["fault"],
            result["fault_at"],
            result["first_alarm"],
            result["alarm_rules_before_fault"],
        )
        .split(":", 1)[1]
        .strip()
        + "**",
        (
            f"- no fault injected, {result['steps_run']} steps run"
            if result["fault"] == "none"
            else f"- fault injected at step {result['fault_at']}, {result['steps_run']} steps run"
        ),
        f"- final state: {result['final_state']}, final test accuracy {result['test_acc']:.1%}",
        "- "
        + _alarm_text(
            result["fault"],
            result["fault_at"],
            result["first_alarm"],
            result["alarms_before_fault"],
        ),
        *(
            "- " + line.strip()
            for line in _pre_fault_lines(
                result["alarms_before_fault"], result["alarm_rules_before_fault"]
            )
        ),
        f"- run directory: `{result['run_dir']}`",
        f"- replay identical to live: {result['replay_identical']}",
        *([f"- {_guard_text(result['guard'])}"] if "guard" in result else []),
        *[f"  - {m}" for m in result.get("guard", {}).get("interventions", [])],
        "",
        "## Monitor summaries",
        "",
    ]
    for name, summ in result["summary"].items():
        lines.append(f"### {name}")
        lines.append("")
        for k, v in summ.items():
            lines.append(f"- {k}: {v}")
        lines.append("")
    return "\n".join(lines)
