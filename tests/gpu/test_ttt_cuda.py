"""Score-first TTT on CUDA: compiled bf16 scoring, eager bf16 training, LoRA hooks inside the compiled graph.

Skipped without a GPU. On a GPU machine: ``python -m pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import math

import pytest
import torch

from golf.config.validate import load_config
from golf.train import run
from tests.gpu.test_cuda_path import CUDA
from tests.helpers import compose_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TTT = ["eval=ttt", "eval.max_tokens=8192", "eval.ttt.chunk_tokens=1024", "train.val_every=0"]


@pytest.mark.parametrize("adapt", [[], ["eval.ttt.adapt=lora", "eval.ttt.lora_targets=[q,v,o]"]])
def test_compiled_bf16_ttt_run_end_to_end(tmp_path, adapt):
    cfg = load_config(compose_config([*CUDA, *TTT, *adapt]))
    cfg.run_dir = str(tmp_path / "run")
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["eval_kind"] == "ttt"
    assert math.isfinite(summary["val_bpb"]) and math.isfinite(summary["sliding_val_bpb"])
    assert summary["ttt_chunks"] == 8 and summary["ttt_steps"] == 7 * 3


def test_compiled_ttt_with_lr_zero_equals_compiled_sliding(tmp_path):
    cfg = load_config(compose_config([*CUDA, *TTT, "eval.ttt.lr=0.0"]))
    cfg.run_dir = str(tmp_path / "run")
    summary = run(cfg, tmp_path / "run")
    assert summary["val_tokens"] == 8192
    # two separately compiled graphs of the same weights; bf16 kernels may differ in the last bits only
    assert summary["val_bpb"] == pytest.approx(summary["sliding_val_bpb"], rel=1e-4)
