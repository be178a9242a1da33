"""Data-parallel training under torchrun (DESIGN.md: "Under torchrun the same command trains
with DistributedDataParallel (gloo on CPU, nccl on GPU); only rank 0 writes").

How gradients are shared. Families drive their own optimisation inside `train_step` (the
default calls `self.loss` then one optimizer; two-player families step a generator and a
critic), so wrapping `forward()` in `torch.nn.parallel.DistributedDataParallel` would miss
most of them. Instead every optimizer the trainer hands to `train_step` is a `SyncedOptimizer`:
its `step()` first averages the gradients of the parameters it owns over all ranks (one
all-reduce of a flat buffer), then steps. That is what DDP does (an average of per-rank
gradients of per-rank mean losses over equal-sized shards: the gradient of the global batch),
and it works for every family's train_step unchanged.

Experts that get no gradient in a step: a parameter whose `.grad` is None on some ranks counts
as a zero gradient there; it keeps `.grad = None` (and so is skipped by Adam, exactly as in a
single process) only if it is None on every rank. Frozen experts have requires_grad=False and
are not in any optimizer, so they are never touched. This is the find_unused_parameters=True
behaviour without a forward wrapper.

A rank that does not step an optimizer in a train_step (a non-finite loss: the default
train_step returns without stepping) joins the all-reduce afterwards with a "skip" flag, and
then no rank applies that step, so weights stay identical on every rank and nobody waits
forever; the trainer's finiteness check is itself all-reduced, so every rank stops together
with the same message. (Families must step their optimizers in the order of the dict that
`make_optimizers` returns for this to pair up when only some ranks skip.)

Ranks start from the same seeded weights; `broadcast_model` re-synchronises them from rank 0
after every task boundary hook. Rank 0 alone writes the run folder; the others wait at a
barrier while it evaluates and writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(d: Dist, device: torch.device) -> torch.device:
    """Join the process group (nccl on CUDA, gloo otherwise); returns this rank's device."""
    if not d.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return device


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def _device(d: Dist) -> torch.device:
    nccl = dist.get_backend() == "nccl"
    return torch.device("cuda", d.local_rank) if nccl else torch.device("cpu")


def all_ok(d: Dist, ok: bool) -> bool:
    """True when `ok` holds on every rank (a collective: every rank must call it)."""
    if not d.enabled:
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device=_device(d))
    dist.all_reduce(flag)
    return float(flag) == 0.0


def broadcast_json(d: Dist, value=None):
    """Rank 0's JSON-able `value` on every rank (encoded as bytes in a tensor, not pickled)."""
    if not d.enabled:
        return value
    dev = _device(d)
    data = json.dumps(value).encode() if d.is_main else b""
    n = torch.tensor([len(data)], dtype=torch.long, device=dev)
    dist.broadcast(n, 0)
    buf = torch.zeros(int(n), dtype=torch.uint8, device=dev)
    if d.is_main:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return json.loads(bytes(buf.cpu().tolist()).decode())


@torch.no_grad()
def broadcast_model(d: Dist, model) -> None:
    """Rank 0's weights and buffers on every rank (after hooks that may draw random numbers)."""
    if not d.enabled:
        return
    arch = broadcast_json(d, model.arch())
    if arch != json.loads(json.dumps(model.arch())):
        raise RuntimeError(f"rank {d.rank}: model structure {model.arch()} differs from rank 0's")
    for value in model.state_dict().values():
        dist.broadcast(value, 0)


class SyncedOptimizer:
    """An optimizer whose step() averages gradients over ranks first (see the module doc)."""

    def __init__(self, opt: torch.optim.Optimizer, d: Dist):
        self.opt, self.dist, self.stepped = opt, d, False

    def __getattr__(self, name):
        return getattr(self.opt, name)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        self.stepped = True
        if self._reduce(ok=True):
            return self.opt.step(closure) if closure is not None else self.opt.step()
        self.opt.zero_grad(set_to_none=True)  # some rank skipped this step: nobody takes it
        return None

    def skip(self) -> None:
        """Join the all-reduce of a step this rank did not take (see the module doc)."""
        self._reduce(ok=False)
        self.opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def _reduce(self, ok: bool) -> bool:
        params = [p for g in self.opt.param_groups for p in g["params"]]
        dev = params[0].device if params else _device(self.dist)
        parts = [
            (p.grad if ok and p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
            for p in params
        ]
        flags = [1.0 if ok and p.grad is not None else 0.0 for p in params] + [1.0 if ok else 0.0]
        flat = torch.cat([*parts, torch.tensor(flags, device=dev)])
        dist.all_reduce(flat)
        n_flags = len(flags)
        grads, has, oks = flat[:-n_flags], flat[-n_flags:-1], float(flat[-1])
        if oks < self.dist.world:
            return False
        grads /= self.dist.world
        offset = 0
        for p, h in zip(params, has.tolist(), strict=True):
            n = p.numel()
            if h > 0:
                p.grad = grads[offset : offset + n].view_as(p).to(p.dtype).clone()
            else:
                p.grad = None
            offset += n
        return True


def wrap_optimizers(d: Dist, optimizers: dict) -> dict:
    if not d.enabled:
        return optimizers
    return {k: SyncedOptimizer(v, d) for k, v in optimizers.items()}


def finish_step(d: Dist, optimizers: dict) -> None:
    """After train_step: join the all-reduce of every optimizer this rank did not step."""
    for opt in optimizers.values():
        if isinstance(opt, SyncedOptimizer):
            if not opt.stepped:
                opt.skip()
            opt.stepped = False


def unwrap(optimizers: dict) -> dict:
    return {k: v.opt if isinstance(v, SyncedOptimizer) else v for k, v in optimizers.items()}


def shard(d: Dist, n: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's indices of a task's n examples for `epoch` (DistributedSampler, reshuffled
    each epoch with set_epoch; padded so that every rank takes the same number of steps)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n), num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)
