"""Resumable training checkpoints (preemption, requeue, timeouts).

Every rank writes its own file, because ranks hold different optimizer state (distributed Muon keeps
momentum only for the matrices a rank orthogonalizes). A checkpoint holds the model, the optimizer,
the averaging state, the data position, the schedule clock (step and training seconds), the QAT switch
and the RNG states, so a resumed run continues exactly where the interrupted one stopped.

Files: ``<run_dir>/checkpoint/rank{r}.pt`` and ``complete.json``. A new checkpoint is written into
``checkpoint.next/``; rank 0 marks it complete after every rank has written, then swaps it in, so a job
killed mid-write still leaves the previous (or the staged, complete) checkpoint to resume from. Loading uses ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary objects.

``complete.json`` also records the run's resolved config. A run that finds a checkpoint in its
directory resumes only if its own config matches, except for the keys in :data:`MAY_CHANGE_ON_RESUME`
(logging, evaluation, checkpoint cadence, the budget check): anything else would silently continue
one training run under another's settings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from golf.config.errors import ConfigError
from golf.dist import DistInfo, barrier

# Keys (and key prefixes) a resumed run may set differently: none of them changes the training trajectory.
MAY_CHANGE_ON_RESUME = ("run_dir", "run_name", "logger", "code_bytes", "eval", "dry_run", "data.root",
                        "data.demo.cache_dir", "train.log_every", "train.val_every", "train.checkpoint_every_s",
                        "train.checkpoint_at_end", "quant.limit_bytes", "quant.over_limit")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint"


def _staging_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint.next"


def save_checkpoint(run_dir: Path, dist: DistInfo, state: dict, config: dict | None = None) -> None:
    """Write every rank's state into a staging folder, then swap it in; the previous checkpoint stays
    valid until the new one is complete. ``config``: the run's resolved config (plain JSON data)."""
    final, staging = checkpoint_dir(run_dir), _staging_dir(run_dir)
    if dist.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    torch.save(state, staging / f"rank{dist.rank}.pt")
    barrier()
    if dist.is_main:
        meta = {"step": state["step"], "world_size": dist.world_size, "config": config}
        (staging / "complete.json").write_text(json.dumps(meta, sort_keys=True) + "\n")
        old = Path(run_dir) / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    barrier()


def _complete(run_dir: Path) -> Path | None:
    """The folder of the last complete checkpoint (staging: complete but not yet swapped in)."""
    for d in (checkpoint_dir(run_dir), _staging_dir(run_dir)):
        if (d / "complete.json").exists():
            return d
    return None


def _flatten(tree, prefix: str = "") -> dict:
    """Dotted key → leaf value; a sub-config also appears as ``{}`` under its own key, so that one
    being None on the other side (a technique switched on or off) still compares unequal."""
    if isinstance(tree, dict):
        out = {prefix[:-1]: {}} if prefix else {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def resolved_config(cfg) -> dict:
    """A run's config as the plain JSON data a checkpoint records."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


def check_resume_config(run_dir: Path, config: dict) -> None:
    """Refuse to resume a checkpoint in ``run_dir`` that a different config wrote (cheap: reads one
    small file; call it before any expensive work). No checkpoint, or one without a config: nothing to check."""
    d = _complete(run_dir)
    saved = json.loads((d / "complete.json").read_text()).get("config") if d is not None else None
    if saved is None:
        return
    ours, theirs = _flatten(config), _flatten(saved)

    def fixed(key: str) -> bool:
        return not any(key == k or key.startswith(k + ".") for k in MAY_CHANGE_ON_RESUME)

    # keys only one side has (a field added to the schema since) are not compared
    changed = sorted(k for k in ours.keys() & theirs.keys() if fixed(k) and ours[k] != theirs[k])
    if changed:
        key = changed[0]
        others = f" (and {', '.join(changed[1:])})" if len(changed) > 1 else ""
        raise ConfigError(key, ours.get(key), f"the checkpoint in {d} was written with {theirs.get(key)!r}{others}; "
                          "resume with the same config, or use another run directory")


def load_checkpoint(run_dir: Path, dist: DistInfo) -> dict | None:
    """This rank's state of the last complete checkpoint, or None when there is none."""
    d = _complete(run_dir)
    if d is None:
        return None
    meta = json.loads((d / "complete.json").read_text())
    if meta["world_size"] != dist.world_size:
        raise RuntimeError(
            f"{d} was written by {meta['world_size']} ranks but this run has {dist.world_size}; "
            "resume with the same number of processes or remove the checkpoint"
        )
    return torch.load(d / f"rank{dist.rank}.pt", map_location="cpu", weights_only=True)
