"""The CUDA path: torch.compile, bf16 autocast, flash SDPA, QAT switching inside the compiled graph.

Skipped without a GPU. On a GPU machine: ``python -m pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from golf.config.validate import load_config
from golf.train import run
from tests.helpers import TINY, compose_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = [*TINY, "device=cuda", "compile=true", "precision=bf16", "arch.model_dim=128", "arch.num_heads=2",
        "arch.num_kv_heads=1"]


def test_compiled_bf16_run_end_to_end(tmp_path):
    cfg = load_config(compose_config(CUDA))
    cfg.run_dir = str(tmp_path / "run")
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and math.isfinite(summary["val_bpb"])


def test_late_qat_switches_on_in_the_compiled_model(tmp_path):
    """pr187's int6 QAT rules with an lr-threshold schedule: the switch must take effect when compiled."""
    overrides = [*CUDA, "quant=pr187", "arch.model_dim=256", "quant.qat.min_numel=1024", "quant.qat.schedule=lr_below",
                 "++quant.qat.lr_threshold=0.5", "optimizer.schedule.kind=iterations", "optimizer.schedule.warmdown_iters=6"]
    cfg = load_config(compose_config(overrides))
    cfg.run_dir = str(tmp_path / "run")
    run(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    active = [r["qat_active"] for r in rows if r["event"] == "train"]
    assert active[0] is False and active[-1] is True


def test_pr1493_loop_switch_in_the_compiled_bf16_model(tmp_path):
    """experiment=pr1493 at small width, compiled with bf16 autocast: both topologies are warmed up, the
    loop switches on mid-run (the compiled graph follows it), the bf16 embedding trains, the run scores."""
    overrides = ["experiment=pr1493", "data=demo_sp8192", "logger=none", "device=cuda", "compile=true",
                 "precision=bf16", "arch.model_dim=128", "arch.num_heads=4", "arch.num_kv_heads=2",
                 "train.iterations=20", "train.max_wallclock_s=null", "train.batch_tokens=8192", "train.seq_len=256",
                 "train.warmup_steps=2", "train.val_every=0", "train.log_every=1", "eval.seq_len=256",
                 "eval.max_tokens=8192", "eval.ttt.chunk_tokens=4096", "eval.ttt.seq_len=256"]
    cfg = load_config(compose_config(overrides))
    cfg.run_dir = str(tmp_path / "run")
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and math.isfinite(summary["val_bpb"])
    assert summary["loop_switch_step"] == 7  # 7/20 = 0.35
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if r["event"] == "train"]
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
