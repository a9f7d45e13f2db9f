"""Training runs on the bundled digits with injected failures, recorded step by step.

Each run records, per training step t: per-layer RMS activation norms and gradient norms of
every hidden layer, the training loss, and every ``eval_every`` steps the test loss, test
accuracy and the penultimate features of a fixed probe set (for the centroid and collapse
monitors). Everything is float64 numpy so detectors can be replayed offline, deterministically.

Failures are injected at ``t0`` (40% of the run) and are defined here, before any detector is
looked at:

- ``lr_spike``: learning rate raised to ``spike_lr`` (0.03 or 0.1, i.e. x10–x300 of the base
  rate) for ``window`` steps, then back.
- ``dead_relu``: the bias of one hidden layer is shifted by -3 x (std of its pre-activation),
  which kills most of its ReLUs.
- ``explode``: one hidden layer's weights are multiplied by ``1 + rate`` every step from t0, with
  rate chosen so they grow x1000 by the end of the run (a gradual exploding-activation failure).
- ``wd_ramp``: after each optimiser step every hidden weight is shrunk by ``1 - rho(t)``, with rho
  ramping linearly from 0 at t0 to ``rho_max`` at the end (gradual representation collapse:
  features shrink toward zero and lose rank).
- ``label_noise``: a 200-sample training subset with ``noise`` of its labels shuffled, trained
  long enough to overfit (no t0; onset is defined from the test loss).
- ``healthy``: no failure; learning rate, batch size, width and depth vary with the seed.

Early-onset variants (``make_config(..., early=True)``): the same faults injected at a step drawn
uniformly from [30, 10% of the run] (a separate random stream, so the late scenarios are
unchanged); ``explode`` keeps its definition (x1000 by the end of the run, counted from t0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FAULTS = ("healthy", "lr_spike", "dead_relu", "explode", "wd_ramp", "label_noise")


@dataclass
class RunConfig:
    fault: str
    seed: int
    steps: int = 1500
    depth: int = 6
    width: int = 64
    lr: float = 1e-3
    batch: int = 64
    eval_every: int = 25
    arch: str = "mlp"
    fault_params: dict = field(default_factory=dict)
    t0_step: int | None = None  # early-onset injection step (None: 40% of the run)

    @property
    def t0(self) -> int | None:
        if self.fault in ("healthy", "label_noise"):
            return None
        return self.t0_step if self.t0_step is not None else int(0.4 * self.steps)


@dataclass
class RunRecord:
    config: RunConfig
    act_norm: np.ndarray  # (T, L)
    grad_norm: np.ndarray  # (T, L)
    loss: np.ndarray  # (T,)
    eval_steps: np.ndarray  # (E,)
    test_loss: np.ndarray  # (E,)
    test_acc: np.ndarray  # (E,)
    train_acc: np.ndarray  # (E,)
    features_test: list  # E arrays (n_probe, width)
    features_train: list  # E arrays (n_probe, width)
    labels_test: np.ndarray
    labels_train: np.ndarray


def make_config(fault: str, seed: int, steps: int, early: bool = False) -> RunConfig:
    """The scenario grid: every seed picks its hyper-parameters deterministically.

    ``early=True`` injects the fault at a step in [30, 10% of ``steps``] instead of at 40%.
    """
    rng = np.random.default_rng(10_000 + seed)
    cfg = RunConfig(fault=fault, seed=seed, steps=steps)
    if early and fault not in ("healthy", "label_noise"):
        hi = max(30, int(0.1 * steps))
        cfg.t0_step = int(np.random.default_rng(20_000 + seed).integers(30, hi + 1))
    cfg.lr = float(rng.choice([3e-4, 1e-3, 3e-3]))
    cfg.batch = int(rng.choice([32, 64, 128]))
    cfg.width = int(rng.choice([32, 64, 128]))
    cfg.depth = int(rng.choice([4, 6, 8]))
    cfg.arch = "cnn" if seed % 3 == 2 else "mlp"  # a third of the runs are small CNNs
    if cfg.arch == "cnn":
        cfg.depth = 5  # 3 conv + 2 dense blocks
    if fault == "lr_spike":
        cfg.fault_params = {"spike_lr": float(rng.choice([0.03, 0.1])), "window": 50}
    elif fault == "dead_relu":
        cfg.fault_params = {"layer": int(rng.integers(1, cfg.depth - 1))}
    elif fault == "explode":
        t0 = cfg.t0
        rate = float(np.expm1(np.log(1000.0) / max(steps - t0, 1)))
        cfg.fault_params = {"layer": int(rng.integers(1, cfg.depth - 1)), "rate": rate}
    elif fault == "wd_ramp":
        cfg.fault_params = {"rho_max": 0.01}
    elif fault == "label_noise":
        cfg.fault_params = {"noise": float(rng.choice([0.2, 0.5])), "subset": 200}
    return cfg


def run(cfg: RunConfig) -> RunRecord:
    """Train one MLP on digits under ``cfg`` and record every signal."""
    import torch
    from torch import nn

    from streamtopo.data import load_digits

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    X, y = load_digits()
    perm = rng.permutation(len(y))
    X, y = X[perm], y[perm]
    Xtr, ytr, Xte, yte = X[:1300], y[:1300], X[1300:], y[1300:]
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-3
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    if cfg.fault == "label_noise":
        n = cfg.fault_params["subset"]
        Xtr, ytr = Xtr[:n], ytr[:n].copy()
        flip = rng.random(n) < cfg.fault_params["noise"]
        ytr[flip] = rng.integers(0, 10, size=int(flip.sum()))
    xtr_t = torch.tensor(Xtr, dtype=torch.float32)
    ytr_t = torch.tensor(ytr, dtype=torch.int64)
    xte_t = torch.tensor(Xte, dtype=torch.float32)
    yte_t = torch.tensor(yte, dtype=torch.int64)
    n_probe = min(256, len(ytr))
    xpr_t, ypr = xtr_t[:n_probe], ytr[:n_probe]

    body = build_body(cfg)
    head = nn.Linear(cfg.width, 10)
    linears = [m for m in body if isinstance(m, (nn.Linear, nn.Conv2d))]
    params = [*body.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    lossf = nn.CrossEntropyLoss()

    T, L = cfg.steps, cfg.depth
    act = np.zeros((T, L))
    grad = np.zeros((T, L))
    loss_rec = np.zeros(T)
    acts: list[torch.Tensor] = []
    relus = [m for m in body if isinstance(m, nn.ReLU)]
    hooks = [m.register_forward_hook(lambda _m, _i, o: acts.append(o.detach())) for m in relus]

    eval_steps, test_loss, test_acc, train_acc, f_test, f_train = [], [], [], [], [], []
    t0 = cfg.t0
    for t in range(T):
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * t / T))  # cosine decay, as in healthy runs
        rho = 0.0
        if t0 is not None and t >= t0:
            p = cfg.fault_params
            if cfg.fault == "lr_spike" and t < t0 + p["window"]:
                lr = p["spike_lr"]
            elif cfg.fault == "wd_ramp":
                rho = p["rho_max"] * (t - t0) / max(T - t0, 1)
            elif cfg.fault == "explode":
                with torch.no_grad():
                    linears[p["layer"]].weight.mul_(1.0 + p["rate"])
            elif cfg.fault == "dead_relu" and t == t0:
                with torch.no_grad():
                    lin = linears[p["layer"]]
                    pre = body[: list(body).index(lin)](xpr_t)
                    z = lin(pre)
                    dims = (0, 2, 3) if z.ndim == 4 else (0,)
                    lin.bias.sub_(3.0 * z.std(dims) + z.mean(dims).clamp(min=0))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.as_tensor(rng.integers(0, len(ytr), size=cfg.batch))
        acts.clear()
        out = head(body(xtr_t[idx]))
        loss = lossf(out, ytr_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            act[t] = torch.stack([a.pow(2).mean().sqrt() for a in acts]).numpy()
            grad[t] = torch.stack(
                [torch.sqrt(m.weight.grad.pow(2).sum() + m.bias.grad.pow(2).sum()) for m in linears]
            ).numpy()
        loss_rec[t] = float(loss.detach())
        opt.step()
        if rho:
            with torch.no_grad():
                for m in linears:
                    m.weight.mul_(1.0 - rho)
        if t % cfg.eval_every == cfg.eval_every - 1 or t == T - 1:
            with torch.no_grad():
                acts.clear()
                ft = body(xte_t)
                o = head(ft)
                test_loss.append(float(lossf(o, yte_t)))
                test_acc.append(float((o.argmax(1) == yte_t).float().mean()))
                fp = body(xpr_t)
                train_acc.append(float((head(fp).argmax(1).numpy() == ypr).mean()))
                f_test.append(ft[:n_probe].numpy().astype(np.float32))
                f_train.append(fp.numpy().astype(np.float32))
                acts.clear()
            eval_steps.append(t)
    for h in hooks:
        h.remove()
    return RunRecord(
        config=cfg,
        act_norm=act,
        grad_norm=grad,
        loss=loss_rec,
        eval_steps=np.array(eval_steps),
        test_loss=np.array(test_loss),
        test_acc=np.array(test_acc),
        train_acc=np.array(train_acc),
        features_test=f_test,
        features_train=f_train,
        labels_test=yte[:n_probe],
        labels_train=ypr,
    )


def build_body(cfg: RunConfig):
    """Hidden blocks, each ending in a ReLU whose output is a monitored layer."""
    from torch import nn

    layers: list[nn.Module] = []
    if cfg.arch == "cnn":
        layers += [nn.Unflatten(1, (1, 8, 8))]
        c_in = 1
        for c in (16, 32, 32):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
            c_in = c
        layers += [nn.Flatten(), nn.Linear(32 * 64, cfg.width), nn.ReLU()]
        layers += [nn.Linear(cfg.width, cfg.width), nn.ReLU()]
        return nn.Sequential(*layers)
    d_in = 64
    for _ in range(cfg.depth):
        layers += [nn.Linear(d_in, cfg.width), nn.ReLU()]
        d_in = cfg.width
    return nn.Sequential(*layers)
