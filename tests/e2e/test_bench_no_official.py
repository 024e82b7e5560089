"""``bench/bench_vs_official.py --no-official`` runs golf alone: the official script is never needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT


def bench(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "bench_vs_official.py"), *args],
                          capture_output=True, text=True, timeout=900, cwd=cwd)


def test_a_missing_official_script_is_refused_only_when_it_would_run(tmp_path):
    out = bench("--cpu", "--official", str(tmp_path / "absent.py"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 1
    assert f"bench: --official {tmp_path / 'absent.py'} does not exist (or run with --no-official)" in out.stderr


@pytest.mark.slow
def test_no_official_runs_golf_alone_against_a_reference(tmp_path, shared_data):
    out = bench("--cpu", "--no-official", "--official", str(tmp_path / "absent.py"), "--steps", "2", "--warmup", "0",
                "--reference-ms", "1000", "--cpu-val-tokens", "4096", "--data-root", str(shared_data),
                "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "out" / "cpu" / "bench_cpu.txt").read_text().splitlines()
    assert "against --reference-ms 1000.0" in table[0]
    assert table[1].split() == ["run", "ms/step", "vs", "reference", "train", "losses"]
    assert len(table) == 3 and table[2].startswith("golf ")  # one golf row, no official row
    ms, ratio = float(table[2].split()[1]), float(table[2].split()[2].rstrip("x"))
    assert ratio == pytest.approx(1000.0 / ms, abs=5e-4)  # printed with 3 decimals
    assert not (tmp_path / "out" / "cpu" / "official_fp32_NS").exists()
