"""The launcher's pure parts: failure records in the run directory, the sweep report, and the check
that a job runs the code that was submitted."""

import json

import pytest

from hydra_plugins.golf_launcher.report import PointResult, error_line, record_failure, sweep_report
from hydra_plugins.golf_launcher.revision import check_unchanged, fingerprint


def test_record_failure_marks_the_run_failed_and_keeps_earlier_errors(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed", "val_bpb": 1.5}))
    (tmp_path / "error.txt").write_text("worker traceback\n")
    record_failure(tmp_path, "Traceback ...\nRuntimeError: wandb finish failed\n")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == {"status": "failed", "val_bpb": 1.5, "error": "RuntimeError: wandb finish failed"}
    text = (tmp_path / "error.txt").read_text()
    assert text.startswith("worker traceback") and "--- job error ---" in text


def test_record_failure_creates_the_record_when_the_run_never_started(tmp_path):
    run = tmp_path / "run"
    record_failure(run, "Traceback ...\nRuntimeError: device=cuda was requested\n")
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert "device=cuda" in (run / "error.txt").read_text()


def test_sweep_report_lists_failed_points(tmp_path):
    good, bad = tmp_path / "0", tmp_path / "1"
    good.mkdir()
    (good / "summary.json").write_text(json.dumps({"status": "completed", "val_bpb": 1.23456,
                                                   "artifact_bytes": 15_000_000}))
    table, failures = sweep_report([PointResult("#0 seed=1", str(good), ok=True),
                                    PointResult("#1 seed=2", str(bad), ok=False, error="ValueError: x",
                                                log="/logs/1.err")])
    assert "2 points, 1 completed, 1 failed" in table
    assert "val_bpb=1.2346 artifact_bytes=15,000,000" in table
    assert failures.startswith("1 of 2 sweep points failed")
    assert "#1 seed=2" in failures and "ValueError: x" in failures and "/logs/1.err" in failures
    assert "#0 seed=1" not in failures
    assert sweep_report([PointResult("#0", str(good), ok=True)])[1] is None


def test_error_line_reads_the_exception_out_of_a_job_traceback():
    text = ("Job (task=0) failed during processing with trace:\n----------------------\n"
            "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
            "hydra_plugins.golf_launcher.report.JobFailed: RuntimeError: no CUDA\n"
            "----------------------\nYou can check full logs at paths:\n  - /a.err\n")
    assert error_line(RuntimeError(text)) == "hydra_plugins.golf_launcher.report.JobFailed: RuntimeError: no CUDA"
    assert error_line(RuntimeError("killed\nmore")) == "killed"


def test_changed_code_refuses_the_job(tmp_path):
    (tmp_path / "golf").mkdir()
    (tmp_path / "conf").mkdir()
    (tmp_path / "golf" / "trainer.py").write_text("x = 1\n")
    (tmp_path / "conf" / "train.yaml").write_text("seed: 1\n")
    submitted = fingerprint(tmp_path)
    assert set(submitted) == {"golf/trainer.py", "conf/train.yaml"}
    check_unchanged(submitted, tmp_path)
    (tmp_path / "golf" / "trainer.py").write_text("x = 2\n")
    (tmp_path / "golf" / "new.py").write_text("")
    # Hydra's plugin discovery re-executes plugin modules (a new CodeChanged class), so match by name
    with pytest.raises(Exception, match=r"golf/new.py, golf/trainer.py") as err:
        check_unchanged(submitted, tmp_path)
    assert type(err.value).__name__ == "CodeChanged"
