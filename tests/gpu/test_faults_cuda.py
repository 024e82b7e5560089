"""The divergence check on CUDA: the flag is a device tensor folded into the per-step flags all-reduce
(no host sync of its own); with every log off, a compiled bf16 run that diverges must still stop.

Skipped without a GPU. On a GPU machine: ``python -m pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import json

import pytest
import torch

from golf.config.validate import load_config
from golf.train import run
from tests.gpu.test_cuda_path import CUDA
from tests.helpers import compose_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_divergence_is_caught_on_cuda_with_logging_off(tmp_path):
    overrides = [*CUDA, "optimizer.muon.lr=1e30", "optimizer.adam_groups.tok.lr=1e30",
                 "optimizer.adam_groups.scalar.lr=1e30", "train.log_every=0", "logger.console_every=0",
                 "train.val_every=0"]
    cfg = load_config(compose_config(overrides))
    cfg.run_dir = str(tmp_path / "run")
    with pytest.raises(FloatingPointError, match="non-finite"):
        run(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and not (tmp_path / "run" / "model.golf").exists()
