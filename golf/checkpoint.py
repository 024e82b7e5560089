"""Resumable training checkpoints (preemption, requeue, timeouts).

Every rank writes its own file, because ranks hold different optimizer state (distributed Muon keeps
momentum only for the matrices a rank orthogonalizes). A checkpoint holds the model, the optimizer,
the averaging state, the data position, the schedule clock (step and training seconds), the QAT switch
and the RNG states, so a resumed run continues exactly where the interrupted one stopped.

Files: ``<run_dir>/checkpoint/rank{r}.pt`` (written to a temporary name, then renamed) and
``<run_dir>/checkpoint/complete.json`` (written by rank 0 after every rank has finished writing; a
checkpoint without it is ignored). Loading uses ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from golf.dist import DistInfo, barrier


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint"


def save_checkpoint(run_dir: Path, dist: DistInfo, state: dict) -> None:
    d = checkpoint_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    marker = d / "complete.json"
    if dist.is_main and marker.exists():
        marker.unlink()
    barrier()
    tmp = d / f"rank{dist.rank}.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(d / f"rank{dist.rank}.pt")
    barrier()
    if dist.is_main:
        marker.write_text(json.dumps({"step": state["step"], "world_size": dist.world_size}) + "\n")
    barrier()


def load_checkpoint(run_dir: Path, dist: DistInfo) -> dict | None:
    """This rank's state of the last complete checkpoint, or None when there is none."""
    d = checkpoint_dir(run_dir)
    marker = d / "complete.json"
    if not marker.exists():
        return None
    meta = json.loads(marker.read_text())
    if meta["world_size"] != dist.world_size:
        raise RuntimeError(
            f"{d} was written by {meta['world_size']} ranks but this run has {dist.world_size}; "
            "resume with the same number of processes or remove the checkpoint"
        )
    return torch.load(d / f"rank{dist.rank}.pt", map_location="cpu", weights_only=True)
