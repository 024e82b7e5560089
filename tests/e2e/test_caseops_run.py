"""A run on CaseOps data (data=demo_caseops) reports val_bpb on the original bytes of its byte sidecar,
and the eval-only entry scores its artifact the same way."""

from __future__ import annotations

import math

import pytest
import torch

from golf.config.errors import ConfigError
from golf.data.paths import prepare_data
from golf.data.shards import list_shards, read_shard
from golf.eval import EvalConfig
from golf.evaluate import score_artifact
from tests.e2e.test_train import tiny


def test_tiny_caseops_run_scores_on_sidecar_bytes(tmp_path):
    from golf.train import run

    cfg, run_dir = tiny(tmp_path, "data=demo_caseops")
    summary = run(cfg, run_dir)
    paths = prepare_data(cfg.data)
    sidecar = torch.cat([read_shard(f) for f in list_shards(paths.val_bytes_pattern)]).to(torch.int64)
    assert summary["val_tokens"] == 2048  # eval.max_tokens: standard windows of 64 over targets 1..2048
    assert summary["val_bytes"] == int(sidecar[1:2049].sum())
    assert summary["val_bpb"] == pytest.approx(summary["val_loss"] * 2048 / (math.log(2) * summary["val_bytes"]))
    scored = score_artifact(run_dir, EvalConfig(max_tokens=2048), device="cpu")
    assert (scored["val_bpb"], scored["val_bytes"]) == (summary["val_bpb"], summary["val_bytes"])
    with pytest.raises(ConfigError, match="split='train'.*only the validation split has"):
        score_artifact(run_dir, EvalConfig(max_tokens=2048), split="train", device="cpu")
