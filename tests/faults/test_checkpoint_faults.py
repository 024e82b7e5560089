"""Row 10: crashes inside checkpoint saves. Each case builds on disk the exact state that a process
killed at that point leaves (the folders a save goes through), then checks that loading finds the
newest complete checkpoint and that the next save never deletes the only complete copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from golf.checkpoint import checkpoint_dir, load_checkpoint, save_checkpoint
from golf.dist import DistInfo

DIST = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def state(step: int) -> dict:
    return {"step": step, "w": torch.full((3,), float(step))}


def complete_folder(d: Path, step: int) -> None:
    """A folder exactly as a finished save leaves it (rank file, then the completion marker)."""
    d.mkdir(parents=True)
    torch.save(state(step), d / "rank0.pt")
    (d / "complete.json").write_text(json.dumps({"step": step, "world_size": 1, "config": None}))


def partial_folder(d: Path) -> None:
    """A folder a save was killed in while writing the rank file (no marker)."""
    d.mkdir(parents=True)
    (d / "rank0.pt").write_bytes(b"PK\x03\x04 truncated")


def loaded_step(run: Path) -> int | None:
    got = load_checkpoint(run, DIST)
    return None if got is None else got["step"]


def test_crash_between_the_two_renames_then_a_crash_in_the_next_save(tmp_path):
    run = tmp_path / "run"
    # save of step 20 killed between `checkpoint -> checkpoint.old` and `checkpoint.next -> checkpoint`
    complete_folder(run / "checkpoint.old", 10)
    complete_folder(run / "checkpoint.next", 20)
    assert loaded_step(run) == 20
    # the resumed run saves step 30 and is killed while writing its rank file: the save first settles
    # the previous one (step 20 becomes `checkpoint`), then stages the new one
    with pytest.raises(TypeError, match="cannot pickle 'generator' object"):  # fails mid-write of the rank file
        save_checkpoint(run, DIST, {"step": 30, "w": torch.zeros(1000), "unpicklable": (i for i in ())})
    assert (run / "checkpoint" / "complete.json").exists()
    assert not (run / "checkpoint.next" / "complete.json").exists()
    assert loaded_step(run) == 20


def test_only_the_old_copy_is_complete(tmp_path):
    run = tmp_path / "run"
    complete_folder(run / "checkpoint.old", 10)  # killed after the first rename of a save ...
    partial_folder(run / "checkpoint.next")      # ... whose staging was not complete
    assert loaded_step(run) == 10
    save_checkpoint(run, DIST, state(11))
    assert loaded_step(run) == 11
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]


def test_the_newest_complete_copy_wins(tmp_path):
    run = tmp_path / "run"
    complete_folder(run / "checkpoint", 5)
    complete_folder(run / "checkpoint.next", 6)  # complete, not swapped in yet
    assert loaded_step(run) == 6
    partial_folder(run / "checkpoint.old")  # an old copy half removed never counts
    assert loaded_step(run) == 6


def test_a_save_killed_while_discarding_the_old_copy(tmp_path):
    run = tmp_path / "run"
    complete_folder(run / "checkpoint", 7)
    old = run / "checkpoint.old"
    old.mkdir(parents=True)
    torch.save(state(6), old / "rank0.pt")  # marker already removed: the first thing a discard does
    assert loaded_step(run) == 7
    save_checkpoint(run, DIST, state(8))
    assert loaded_step(run) == 8 and not old.exists()


def test_a_clean_sequence_of_saves(tmp_path):
    run = tmp_path / "run"
    assert loaded_step(run) is None
    for step in (1, 2, 3):
        save_checkpoint(run, DIST, state(step))
        assert loaded_step(run) == step
        assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]
    assert torch.equal(torch.load(checkpoint_dir(run) / "rank0.pt", weights_only=True)["w"], torch.full((3,), 3.0))
