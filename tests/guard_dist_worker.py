"""Worker for tests/test_guard.py: one rank of a 2-process gloo job with a Guard.

Run as ``python tests/guard_dist_worker.py RANK WORLD PORT OUT.json [ddp|fsdp]``. Each rank
trains a DDP model (or an FSDP2 ``fully_shard`` one: parameters and optimizer state sharded, so
each rank snapshots and restores its own shards) on its own batches with a TrainingMonitor
(statuses come from rank-reduced signals) and a Guard; from step 120 on the labels are random on
every rank (a lasting fault: the guard rolls back, escalates and finally stops). The ranks write
their interventions, a checksum of the final (gathered) parameters and of the parameters after
every optimizer step.
"""

from __future__ import annotations

import json
import os
import sys


def full(p):
    """A parameter as one tensor (an FSDP2 shard is gathered from every rank)."""
    return p.full_tensor() if hasattr(p, "full_tensor") else p


def main(argv: list[str]) -> None:
    import torch
    import torch.distributed as dist

    from streamtopo import Guard
    from streamtopo.integrations.training import TrainingMonitor

    torch.set_num_threads(1)
    rank, world, port, out = int(argv[0]), int(argv[1]), argv[2], argv[3]
    mode = argv[4] if len(argv) > 4 else "ddp"
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    nn = torch.nn
    inner = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    )
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        model = fully_shard(inner)  # in place: inner's parameters become sharded DTensors
    else:
        model = nn.parallel.DistributedDataParallel(inner)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tm = TrainingMonitor(inner)
    guard = Guard(
        every=10, margin=0, patience=3, cooldown=30, act_on="WATCH", still_failing=None
    ).attach(model=model, optimizer=opt, monitors=[tm])
    g = torch.Generator().manual_seed(100 + rank)  # every rank its own data
    w = torch.randn(8, 4, generator=torch.Generator().manual_seed(7))
    seen = {}  # step -> the parameters a snapshot at that step holds
    for t in range(220):
        x = torch.randn(32, 8, generator=g)
        y = (x @ w).argmax(1) if t < 120 else torch.randint(0, 4, (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen[t] = [float(full(p).detach().double().sum()) for p in inner.parameters()]
        guard.step(t, tm.step(loss))
        if guard.should_stop:
            break
    result = {
        "interventions": [
            [i.step, i.action, i.restored_step, i.onset, i.level] for i in guard.interventions_
        ],
        "params": [float(full(p).detach().double().sum()) for p in inner.parameters()],
        "seen": seen,
    }
    tm.close()
    with open(out, "w") as fh:
        json.dump(result, fh)
    # both ranks reach this point before the group goes: destroying it while the peer is still
    # tearing down made gloo abort a worker ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
