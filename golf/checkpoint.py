"""Resumable training checkpoints (preemption, requeue, timeouts).

Every rank writes its own file, because ranks hold different optimizer state (distributed Muon keeps
momentum only for the matrices a rank orthogonalizes). A checkpoint holds the run's whole
train state (:class:`golf.kernel.state.TrainState`: model, optimizer, averaging, data position, QAT and
topology switches, RNG, clock), so a resumed run continues exactly where the interrupted one stopped.

Files: ``<run_dir>/checkpoint/rank{r}.pt`` and ``complete.json``. A folder is complete when its
``complete.json`` exists: it is written last, after every rank's file, and removed first when a folder
is discarded. A save goes

1. settle what an interrupted save left: the newest complete folder of ``checkpoint``,
   ``checkpoint.next`` and ``checkpoint.old`` becomes ``checkpoint``, every other one is discarded;
2. write every rank's file into ``checkpoint.next/``, then its ``complete.json``;
3. rename ``checkpoint`` to ``checkpoint.old``, ``checkpoint.next`` to ``checkpoint``, discard the old.

A process killed at any point therefore leaves at least one complete folder, and loading takes the
newest complete one of the three (by step), so no save ever deletes the only complete copy. Loading
uses ``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary objects.

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
MAY_CHANGE_ON_RESUME = ("run_dir", "run_name", "logger", "eval", "dry_run", "data.root",
                        "data.demo.cache_dir", "train.log_every", "train.val_every", "train.checkpoint_every_s",
                        "train.checkpoint_at_end", "quant.limit_bytes", "quant.over_limit")


class CheckpointError(RuntimeError):
    """A checkpoint this run cannot continue from (another world size, a component missing or unknown)."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint"


def _staging_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint.next"


def _old_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint.old"


MARKER = "complete.json"


def _discard(d: Path) -> None:
    """Remove a checkpoint folder, its completion marker first (a half-removed folder is never complete)."""
    (d / MARKER).unlink(missing_ok=True)
    shutil.rmtree(d, ignore_errors=True)


def _step_of(d: Path) -> int | None:
    """The step of a complete checkpoint folder, None when it is not complete (or unreadable)."""
    try:
        return int(json.loads((d / MARKER).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _settle(run_dir: Path) -> None:
    """Finish what an interrupted save left: the newest complete folder becomes ``checkpoint``."""
    newest = _complete(run_dir)
    final = checkpoint_dir(run_dir)
    for d in (final, _staging_dir(run_dir), _old_dir(run_dir)):
        if d != newest:
            _discard(d)
    if newest is not None and newest != final:
        newest.rename(final)


def save_checkpoint(run_dir: Path, dist: DistInfo, state: dict, config: dict | None = None) -> None:
    """Write every rank's state into a staging folder, then swap it in; the previous checkpoint stays
    valid until the new one is complete. ``config``: the run's resolved config (plain JSON data)."""
    final, staging, old = checkpoint_dir(run_dir), _staging_dir(run_dir), _old_dir(run_dir)
    if dist.is_main:
        _settle(run_dir)  # afterwards only `checkpoint` may be complete: staging and old can go
        staging.mkdir(parents=True)
    barrier()
    torch.save(state, staging / f"rank{dist.rank}.pt")
    barrier()
    if dist.is_main:
        meta = {"step": state["step"], "world_size": dist.world_size, "config": config}
        marker = staging / f".{MARKER}.tmp"
        marker.write_text(json.dumps(meta, sort_keys=True) + "\n")
        marker.rename(staging / MARKER)  # complete only once every byte of it is there
        if final.exists():
            final.rename(old)
        staging.rename(final)
        _discard(old)
    barrier()


def _complete(run_dir: Path) -> Path | None:
    """The folder of the newest complete checkpoint among ``checkpoint``, ``checkpoint.next`` (complete
    but not yet swapped in) and ``checkpoint.old`` (swapped out, not yet removed); ties: that order."""
    found = [(step, -i, d) for i, d in enumerate((checkpoint_dir(run_dir), _staging_dir(run_dir), _old_dir(run_dir)))
             if (step := _step_of(d)) is not None]
    return max(found)[2] if found else None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a complete checkpoint (a run started there resumes from it)."""
    return _complete(Path(run_dir)) is not None


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
    saved = json.loads((d / MARKER).read_text()).get("config") if d is not None else None
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
    """This rank's state of the last complete checkpoint, or None when there is none (a
    :class:`CheckpointError` when it was written by another number of ranks)."""
    d = _complete(run_dir)
    if d is None:
        return None
    meta = json.loads((d / MARKER).read_text())
    if meta["world_size"] != dist.world_size:
        raise CheckpointError(
            f"{d} was written by {meta['world_size']} ranks but this run has {dist.world_size}; "
            "resume with the same number of processes or remove the checkpoint"
        )
    return torch.load(d / f"rank{dist.rank}.pt", map_location="cpu", weights_only=True)


def check_state_components(state: dict) -> None:
    """A checkpoint's train state holds exactly the kernel's components; one missing or unknown is a
    :class:`CheckpointError` naming it (a half-restored run would continue under a state no
    uninterrupted run ever had)."""
    from golf.kernel.state import STATE_COMPONENTS

    missing = [k for k in STATE_COMPONENTS if k not in state]
    extra = sorted(k for k in state if k not in STATE_COMPONENTS)
    if missing or extra:
        what = f"lacks the component {missing[0]!r}" if missing else f"has an unknown component {extra[0]!r}"
        others = [*missing[1:], *extra[1:]] if missing else extra[1:]
        also = f" (also: {', '.join(map(repr, others))})" if others else ""
        raise CheckpointError(f"the train state {what}{also}; it holds {', '.join(STATE_COMPONENTS)}")
