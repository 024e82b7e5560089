"""Running ``python -m golf.train -m ...`` sweeps from the tests, and reading what they leave behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import TINY

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# the demo at test size, as fast as it gets with two gloo workers per job
SMALL = [*TINY, "train.val_every=0"]


def sweep_command(sweep_dir: Path, *overrides: str, launcher: str = "slurm_ci") -> list[str]:
    return [sys.executable, "-m", "golf.train", "-m", *SMALL, *overrides,
            f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}"]


def run_sweep(sweep_dir: Path, *overrides: str, launcher: str = "slurm_ci",
              timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a sweep to the end from the project root (as a user would); output captured."""
    return subprocess.run(sweep_command(sweep_dir, *overrides, launcher=launcher), cwd=PROJECT_ROOT,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=timeout)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def events(run_dir: Path, kind: str) -> list[dict]:
    """The rows of one event kind; a line still being written by a running job is left out."""
    text = (run_dir / "metrics.jsonl").read_text()
    complete = text[:text.rfind("\n") + 1]
    rows = [json.loads(line) for line in complete.splitlines() if line]
    return [r for r in rows if r["event"] == kind]
