"""The contract above the faults table, and rows 1, 4, 6 and 12 from the command line: expected
failures end an entry point with one line and a non-zero status, the traceback kept in error.txt; a
config error leaves no run directory behind."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf

from golf.config.errors import ConfigError
from golf.data import ShardError
from golf.entry import entry_errors
from golf.files import RunDirBusy
from golf.preempt import Preempted
from golf.quant import BudgetExceededError
from golf.quant.validate_artifact import ArtifactError
from tests.faults.lib import file_data, golf_cmd, last_line
from tests.helpers import TINY, compose_config

FAILURES = [ShardError("/d/fineweb_train_000001.bin: wrong magic 0"), ArtifactError("artifact checksum mismatch"),
            FloatingPointError("train loss became non-finite"), BudgetExceededError("over budget\nsecond line"),
            OSError(28, "No space left on device")]


@pytest.mark.parametrize("err", FAILURES, ids=lambda e: type(e).__name__)
def test_expected_failures_give_one_line_and_keep_the_traceback(tmp_path, capsys, err):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(SystemExit) as info, entry_errors("golf", lambda: [run_dir]):
        raise err
    assert info.value.code == 1
    out = capsys.readouterr().err.strip()
    assert len(out.splitlines()) == 1
    assert out.startswith(f"golf: {type(err).__name__}: ") and out.endswith(f"(traceback in {run_dir / 'error.txt'})")
    assert "Traceback (most recent call last)" in (run_dir / "error.txt").read_text()


def test_a_run_that_wrote_its_own_error_file_keeps_it(tmp_path, capsys):
    (tmp_path / "error.txt").write_text("the trainer's traceback\n")
    with pytest.raises(SystemExit), entry_errors("golf", lambda: [tmp_path]):
        raise FloatingPointError("x")
    assert (tmp_path / "error.txt").read_text() == "the trainer's traceback\n"


def test_a_stop_is_one_line_without_a_traceback_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as info, entry_errors("golf", lambda: [tmp_path]):
        raise Preempted("stopped by SIGTERM before training could checkpoint")
    assert info.value.code == 1 and not (tmp_path / "error.txt").exists()
    assert capsys.readouterr().err.strip() == "golf: Preempted: stopped by SIGTERM before training could checkpoint"


def test_refusals_exit_2_and_a_config_error_removes_the_unused_run_dir(tmp_path, capsys):
    hydra_dir = tmp_path / "runs" / "x"
    (hydra_dir / ".hydra").mkdir(parents=True)
    (hydra_dir / "train.log").write_text("")
    with pytest.raises(SystemExit) as info, entry_errors("golf", lambda: [hydra_dir, None]):
        raise ConfigError("nproc_per_node", 0, "must be >= 1")
    assert info.value.code == 2 and not hydra_dir.exists()
    assert capsys.readouterr().err.strip() == "golf: invalid configuration: nproc_per_node=0: must be >= 1"
    used = tmp_path / "used"
    (used / "checkpoint").mkdir(parents=True)  # a resume refused for its config keeps its directory
    with pytest.raises(SystemExit), entry_errors("golf", lambda: [used]):
        raise ConfigError("arch.num_layers", 3, "the checkpoint was written with 2")
    assert (used / "checkpoint").is_dir()
    busy = tmp_path / "busy"
    busy.mkdir()
    with pytest.raises(SystemExit) as info, entry_errors("golf", lambda: [busy]):
        raise RunDirBusy(f"{busy} is in use by another run (pid 1)")
    assert info.value.code == 2 and busy.is_dir()  # another run's directory is never touched


def test_inside_a_sweep_failures_reach_the_launcher(tmp_path):
    with pytest.raises(FloatingPointError), entry_errors("golf", lambda: [tmp_path], in_sweep=True):
        raise FloatingPointError("x")


@pytest.mark.slow
def test_golf_train_config_error_leaves_no_run_dir(tmp_path):
    out = golf_cmd(*TINY, "nproc_per_node=0", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 2
    assert last_line(out.stderr) == "golf: invalid configuration: nproc_per_node=0: must be >= 1"
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_golf_train_empty_shard_is_one_line(tmp_path):
    """Row 4 from the command line: ShardError naming the file, before training; traceback in error.txt."""
    data = file_data(tmp_path / "data")
    empty = tmp_path / "data" / "shards" / "fineweb_train_000000.bin"
    empty.write_bytes(empty.read_bytes()[:1024])
    with open(empty, "r+b") as f:  # a valid header declaring 0 tokens
        f.seek(8)
        f.write((0).to_bytes(4, "little"))
    run_dir = tmp_path / "run"
    out = golf_cmd(*TINY, *data, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)
    assert out.returncode == 1
    assert last_line(out.stderr) == (f"golf: ShardError: {empty}: the header declares 0 tokens; an empty shard "
                                     f"cannot be streamed (traceback in {run_dir / 'error.txt'})")
    assert "Traceback" not in out.stderr and "Traceback" in (run_dir / "error.txt").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "steps" not in summary


@pytest.mark.slow
def test_golf_evaluate_corrupt_artifact_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(compose_config(TINY), run / "config.yaml")
    (run / "model.golf").write_bytes(b"GQNT" + bytes(100))
    out = golf_cmd(f"run={run}", "hydra.run.dir=" + str(run / "eval" / "e1"), module="golf.evaluate", cwd=tmp_path)
    assert out.returncode == 1
    line = last_line(out.stderr)
    assert line.startswith("golf.evaluate: ArtifactError: artifact format version 0 is not supported")
    assert line.endswith(f"(traceback in {run / 'eval' / 'e1' / 'error.txt'})")
    assert "Traceback" not in out.stderr
    # a config error of golf.evaluate leaves no eval directory
    out = golf_cmd(f"run={run}", "eval.kind=sliding", "eval.stride=999", "hydra.run.dir=" + str(run / "eval" / "e2"),
                   module="golf.evaluate", cwd=tmp_path)
    assert out.returncode == 2 and "eval.stride=999" in last_line(out.stderr)
    assert not (run / "eval" / "e2").exists()


@pytest.mark.slow
def test_golf_evaluate_never_reports_a_non_finite_score(tmp_path):
    import torch

    from golf.config.validate import load_config
    from golf.model import build_model
    from golf.quant import export_state_dict

    overrides = [*TINY, "quant=none"]
    cfg = load_config(compose_config(overrides))
    model = build_model(cfg.arch)
    with torch.no_grad():
        model.tok_emb.weight[3, 0] = float("nan")  # one poisoned weight: every score through it is NaN
    blob, _ = export_state_dict({k: v.detach() for k, v in model.state_dict().items()}, cfg.quant, model.param_roles)
    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(compose_config(overrides), run / "config.yaml")
    (run / "model.golf").write_bytes(blob)
    out = golf_cmd(f"run={run}", "hydra.run.dir=" + str(run / "eval" / "e1"), module="golf.evaluate", cwd=tmp_path)
    assert out.returncode == 1
    assert last_line(out.stderr).startswith("golf.evaluate: FloatingPointError: val_bpb is nan")
    assert math.isnan(json.loads((run / "eval" / "e1" / "result.json").read_text())["val_bpb"])  # recorded
