"""Rows 7 and 8: a stop signal always ends a run that cannot checkpoint. Before the loop
(data preparation, model build, warm-up) a stop acts at once; inside the loop it is honoured at the
next step boundary, and a repeated signal ends a step that never does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from golf.preempt import Preempted, StopSignal
from tests.faults.lib import PROJECT_ROOT, file_data, last_line
from tests.helpers import TINY


@pytest.fixture(autouse=True)
def default_handlers():
    """Each test starts from the default handlers, as a fresh process does (earlier tests in the same
    process, e.g. torch's elastic agent, may leave their own installed)."""
    saved = {sig: signal.signal(sig, signal.SIG_DFL) for sig in StopSignal.SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_stop_before_the_loop_acts_at_once():
    with StopSignal(immediate=True) as stop:
        with pytest.raises(Preempted, match="stopped by SIGTERM before training could checkpoint"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_immediate_stop_is_handed_outward_first():
    """Inside a scheduler job the launcher's StopSignal must still see it (to requeue)."""
    with StopSignal() as outer:
        with StopSignal(immediate=True), pytest.raises(Preempted):
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(5)
        assert outer.requested and outer.signum == signal.SIGUSR2


def test_in_the_loop_one_signal_waits_for_the_step_and_a_repeat_stops_at_once():
    with StopSignal(immediate=True) as stop:
        stop.arm()
        stop.REPEAT_S = 0.3
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the same signal delivered twice at once: still waits
        assert stop.requested
        time.sleep(0.4)
        with pytest.raises(Preempted, match="again while a step did not end"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)


@pytest.mark.slow
def test_sigterm_ends_a_run_blocked_in_data_preparation(tmp_path):
    """A training shard that never delivers its bytes (a FIFO nobody writes, like a hung network
    mount) blocks the run while it checks the shard headers; SIGTERM ends it within seconds."""
    data = file_data(tmp_path / "data")
    os.mkfifo(tmp_path / "data" / "shards" / "fineweb_train_000001.bin")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "golf.train", *TINY, *data, f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # setup done up to the data loader
            if (run_dir / "summary.json").exists() and "model_params" in (run_dir / "summary.json").read_text():
                break
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert last_line(err) == ("golf: Preempted: stopped by SIGTERM before training could checkpoint; "
                              "no checkpoint written by this stop")
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "preempted"
