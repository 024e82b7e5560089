"""One command, one table: a two-technique ablation of a tiny recipe on the demo data, two seeds, through
the local launcher, then ``golf.report --plots`` on its sweep directory (slow: six short trainings)."""

from __future__ import annotations

import json

import pytest

from golf import ablation_report
from golf.config.validate import load_config
from golf.report import main as report_main
from golf.train import estimate_run_bytes
from hydra_plugins.golf_launcher.checks import build_on_meta
from tests.helpers import compose_config
from tests.slurm.sweep import SMALL, run_sweep

pytestmark = pytest.mark.slow

# EMA 0.997 after 6 steps still holds ~98% of the initial weights: removing it must lower val_bpb.
# Every tensor int6 (passthrough 0) vs the baseline int8 tables (fp16 below 65,536 elements): removing
# the low-bit export must grow the artifact far past a limit set 5% above the full recipe's estimate
# (width 128 for a large gap; the code bytes are the generated submission's, exact in every process).
RECIPE = ["averaging=ema0997", "quant=int6", "quant.passthrough_max_numel=0", "arch.model_dim=128"]
SWEEP = ["seed=1,2", "hydra/sweeper=ablation", "hydra.sweeper.only=[ema,lowbit_quant]"]


def _limit() -> int:
    """5% above the full recipe's estimate (model + code bytes)."""
    cfg = load_config(compose_config([*SMALL, *RECIPE]))
    return int(1.05 * sum(estimate_run_bytes(cfg, build_on_meta(cfg))))


def test_two_technique_ablation_of_a_tiny_recipe(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    out = run_sweep(sweep, *RECIPE, f"quant.limit_bytes={_limit()}", *SWEEP, launcher="local", timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "golf ablation: 5 techniques: unet_skips, momentum_warmup, zstd, ema, lowbit_quant" in log
    assert "leave-one-out" in log  # the sweep ends with the table

    manifest = json.loads((sweep / "ablation.json").read_text())
    points = {p["name"]: p for p in manifest["points"]}
    assert set(points) == {"full", "no-ema", "no-lowbit_quant"}
    assert all(len(p["runs"]) == 2 for p in points.values())  # x 2 seeds
    over = points["no-lowbit_quant"]["runs"]
    assert all(r["over_budget"] and "quant.over_limit=warn" in r["overrides"] for r in over)
    assert not any(r["over_budget"] for r in points["full"]["runs"] + points["no-ema"]["runs"])

    rc = report_main([str(sweep), "--plots", str(tmp_path / "plots")])
    text = capsys.readouterr().out
    assert rc == 0
    _, rows = ablation_report.leave_one_out(*ablation_report.load(sweep))
    by = {r.label: r for r in rows}
    assert sorted(by) == ["ema", "lowbit_quant"] and all(r.n == 2 and r.failed == 0 for r in rows)
    assert by["ema"].delta < 0 and by["ema"].std >= 0  # the known effect's sign
    assert by["lowbit_quant"].d_bytes > 0 and by["lowbit_quant"].over and not by["ema"].over
    assert [r.label for r in rows] == sorted(by, key=lambda k: -by[k].delta)
    assert "| ema | 2 |" in text and "| lowbit_quant | 2 |" in text
    assert (tmp_path / "plots" / "ablation.png").stat().st_size > 1000


def test_a_bad_plan_is_one_line_before_anything_runs(tmp_path):
    sweep = tmp_path / "sweep"
    out = run_sweep(sweep, "hydra/sweeper=ablation", "hydra.sweeper.only=[xsa]", launcher="local", timeout=600)
    assert out.returncode == 2
    assert ("golf: ValueError: technique 'xsa' is not in this recipe; it has: unet_skips, momentum_warmup"
            in out.stderr)
    assert "Traceback" not in out.stderr and not sweep.exists()
