"""End to end on CPU: train a tiny model, export, round trip, score; determinism; DDP equivalence."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from golf.config.validate import load_config
from golf.plan import submission_of
from golf.train import run
from tests.helpers import CONF_DIR, TINY, compose_config

SUMMARY_KEYS = {
    "val_bpb", "val_loss", "prequant_val_bpb", "val_tokens", "val_bytes", "artifact_bytes", "model_bytes",
    "code_bytes", "model_params", "steps", "train_time_s", "ms_per_step", "tokens_seen", "seed", "status",
}


def train_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if r["event"] == "train"]


def tiny(tmp_path: Path, *extra: str):
    cfg = load_config(compose_config([*TINY, *extra]))
    run_dir = tmp_path / "run"
    cfg.run_dir = str(run_dir)
    return cfg, run_dir


def test_tiny_run_writes_the_full_record(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="golf")
    cfg, run_dir = tiny(tmp_path, "logger.console_every=4")
    summary = run(cfg, run_dir)
    # progress without a terminal: plain lines at the first steps, the cadence and the last step;
    # evaluation and export lines; one last line naming the run directory and the score
    said = [r.getMessage() for r in caplog.records if r.name == "golf"]
    assert [int(s.split()[1].split("/")[0]) for s in said if s.startswith("train ")] == [1, 2, 3, 4, 6]
    assert any(s.startswith("eval standard ") and "running_bpb" in s for s in said)
    assert sum(s.startswith("artifact: model ") for s in said) == 1
    assert said[-1] == f"golf: run completed: val_bpb {summary['val_bpb']:.6f}, " \
                       f"artifact {summary['artifact_bytes']:,} bytes; run dir {run_dir}"
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(on_disk), SUMMARY_KEYS - set(on_disk)
    assert on_disk["status"] == "completed"
    assert summary["val_bpb"] == on_disk["val_bpb"]
    assert math.isfinite(on_disk["val_bpb"]) and 0 < on_disk["val_bpb"] < 20
    assert on_disk["val_tokens"] == 2048
    assert on_disk["steps"] == 6 and on_disk["tokens_seen"] == 6 * 512
    assert on_disk["artifact_bytes"] == on_disk["model_bytes"] + on_disk["code_bytes"]
    assert on_disk["model_bytes"] == (run_dir / "model.golf").stat().st_size
    assert (run_dir / "config.yaml").exists() and (run_dir / "provenance.yaml").exists()
    events = [json.loads(line)["event"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert events.count("train") == 6 and events.count("val") == 1  # val at step 3 (step 6 is the final eval)
    assert "final_eval" in events and "artifact" in events
    # the code counted is the generated submission the run wrote beside its artifact
    assert on_disk["code_bytes"] == (run_dir / "submission.py").stat().st_size
    assert (run_dir / "train_gpt.py").stat().st_size > on_disk["code_bytes"]  # the readable form


def test_round_trip_score_uses_the_artifact(tmp_path):
    """The reported val_bpb is that of the dequantized artifact, reproducible from the file alone."""
    from golf.data import prepare_data
    from golf.dist import DistInfo
    from golf.kernel.data import load_validation_tokens, validation_bytes
    from golf.kernel.evaluator import build_evaluator
    from golf.model import build_model
    from golf.quant.export import read_artifact

    cfg, run_dir = tiny(tmp_path)
    summary = run(cfg, run_dir)
    model = build_model(cfg.arch)
    model.load_state_dict(read_artifact(run_dir / "model.golf", model.state_dict()))
    paths = prepare_data(cfg.data)
    tokens = load_validation_tokens(paths.val_pattern, cfg.train.seq_len)
    nbytes = validation_bytes(cfg.data, paths, tokens, cfg.arch.vocab_size)
    cpu = DistInfo(0, 0, 1, torch.device("cpu"))
    res = build_evaluator(cfg.eval, tokens=tokens, nbytes=nbytes, seq_len=cfg.train.seq_len, dist=cpu).plain()(model)
    assert res.val_bpb == pytest.approx(summary["val_bpb"], rel=1e-6)


def test_an_evaluation_over_its_budget_is_said_and_recorded(tmp_path, caplog):
    """eval.budget_s=0.001: the projection at the first batch exceeds it (one line), the run completes
    and its summary carries the time against the budget (golf.report's eval_under_600s reads it)."""
    caplog.set_level(logging.INFO, logger="golf")
    cfg, run_dir = tiny(tmp_path, "eval.budget_s=0.001", "eval.prequant=false")
    summary = run(cfg, run_dir)
    said = [r.getMessage() for r in caplog.records if r.name == "golf"]
    assert sum("exceeds eval.budget_s=0.001" in s for s in said) == 1
    assert any(s.startswith("evaluation took ") and "over eval.budget_s=0.001" in s for s in said)
    assert summary["eval_over_budget"] is True and summary["eval_budget_s"] == 0.001
    assert summary["eval_s"] == summary["final_eval_s"] > 0 and summary["eval_projected_s"] > 0.001


def test_same_seed_same_losses(tmp_path):
    cfg_a, dir_a = tiny(tmp_path / "a", "eval.prequant=false")
    cfg_b, dir_b = tiny(tmp_path / "b", "eval.prequant=false")
    run(cfg_a, dir_a)
    run(cfg_b, dir_b)
    assert train_losses(dir_a) == train_losses(dir_b)
    cfg_c, dir_c = tiny(tmp_path / "c", "eval.prequant=false", "seed=7")
    run(cfg_c, dir_c)
    assert train_losses(dir_c) != train_losses(dir_a)


def events_of(run_dir: Path, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["event"] == kind]


def test_checkpoint_at_end_lets_a_stopped_finish_resume_without_training(tmp_path):
    """A job stopped during export/evaluation is run again into the same directory: with the checkpoint
    written when training ended it loads the trained state and repeats only the finish."""
    cfg, run_dir = tiny(tmp_path, "train.checkpoint_at_end=true", "eval.prequant=false")
    first = run(cfg, run_dir)
    (ckpt,) = events_of(run_dir, "checkpoint")
    assert ckpt["step"] == 6 and (run_dir / "checkpoint" / "rank0.pt").exists()
    artifact = (run_dir / "model.golf").read_bytes()
    (run_dir / "model.golf").unlink()  # as if the first attempt died while exporting
    again = run(cfg, run_dir)
    (resume,) = events_of(run_dir, "resume")
    assert resume["step"] == 6
    assert len(events_of(run_dir, "train")) == 6  # nothing trained a second time
    assert len(events_of(run_dir, "checkpoint")) == 1  # the resumed state is not written again
    assert (run_dir / "model.golf").read_bytes() == artifact
    assert again["val_bpb"] == first["val_bpb"] and again["steps"] == 6


@pytest.mark.slow
def test_a_run_stopped_mid_training_resumes_bit_identically(tmp_path, monkeypatch):
    """A stop signal at step 3 checkpoints the whole train state and ends the run (Preempted); run again
    into the same directory it resumes there, and its losses, score and artifact are those of a run
    never stopped (a stateful recipe: EMA + SWA, late QAT, shuffled loader)."""
    import signal

    from golf.logging import RunRecorder
    from golf.preempt import Preempted

    stateful = ["averaging=swa_of_ema_pr344", "averaging.swa.every=1", "++quant.qat.schedule=lr_below",
                "++quant.qat.lr_threshold=0.9", "++data.shuffle.seed=3", "optimizer.schedule.kind=iterations",
                "optimizer.schedule.warmdown_iters=3"]
    straight, straight_dir = tiny(tmp_path / "straight", *stateful)
    expected = run(straight, straight_dir)
    cfg, run_dir = tiny(tmp_path / "stopped", *stateful)
    real_log = RunRecorder.log

    def log_then_stop(self, event, step, **fields):  # the real recorder; a real signal, as Slurm sends it
        real_log(self, event, step, **fields)
        if event == "train" and step == 3:
            os.kill(os.getpid(), signal.SIGUSR2)

    monkeypatch.setattr(RunRecorder, "log", log_then_stop)
    with pytest.raises(Preempted, match="stop requested at step 3"):
        run(cfg, run_dir)
    monkeypatch.undo()
    assert [e["step"] for e in events_of(run_dir, "checkpoint")] == [3]
    resumed = run(cfg, run_dir)
    assert [e["step"] for e in events_of(run_dir, "resume")] == [3]
    assert train_losses(run_dir) == train_losses(straight_dir) and len(train_losses(run_dir)) == 6
    assert (run_dir / "model.golf").read_bytes() == (straight_dir / "model.golf").read_bytes()
    assert (resumed["val_bpb"], resumed["prequant_val_bpb"]) == (expected["val_bpb"], expected["prequant_val_bpb"])


def test_an_artifact_over_budget_is_still_scored_then_fails_the_run(tmp_path):
    from golf.data import prepare_data
    from golf.quant import BudgetExceededError
    from golf.train import _train_here

    cfg, run_dir = tiny(tmp_path, "quant.limit_bytes=1000", "eval.prequant=false")
    # run() would refuse this before training (the estimate is far over); an estimate can also be
    # wrong by less than its tolerance, so the trainer itself is started here
    with pytest.raises(BudgetExceededError, match="OVER BUDGET"):
        _train_here(cfg, run_dir, prepare_data(cfg.data))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "OVER BUDGET" in summary["error"]
    assert summary["artifact_fits"] is False and summary["artifact_bytes"] > 1000
    assert 0 < summary["val_bpb"] < 20 and len(events_of(run_dir, "final_eval")) == 1


def test_the_counted_code_is_the_written_submission_bundle(tmp_path):
    cfg, run_dir = tiny(tmp_path, "eval.prequant=false")
    summary = run(cfg, run_dir)
    bundle = run_dir / "submission.py"
    assert summary["code_bytes"] == bundle.stat().st_size < 120_000  # the training code only (about 100 kB)
    assert summary["artifact_bytes"] == summary["model_bytes"] + bundle.stat().st_size


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    """Running a different config into a directory holding a checkpoint stops before anything is
    touched; settings that do not change training (evaluation, logging) may differ."""
    from golf.config.errors import ConfigError

    cfg, run_dir = tiny(tmp_path, "train.checkpoint_at_end=true", "eval.prequant=false")
    run(cfg, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    other, _ = tiny(tmp_path, "train.checkpoint_at_end=true", "eval.prequant=false", "optimizer.muon.lr=0.05")
    other.run_dir = str(run_dir)
    with pytest.raises(ConfigError, match=r"optimizer\.muon\.lr=0\.05: the checkpoint in .* was written with 0\.04"):
        run(other, run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    same_training, _ = tiny(tmp_path, "train.checkpoint_at_end=true", "eval.max_tokens=1024", "train.log_every=2")
    same_training.run_dir = str(run_dir)
    assert run(same_training, run_dir)["val_tokens"] == 1024  # resumed at the end, evaluated anew
    assert [e["step"] for e in events_of(run_dir, "resume")] == [6]


def test_a_bad_resume_is_one_clear_cli_error(tmp_path):
    base = [sys.executable, "-m", "golf.train", *TINY, "train.checkpoint_at_end=true", f"hydra.run.dir={tmp_path}/r"]
    first = subprocess.run(base, capture_output=True, text=True, timeout=600, cwd=CONF_DIR.parent)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run([*base, "train.iterations=9"], capture_output=True, text=True, timeout=600,
                           cwd=CONF_DIR.parent)
    assert again.returncode == 2
    assert "golf: invalid configuration: train.iterations=9: the checkpoint in" in again.stderr
    assert "Traceback" not in again.stderr


def test_resume_check_sees_techniques_switched_and_ignores_paths_and_new_fields(tmp_path):
    from golf.checkpoint import check_resume_config
    from golf.config.errors import ConfigError

    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    saved = {"seed": 1, "averaging": None, "data": {"root": "/old/data"}, "train": {"iterations": 6}}
    (ckpt / "complete.json").write_text(json.dumps({"step": 3, "world_size": 1, "config": saved}))
    same = {"seed": 1, "averaging": None, "data": {"root": "/new/scratch"}, "train": {"iterations": 6, "new_knob": 1}}
    check_resume_config(tmp_path, same)  # a moved data root and a field the old schema lacked: fine
    with pytest.raises(ConfigError, match=r"^averaging="):
        check_resume_config(tmp_path, {**same, "averaging": {"kind": "ema", "decay": 0.997}})
    with pytest.raises(ConfigError, match=r"^seed=2: .* written with 1"):
        check_resume_config(tmp_path, {**same, "seed": 2})


# `python -m golf.train ...` with a counting wrapper around each function that validates a config or
# prepares data (the real function still runs); the counts are its last line of output
COUNTED_CLI = """
import collections, json, runpy, sys
import golf.config.validate, golf.data, golf.data.demo, golf.data.paths
counts = collections.Counter()
def counted(module, name):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        counts[name] += 1
        return real(*args, **kwargs)
    setattr(module, name, wrapper)
for module, name in [(golf.config.validate, "validate"), (golf.config.validate, "check_policies"),
                     (golf.data.paths, "prepare_data"), (golf.data, "prepare_data"), (golf.data.demo, "build_demo")]:
    counted(module, name)
sys.argv = ["golf.train", *sys.argv[1:]]
try:
    runpy.run_module("golf.train", run_name="__main__", alter_sys=True)
except SystemExit as exit_:
    assert not exit_.code, exit_.code
print(json.dumps(counts))
"""


@pytest.mark.parametrize("data", ["files", pytest.param("demo", marks=pytest.mark.slow)])
def test_a_cli_run_validates_its_config_once_and_prepares_its_data_once(tmp_path, data):
    from tests.faults.lib import file_data

    overrides = file_data(tmp_path / "data") if data == "files" else []
    cli = [sys.executable, "-c", COUNTED_CLI, *TINY, *overrides, "train.iterations=2", "eval.prequant=false",
           f"hydra.run.dir={tmp_path}/run"]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=600, cwd=CONF_DIR.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    assert counts == {"validate": 1, "check_policies": 1, "prepare_data": 1,
                      **({"build_demo": 1} if data == "demo" else {})}


def test_no_checkpoint_outside_a_scheduler_by_default(tmp_path, monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    cfg, run_dir = tiny(tmp_path, "eval.prequant=false")
    assert cfg.train.checkpoint_at_end is None
    run(cfg, run_dir)
    assert events_of(run_dir, "checkpoint") == [] and not (run_dir / "checkpoint").exists()


@pytest.mark.dist
def test_two_gloo_ranks_match_one_process_with_accumulation(tmp_path):
    """2 ranks x 1 micro-step see exactly the tokens of 1 rank x 2 micro-steps (the official loader's
    layout), so DDP-averaged gradients and distributed Muon must reproduce the single-process run."""
    common = ("train.grad_accum_steps=1", "eval.prequant=false", "train.val_every=0")
    cfg_1, dir_1 = tiny(tmp_path / "one", "train.grad_accum_steps=2", "eval.prequant=false", "train.val_every=0")
    run(cfg_1, dir_1)
    cfg_2 = load_config(compose_config([*TINY, *common, "nproc_per_node=2"]), world_size=2)
    dir_2 = tmp_path / "two" / "run"
    cfg_2.run_dir = str(dir_2)
    run(cfg_2, dir_2)
    a, b = train_losses(dir_1), train_losses(dir_2)
    assert len(a) == len(b) == 6
    assert b == pytest.approx(a, rel=2e-4)
    s1 = json.loads((dir_1 / "summary.json").read_text())
    s2 = json.loads((dir_2 / "summary.json").read_text())
    assert s2["world_size"] == 2 and s2["val_tokens"] == s1["val_tokens"]
    assert s2["val_bpb"] == pytest.approx(s1["val_bpb"], rel=1e-3)


@pytest.mark.slow
def test_cli_run_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "golf.train", *TINY, f"hydra.run.dir={tmp_path}/cli"],
        capture_output=True, text=True, timeout=600, cwd=CONF_DIR.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["status"] == "completed" and math.isfinite(summary["val_bpb"])
    # the code counted is the generated script, the same in a fresh process as in this one
    cfg = load_config(compose_config(TINY))
    assert summary["code_bytes"] == (tmp_path / "cli" / "submission.py").stat().st_size == \
        submission_of(cfg).code_bytes


def test_dry_run_reports_counts_and_estimate_without_data(tmp_path, capsys):
    # fineweb data is not present here: a dry run must not need it
    cfg = load_config(compose_config(["experiment=baseline", "dry_run=true", f"data.root={tmp_path}"]))
    result = run(cfg, tmp_path / "dry")
    out = capsys.readouterr().out
    assert result["model_params"] == 17_059_912
    assert "17,059,912" in out and "muon" in out and "estimated artifact bytes" in out
    assert result["estimated_artifact_bytes"] == result["estimated_model_bytes"] + result["code_bytes"]
    assert 10_000_000 < result["estimated_model_bytes"] < 20_000_000
    assert not (tmp_path / "dry").exists()  # nothing was written


@pytest.mark.slow
def test_dry_run_estimate_is_within_5_percent_of_a_trained_tiny_model(tmp_path, capsys):
    overrides = ["experiment=demo", "train.iterations=120", "train.val_every=0", "eval.max_tokens=4096",
                 "eval.prequant=false"]
    estimate = run(load_config(compose_config([*overrides, "dry_run=true"])), tmp_path / "dry")
    cfg, run_dir = tiny(tmp_path)
    cfg = load_config(compose_config(overrides))
    cfg.run_dir = str(run_dir)
    summary = run(cfg, run_dir)
    assert summary["steps"] == 120
    assert estimate["estimated_model_bytes"] == pytest.approx(summary["model_bytes"], rel=0.05)


@pytest.mark.dist
def test_a_failing_worker_group_marks_the_run_failed(tmp_path):
    cfg = load_config(compose_config([*TINY, "nproc_per_node=2", "train.grad_accum_steps=1"]), world_size=2)
    cfg.device = "cuda" if not torch.cuda.is_available() else "tpu-that-does-not-exist"
    run_dir = tmp_path / "run"
    cfg.run_dir = str(run_dir)
    with pytest.raises(Exception, match="(?i)failed"):
        run(cfg, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"]
    assert "worker group failed" in (run_dir / "error.txt").read_text()


@pytest.mark.slow
def test_cli_dry_runs_and_refused_configs_leave_no_run_dir(tmp_path):
    """Hydra creates the run directory before golf sees the config: golf removes it again when all it
    holds are Hydra's own files."""
    for args, code in ((["experiment=demo", "dry_run=true"], 0), (["experiment=demo", "train.iterations=-1"], 2),
                       ([f"data.root={tmp_path}/nodata"], 2)):
        out = tmp_path / "runs" / "x"
        proc = subprocess.run([sys.executable, "-m", "golf.train", *args, f"hydra.run.dir={out}"],
                              capture_output=True, text=True, timeout=300, cwd=CONF_DIR.parent)
        assert proc.returncode == code, proc.stderr[-2000:]
        assert not out.exists(), (args, list(out.iterdir()))
        if code == 2:
            assert len(proc.stderr.strip().splitlines()) == 1  # one line naming what is wrong
    assert "python -m golf.data.download" in proc.stderr and "data=demo" in proc.stderr
