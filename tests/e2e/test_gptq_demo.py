"""quant=pr1493 end to end on the demo data: training, calibration, GPTQ, export, round-trip eval; and
GPTQ+SDClip's int6 round-trip gap against round to nearest with the same SDClip scales on the same weights."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from golf.checkpoint import load_checkpoint
from golf.config.validate import eval_seq_len, load_config
from golf.data import prepare_data
from golf.dist import DistInfo
from golf.evaluate import load_into
from golf.kernel.data import DistributedTokenLoader, load_validation_tokens, validation_bytes
from golf.kernel.evaluator import build_evaluator
from golf.model import build_model
from golf.quant import export_state_dict, load_artifact
from golf.quant.calibrate import calibrate
from golf.train import run
from tests.helpers import compose_config

pytestmark = pytest.mark.slow

DEMO_PR1493 = ["experiment=demo", "arch.num_layers=2", "arch.model_dim=64", "arch.num_heads=2", "arch.num_kv_heads=1",
               "train.iterations=80", "train.batch_tokens=4096", "train.seq_len=128", "train.val_every=0",
               "train.log_every=20", "optimizer.schedule.warmdown_iters=30", "eval.max_tokens=16384",
               "logger=none", "quant=pr1493", "quant.passthrough_max_numel=1024", "quant.calibration.batches=8",
               "train.checkpoint_at_end=true"]


def round_trip_bpb(model, state, blob, score) -> float:
    model.load_state_dict(state)
    load_into(model, load_artifact(blob))
    return score(model)


def test_pr1493_demo_gptq_gap_below_round_to_nearest(tmp_path):
    cfg = load_config(compose_config(DEMO_PR1493))
    run_dir = tmp_path / "run"
    cfg.run_dir = str(run_dir)
    run(cfg, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and math.isfinite(summary["val_bpb"])
    assert summary["calibration_batches"] == 8 and summary["calibration_s"] > 0 and summary["quantize_s"] > 0
    report = json.loads((run_dir / "quant_report.json").read_text())["totals"]
    assert report["compressor"] == "brotli" and report["byte_shuffle"] == 2

    one = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    model = build_model(cfg.arch)
    state = load_checkpoint(run_dir, one)["model"]  # the weights training ended with (= the exported ones)
    model.load_state_dict(state)
    paths = prepare_data(cfg.data)
    val = load_validation_tokens(paths.val_pattern, eval_seq_len(cfg))
    nbytes = validation_bytes(cfg.data, paths, val, cfg.arch.vocab_size)
    plain = build_evaluator(cfg.eval, tokens=val, nbytes=nbytes, seq_len=eval_seq_len(cfg), dist=one).plain()

    def score(m) -> float:
        return plain(m).val_bpb

    prequant = score(model)
    assert prequant == pytest.approx(summary["prequant_val_bpb"], rel=1e-6)
    cal = calibrate(model, cfg.quant, one, train_loader=lambda: DistributedTokenLoader(
        paths.train_pattern, 0, 1), batch_tokens=cfg.train.batch_tokens, seq_len=cfg.train.seq_len)
    sd = {k: v.detach().clone() for k, v in state.items()}
    gptq_blob, _ = export_state_dict(sd, cfg.quant, model.param_roles, cal.hessians)
    assert gptq_blob == (run_dir / "model.golf").read_bytes()  # the run exported exactly this

    rtn = copy.deepcopy(cfg.quant)  # the same SDClip scales, rounded to nearest
    for scheme in rtn.schemes.values():
        scheme.gptq = None
    rtn.calibration = None
    rtn_blob, _ = export_state_dict(sd, rtn, model.param_roles)
    gptq_bpb = round_trip_bpb(model, state, gptq_blob, score)
    rtn_bpb = round_trip_bpb(model, state, rtn_blob, score)
    assert gptq_bpb == pytest.approx(summary["val_bpb"], rel=1e-9)
    gap_gptq, gap_rtn = gptq_bpb - prequant, rtn_bpb - prequant
    print(f"prequant {prequant:.5f}  GPTQ+SDClip int6 {gptq_bpb:.5f} (gap {gap_gptq:+.5f})  "
          f"RTN+SDClip int6 {rtn_bpb:.5f} (gap {gap_rtn:+.5f})")
    assert gap_gptq < gap_rtn
