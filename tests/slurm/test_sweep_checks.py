"""Fail before queueing: every sweep point is composed, validated and budget-checked before any job
is submitted (no cluster needed: a refused sweep never reaches sbatch)."""

import pytest

from tests.slurm.sweep import run_sweep


@pytest.mark.slurm  # the Slurm profile first checks that sbatch/srun exist: it needs the cluster's tools
def test_invalid_and_over_budget_points_refuse_the_whole_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # 4 points: (5, 16 MB) is fine; (5, 20 kB) is far over budget; both with iterations=-1 are invalid
    out = run_sweep(sweep_dir, "train.iterations=5,-1", "quant.limit_bytes=16000000,20000", timeout=300)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "3 of 4 sweep points were refused; nothing was submitted" in text
    assert "train.iterations=-1: must be positive" in text
    assert "BudgetExceededError" in text and "quant.limit_bytes=20000" in text
    assert not (sweep_dir / ".submitit").exists()  # no job folder: nothing reached the scheduler


def test_local_profile_checks_too(tmp_path):
    sweep_dir = tmp_path / "sweep"
    out = run_sweep(sweep_dir, "seed=1,2", "train.seq_len=100", launcher="local", timeout=300)
    assert out.returncode != 0
    assert "2 of 2 sweep points were refused" in out.stdout + out.stderr
    assert not any(sweep_dir.glob("*/summary.json"))  # no point ran
