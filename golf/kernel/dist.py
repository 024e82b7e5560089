"""Ranks, device and collectives: the one kernel module that reads the process environment.

A run is a single process (tests, the CPU demo) or one rank of a ``torchrun`` group (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). Slurm tasks started one per GPU are
mapped onto those variables by the lab (:mod:`golf.dist`) before the kernel starts. The process group
uses NCCL on CUDA and gloo on CPU. The collectives are identities in a single process. Where a
submission finds its data (``DATA_DIR`` and friends) is read here too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from golf.data.config import DataConfig


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_ranks() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's variables; (0, 0, 1) outside a group."""
    e = os.environ
    return int(e.get("RANK") or 0), int(e.get("LOCAL_RANK") or 0), int(e.get("WORLD_SIZE") or 1)


def env_seed(seed: int) -> int:
    """``SEED`` from the environment when set (records are run as ``SEED=42 torchrun ... train_gpt.py``),
    else ``seed``."""
    return int(os.environ.get("SEED") or seed)


def data_paths(d: DataConfig) -> dict:
    """Where a submission finds its data: ``data.*`` under ``DATA_DIR`` (default ``data.root``), each of
    ``TRAIN_FILES``, ``VAL_FILES``, ``TOKENIZER_PATH`` (and ``VAL_BYTES_FILES`` for data scored through a
    byte sidecar) overriding its own."""
    e = os.environ
    root = e.get("DATA_DIR") or d.root
    at = lambda p: p and os.path.join(root, p)  # noqa: E731  (an absolute p stays itself)
    sidecar = d.text_transform == "caseops" or d.val_bytes_pattern is not None
    return dict(train_pattern=e.get("TRAIN_FILES") or at(d.train_pattern),
                val_pattern=e.get("VAL_FILES") or at(d.val_pattern),
                tokenizer_path=e.get("TOKENIZER_PATH") or at(d.tokenizer_path),
                **({"val_bytes_pattern": e.get("VAL_BYTES_FILES") or at(d.val_bytes_pattern)} if sidecar else {}))


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group the environment describes (no-op for one process); ``device``:
    auto (CUDA when available, one GPU per local rank) | cuda | cpu."""
    rank, local, world = env_ranks()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device, local) if device == "cuda" else torch.device(device)
    if device == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo", device_id=dev if device == "cuda" else None)
    return DistInfo(rank, local, world, dev)


def _group() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In place over ranks (``sum`` or ``max``)."""
    if _group():
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if _group():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """A picklable object from rank ``src`` to every rank."""
    if not _group():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
