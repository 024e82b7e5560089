"""Rows 5, 6, 3, 13 and 14 in a real tiny run: divergence with logging off, a score that is not
finite, a single run far over budget, two runs into one directory (at once, and one after a
completed one)."""

from __future__ import annotations

import json
import time

import pytest

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.files import RunDirBusy, run_dir_lock
from golf.train import run
from tests.helpers import TINY, compose_config

EXPLODE = ["optimizer.muon.lr=1e30", "optimizer.adam_groups.tok.lr=1e30", "optimizer.adam_groups.scalar.lr=1e30"]


def tiny(tmp_path, *extra: str):
    cfg = load_config(compose_config([*TINY, *extra]))
    cfg.run_dir = str(tmp_path / "run")
    return cfg, tmp_path / "run"


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_divergence_is_caught_with_every_log_off(tmp_path):
    cfg, run_dir = tiny(tmp_path, *EXPLODE, "train.log_every=0", "logger.console_every=0", "train.val_every=0")
    with pytest.raises(FloatingPointError, match="train loss became non-finite at or before step"):
        run(cfg, run_dir)
    s = summary(run_dir)
    assert s["status"] == "failed" and s["error"].startswith("FloatingPointError")
    assert "steps" not in s and not (run_dir / "model.golf").exists()  # stopped in the loop, nothing exported
    assert "FloatingPointError" in (run_dir / "error.txt").read_text()


def test_a_non_finite_score_is_never_completed(tmp_path):
    # one step: its loss (taken before the update) is finite, the weights it leaves are not
    cfg, run_dir = tiny(tmp_path, *EXPLODE, "train.iterations=1", "train.val_every=0")
    with pytest.raises(FloatingPointError, match="final val_bpb is nan"):
        run(cfg, run_dir)
    s = summary(run_dir)
    assert s["status"] == "failed" and s["steps"] == 1 and s["val_bpb"] == "nan"


def test_a_single_run_far_over_budget_is_refused_before_training(tmp_path):
    cfg, run_dir = tiny(tmp_path, "quant.limit_bytes=50000")  # the estimate is about twice that
    with pytest.raises(ConfigError) as info:
        run(cfg, run_dir)
    assert info.value.key == "quant.limit_bytes" and "refused before training" in info.value.reason
    assert not run_dir.exists()  # nothing was started


def test_a_second_run_into_a_busy_directory_is_refused_at_once(tmp_path):
    cfg, run_dir = tiny(tmp_path)
    with run_dir_lock(run_dir):  # the first run, still going
        (run_dir / "metrics.jsonl").write_text("{}\n")
        t0 = time.perf_counter()
        with pytest.raises(RunDirBusy, match="is in use by another run"):
            run(cfg, run_dir)
        assert time.perf_counter() - t0 < 30
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "metrics.jsonl"]  # untouched
    run(cfg, run_dir)  # once it has ended, the directory is free
    assert summary(run_dir)["status"] == "completed"


def test_a_new_run_into_the_directory_of_a_completed_run_is_refused_and_leaves_it_untouched(tmp_path):
    cfg, run_dir = tiny(tmp_path, "eval.prequant=false", "train.val_every=0")
    first = run(cfg, run_dir)
    before = {name: (run_dir / name).read_bytes() for name in ("summary.json", "metrics.jsonl")}
    with pytest.raises(ConfigError, match=rf"^run_dir=.*: already holds a completed run "
                                          rf"\(val_bpb {first['val_bpb']:.6f}\); give another run_dir"):
        run(cfg, run_dir)
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    # a run that did not complete may be run again there (from its checkpoint, or from step 0)
    (run_dir / "summary.json").write_text(json.dumps({"status": "failed"}))
    from golf.train import check_resume

    check_resume(cfg, run_dir)
