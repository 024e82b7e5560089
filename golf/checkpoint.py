"""Resumable training checkpoints (preemption, requeue, timeouts).

Every rank writes its own file, because ranks hold different optimizer state (distributed Muon keeps
momentum only for the matrices a rank orthogonalizes). A checkpoint holds the model, the optimizer,
the averaging state, the data position, the schedule clock (step and training seconds), the QAT switch
and the RNG states, so a resumed run continues exactly where the interrupted one stopped.

Files: ``<run_dir>/checkpoint/rank{r}.pt`` and ``complete.json``. A new checkpoint is written into
``checkpoint.next/``; rank 0 marks it complete after every rank has written, then swaps it in, so a job
killed mid-write still leaves the previous (or the staged, complete) checkpoint to resume from. Loading uses ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary objects.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from golf.dist import DistInfo, barrier


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint"


def _staging_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint.next"


def save_checkpoint(run_dir: Path, dist: DistInfo, state: dict) -> None:
    """Write every rank's state into a staging folder, then swap it in; the previous checkpoint stays
    valid until the new one is complete."""
    final, staging = checkpoint_dir(run_dir), _staging_dir(run_dir)
    if dist.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    torch.save(state, staging / f"rank{dist.rank}.pt")
    barrier()
    if dist.is_main:
        (staging / "complete.json").write_text(json.dumps({"step": state["step"], "world_size": dist.world_size}) + "\n")
        old = Path(run_dir) / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    barrier()


def load_checkpoint(run_dir: Path, dist: DistInfo) -> dict | None:
    """This rank's state of the last complete checkpoint, or None when there is none."""
    for d in (checkpoint_dir(run_dir), _staging_dir(run_dir)):  # staging: complete but not yet swapped in
        marker = d / "complete.json"
        if marker.exists():
            break
    else:
        return None
    meta = json.loads(marker.read_text())
    if meta["world_size"] != dist.world_size:
        raise RuntimeError(
            f"{d} was written by {meta['world_size']} ranks but this run has {dist.world_size}; "
            "resume with the same number of processes or remove the checkpoint"
        )
    return torch.load(d / f"rank{dist.rank}.pt", map_location="cpu", weights_only=True)
