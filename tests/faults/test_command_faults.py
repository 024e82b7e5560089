"""Rows 17, 26 and 28, and the folders a refused run leaves: commands that stop before they do any
work end with one line (no traceback) and leave nothing behind.

Row 17: ``golf.evaluate`` without ``run=``; the download with no network. Row 26: a run directory, or
a run's evaluation directory, that cannot be written (``golf.evaluate`` writes elsewhere with ``out=``).
Row 28: a sweep on a launcher that does not check its points before running them."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from omegaconf import OmegaConf

from tests.faults.lib import golf_cmd, last_line
from tests.helpers import TINY, compose_config


def no_traceback(out) -> None:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]


def test_evaluate_without_a_run_names_the_missing_key(tmp_path):
    out = golf_cmd(module="golf.evaluate", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("golf.evaluate: invalid configuration: run is not set: give run=<the run directory "
                                  "to score> (it holds config.yaml and model.golf)")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_of_a_directory_that_is_no_run_leaves_no_folders(tmp_path):
    out = golf_cmd("run=missing/run", module="golf.evaluate", cwd=tmp_path)
    assert out.returncode == 2 and "is not a golf run directory (no config.yaml)" in last_line(out.stderr)
    no_traceback(out)
    assert list(tmp_path.iterdir()) == []  # not even missing/run/eval/<time>/ made for its output


def test_download_without_a_network_names_the_host_and_the_demo_data(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: the connection is refused, as with no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = golf_cmd("--out", "d", "--train-shards", "1", "--endpoint", f"http://127.0.0.1:{port}",
                   module="golf.data.download", cwd=tmp_path)
    assert out.returncode == 1
    no_traceback(out)
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert line.startswith(f"golf.data.download: DownloadError: cannot reach 127.0.0.1:{port} to get "
                           "datasets/manifest.json of willdepueoai/parameter-golf (ConnectError: ")
    assert line.endswith("without a network, train on the built-in demo corpus: data=demo")
    from golf.data.download import DownloadError, main

    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1"):  # --debug: the error itself, traceback and all
        main(["--out", str(tmp_path / "d"), "--endpoint", f"http://127.0.0.1:{port}", "--debug"])


def test_a_refused_config_leaves_no_dated_folder(tmp_path):
    out = golf_cmd(*TINY, "nproc_per_node=0", cwd=tmp_path)  # the default run directory runs/<date>/<time>_<name>
    assert out.returncode == 2 and last_line(out.stderr) == "golf: invalid configuration: nproc_per_node=0: must be >= 1"
    assert list(tmp_path.iterdir()) == []


def test_only_the_folders_made_for_a_refused_run_are_removed(tmp_path):
    from golf.files import discard_if_unused, note_new_dir

    (tmp_path / "runs").mkdir()  # there before: stays, even when empty
    run_dir = tmp_path / "runs" / "2026-01-02" / "10-00-00_x"
    assert note_new_dir(run_dir) == tmp_path / "runs" / "2026-01-02"
    (run_dir / ".hydra").mkdir(parents=True)
    assert discard_if_unused(run_dir)
    assert list((tmp_path / "runs").iterdir()) == []
    other = tmp_path / "runs" / "2026-01-03"
    (other / "kept").mkdir(parents=True)  # a run of the same day: its folder is not empty, so it stays
    note_new_dir(other / "11-00-00_y")
    (other / "11-00-00_y").mkdir()
    assert discard_if_unused(other / "11-00-00_y") and sorted(p.name for p in other.iterdir()) == ["kept"]


@pytest.mark.parametrize("where", ["inside", "itself"])
def test_a_run_directory_that_cannot_be_written_is_one_line(tmp_path, where):
    locked = tmp_path / "locked"
    locked.mkdir()
    run_dir = locked / "run" if where == "inside" else locked
    out = golf_cmd(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path, read_only_dir=locked)
    assert out.returncode == 2
    no_traceback(out)
    line = out.stderr.strip()
    assert line.startswith(f"golf: cannot write the run directory {run_dir}: ")
    assert line.endswith("; give a writable one with hydra.run.dir=... (a sweep: hydra.sweep.dir=...)")
    assert list(locked.iterdir()) == []


@pytest.mark.slow
def test_evaluate_of_a_run_on_a_read_only_mount_writes_elsewhere(tmp_path):
    from golf.config.validate import load_config
    from golf.model import build_model
    from golf.quant import export_state_dict

    run = tmp_path / "run"  # a completed run's directory: its config and artifact
    run.mkdir()
    cfg = load_config(compose_config(TINY))
    torch.manual_seed(0)
    model = build_model(cfg.arch)
    blob, _ = export_state_dict({k: v.detach() for k, v in model.state_dict().items()}, cfg.quant, model.param_roles)
    OmegaConf.save(compose_config(TINY), run / "config.yaml")
    (run / "model.golf").write_bytes(blob)
    before = sorted(p.name for p in run.iterdir())
    out = golf_cmd(f"run={run}", module="golf.evaluate", cwd=tmp_path, read_only_dir=run)
    assert out.returncode == 2
    no_traceback(out)
    line = out.stderr.strip()
    assert line.startswith(f"golf.evaluate: cannot write the output directory {run / 'eval'}/")
    assert line.endswith("; give another directory for the results with out=...")
    elsewhere = tmp_path / "scores" / "e1"
    out = golf_cmd(f"run={run}", f"out={elsewhere}", module="golf.evaluate", cwd=tmp_path, read_only_dir=run)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((elsewhere / "result.json").read_text())["val_bpb"] > 0
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_sweep_on_a_launcher_that_does_not_check_first_is_refused(tmp_path):
    out = golf_cmd("-m", *TINY, "train.seq_len=64,100", "hydra/launcher=basic", cwd=tmp_path)
    assert out.returncode == 2
    no_traceback(out)
    assert out.stderr.strip() == (
        "golf: invalid configuration: hydra/launcher='basic': runs the points of a sweep without checking them first "
        "(a bad point would fail only after the points before it ran); use hydra/launcher=local on this machine, "
        "or slurm_8xh100 / slurm_ci")
    assert list(tmp_path.iterdir()) == []  # nothing ran, no sweep directory


def test_hydra_full_error_keeps_the_tracebacks(tmp_path, monkeypatch):
    from golf.checkpoint import CheckpointError
    from golf.entry import entry_errors

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    for err in (FloatingPointError("x"), CheckpointError("y"), KeyboardInterrupt()):
        with pytest.raises(type(err)), entry_errors("golf", lambda: [tmp_path]):
            raise err
    assert list(tmp_path.iterdir()) == []  # and no error.txt written in its place
