"""Rows 20 and 27: Ctrl-C is a stop request like SIGTERM (checkpoint at the next step boundary, one line,
resumable; with local workers every rank checkpoints), and a stop during a local sweep ends the sweep with its table so far and one line saying
how to resume; rerunning the command resumes it (completed points are not run again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from golf.entry import entry_errors
from golf.preempt import Preempted, StopSignal
from tests.faults.lib import PROJECT_ROOT, last_line
from tests.helpers import TINY


@pytest.fixture
def python_handlers():
    """The handlers a fresh Python process starts with (SIGINT raises KeyboardInterrupt)."""
    saved = {sig: signal.getsignal(sig) for sig in StopSignal.SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_ctrl_c_in_the_loop_is_recorded_and_never_becomes_a_keyboard_interrupt(python_handlers):
    with StopSignal(immediate=True) as stop:
        stop.arm()
        os.kill(os.getpid(), signal.SIGINT)  # recorded; the step goes on
        assert stop.requested and stop.signum == signal.SIGINT
        stop.after_checkpoint()  # Python's own handler is not "a scheduler's handler": nothing raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_before_the_loop_stops_at_once(python_handlers):
    with StopSignal(immediate=True), pytest.raises(Preempted, match="stopped by SIGINT before training could"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)


def test_a_stop_is_told_to_an_enclosing_stop_signal_that_acts_at_once_elsewhere(python_handlers):
    """The local launcher holds an immediate StopSignal around the sweep; a point's training holds its
    own. The training one checkpoints and tells the outer one, which then must not stop a second time."""
    with StopSignal(immediate=True) as outer:
        with StopSignal(immediate=True) as inner:
            inner.arm()
            os.kill(os.getpid(), signal.SIGTERM)
            inner.after_checkpoint()  # no Preempted from the outer handler
        assert outer.requested and outer.signum == signal.SIGTERM
        with pytest.raises(Preempted, match="stopped by SIGTERM"):  # outside training: at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)


def test_ctrl_c_outside_training_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info, entry_errors("golf", lambda: [tmp_path]):
        raise KeyboardInterrupt
    assert info.value.code == 130 and capsys.readouterr().err.strip() == "golf: interrupted (Ctrl-C)"
    with pytest.raises(KeyboardInterrupt), entry_errors("golf", lambda: [tmp_path], in_sweep=True):
        raise KeyboardInterrupt


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """``golf.train args`` in a session of its own (a terminal's Ctrl-C reaches its whole process group)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "golf.train", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def train_steps(run_dir: Path) -> list[int]:
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return []
    rows = []
    for line in metrics.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # the line being written
            break
    return [r["step"] for r in rows if r.get("event") == "train"]


def signal_at_step(proc: subprocess.Popen, run_dir: Path, step: int, sig: int, group: bool = False) -> tuple[str, str]:
    """Send ``sig`` (to the whole process group with ``group``, as Ctrl-C in a terminal) once ``run_dir``
    has recorded training step ``step``; the process's output."""
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and max(train_steps(run_dir), default=0) < step:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_the_rerun_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "train.iterations=60", "train.val_every=0", "eval.prequant=false", f"hydra.run.dir={run_dir}"]
    out, err = signal_at_step(start(args, tmp_path), run_dir, 5, signal.SIGINT)
    line = last_line(err)
    assert line.startswith("golf: Preempted: stop requested at step ") and line.endswith(
        f"; checkpoint written to {run_dir}"), err[-3000:]
    stopped_at = int(line.split("step ")[1].split(";")[0])
    assert 5 <= stopped_at < 60
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "preempted"
    assert json.loads((run_dir / "checkpoint" / "complete.json").read_text())["step"] == stopped_at
    again = subprocess.run([sys.executable, "-m", "golf.train", *args], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 60
    steps = train_steps(run_dir)  # nothing trained twice: the rerun went on from the checkpoint
    assert steps == sorted(set(steps)) and steps[-1] == 60 and stopped_at + 1 in steps


@pytest.mark.slow
def test_ctrl_c_with_local_workers_checkpoints_every_rank(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "train.iterations=60", "train.val_every=0", "eval.prequant=false", "nproc_per_node=2",
            f"hydra.run.dir={run_dir}"]
    out, err = signal_at_step(start(args, tmp_path), run_dir, 3, signal.SIGINT, group=True)
    assert last_line(err) == f"golf: Preempted: stopped by SIGINT; the workers' checkpoint is in {run_dir}", err[-3000:]
    assert "Traceback" not in err + out
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "preempted"
    marker = json.loads((run_dir / "checkpoint" / "complete.json").read_text())
    assert marker["world_size"] == 2 and marker["step"] >= 3
    assert {p.name for p in (run_dir / "checkpoint").iterdir()} == {"complete.json", "rank0.pt", "rank1.pt"}


@pytest.mark.slow
def test_a_stopped_local_sweep_reports_its_table_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "train.iterations=30", "train.val_every=0", "eval.prequant=false", "seed=1,2",
            "hydra/launcher=local", f"hydra.sweep.dir={sweep}"]
    proc = start(args, tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(sweep.glob("0_*")):
        time.sleep(0.05)
    point0 = next(sweep.glob("0_*"))
    out, err = signal_at_step(proc, point0, 3, signal.SIGTERM)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err + out
    assert "golf sweep: 2 points, 0 completed, 0 failed, 1 stopped, 1 not started" in out + err
    line = last_line(err)
    assert line.startswith("golf: Preempted: the sweep was stopped (stop requested at step ")
    assert line.endswith(f"checkpoint written to {point0}); to resume, rerun the same command")
    assert json.loads((point0 / "summary.json").read_text())["status"] == "preempted"
    assert not list(sweep.glob("1_*"))  # the second point never started
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    again = subprocess.run([sys.executable, "-m", "golf.train", *args], cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "golf sweep: 2 points, 2 completed, 0 failed" in again.stdout + again.stderr
    steps = train_steps(point0)
    assert steps == sorted(set(steps)) and steps[-1] == 30  # point 0 went on from its checkpoint
    third = subprocess.run([sys.executable, "-m", "golf.train", *args], cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=600)
    assert third.returncode == 0 and (third.stdout + third.stderr).count("not run again") == 2
