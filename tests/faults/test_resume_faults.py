"""Rows 23 and 24: a checkpoint the run cannot continue from is refused before the run touches its
directory. Row 23: a checkpoint written by an older golf, whose config lacks a key (compared with the
schema's default, the value that golf ran with). Row 24: a damaged checkpoint (a truncated or foreign
rank file, a marker without ``world_size``, a marker that is not JSON) is one CheckpointError line naming
the file, never a silent restart at step 0 over the run's records.

The checkpoint is a real one: a tiny run trained once with ``train.checkpoint_at_end=true``, whose
summary is then marked failed (a run that died after its last checkpoint: rerunning it resumes)."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch

from golf.checkpoint import CheckpointError, load_checkpoint
from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.dist import DistInfo
from golf.entry import entry_errors
from golf.train import run
from tests.helpers import TINY, compose_config

RUN = [*TINY, "train.checkpoint_at_end=true", "train.val_every=0", "eval.prequant=false"]


def config(run_dir, *extra: str):
    cfg = load_config(compose_config([*RUN, *extra]))
    cfg.run_dir = str(run_dir)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory holding a complete checkpoint (step 6) and the records of a run that died after it."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    run(config(run_dir), run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "failed", "error": "killed"}))
    return run_dir


def copy_of(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def files(run_dir) -> dict:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def older_golf(run_dir, key: str) -> None:
    """Make the checkpoint's recorded config one that a golf without ``key`` would have written."""
    marker = run_dir / "checkpoint" / "complete.json"
    meta = json.loads(marker.read_text())
    *parents, last = key.split(".")
    node = meta["config"]
    for part in parents:
        node = node[part]
    del node[last]
    marker.write_text(json.dumps(meta))


# ---------------------------------------------------------------- row 23


def test_a_key_an_older_checkpoint_lacks_is_compared_with_its_default(trained, tmp_path):
    run_dir = copy_of(trained, tmp_path)
    older_golf(run_dir, "arch.mlp")  # written before the MLP had settings of its own (mult 2.0 then)
    before = files(run_dir)
    with pytest.raises(ConfigError) as info:
        run(config(run_dir, "arch.mlp.mult=3"), run_dir)
    err = info.value
    assert (err.key, err.value) == ("arch.mlp.mult", 3.0)
    assert "was written by a golf without this key, i.e. with its default 2.0" in err.reason
    assert files(run_dir) == before  # refused before the directory was touched
    resumed = run(config(run_dir), run_dir)  # the default is what it ran with: it resumes
    assert resumed["status"] == "completed" and resumed["steps"] == 6


def test_an_entry_of_a_named_table_an_older_checkpoint_lacks_takes_its_types_default(trained, tmp_path):
    run_dir = copy_of(trained, tmp_path)
    older_golf(run_dir, "quant.schemes.int8.clip_sigmas")
    from golf.checkpoint import check_resume_config, resolved_config

    check_resume_config(run_dir, resolved_config(config(run_dir)))  # the default, as run: accepted
    with pytest.raises(ConfigError, match="^quant.schemes.int8.clip_sigmas=4.0: .*with its default 12.85"):
        check_resume_config(run_dir, resolved_config(config(run_dir, "++quant.schemes.int8.clip_sigmas=4.0")))


# ---------------------------------------------------------------- row 24


def truncate_rank_file(run_dir):
    path = run_dir / "checkpoint" / "rank0.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path, "not a readable checkpoint file"


def random_rank_file(run_dir):
    path = run_dir / "checkpoint" / "rank0.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    return path, "not a readable checkpoint file"


def marker_without_world_size(run_dir):
    path = run_dir / "checkpoint" / "complete.json"
    meta = json.loads(path.read_text())
    del meta["world_size"]
    path.write_text(json.dumps(meta))
    return path, "world_size is None, not a valid world_size"


def corrupt_marker(run_dir):
    path = run_dir / "checkpoint" / "complete.json"
    path.write_bytes(path.read_bytes()[:40])
    return path, "not a checkpoint marker"


@pytest.mark.parametrize("damage", [truncate_rank_file, random_rank_file, marker_without_world_size, corrupt_marker],
                         ids=lambda f: f.__name__)
def test_a_damaged_checkpoint_is_one_line_naming_the_file_and_nothing_is_touched(trained, tmp_path, capsys, damage):
    run_dir = copy_of(trained, tmp_path)
    path, why = damage(run_dir)
    before = files(run_dir)
    with pytest.raises(SystemExit) as info, entry_errors("golf", lambda: [run_dir]):
        run(config(run_dir), run_dir)
    assert info.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"golf: CheckpointError: {path}: ") and why in line, line
    assert len(line.splitlines()) == 1
    assert files(run_dir) == before  # no restart at step 0: metrics.jsonl and summary.json as they were


def test_a_rank_file_damaged_inside_its_archive_fails_loading_naming_it(trained, tmp_path):
    run_dir = copy_of(trained, tmp_path)
    path = run_dir / "checkpoint" / "rank0.pt"
    with zipfile.ZipFile(path) as archive:  # the same members, the pickled index replaced by garbage
        members = {i.filename: archive.read(i.filename) for i in archive.infolist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, b"\x80\x02garbage" if name.endswith("data.pkl") else data)
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    with pytest.raises(CheckpointError, match=f"^{path}: cannot be loaded"):
        load_checkpoint(run_dir, dist)


def test_another_world_size_is_refused_before_anything_is_touched(trained, tmp_path):
    from golf.train import check_resume

    run_dir = copy_of(trained, tmp_path)
    with pytest.raises(CheckpointError, match="was written by 1 ranks but this run has 2"):
        check_resume(config(run_dir), run_dir, world_size=2)
