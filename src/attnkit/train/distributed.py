"""Distributed data parallel set-up: the same training code runs alone or under ``torchrun``.

Under ``torchrun --nproc_per_node=N`` the environment names the rank and world size; gloo is used on CPU and NCCL
on GPU. Only rank 0 writes files or shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from attnkit.devices import resolve_device


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str) -> DistContext:
    """Join the process group when launched by torchrun; otherwise a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, device=device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_flag(ctx: DistContext, value: bool) -> bool:
    """Rank 0's decision, shared with every rank."""
    return bool(broadcast_int(ctx, int(value)))


def broadcast_int(ctx: DistContext, value: int) -> int:
    """Rank 0's integer, shared with every rank."""
    if not ctx.distributed:
        return value
    shared = torch.tensor([value], dtype=torch.int64)
    dist.broadcast(shared, src=0)
    return int(shared.item())
