"""Data-parallel training under ``torchrun``: process group, devices, seeds, reductions.

``torchrun --nproc_per_node N -m sansa train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; each process then joins a group (NCCL on GPUs, gloo on the CPU) and drives its
own device. Without those variables, training runs as a single process and nothing here
touches ``torch.distributed``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from sansa.devices import resolve_device
from sansa.errors import SansaError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands.

    Attributes:
        rank, world_size, local_rank: as torchrun sets them (0, 1, 0 in a single process).
        device: this process's device.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; pick this process's device.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``; under torchrun ``cuda`` means ``cuda:LOCAL_RANK``.
    """
    chosen = resolve_device(device)
    if not launched_by_torchrun():
        return DistContext(device=chosen)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if chosen.type == "cuda":
        if local >= torch.cuda.device_count():
            raise SansaError(f"device: local rank {local} but only {torch.cuda.device_count()} GPUs visible")
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
    elif chosen.type == "mps":
        raise SansaError("device: mps cannot train with several processes; use cpu or cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return DistContext(rank, world, local, chosen)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (if this process joined one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python, numpy and torch with ``seed + rank`` (each rank its own stream).

    Episodes and dropout masks do not read these generators (they have their own seeds, see
    :mod:`sansa.train.episodes`); this covers anything else that draws at random.
    """
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (in place; a no-op in a single process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
