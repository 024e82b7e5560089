"""The ablation table and plot from a sweep's ``ablation.json`` and its runs' summaries (synthetic runs
with known effects, so every number is checked by hand)."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy import stats

from golf import ablation_report
from golf.report import main as report_main
from hydra_plugins.golf_ablation import sweeper

FULL = {1: 1.200, 2: 1.210, 3: 1.190}
EFFECTS = {  # technique -> val_bpb of its drop run per seed; artifact bytes; ms/step
    "xsa": ({1: 1.230, 2: 1.236, 3: 1.222}, 15_000_000, 90.0),   # removing it hurts: +0.0293 mean
    "noise": ({1: 1.201, 2: 1.209, 3: 1.192}, 15_000_100, 100.0),  # no effect
    "qat": ({1: 1.180, 2: 1.188, 3: 1.175}, 17_000_000, 95.0),   # removing it helps bpb, but over budget
}


def _run(root, name, seed, bpb, size=15_500_000, ms=100.0, status="completed"):
    d = root / name
    d.mkdir(parents=True)
    summary = {"status": status, "seed": seed, "val_bpb": bpb, "val_loss": bpb * 0.7, "artifact_bytes": size,
               "ms_per_step": ms, "steps": 10, "artifact_fits": size <= 16_000_000}
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.yaml").write_text(f"seed: {seed}\n")
    return {"num": 0, "run_dir": name, "overrides": [f"seed={seed}"], "estimated_bytes": size,
            "over_budget": size > 16_000_000}


def make_sweep(root, *, path=False, failed=False):
    points = [{"name": "full", "off": [], "roles": ["full"] + (["path:2:swa"] if path else []), "runs": [
        _run(root, f"full-{s}", s, v) for s, v in FULL.items()]}]
    for label, (values, size, ms) in EFFECTS.items():
        runs = [_run(root, f"no-{label}-{s}", s, v, size, ms) for s, v in values.items()]
        points.append({"name": f"no-{label}", "off": [label], "roles": [f"drop:{label}"], "runs": runs})
    if failed:
        points[1]["runs"].append(_run(root, "no-xsa-4", 4, math.nan, status="failed"))
    groups = {}
    if path:
        points.append({"name": "base", "off": [], "roles": ["base"], "runs": [
            _run(root, f"base-{s}", s, 1.30 + s / 1000) for s in FULL]})
        points.append({"name": "path0", "off": ["xsa", "swa"], "roles": ["path:0:start"], "runs": [
            _run(root, f"p0-{s}", s, 1.25 + s / 1000) for s in FULL]})
        points.append({"name": "path1", "off": ["swa"], "roles": ["path:1:xsa"], "runs": [
            _run(root, f"p1-{s}", s, 1.22 + s / 1000) for s in FULL]})
        groups = {}
    manifest = {"format": sweeper.FORMAT, "target": ["experiment=pr507", "seed=1,2,3"], "base": "baseline" if path
                else None, "techniques": list(EFFECTS), "groups": groups, "skipped": {}, "points": points}
    (root / sweeper.MANIFEST).write_text(json.dumps(manifest))
    return root


def test_rows_are_paired_deltas_sorted_by_effect(tmp_path):
    manifest, points = ablation_report.load(make_sweep(tmp_path))
    full, rows = ablation_report.leave_one_out(manifest, points)
    assert [r.label for r in rows] == ["xsa", "noise", "qat"]  # largest harm of removal first
    xsa = rows[0]
    deltas = [EFFECTS["xsa"][0][s] - FULL[s] for s in FULL]
    assert xsa.delta == pytest.approx(statistics.fmean(deltas)) and xsa.delta > 0
    assert xsa.std == pytest.approx(statistics.stdev(deltas))
    # the paired t-test of the per-seed differences: t = mean / (std / sqrt(n)), two-sided, n - 1 = 2 df
    t = statistics.fmean(deltas) / (statistics.stdev(deltas) / math.sqrt(3))
    assert xsa.test == "paired t" and xsa.p == pytest.approx(2 * stats.t.sf(abs(t), 2))
    assert xsa.p == pytest.approx(stats.ttest_rel(list(EFFECTS["xsa"][0].values()), list(FULL.values())).pvalue)
    assert xsa.p < 0.01 and rows[1].p > 0.5  # a real effect vs noise
    # pairing removes what the seeds share: the unpaired Welch test of the same runs is far weaker here
    assert stats.ttest_ind(list(EFFECTS["xsa"][0].values()), list(FULL.values()), equal_var=False).pvalue > 4 * xsa.p
    assert xsa.d_bytes == pytest.approx(-500_000) and xsa.d_ms == pytest.approx(-10.0)
    qat = rows[2]
    assert qat.delta < 0 and qat.over and not xsa.over  # removing QAT helps here but does not fit
    assert xsa.n == 3 and xsa.failed == 0


def test_report_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep", failed=True)
    plots = tmp_path / "plots"
    rc = report_main([str(tmp_path), "--plots", str(plots)])
    out = capsys.readouterr().out
    assert rc == 0  # the report was produced; the failed run is in it
    assert report_main([str(tmp_path), "--fail-on-failed"]) == 1
    capsys.readouterr()
    assert "leave-one-out" in out and "| xsa | 3 (1 failed) |" in out
    lines = [line for line in out.splitlines() if line.startswith("| ") and "technique" not in line]
    assert [line.split("|")[1].strip() for line in lines] == ["xsa", "noise", "qat"]
    assert "| +0.02933 |" in lines[0] and lines[2].rstrip().endswith("| yes |")
    assert all("| paired t |" in line for line in lines)  # a failed run (xsa seed 4) has no value to pair
    assert "groups differ in" not in out  # the runs of an ablation sweep are not regrouped by config keys
    png = plots / "ablation.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(sweep) in out


def test_unpaired_seeds_fall_back_to_the_welch_test_named_as_such(tmp_path):
    manifest, points = ablation_report.load(make_sweep(tmp_path))
    full = next(p for p in points if p.name == "full")
    xsa = next(p for p in points if p.name == "no-xsa")
    for run in xsa.runs:  # other seeds than the full recipe's: nothing pairs
        run["seed"] += 10
    row = ablation_report.compare(xsa, full, "xsa")
    assert row.test == "Welch"
    assert row.delta == pytest.approx(statistics.fmean(EFFECTS["xsa"][0].values()) - statistics.fmean(FULL.values()))
    assert row.p == pytest.approx(stats.ttest_ind(list(EFFECTS["xsa"][0].values()), list(FULL.values()),
                                                  equal_var=False).pvalue)
    assert math.isnan(row.std)


def test_path_rows_compare_each_step_with_the_previous(tmp_path):
    manifest, points = ablation_report.load(make_sweep(tmp_path, path=True))
    rows = ablation_report.path(manifest, points)
    assert [r.label for r in rows] == ["base (baseline)", "0: target's settings, base's techniques", "1: +xsa",
                                       "2: +swa"]
    assert rows[0].val_bpb == pytest.approx(1.302)
    assert rows[1].delta == pytest.approx(-0.05) and rows[2].delta == pytest.approx(-0.03)
    assert rows[3].delta == pytest.approx(statistics.fmean(FULL.values()) - 1.222)


def test_not_an_ablation_sweep_is_left_to_the_usual_report(tmp_path):
    assert ablation_report.ablation_report(tmp_path) == ""
    assert ablation_report.ablation_sweeps([tmp_path]) == []
    assert ablation_report.MANIFEST == sweeper.MANIFEST
