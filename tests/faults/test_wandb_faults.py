"""Row 15: W&B online without a network. The real wandb client, pointed at a closed port on this
machine with a syntactically valid key, must give up within the init timeout; the run goes on with
its run directory as the record and one warning line."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from golf.logging import RunRecorder
from golf.logging.config import LoggerConfig, WandbConfig


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_unreachable_wandb_server_is_a_warning_not_a_hang(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    cfg = LoggerConfig(wandb=WandbConfig(mode="online", init_timeout_s=3.0))
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="golf"):
        recorder = RunRecorder(tmp_path, cfg, enabled=True, run_name="r")
    assert time.perf_counter() - t0 < 45  # the 94 s of wandb's default timeout are not waited
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("W&B could not start (")
    assert "\n" not in warnings[0] and f"recorded in {tmp_path} only" in warnings[0]
    recorder.log("train", 1, train_loss=1.5)
    recorder.finish("completed")
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["train_loss"] == 1.5
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"
