"""Command line: ``streamtopo <command>`` or ``python -m streamtopo <command>``.

Each command lives in a small function that imports what it needs when it runs, so
``streamtopo --help`` stays fast. Every ``--help`` shows the defaults and an example.

``--json`` (on ``h0``, ``collapse``, ``centroid``, ``replay``, ``report``, ``calibrate``) prints
one JSON object instead of the text, with a ``"schema"`` key ``"streamtopo.<command>/1"``; the
fields of version 1 stay as documented below (new fields may be added, none renamed or removed).
Non-finite numbers are ``null`` (strict JSON).

* ``h0``: ``source``, ``metric``, ``names``, ``bars`` (``birth``, ``death`` — ``null`` for the
  essential bar —, ``merge``: the two names joined, ``null`` for the essential bar), ``h0``.
* ``collapse``: ``source``, ``n_points``, ``dims``, ``variants`` (name → ``ci``, ``scores``),
  ``components`` (name → number), ``flags``.
* ``centroid``: ``n_train``, ``n_test``, ``h0_train``, ``h0_test``, ``h0_gap``, ``gap_noise``,
  ``h0_train_full``, ``difficulty``, ``merges`` (``a``, ``b``, ``distance`` in merge order).
* ``replay``: ``run``, ``steps``, ``overrides``, ``summary`` (one object per rank with the
  columns of :func:`streamtopo.io.replay.run_summary`), ``out``.
* ``report``: ``run``, ``html``, ``markdown``, ``figures``.
* ``calibrate``: ``rule``, ``knob``, ``target_fa``, ``confidence``, ``certified``, ``runs``,
  ``steps``, ``note``, ``rows`` (one per candidate knob: ``knob``, ``steps``, ``alarms``,
  ``fa_per_1k``, ``upper``, ``meets``, ``chosen``, ``faults``), ``config``, ``path``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .argtypes import at_least, number

__all__ = ["main"]

_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {}

_EXAMPLES = {
    "demo": "streamtopo demo --fault lr-spike --steps 600 --out ./streamtopo-demo",
    "h0": "streamtopo h0                       # the digit-class centroids\n"
    "  streamtopo h0 points.npy --metric euclidean --json",
    "collapse": "streamtopo collapse feats.npy --labels labels.csv --variant default",
    "centroid": "streamtopo centroid --train-fraction 0.7 --json",
    "warmup": "streamtopo warmup                   # once after install, and in CI",
    "recover": "streamtopo recover runs/run=my-run",
    "replay": "streamtopo replay runs/run=my-run --window 32 --out statuses.parquet\n"
    "  streamtopo replay runs/run=my-run --json | jq .summary",
    "report": "streamtopo report runs/run=my-run --out my-run.html",
    "calibrate": "streamtopo calibrate runs/ --target-fa 0.1 --out streamtopo.json\n"
    "  python train.py  # with TrainingMonitor(model, config='streamtopo.json')",
    "train": "streamtopo train --help            # seed 004's pipeline",
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every option's help; the example epilog kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:  # nothing to say
            return action.help
        return super()._get_help_string(action)


def _number(x: Any) -> Any:
    """A float for JSON: non-finite becomes None (strict JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    try:
        return _number(obj)
    except (TypeError, ValueError):
        return str(obj)


def _print_json(command: str, payload: dict[str, Any]) -> int:
    print(json.dumps({"schema": f"streamtopo.{command}/1", **_clean(payload)}, allow_nan=False))
    return 0


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (schema in `streamtopo` docs)"
    )


def command(name: str, help: str):
    """Register ``fn(args) -> int`` as a subcommand; ``fn.configure(parser)`` adds options."""

    def deco(fn):
        _COMMANDS[name] = (help, fn)
        return fn

    return deco


@command("h0", "print the H0 diagram of the bundled digits class centroids (or of a .npy/.csv)")
def _cmd_h0(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data import load_digits
    from ..topology import h0_diagram, merge_order

    if args.points is None:
        X, y = load_digits()
        points = np.stack([X[y == c].mean(axis=0) for c in range(10)])
        names = [str(c) for c in range(10)]
        title = f"H0 of the 10 digit-class centroids (64 pixels, metric={args.metric})"
    else:
        points = _load_points(args.points)
        names = [str(i) for i in range(points.shape[0])]
        title = (
            f"H0 of {points.shape[0]} points in {points.shape[1]} dims from {args.points} "
            f"(metric={args.metric})"
        )
    dgm = h0_diagram(points, metric=args.metric)
    edges = merge_order(points, metric=args.metric)
    if args.json:
        bars = [
            {
                "birth": float(dgm[k, 0]),
                "death": dgm[k, 1],
                "merge": [names[edges.i[k]], names[edges.j[k]]] if k < len(edges.i) else None,
            }
            for k in range(dgm.shape[0])
        ]
        source = args.points or "digits-centroids"
        payload = {"source": source, "metric": args.metric, "names": names, "bars": bars}
        return _print_json("h0", {**payload, "h0": float(edges.death.sum())})
    print(title)
    print(f"{'birth':>8} {'death':>12}   merges")
    for k in range(dgm.shape[0]):
        b, d = dgm[k]
        merge = f"[{names[edges.i[k]]}, {names[edges.j[k]]}]" if k < len(edges.i) else "(essential)"
        print(f"{b:8.4f} {d:12.6f}   {merge}")
    print(f"total persistence (h0) = {float(edges.death.sum()):.6f}")
    return 0


def _configure_h0(p: argparse.ArgumentParser) -> None:
    p.add_argument("points", nargs="?", help="a .npy (no pickle) or .csv file of shape (n, d)")
    p.add_argument(
        "--metric",
        default="cosine",
        choices=("euclidean", "cosine", "precomputed"),
        help="distance (cosine: as between class centroids)",
    )
    _add_json(p)


_cmd_h0.configure = _configure_h0


@command("collapse", "print the Collapse Index and its components (digits pixels, or a .npy/.csv)")
def _cmd_collapse(args: argparse.Namespace) -> int:
    import math

    import numpy as np

    from ..topology.collapse import VARIANTS, collapse_index

    if args.points is None:
        from ..data import load_digits

        X, y = load_digits()
        title = f"Collapse Index of the digits pixels ({X.shape[0]} x {X.shape[1]}, 10 classes)"
    else:
        X = _load_points(args.points)
        y = None if args.labels is None else _load_points(args.labels, ndim=1)
        title = f"Collapse Index of {X.shape[0]} points in {X.shape[1]} dims from {args.points}"
    variants = VARIANTS if args.variant == "all" else (args.variant,)
    comp: dict = {}
    results = {}
    for v in variants:
        ci, c = collapse_index(X, y, variant=v, max_points=args.max_points, seed=args.seed)
        results[v] = {"ci": ci, "scores": dict(c["scores"])}
        if v != "seed000":
            comp = c
    if args.json:
        numeric = {
            k: val
            for k, val in comp.items()
            if isinstance(val, (int, float, np.integer, np.floating)) and not isinstance(val, bool)
        }
        return _print_json(
            "collapse",
            {
                "source": args.points or "digits-pixels",
                "n_points": int(X.shape[0]),
                "dims": int(X.shape[1]),
                "variants": results,
                "components": numeric,
                "flags": list(comp.get("flags", [])),
            },
        )
    print(title)
    for v, r in results.items():
        scores = ", ".join(f"{k}={s:.3f}" for k, s in r["scores"].items())
        print(f"  {v:8s} CI = {r['ci']:.4f}   scores: {scores}")
    if comp:
        print("components:")
        for k, val in comp.items():
            if isinstance(val, (int, float, np.integer, np.floating)) and not isinstance(val, bool):
                fv = float(val)
                print(f"  {k:26s} {fv:.6g}" if not math.isnan(fv) else f"  {k:26s} absent")
        print(f"  {'flags':26s} {', '.join(comp['flags']) or '-'}")
    return 0


def _configure_collapse(p: argparse.ArgumentParser) -> None:
    p.add_argument("points", nargs="?", help="a .npy (no pickle) or .csv file of shape (n, d)")
    p.add_argument("--labels", help="a .npy or .csv file with one class label per row")
    p.add_argument(
        "--variant",
        default="all",
        choices=("all", "default", "seed000", "seed002"),
        help="which Collapse Index form(s) to compute",
    )
    p.add_argument("--max-points", type=at_least(3), default=500, help="H1 subsample size")
    p.add_argument("--seed", type=at_least(0), default=0, help="subsample seed")
    _add_json(p)


_cmd_collapse.configure = _configure_collapse


@command("demo", "train a small MLP on the bundled digits, inject a failure, watch the monitors")
def _cmd_demo(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from .demo import TORCH_MISSING, run_demo

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out} exists and is not a directory")
    try:
        import torch  # noqa: F401
    except ImportError:
        print(TORCH_MISSING, file=sys.stderr)
        return 3
    if args.model == "transformer":
        from .demo_transformer import run_transformer_demo

        fault = args.fault or "attn-growth"
        run_transformer_demo(fault, args.steps, args.out, seed=args.seed, guard=args.guard)
        return 0
    run_demo(args.fault or "lr-spike", args.steps, args.out, seed=args.seed, guard=args.guard)


def _configure_demo(p: argparse.ArgumentParser) -> None:
    from .demo import FAULTS

    p.add_argument(
        "--fault",
        choices=(*FAULTS, "attn-growth"),
        help="failure to inject (default: lr-spike; attn-growth with --model transformer)",
    )
    p.add_argument("--steps", type=at_least(50), default=600, help="training steps, >= 50")
    p.add_argument("--out", default="./streamtopo-demo", help="output directory")
    p.add_argument("--seed", type=at_least(0), default=0, help="random seed")
    p.add_argument(
        "--guard",
        action="store_true",
        help="attach a streamtopo.Guard (roll back and cut the LR on an alarm) and compare "
        "with unguarded and fault-free copies of the run",
    )
    p.add_argument(
        "--model",
        default="mlp",
        choices=("mlp", "transformer"),
        help="mlp: digits MLP; transformer: char-level transformer on the standard "
        "library's source, with attention signals (faults attn-growth, lr-spike or none)",
    )


_cmd_demo.configure = _configure_demo


@command("centroid", "class-centroid H0 gap, confusion pairs and dendrogram on the bundled digits")
def _cmd_centroid(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data import load_digits
    from ..errors import InputError
    from ..monitors.centroid import CentroidMonitor, difficulty

    X, y = load_digits()
    order = np.random.default_rng(args.seed).permutation(y.size)
    n_train = round(args.train_fraction * y.size)
    if not 10 <= n_train <= y.size - 10:
        raise InputError(
            f"--train-fraction {args.train_fraction} leaves {n_train} train and "
            f"{y.size - n_train} test rows of {y.size}; expected at least 10 in each split"
        )
    tr, te = order[:n_train], order[n_train:]
    mon = CentroidMonitor(10, seed=args.seed, warmup=0, baseline_checks=1)
    st = mon.check(X[tr], y[tr], X[te], y[te])
    if args.json:
        fields = ("h0_train", "h0_test", "h0_gap", "gap_noise", "h0_train_full")
        merges = [{"a": a, "b": b, "distance": d} for a, b, d in mon.confusion_pairs()]
        return _print_json(
            "centroid",
            {
                "n_train": int(tr.size),
                "n_test": int(te.size),
                **{f: getattr(st, f) for f in fields},
                "difficulty": difficulty(st.h0_train_full, 10),
                "merges": merges,
            },
        )
    print(f"digits, raw pixels: {tr.size} train rows, {te.size} test rows (size-matched gap)")
    print(
        f"h0_train={st.h0_train:.4f} h0_test={st.h0_test:.4f} h0_gap={st.h0_gap:+.4f} "
        f"noise={st.gap_noise:.4f} h0_train_full={st.h0_train_full:.4f} "
        f"({difficulty(st.h0_train_full, 10)} by seed 004's labels)"
    )
    print("merge order (all train rows):")
    print(mon.dendrogram_text())
    return 0


def _configure_centroid(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--train-fraction",
        type=number(0.0, 1.0, strict=True),
        default=0.7,
        help="train share of the rows",
    )
    p.add_argument("--seed", type=at_least(0), default=0, help="split and sampling seed")
    _add_json(p)


_cmd_centroid.configure = _configure_centroid


@command("warmup", "compile (or load from the numba cache) every kernel, so training never waits")
def _cmd_warmup(args: argparse.Namespace) -> int:
    import time

    t0 = time.perf_counter()
    from .warmup import warm_all

    for name, seconds in warm_all():
        print(f"{name:<12} {seconds * 1e3:9.1f} ms")
    print(f"{'total':<12} {(time.perf_counter() - t0) * 1e3:9.1f} ms")


@command("recover", "make a crashed run consistent: leftover journals become Parquet parts")
def _cmd_recover(args: argparse.Namespace) -> int:
    from ..io.recovery import recover

    report = recover(args.run, fsync=args.fsync)
    print(f"{args.run}: {report}")
    return 0


def _configure_recover(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory (<log_dir>/run=<id>)")
    p.add_argument("--fsync", action="store_true", help="fsync each recovered part")


_cmd_recover.configure = _configure_recover


@command("replay", "re-run the layer monitor over a recorded run and summarise its statuses")
def _cmd_replay(args: argparse.Namespace) -> int:
    import polars as pl

    from ..io.replay import replay, run_summary

    overrides = {
        k: getattr(args, k)
        for k in ("window", "transform", "rule", "check_every")
        if getattr(args, k) is not None
    }
    if args.out:
        _check_out(args.out, args.run)
    statuses = replay(
        args.run,
        table=args.table,
        rank=args.rank,
        include_journal=args.include_journal,
        progress=args.progress,
        **overrides,
    )
    summary = run_summary(statuses)
    if args.out:
        statuses.write_parquet(args.out, compression="zstd")
    if args.json:
        return _print_json(
            "replay",
            {
                "run": str(args.run),
                "steps": statuses.height,
                "overrides": overrides,
                "summary": summary.to_dicts(),
                "out": args.out,
            },
        )
    how = f"overrides {overrides}" if overrides else "the recorded configuration"
    print(f"{args.run}: replayed {statuses.height} step(s) with {how}")
    # one line per figure, one column per rank: readable at any terminal width
    table = summary.drop("rank").with_columns(pl.col("peak_h0", "last_h0").round_sig_figs(6))
    table = table.select(pl.all().cast(pl.String).fill_null("-")).transpose(
        include_header=True,
        header_name="replay",
        column_names=[f"rank={r}" for r in summary["rank"]],
    )
    with pl.Config(
        tbl_rows=50, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_MARKDOWN",
    ):  # fmt: skip
        print(table)
    if args.out:
        print(f"statuses written to {args.out}")
    return 0


def _configure_replay(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory (<log_dir>/run=<id>)")
    p.add_argument("--window", type=at_least(1), help="override the recorded window")
    p.add_argument("--transform", choices=("log", "none"), help="override the transform")
    p.add_argument(
        "--rule", choices=("streak", "zscore", "cusum", "peak"), help="override the alarm rule"
    )
    p.add_argument(
        "--check-every", type=at_least(1), dest="check_every", help="override check_every"
    )
    p.add_argument("--rank", type=at_least(0), help="replay one rank only")
    p.add_argument(
        "--table",
        default="layer",
        help="layer table to replay: layer, or layer.<name> for a monitor built with name=",
    )
    p.add_argument("--include-journal", action="store_true", help="also use unrolled journals")
    p.add_argument("--progress", action="store_true", help="progress on stderr")
    p.add_argument("--out", help="write the replayed statuses to this Parquet file")
    _add_json(p)


_cmd_replay.configure = _configure_replay


@command(
    "calibrate",
    "choose the layer monitor's alarm knobs from your own healthy runs for a target false-alarm "
    "rate, estimate its delay on injected faults, and write a config",
)
def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate

    cal = calibrate(
        args.runs,
        args.target_fa,
        rule=args.rule,
        confidence=args.confidence,
        out=args.out,
        workers=args.workers,
        horizon=args.horizon,
        seed=args.seed,
    )
    if args.json:
        return _print_json("calibrate", cal.to_dict())
    knob = ", ".join(f"{k}={v}" for k, v in cal.knob.items())
    print(
        f"{cal.runs} run(s), {cal.steps:,} healthy evaluations; target {cal.target_fa} false "
        f"alarms per 1k (upper {cal.confidence:.0%} bound)\n"
    )
    print(cal.table())
    print(
        f"\nchosen: rule={cal.rule!r}, {knob} ({'certified' if cal.certified else 'NOT certified'})"
    )
    if cal.note:
        print(f"note: {cal.note}")
    if cal.path:
        print(
            f"config written to {cal.path}: LayerMonitor(config=...) / TrainingMonitor(config=...)"
        )
    return 0


def _configure_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories of healthy runs (or log directories)")
    p.add_argument(
        "--target-fa", type=float, default=0.1, dest="target_fa",
        help="target false alarms per 1,000 evaluations",
    )  # fmt: skip
    p.add_argument(
        "--rule", choices=("cusum", "streak"),
        help="rule to tune (default: the one the runs recorded; the default monitor's is streak, "
        "tuned with its change detector's fa_per_1k)",
    )  # fmt: skip
    p.add_argument("--confidence", type=float, default=0.95, help="level of the upper bound")
    p.add_argument("--out", help="write the config (JSON) here")
    p.add_argument("--workers", type=int, help="parallel processes (default: usable cores)")
    p.add_argument("--horizon", type=int, default=300, help="steps scored after an injection")
    p.add_argument("--seed", type=int, default=0, help="picks the faulted layer of each run")
    _add_json(p)


_cmd_calibrate.configure = _configure_calibrate


@command("report", "write a self-contained HTML report (and a markdown summary) of a run")
def _cmd_report(args: argparse.Namespace) -> int:
    from ..report import build_report

    if args.out:
        _check_out(args.out, args.run, parents=True)
    paths = build_report(args.run, args.out, include_journal=not args.committed_only)
    if args.json:
        return _print_json(
            "report",
            {
                "run": str(args.run),
                "html": str(paths.html),
                "markdown": str(paths.markdown),
                "figures": paths.figures,
            },
        )
    print(f"report: {paths.html} ({paths.figures} figures)\nsummary: {paths.markdown}")
    return 0


def _configure_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory (<log_dir>/run=<id>)")
    p.add_argument(
        "--out",
        help="HTML file to write (default: <run>.report.html beside the run; never inside it)",
    )
    p.add_argument(
        "--committed-only", action="store_true", help="ignore rows still in live journals"
    )
    _add_json(p)


_cmd_report.configure = _configure_report


@command(
    "train",
    "seed 004's ph-train pipeline: difficulty, LR search, training with the gap alert, "
    "dendrogram (each seed claim measured as it runs)",
)
def _cmd_train(args: argparse.Namespace) -> int:
    from .train import cmd_train

    return cmd_train(args)


def _configure_train(p: argparse.ArgumentParser) -> None:
    from .train import configure

    configure(p)


_cmd_train.configure = _configure_train


def _check_out(out: str, run: str, *, parents: bool = False) -> None:
    """``--out``: a file path outside the run directory (whose files stay untouched), not a
    directory, in a directory that exists (``parents``: one that can be created)."""
    from pathlib import Path

    from ..errors import InputError

    path = Path(out)
    if path.is_dir():
        raise InputError(f"--out {out} is a directory; expected a file path")
    real, base = path.resolve(), Path(run).resolve()
    if real.is_relative_to(base):
        raise InputError(
            f"--out {out} is inside the run directory {run}; write outputs beside the run"
        )
    parent = path.parent
    while parents and not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {out}: directory {parent} does not exist")


def _load_points(path: str, *, ndim: int = 2):
    """A numeric .npy (no pickle) or comma-separated file; a clear error for anything else."""
    import warnings

    import numpy as np

    from ..errors import InputError

    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            with warnings.catch_warnings():  # an empty file: said below, not as a warning
                warnings.simplefilter("ignore", UserWarning)
                arr = np.loadtxt(path, delimiter=",", ndmin=2)
    except OSError:
        raise
    except ValueError as exc:  # text that is not numbers, object arrays, ...
        raise InputError(
            f"{path} must be a numeric .npy file (no pickled objects) or a comma-separated "
            f"file of numbers: {exc}"
        ) from None
    if ndim == 1 and arr.ndim == 2 and 1 in arr.shape:  # a one-column csv of labels
        arr = arr.ravel()
    real = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    if arr.ndim != ndim or not real or arr.size == 0:
        raise InputError(
            f"{path} must hold a non-empty {ndim}-D array of real numbers, got shape "
            f"{arr.shape} and dtype {arr.dtype}"
        )
    return arr


def build_parser() -> argparse.ArgumentParser:
    examples = "\n".join(f"  {_EXAMPLES[n]}" for n in ("demo", "replay", "report"))
    parser = argparse.ArgumentParser(
        prog="streamtopo",
        description="Topological health monitor for neural-network training.",
        epilog=f"examples:\n{examples}\n\n`streamtopo COMMAND --help`: a command's options.",
        formatter_class=_Formatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"streamtopo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # the demo is the main job: first in ``--help``, the rest in the order they are defined
    for name in sorted(_COMMANDS, key=lambda n: n != "demo"):
        help_text, fn = _COMMANDS[name]
        example = _EXAMPLES.get(name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}" if example else None,
            formatter_class=_Formatter,
        )
        configure = getattr(fn, "configure", None)
        if configure is not None:
            configure(p)
        p.set_defaults(_fn=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    fn = getattr(args, "_fn", None)
    if fn is None:
        parser.print_help()
        return 2
    try:
        code = int(fn(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # `streamtopo replay RUN | head -3`: the reader is gone; end quietly like `cat` does.
        # stdout goes to devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by the pipe
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from ..errors import StreamtopoError

        if isinstance(exc, (StreamtopoError, OSError)):
            print(f"streamtopo {args.command}: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
