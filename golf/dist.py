"""Distributed setup: the one module that reads the process environment.

A run is one of
* a single process (tests, the CPU demo),
* ``torchrun`` / ``torch.distributed.elastic`` workers (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``/``MASTER_PORT`` set by the launcher),
* Slurm tasks started by ``srun`` with one task per GPU (``SLURM_PROCID``, ``SLURM_NTASKS``,
  ``SLURM_LOCALID``; the rendezvous address comes from ``MASTER_ADDR``/``MASTER_PORT``, which
  ``launch/`` or submitit exports).

Everything below the entry point receives a :class:`DistInfo` and never looks at the environment.
The process group uses NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from golf.kernel.dist import DistInfo  # the kernel's: one class for ranks and device


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return None


def rank_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's or Slurm's variables; (0, 0, 1) otherwise.

    Slurm variables count only when ``MASTER_ADDR`` is set too: a single-task Slurm job (or a job that
    starts its own workers) is not itself a rank of a process group.
    """
    world = _env_int("WORLD_SIZE")
    if world is not None:
        return _env_int("RANK") or 0, _env_int("LOCAL_RANK") or 0, world
    ntasks = _env_int("SLURM_NTASKS")
    if ntasks is not None and ntasks > 1 and os.environ.get("MASTER_ADDR"):
        return _env_int("SLURM_PROCID") or 0, _env_int("SLURM_LOCALID") or 0, ntasks
    return 0, 0, 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available (one GPU per local rank), else CPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda was requested but CUDA is not available on this machine")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(preference)


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the process group described by the environment (no-op for a single process)."""
    rank, local_rank, world = rank_env()
    device = resolve_device(device_preference, local_rank)
    if world > 1 and not dist.is_initialized():
        if "RANK" not in os.environ:  # Slurm-started ranks: env:// wants these names
            os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank))
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce when a process group exists; identity otherwise."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Send a picklable Python object from ``src`` to every rank (identity for one process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def scheduler_job_id() -> str | None:
    """The Slurm job id (``<array job>_<task>`` for array tasks) when running under Slurm."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def in_worker_group() -> bool:
    """True when this process is already one rank of a launched group (torchrun, elastic, srun tasks)."""
    return rank_env()[2] > 1
