"""Training on several processes (GPUs, or CPU processes) under ``torchrun``, with PyTorch's own DDP.

``torchrun --nproc_per_node N -m distill.cli.train ...`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set; :func:`start` joins them into one process group (NCCL on CUDA, Gloo on CPU). Every rank draws
the same global batch from the same seeded generator and trains on its own slice of it, so the slices are disjoint,
DistributedDataParallel's gradient average equals the gradient of the global batch, and N processes take the steps
one process would take with the same ``--batch-size`` (up to float rounding). Rank 0 alone evaluates, logs and
writes checkpoints; every rank resumes from the same checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from distill.environment.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def local_share(self, global_batch: int) -> slice:
        """This rank's positions in a global batch of ``global_batch`` draws."""
        size = global_batch // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)


def from_environment() -> Ranks:
    """The ranks torchrun set in the environment (none set: a single process)."""
    try:
        return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them); unset them to "
                        "train in one process") from None


def start(device: torch.device, batch_size: int) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun prepared (if any) and pick this rank's device: ``cuda:LOCAL_RANK`` on CUDA."""
    ranks = from_environment()
    if not ranks.distributed:
        return ranks, device
    if batch_size % ranks.world_size:
        raise UserError(f"--batch-size {batch_size} does not split evenly over {ranks.world_size} processes; pass a "
                        f"multiple of {ranks.world_size}")
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {ranks.local_rank} has no GPU ({torch.cuda.device_count()} visible); start "
                            "at most one process per GPU (torchrun --nproc_per_node)")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ranks, device


def stop(finished: bool = True) -> None:
    """Leave the process group (a no-op for a single process).

    After a finished run all ranks meet at a barrier first: a rank that tears its Gloo connections down while another
    still finishes its last collective aborts the process ("terminate called without an active exception"). A rank
    that failed leaves at once (torchrun then stops the others), since its peers may be waiting in another collective.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if finished:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def wrap(student: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: ``student`` itself, or DDP around it (which averages the gradients)."""
    if not ranks.distributed:
        return student
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)


def mean_over_ranks(value: torch.Tensor | float, ranks: Ranks, device: torch.device) -> torch.Tensor | float:
    """The mean of a per-rank number over all ranks (each rank's training losses cover its own slice)."""
    if not ranks.distributed:
        return value
    tensor = torch.as_tensor(value, dtype=torch.float64, device=device).clone()
    dist.all_reduce(tensor)
    return tensor / ranks.world_size


def from_main(value, ranks: Ranks):
    """Rank 0's ``value`` on every rank (a picklable object: a metrics dict, an error message or None)."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
