"""DDP with two CPU processes (gloo): every rank runs a TrainingMonitor, rank 0 logs the run.

    python examples/ddp_two_processes.py [--steps 200] [--out ./ddp-run]

The per-layer squared norms and the losses of both ranks travel in one packed ``all_reduce`` per
monitored step, so both ranks see the same global values and agree on ``should_stop``.
"""

import argparse
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from streamtopo.integrations.training import TrainingMonitor


def worker(rank: int, world: int, port: int, steps: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same initial weights on every rank
    net = nn.Sequential(
        *[m for _ in range(6) for m in (nn.Linear(32, 32), nn.ReLU())], nn.Linear(32, 4)
    )
    model = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tm = TrainingMonitor(net, log_dir=out, run_id="ddp-example", every=2)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    for step in range(steps):
        x = torch.randn(64, 32, generator=gen)
        y = x[:, :4].argmax(1)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        status = tm.step(loss)
        if rank == 0 and status.evaluated and step % 50 == 0:
            print(
                f"[rank 0] step {step:4d} local loss {loss.item():.3f} "
                f"global mean loss {status.loss.loss:.3f} layer {status.layer.state} "
                f"h0 {status.layer.h0:.3f}",
                flush=True,
            )
        if tm.should_stop:  # identical on every rank: the values were reduced
            break
    if rank == 0:
        print(f"[rank 0] run written to {tm.run_dir_}", flush=True)
    tm.close()
    # both ranks reach this point before the group goes (destroying it while the peer is still
    # in its last collective can make gloo abort that process at exit)
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(steps: int = 200, out: str = "./ddp-run") -> None:
    mp.spawn(worker, args=(2, free_port(), steps, out), nprocs=2, join=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", default="./ddp-run")
    a = p.parse_args()
    main(a.steps, a.out)
