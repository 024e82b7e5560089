"""Every seed experiment trains a few steps at reduced width, exports its artifact and is scored on it.

The presets keep their depth, layer selectors, techniques, optimizer tables, averaging and quantization
routing; only widths, batch and evaluation length shrink so that this runs on a CPU.
"""

from __future__ import annotations

import json
import math

import pytest

from golf.config.validate import load_config
from golf.train import run
from tests.helpers import compose_config, group_options

SMALL = [
    "data=demo",
    "arch.vocab_size=${data.vocab_size}",  # sp8192 recipes (pr1493) on the 1024-piece demo data
    "logger=none",
    "arch.model_dim=64",
    "arch.num_heads=4",
    "arch.num_kv_heads=2",
    "train.iterations=4",
    "train.batch_tokens=1024",
    "train.seq_len=128",
    "train.val_every=0",
    "train.warmup_steps=1",
    "train.max_wallclock_s=3600",
    "eval.seq_len=128",
    "eval.max_tokens=2048",
    "device=cpu",
    "compile=false",
]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", [e for e in group_options("experiment") if e != "demo"])
def test_experiment_trains_exports_and_scores(tmp_path, experiment):
    overrides = [f"experiment={experiment}", *SMALL]
    composed = compose_config(overrides)
    if composed.eval.kind == "sliding":
        overrides.append("eval.stride=32")
    if composed.quant.get("qat") is not None:  # the full-size threshold would leave no weight to fake-quantize
        overrides.append("quant.qat.min_numel=1024")
    cfg = load_config(compose_config(overrides))
    run_dir = tmp_path / experiment
    cfg.run_dir = str(run_dir)
    summary = run(cfg, run_dir)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "completed"
    assert math.isfinite(summary["val_bpb"]) and math.isfinite(summary["prequant_val_bpb"])
    assert on_disk["val_tokens"] == 2048
    assert on_disk["eval_kind"] == composed.eval.kind
    assert on_disk["artifact_bytes"] == on_disk["model_bytes"] + on_disk["code_bytes"]
    report = json.loads((run_dir / "quant_report.json").read_text())
    assert report  # per-tensor routing was recorded


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["int8", "int6", "none"])
def test_baseline_quant_presets_round_trip(tmp_path, quant):
    """The generic presets on the baseline at a width where MLP and attention matrices are quantized."""
    overrides = ["experiment=baseline", f"quant={quant}", *SMALL, "arch.model_dim=256", "arch.num_layers=2",
                 "train.iterations=2"]
    cfg = load_config(compose_config(overrides))
    run_dir = tmp_path / quant
    cfg.run_dir = str(run_dir)
    summary = run(cfg, run_dir)
    assert math.isfinite(summary["val_bpb"])
    report = json.loads((run_dir / "quant_report.json").read_text())
    schemes = {t["name"]: t["scheme"] for t in report["tensors"]}
    if quant == "none":
        assert set(schemes.values()) <= {"fp16", "fp32"}
    else:
        assert schemes["blocks.0.mlp.fc.weight"] == quant  # 512x256: above the passthrough size
