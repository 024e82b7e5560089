"""First contact: what a new user sees when Slurm or the data is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from golf.config.errors import ConfigError
from golf.data.config import DataConfig
from golf.data.paths import prepare_data
from hydra_plugins.golf_launcher.launcher import require_slurm
from tests.helpers import CONF_DIR


def test_slurm_launcher_without_slurm_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}\n")
    with pytest.raises(SystemExit) as exit_info:
        require_slurm(sweep)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found: sbatch, srun" in err[0] and "hydra/launcher=local" in err[0]
    assert not sweep.exists()


def test_slurm_check_passes_when_both_commands_exist(tmp_path, monkeypatch):
    for name in ("sbatch", "srun"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    require_slurm(None)


def test_missing_data_names_both_remedies(tmp_path):
    with pytest.raises(ConfigError) as err:
        prepare_data(DataConfig(root=str(tmp_path)))
    assert "python -m golf.data.download" in str(err.value) and "data=demo" in str(err.value)


@pytest.mark.slow
def test_cli_slurm_sweep_without_slurm(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "golf.train", "-m", "experiment=demo", "seed=1,2", "hydra/launcher=slurm_8xh100",
         f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, timeout=300, cwd=CONF_DIR.parent,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path), "WANDB_MODE": "disabled"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "golf: this Slurm launcher needs sbatch and srun on PATH; not found: sbatch, srun "
        "(to run the sweep on this machine: hydra/launcher=local)"]
    assert not sweep.exists()
