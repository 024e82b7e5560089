"""W&B offline, with the real client: a two-idea x two-seed sweep gives two groups, and the offline run
files hold what the report uses (read back without the network, also by golf.report)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from golf.logging.wandb_offline import read_offline_run
from golf.report import main as report
from tests.helpers import CONF_DIR, TINY

REPORT_KEYS = {"val_bpb", "val_loss", "prequant_val_bpb", "quant_gap_bpb", "artifact_bytes", "model_bytes",
               "code_bytes", "steps", "ms_per_step", "tokens_seen", "setup_s", "final_eval_s", "export_s",
               "peak_mem_mib", "train_time_s", "seed", "status"}


@pytest.mark.slow
def test_two_ideas_two_seeds_make_two_wandb_groups(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    args = [o for o in TINY if not o.startswith(("logger=", "arch.model_dim="))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "golf.train", "-m", *args, "logger=wandb", "logger.wandb.mode=offline",
         "arch.model_dim=32,48", "seed=1,2", "hydra/launcher=local", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, timeout=1200, cwd=CONF_DIR.parent, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    offline = sorted(sweep.glob("*/wandb/offline-run-*"))
    assert len(offline) == 4
    runs = [read_offline_run(d) for d in offline]
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
        assert r.job_type == "train"
        assert REPORT_KEYS <= set(r.summary), REPORT_KEYS - set(r.summary)
        assert r.summary["status"] == "completed" and 0 < r.summary["val_bpb"] < 20
        assert r.summary["quant_gap_bpb"] == pytest.approx(r.summary["val_bpb"] - r.summary["prequant_val_bpb"])
        assert [row["train/train_loss"] for row in r.history if "train/train_loss" in row]  # the loss curve
    assert len(groups) == 2
    for name, members in groups.items():
        dims = {m.config["arch"]["model_dim"] for m in members}
        assert len(dims) == 1 and f"arch.model_dim={dims.pop()}" in name  # the idea is readable in the name
        assert sorted(m.config["seed"] for m in members) == [1, 2]
        assert all(any(t.startswith("idea-") for t in m.tags) for m in members)
    # golf.report reads the W&B offline runs on their own (copied out of the golf run directories)
    only_wandb = tmp_path / "wandb_only"
    for i, d in enumerate(offline):
        shutil.copytree(d, only_wandb / str(i) / d.name)
    capsys.readouterr()
    assert report([str(only_wandb), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert sorted(r.split(",")[0] for r in rows[1:]) == ["32", "48"]
    assert all(r.split(",")[1:3] == ["2", "2"] for r in rows[1:])  # 2 distinct seeds, 2 runs per group
    # ... and writes a record of them: the order of the logged events comes from the W&B history
    rec = tmp_path / "record"
    assert report([str(only_wandb), "--submission", "32", "--record-dir", str(rec)]) == 0
    sub = json.loads((rec / "submission.json").read_text())
    assert sub["compliance_evidence"]["no_pre_quant_ttt"]["scored_after_artifact"] == {"1": True, "2": True}
    assert sub["compliance"]["artifact_under_16mb"] and sub["compliance"]["score_first_ttt"]
