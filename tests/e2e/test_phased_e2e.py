"""eval=pr1855 end to end on the CaseOps demo: #1855's recipe shrunk to a CPU, its phased per-document LoRA
TTT improves the round-tripped score over the same per-document scoring without adaptation, and
golf.evaluate reproduces the run's score exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from golf.config.validate import load_config
from golf.train import run
from tests.helpers import CONF_DIR, compose_config

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("lrzip") is None, reason="the lrzip binary is not installed")]

# #1855's evaluation at the demo's scale: its documents are short (most under 100 tokens), so chunks of 16
# in windows of 128 (the training length), rank-8 adapters at #1855's alpha/r, two pauses over 24 documents
EVAL = ["eval=pr1855", "eval.seq_len=128", "eval.max_tokens=4096", "eval.phased.chunk=16",
        "eval.phased.window=128", "eval.phased.batch_docs=8", "eval.phased.lora_rank=8",
        "eval.phased.lora_alpha=14.4", "eval.phased.lr=0.003", "eval.phased.prefix_docs=24",
        "eval.phased.phases=2", "eval.phased.global_chunk_tokens=512", "eval.phased.global_seq_len=128",
        "eval.phased.global_lr=0.003"]
TRAIN = ["experiment=pr1855", "scale=cpu", "data=demo_caseops", "logger=none", "arch.model_dim=64",
         "arch.num_heads=2", "arch.num_kv_heads=1", "train.iterations=30", "train.batch_tokens=2048",
         "train.seq_len=128", "train.val_every=0", "train.max_wallclock_s=null",
         "optimizer.schedule.kind=wallclock_fraction", "quant.calibration.batches=2"]


@pytest.fixture(scope="module")
def phased_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("phased") / "run"
    cfg = load_config(compose_config([*TRAIN, *EVAL]))
    cfg.run_dir = str(run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny kernels: threads only spin on a shared CPU
    try:
        return run_dir, run(cfg, run_dir)
    finally:
        torch.set_num_threads(threads)


def _evaluate(run_dir, out, *overrides):
    proc = subprocess.run([sys.executable, "-m", "golf.evaluate", f"run={run_dir}", *EVAL, *overrides,
                           f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=900,
                          cwd=CONF_DIR.parent, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "result.json").read_text())


def test_phased_ttt_improves_the_round_trip_score_and_golf_evaluate_reproduces_it(phased_run, tmp_path):
    run_dir, summary = phased_run
    assert summary["eval_kind"] == "phased" and summary["val_tokens"] == 4096
    assert summary["ttt_docs"] == 50 and summary["ttt_batches"] == 7 and summary["ttt_steps"] > 50
    assert summary["ttt_phase1_docs"] == 12 and summary["ttt_phase2_docs"] == 24 and summary["ttt_phase_steps"] > 0
    assert 0 < summary["ttt_s"] <= summary["final_eval_s"] and summary["ttt_projected_s"] > summary["ttt_s"]
    again = _evaluate(run_dir, tmp_path / "again")
    for key in ("val_bpb", "val_loss", "val_tokens", "val_bytes", "ttt_chunks", "ttt_steps", "ttt_phase_steps"):
        assert again[key] == summary[key], key
    # the same documents, rows and chunks, nothing adapted: the plain per-document score
    plain = _evaluate(run_dir, tmp_path / "plain", "eval.phased.lr=0", "eval.phased.phases=0")
    assert plain["val_tokens"] == 4096 and plain["val_bytes"] == summary["val_bytes"]
    assert summary["val_bpb"] < plain["val_bpb"] - 0.05, (summary["val_bpb"], plain["val_bpb"])
    print(f"phased TTT {summary['val_bpb']:.4f} vs no adaptation {plain['val_bpb']:.4f} bpb; ttt_s "
          f"{summary['ttt_s']} (projected {summary['ttt_projected_s']}), phases {summary['ttt_phase1_s']} / "
          f"{summary['ttt_phase2_s']} s")
