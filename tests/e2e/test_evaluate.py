"""The eval-only entry point re-scores a saved artifact with any eval config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.eval import EvalConfig
from golf.evaluate import score_artifact
from golf.train import run
from tests.helpers import CONF_DIR, TINY, compose_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    cfg = load_config(compose_config([*TINY, "train.val_every=0"]))
    cfg.run_dir = str(run_dir)
    summary = run(cfg, run_dir)
    return run_dir, summary


def test_rescoring_with_the_training_eval_reproduces_the_summary(trained_run):
    run_dir, summary = trained_run
    result = score_artifact(run_dir, EvalConfig(max_tokens=2048))
    assert result["val_bpb"] == pytest.approx(summary["val_bpb"], rel=1e-9)
    assert result["val_tokens"] == summary["val_tokens"]


def test_sliding_rescoring_counts_each_target_once(trained_run):
    run_dir, summary = trained_run
    result = score_artifact(run_dir, EvalConfig(name="s", kind="sliding", seq_len=64, stride=16, max_tokens=2048))
    assert result["val_tokens"] == 2048 and result["val_bytes"] == summary["val_bytes"]
    assert result["eval_kind"] == "sliding"


def test_bad_inputs_are_named(trained_run, tmp_path):
    run_dir, _ = trained_run
    with pytest.raises(ConfigError, match="run="):
        score_artifact(tmp_path, EvalConfig())
    with pytest.raises(ConfigError, match="artifact="):
        score_artifact(run_dir, EvalConfig(), artifact=tmp_path / "missing.golf")
    with pytest.raises(ConfigError, match="eval.stride"):
        score_artifact(run_dir, EvalConfig(kind="sliding"))


def test_cli_writes_the_result(trained_run, tmp_path):
    run_dir, _ = trained_run
    proc = subprocess.run(
        [sys.executable, "-m", "golf.evaluate", f"run={run_dir}", "eval=sliding1024", "eval.seq_len=64",
         "eval.stride=32", "eval.max_tokens=1024", f"hydra.run.dir={tmp_path}/out"],
        capture_output=True, text=True, timeout=300, cwd=CONF_DIR.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["val_tokens"] == 1024 and result["eval"] == "sliding1024"
