"""Record digits runs once and keep the signals the change-point evaluation needs (npz, no pickle).

    python -m benchmarks.evaluation.cache calib     # seeds 0-19 healthy, 0-9 per fault (late+early)
    python -m benchmarks.evaluation.cache fresh     # seeds 1000+ (report set)
    python -m benchmarks.evaluation.cache fresh2 100  # healthy seeds 2000+ (a second report set)

Runs are written to ``.eval-cache/`` (which ignores itself), one file per (fault, early, seed,
steps); a file that exists is not recorded again, so the command can be interrupted and resumed.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onset import failure_onset
from .scenarios import make_config, run

CACHE = Path(__file__).resolve().parents[2] / ".eval-cache"
FAULTS = ("lr_spike", "dead_relu", "explode", "wd_ramp")


@dataclass
class Recorded:
    """The per-step signals of one recorded run (what the change-point replay needs)."""

    fault: str
    early: bool
    seed: int
    steps: int
    t0: int | None
    onset: int | None
    act_norm: np.ndarray  # (T, L)
    grad_norm: np.ndarray  # (T, L)
    loss: np.ndarray  # (T,)
    config: dict

    @property
    def scenario(self) -> str:
        return f"{self.fault}_early" if self.early else self.fault


def path_of(fault: str, seed: int, steps: int, early: bool) -> Path:
    tag = "early" if early else "late"
    return CACHE / f"{fault}_{tag}_s{seed}_T{steps}.npz"


def record(fault: str, seed: int, steps: int = 1500, early: bool = False) -> Path:
    p = path_of(fault, seed, steps, early)
    if p.exists():
        return p
    cfg = make_config(fault, seed, steps, early=early)
    rec = run(cfg)
    onset = failure_onset(rec)
    meta = {
        "fault": fault,
        "early": early,
        "seed": seed,
        "steps": steps,
        "t0": cfg.t0,
        "onset": onset,
        "config": {k: getattr(cfg, k) for k in ("lr", "batch", "width", "depth", "arch")}
        | {"fault_params": cfg.fault_params},
    }
    CACHE.mkdir(exist_ok=True)
    ignore = CACHE / ".gitignore"  # keep recorded runs out of git without touching the root one
    if not ignore.exists():
        ignore.write_text("*\n")
    tmp = p.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        act_norm=rec.act_norm,
        grad_norm=rec.grad_norm,
        loss=rec.loss,
        meta=np.array(json.dumps(meta)),
    )
    tmp.replace(p)
    return p


def load(p: Path) -> Recorded:
    with np.load(p, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return Recorded(
            fault=meta["fault"],
            early=meta["early"],
            seed=meta["seed"],
            steps=meta["steps"],
            t0=meta["t0"],
            onset=meta["onset"],
            act_norm=z["act_norm"],
            grad_norm=z["grad_norm"],
            loss=z["loss"],
            config=meta["config"],
        )


def plan(which: str, n_healthy: int = 130, n_fault: int = 10) -> list[tuple[str, int, bool]]:
    """(fault, seed, early) triples, interleaved so an interrupted recording is balanced: per
    fault seed its 8 runs (4 faults, late and early), then healthy runs in proportion."""
    if which == "calib":
        seeds_h, seeds_f = list(range(0, 20)), list(range(0, 10))
    elif which == "fresh2":  # healthy runs only: the false-alarm rate of a choice made on fresh
        seeds_h, seeds_f = list(range(2000, 2000 + n_healthy)), []
    else:
        seeds_h = list(range(1000, 1000 + n_healthy))
        seeds_f = list(range(1000, 1000 + n_fault))
    out: list[tuple[str, int, bool]] = []
    per = max(1, math.ceil(len(seeds_h) / max(len(seeds_f), 1)))
    for i, s in enumerate(seeds_f):
        out += [(f, s, e) for f in FAULTS for e in (False, True)]
        out += [("healthy", h, False) for h in seeds_h[i * per : (i + 1) * per]]
    out += [("healthy", h, False) for h in seeds_h[len(seeds_f) * per :]]
    return out


def load_set(which: str, steps: int = 1500) -> list[Recorded]:
    """Every cached run of a set (whatever has been recorded so far)."""
    lo, hi = {"calib": (0, 1000), "fresh": (1000, 2000), "fresh2": (2000, 3000)}[which]
    out = []
    for p in sorted(CACHE.glob("*_T*.npz")):
        seed = int(p.stem.split("_s")[-1].split("_T")[0])
        if lo <= seed < hi and p.stem.endswith(f"_T{steps}"):
            out.append(load(p))
    return out


def main(argv: list[str]) -> int:
    import torch

    torch.set_num_threads(1)
    which = argv[0]
    n_healthy = int(argv[1]) if len(argv) > 1 else 130
    t_start = time.perf_counter()
    for f, s, e in plan(which, n_healthy=n_healthy):
        p = record(f, s, early=e)
        print(f"[{time.perf_counter() - t_start:7.1f}s] {p.name}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
