"""torch.distributed set-up for torchrun (gloo on CPU, NCCL on GPU) and a gather that keeps gradients."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun; otherwise a single process."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo(device=torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    where = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    return DistInfo(dist.get_rank(), dist.get_world_size(), where)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's rows of ``x`` in rank order; gradients flow back to each process's own rows.

    Row counts may differ between processes (an image that failed to decode): rows are padded to the
    largest count for the collective and the padding is cut off again.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    counts = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([x.shape[0]], device=x.device))
    sizes = [int(c) for c in counts]
    padded = torch.cat([x, x.new_zeros(max(sizes) - x.shape[0], *x.shape[1:])])  # [max_rows, D]
    parts = dist_fn.all_gather(padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])  # [sum(sizes), D]


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not dist.is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
