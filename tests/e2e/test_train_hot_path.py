"""The training loop after the hot-path changes (loss in the forward, one transfer per step, micro-batches,
no per-step flag exchange in one process) trains exactly as before on CPU in fp32."""

from __future__ import annotations

import json

import pytest

from golf.config.validate import load_config
from golf.train import run
from tests.helpers import TINY, compose_config

# train losses of this config before the changes (one micro-batch per step, loss outside the model)
BEFORE = [6.930371284484863, 6.9262847900390625, 6.930431365966797, 6.915496826171875, 6.921879291534424,
          6.919828414916992]
BEFORE_VAL_BPB = 3.769408864357099


@pytest.mark.parametrize("micro", ["auto", "64"])
def test_tiny_run_has_the_losses_of_before(tmp_path, micro):
    """auto = the configured split (grad_accum_steps=1: the whole step); 64 = eight micro-batches of one
    sequence each (the same gradient up to summation order)."""
    cfg = load_config(compose_config([*TINY, "train.val_every=0", "eval.prequant=false",
                                      f"train.micro_batch_tokens={micro}"]))
    cfg.run_dir = str(tmp_path)
    summary = run(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if r["event"] == "train"]
    assert summary["status"] == "completed" and summary["micro_batch_tokens"] == (512 if micro == "auto" else 64)
    assert losses == pytest.approx(BEFORE, rel=1e-5)
    assert summary["val_bpb"] == pytest.approx(BEFORE_VAL_BPB, rel=1e-5)
    for key in ("setup_s", "compile_s", "quantize_s", "compress_s", "final_eval_s"):
        assert summary[key] >= 0
