"""Sweeps through the Slurm launcher on a real cluster (launch/ci-slurm.sh starts one; skipped without).

* a 2-seed multirun of the tiny demo, each job one Slurm task with 2 gloo workers (pattern B);
* the same run as 2 Slurm tasks that are the ranks themselves (pattern A, the multi-node layout);
* a job preempted mid-run (USR2, as ``--signal=USR2@...`` sends it) is requeued, resumes from its
  checkpoint and ends exactly like an uninterrupted run of the same config;
* the finished 2-seed sweep is written as a record folder (``golf.report --submission``);
* a failing sweep point is reported as failed everywhere (run dir, Slurm state, launcher exit and
  output) while the other point completes.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.slurm.sweep import PROJECT_ROOT, events, run_sweep, summary, sweep_command

SHIM = PROJECT_ROOT / "launch" / "shim"


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and "up" in out.stdout


pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(not _slurm_up(), reason="no Slurm cluster (launch/start-cluster.sh, then "
                                                         "source <root>/env.sh)")]


@pytest.fixture(scope="module", autouse=True)
def sacct_available():
    """submitit needs a working sacct; without accounting, use the scontrol-based stand-in."""
    sacct = shutil.which("sacct")
    works = sacct and subprocess.run([sacct, "-j", "1", "--parsable2"], capture_output=True).returncode == 0
    if not works:
        os.environ["PATH"] = f"{SHIM}{os.pathsep}{os.environ['PATH']}"
    yield


def job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True)
    return dict(tok.split("=", 1) for tok in out.stdout.split() if "=" in tok)


def held(state: dict[str, str]) -> bool:
    """A requeued job waiting out its hold before it may start again."""
    return state["JobState"] == "PENDING" and state.get("Reason") == "BeginTime"


def final_state(job_id: str, timeout: float = 60.0) -> str:
    """The job's state once it has left RUNNING/COMPLETING: submitit hands the result back as soon as the
    job wrote it, while the job itself may still be winding down for a moment."""
    wait_for(lambda: job(job_id)["JobState"] not in ("RUNNING", "COMPLETING"), timeout, f"job {job_id} to end")
    return job(job_id)["JobState"]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def run_dir(sweep_dir: Path, num: int) -> Path:
    (found,) = sweep_dir.glob(f"{num}_*")
    return found


def slurm_job_id(run: Path) -> str:
    return str(yaml.safe_load((run / "provenance.yaml").read_text())["slurm_job_id"])


def output(proc) -> str:
    return proc.stdout + proc.stderr


def train_losses(run: Path) -> dict[int, float]:
    return {row["step"]: row["train_loss"] for row in events(run, "train")}


ITERATIONS = 24
# ~0.3 s per step with two gloo workers on two cores (the test size alone is ~25 ms): the preemption
# signal, sent once two steps are logged, must land while training still has seconds to go
STEP_SIZE = "train.batch_tokens=8192"


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory):
    """seeds 1 and 2, each one Slurm task with 2 gloo workers; seed 1 is also the uninterrupted
    reference of the preemption test."""
    sweep_dir = tmp_path_factory.mktemp("seed_sweep")
    return sweep_dir, run_sweep(sweep_dir, "seed=1,2", "nproc_per_node=2", f"train.iterations={ITERATIONS}",
                                STEP_SIZE)


def test_two_seed_sweep_with_two_workers_per_job(seed_sweep):
    sweep_dir, out = seed_sweep
    assert out.returncode == 0, output(out)[-4000:]
    assert "golf sweep: 2 points, 2 completed, 0 failed" in output(out)
    bpbs = []
    for num, seed in enumerate((1, 2)):
        run = run_dir(sweep_dir, num)
        s = summary(run)
        assert (s["status"], s["seed"], s["world_size"]) == ("completed", seed, 2)
        bpbs.append(s["val_bpb"])
        provenance = yaml.safe_load((run / "provenance.yaml").read_text())
        assert "git_rev" in provenance
        assert re.fullmatch(rf"\d+_{num}", slurm_job_id(run))
        assert final_state(slurm_job_id(run)) == "COMPLETED"
    assert bpbs[0] != bpbs[1] and all(0 < b < 20 for b in bpbs)


def test_a_finished_sweep_becomes_a_record_folder(seed_sweep, tmp_path):
    from golf.report import main as report

    sweep_dir, out = seed_sweep
    assert out.returncode == 0, output(out)[-4000:]
    rec = tmp_path / "record"
    assert report([str(sweep_dir), "--submission", "all", "--record-dir", str(rec)]) == 0
    sub = json.loads((rec / "submission.json").read_text())
    assert sorted(sub["seeds"]) == ["1", "2"]
    assert sub["bytes_total"] == max(summary(run_dir(sweep_dir, n))["artifact_bytes"] for n in (0, 1))
    assert (rec / "train_gpt.py").read_bytes() == (run_dir(sweep_dir, 0) / "submission.py").read_bytes()
    assert (rec / "train_seed1.log").read_bytes() == (run_dir(sweep_dir, 0) / "rank0.log").read_bytes()
    assert (rec / "train_seed2.log").exists() and (rec / "README.md").exists()


def test_slurm_tasks_as_ranks(tmp_path):
    """Pattern A: 2 Slurm tasks, ranks and rendezvous taken from the Slurm environment."""
    out = run_sweep(tmp_path, "seed=3", "hydra.launcher.tasks_per_node=2", "train.iterations=3")
    assert out.returncode == 0, output(out)[-4000:]
    s = summary(run_dir(tmp_path, 0))
    assert (s["status"], s["world_size"]) == ("completed", 2)


def test_preempted_job_requeues_and_resumes_exactly(tmp_path, seed_sweep):
    proc = subprocess.Popen(
        sweep_command(tmp_path, "seed=1", "nproc_per_node=2", f"train.iterations={ITERATIONS}", STEP_SIZE),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    def trained_a_few_steps() -> bool:
        metrics = list(tmp_path.glob("0_*/metrics.jsonl"))
        return bool(metrics) and len(events(metrics[0].parent, "train")) >= 2

    try:
        wait_for(trained_a_few_steps, timeout=240, what="the job to train a few steps")
        preempted = run_dir(tmp_path, 0)
        job_id = slurm_job_id(preempted)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # what --signal=USR2@120 sends
        wait_for(lambda: held(job(job_id)), timeout=120, what="the requeue")

        def started_again() -> bool:
            # skip Slurm's ~2 min hold of a requeued job; retried, since an update racing the requeue
            # itself can be refused or overwritten
            if held(job(job_id)):
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)
                return False
            return True

        wait_for(started_again, timeout=200, what="the requeued job to leave its hold")
        text, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, text[-4000:]
    assert job(job_id)["Restarts"] == "1"
    # the preemption's checkpoint, then the one every Slurm run writes when training ends
    checkpoint, at_end = events(preempted, "checkpoint")
    assert 2 <= checkpoint["step"] < ITERATIONS and at_end["step"] == ITERATIONS
    (resume,) = events(preempted, "resume")
    assert resume["step"] == checkpoint["step"]
    straight = run_dir(seed_sweep[0], 0)  # the same config, never interrupted
    assert train_losses(preempted) == train_losses(straight)
    assert sorted(train_losses(preempted)) == list(range(1, ITERATIONS + 1))
    assert summary(preempted)["status"] == "completed"
    assert summary(preempted)["val_bpb"] == summary(straight)["val_bpb"]


def test_failing_point_is_reported_while_the_other_completes(tmp_path):
    out = run_sweep(tmp_path, "device=cpu,cuda", "train.iterations=3")  # no CUDA on the test cluster
    assert out.returncode != 0
    text = output(out)
    assert "1 of 2 sweep points failed" in text and "#1 device=cuda" in text
    good, bad = run_dir(tmp_path, 0), run_dir(tmp_path, 1)
    assert summary(good)["status"] == "completed"
    assert summary(bad)["status"] == "failed" and "CUDA is not available" in summary(bad)["error"]
    assert "CUDA is not available" in (bad / "error.txt").read_text()
    assert final_state(slurm_job_id(good)) == "COMPLETED"
    assert final_state(slurm_job_id(bad)) == "FAILED"
