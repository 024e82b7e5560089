"""The generated submission runs like a record and computes what golf computes.

For the baseline (also on CaseOps data, packed rows and document-aware attention), #507, #1493 and #1855
(also with its phased per-document LoRA TTT) recipes at ``scale=cpu`` (cut to a few steps, one thread, demo data):
golf trains, exports and scores; then the run's own ``submission.py`` is run as a plain script — with
golf, hydra and omegaconf made unimportable, data paths from the environment — and must print the same
train loss at every step, the same round-trip val_bpb and the same artifact bytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from golf.config.validate import load_config
from golf.data import prepare_data
from golf.train import run
from tests.helpers import compose_config

SHORT = ["logger=none", "scale=cpu", "train.iterations=6", "train.val_every=0", "train.log_every=1",
         "train.batch_tokens=2048", "train.seq_len=128", "eval.max_tokens=4096", "eval.prequant=false"]
RECIPES = {
    "baseline": ["experiment=baseline", "data=demo"],
    # CaseOps data: the script reads the byte sidecar (VAL_BYTES_FILES) and scores on original bytes; it
    # trains on document-packed rows with document-aware attention (frontier-1855 §2.5-2.6)
    "baseline_caseops": ["experiment=baseline", "data=demo_caseops", "+data.packing={}",
                         "+arch.attention.document={max_len: 96}"],
    "pr507": ["experiment=pr507", "data=demo", "eval.stride=64"],
    "pr1493": ["experiment=pr1493", "data=demo_sp8192", "optimizer.schedule.kind=wallclock_fraction",
               "train.max_wallclock_s=null", "train.warmup_steps=1", "eval.stride=64",
               "eval.ttt.chunk_tokens=1024", "eval.ttt.seq_len=128", "eval.ttt.batch_seqs=4"],
    # every #1855 option folded in: its model and optimizer on packed CaseOps rows, its export (LQER, int8
    # gates, the per-group container through lrzip; every matrix above 4,096 elements quantized so that
    # each group holds codes at this width) and its evaluation (phased per-document LoRA TTT)
    "pr1855": ["experiment=pr1855", "quant.passthrough_max_numel=4096", "quant.calibration.batches=2",
               "data=demo_caseops", "optimizer.schedule.kind=wallclock_fraction", "train.max_wallclock_s=null",
               "eval.seq_len=128", "eval.phased.chunk=16", "eval.phased.window=128", "eval.phased.batch_docs=8",
               "eval.phased.lora_rank=8", "eval.phased.prefix_docs=24", "eval.phased.phases=2",
               "eval.phased.global_chunk_tokens=512", "eval.phased.global_seq_len=128"],
}
NEEDS_LRZIP = {"pr1855"}

# Runs a script with golf, hydra and omegaconf unimportable (whatever sys.path and installed finders say).
BLOCKED_RUNNER = """
import runpy, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("golf", "hydra", "omegaconf"):
            raise ModuleNotFoundError(f"{name} is not importable here")
        return None
sys.meta_path.insert(0, Blocked())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def run_script(script, cwd, paths, extra_env=None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env.update(OMP_NUM_THREADS="1", TRAIN_FILES=paths.train_pattern, VAL_FILES=paths.val_pattern,
               TOKENIZER_PATH=str(paths.tokenizer_path), **(extra_env or {}))
    if paths.val_bytes_pattern is not None:
        env.update(VAL_BYTES_FILES=paths.val_bytes_pattern)
    out = subprocess.run([sys.executable, "-I", "-c", BLOCKED_RUNNER, str(script)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def printed(stdout: str, kind: str) -> list[dict]:
    """The ``kind step:N k:v ...`` lines a submission prints, as dicts."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith(kind + " "):
            rows.append({k: v for k, v in (f.split(":", 1) for f in line.split()[1:])})
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_the_generated_script_computes_what_golf_computes(tmp_path, recipe):
    if recipe in NEEDS_LRZIP and shutil.which("lrzip") is None:
        pytest.skip("the lrzip binary is not installed (apt-get install lrzip)")
    cfg = load_config(compose_config([*RECIPES[recipe], *SHORT]))
    run_dir = tmp_path / "golf"
    cfg.run_dir = str(run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run(cfg, run_dir)
    finally:
        torch.set_num_threads(threads)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    on_disk = json.loads((run_dir / "summary.json").read_text())
    if cfg.data.packing is not None:  # one packed row per micro-step
        assert on_disk["micro_batch_tokens"] == cfg.train.batch_tokens // on_disk["grad_accum_steps"]
    losses = {r["step"]: r["train_loss"] for r in records if r["event"] == "train"}

    stdout = run_script(run_dir / "submission.py", tmp_path, prepare_data(cfg.data))
    script_losses = {int(r["step"]): float(r["train_loss"]) for r in printed(stdout, "train")}
    assert script_losses == losses and len(losses) == 6
    final = printed(stdout, "final_eval")[-1]
    assert float(final["val_bpb"]) == summary["val_bpb"]
    artifact = printed(stdout, "artifact")[-1]
    assert int(artifact["model_bytes"]) == summary["model_bytes"]
    assert (tmp_path / "model.golf").read_bytes() == (run_dir / "model.golf").read_bytes()
    assert int(artifact["code_bytes"]) == (run_dir / "submission.py").stat().st_size == summary["code_bytes"]
    # the readable form is the same program
    readable = run_script(run_dir / "train_gpt.py", tmp_path / "readable" if (tmp_path / "readable").mkdir() is None
                          else tmp_path, prepare_data(cfg.data))
    assert printed(readable, "final_eval")[-1]["val_bpb"] == final["val_bpb"]
    assert re.search(r"^summary step:0 .*model_params:\d+", stdout, re.M)
