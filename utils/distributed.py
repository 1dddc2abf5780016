"""Spreading LOSO folds over torchrun processes.

Folds are independent trainings, so ranks never exchange gradients: each rank trains
its share of held-out subjects and writes one result file per fold; rank 0 waits for
all ranks at a barrier, then pools the fold files. Seeds are per fold, so results do
not depend on the number of processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the torchrun process group when launched by torchrun; no-op otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )
    # Ranks only ever meet at barriers, never exchange tensors, so gloo serves CPUs and GPUs
    # alike, and it lets several ranks share one GPU (NCCL refuses that). Folds run for
    # hours between barriers: the default 10-minute timeout is too short.
    dist.init_process_group(backend="gloo", timeout=timedelta(days=7))
    return info


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def assign_folds(costs: dict[str, float], world_size: int) -> list[list[str]]:
    """Greedy longest-first assignment of folds to ranks, balancing total cost.

    Deterministic: ties are broken by subject name, then by rank number.
    """
    shares: list[list[str]] = [[] for _ in range(world_size)]
    loads = [0.0] * world_size
    for subject in sorted(costs, key=lambda s: (-costs[s], s)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        shares[rank].append(subject)
        loads[rank] += costs[subject]
    return [sorted(share) for share in shares]


def threads_per_process(info: DistInfo, cpu_count: int | None = None) -> int:
    """Split this machine's cores among the local processes (at least one each)."""
    cpus = cpu_count or os.cpu_count() or 1
    return max(1, cpus // max(1, info.local_world_size))
