"""Data-parallel plumbing for ``torchrun`` (PyTorch DDP): NCCL on GPUs, gloo on CPUs.

One process per device; ``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.
Without them everything here degrades to a single process and no communication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU where CUDA is available, else the CPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(preference)


def setup(device: str = "auto") -> Distributed:
    """Join the process group that torchrun describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = pick_device(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return Distributed(rank=rank, world=world, local_rank=local_rank, device=target)


def teardown(context: Distributed) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, context: Distributed) -> torch.Tensor:
    if context.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_buffers(module: torch.nn.Module, context: Distributed) -> None:
    """Average BatchNorm running statistics over the processes, which each saw different micro-batches,
    so that every process validates, and the checkpoint holds, one and the same model."""
    if not context.active:
        return
    for buffer in module.buffers():
        if buffer.dtype.is_floating_point:
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer /= context.world


def gather(value: Any, context: Distributed) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order, on every process."""
    if not context.active:
        return [value]
    out: list[Any] = [None] * context.world
    dist.all_gather_object(out, value)
    return out


def broadcast(value: Any, context: Distributed) -> Any:
    """Rank 0's ``value`` on every process (decisions must not diverge between processes)."""
    if not context.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(context: Distributed) -> None:
    if context.active:
        dist.barrier()


def any_true(flag: bool, context: Distributed) -> bool:
    """Whether ``flag`` is set in any process (a stop that one process saw stops them all at one step)."""
    if not context.active:
        return flag
    box = torch.tensor([float(flag)], device=context.device)  # NCCL reduces device tensors only
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item())
