"""Worker for tests/test_torch_distributed.py: one rank of a 2-process gloo job.

Run as ``python tests/torch_dist_worker.py RANK WORLD PORT OUT.json``. Each rank runs one
backward pass on its part of a fixed batch, first under DDP, then under FSDP2 (``fully_shard``),
and writes the collected signals of both to JSON.
"""

from __future__ import annotations

import json
import os
import sys


def build(torch):
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 7), nn.ReLU(), nn.Linear(7, 3))
    x = torch.randn(16, 8)
    y = torch.randint(0, 3, (16,))
    return model, x, y


def one(torch, mode: str, rank: int, world: int) -> dict:
    from streamtopo.integrations.torch import ActivationNormCollector, GradNormCollector, collect

    model, x, y = build(torch)
    inner = model
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for m in model:
            if isinstance(m, torch.nn.Linear):
                fully_shard(m)
        fully_shard(model)
    else:
        model = torch.nn.parallel.DistributedDataParallel(model)
    acts, grads = ActivationNormCollector(inner), GradNormCollector(inner)
    n = x.shape[0] // world
    part = slice(rank * n, (rank + 1) * n)
    loss = torch.nn.functional.cross_entropy(model(x[part]), y[part])
    loss.backward()
    a, g, mean_loss = collect([acts, grads], extra=loss.detach().reshape(1))
    return {"act": a.tolist(), "grad": g.tolist(), "loss": float(mean_loss[0])}


def main(argv: list[str]) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank, world, port, out = int(argv[0]), int(argv[1]), argv[2], argv[3]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    result = {mode: one(torch, mode, rank, world) for mode in ("ddp", "fsdp")}
    with open(out, "w") as fh:
        json.dump(result, fh)
    # both ranks reach this point before the group goes: destroying it while the peer is still
    # tearing down made gloo abort a worker ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
