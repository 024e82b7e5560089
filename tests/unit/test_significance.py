"""Both significance verdicts on hand-made groups (t, Welch df and p computed here from the formulas),
and the warnings of a group: more runs than reported seeds, mixed configurations, too few seeds, an
evaluation over its budget."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from omegaconf import OmegaConf
from scipy.stats import t as student_t

from golf.report import main
from golf.significance import verdicts

REF = [2.3110, 2.3120, 2.3130]  # val_loss (nats) of the reference row's 3 seeds
GROUPS = {  # the group's 3 seeds -> (README verdict, practice verdict)
    "clear": ([2.3000, 2.3005, 2.3010], True, True),  # 0.0115 nats better, tight: both
    "noisy": ([2.2950, 2.3050, 2.3150], False, True),  # 0.007 better but noisy: p ~ 0.18, merged in practice
    "small": ([2.3100, 2.3110, 2.3120], False, True),  # 0.001 better: below the margin, p ~ 0.14
    "worse": ([2.3130, 2.3140, 2.3150], False, False),
}


def welch(new: list[float], ref: list[float], margin: float) -> tuple[float, float, float]:
    """One-sided Welch test of mean(new) < mean(ref) - margin, by the formulas."""
    v1, v2 = statistics.variance(new) / len(new), statistics.variance(ref) / len(ref)
    t = (statistics.fmean(new) - (statistics.fmean(ref) - margin)) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (len(new) - 1) + v2 ** 2 / (len(ref) - 1))
    return t, df, float(student_t.cdf(t, df))


@pytest.mark.parametrize("name", GROUPS)
def test_both_verdicts_against_a_reference_row(name):
    values, readme, practice = GROUPS[name]
    v = verdicts(values, REF)
    assert v["seeds"] == 3 and v["delta_nats"] == pytest.approx(statistics.fmean(REF) - statistics.fmean(values))
    for test, margin, alpha, expected in (("readme", 0.005, 0.01, readme), ("practice", 0.0, 0.25, practice)):
        t, df, p = welch(values, REF, margin)
        got = v[test]
        assert (got["t"], got["df"], got["p"]) == (pytest.approx(t), pytest.approx(df), pytest.approx(p))
        assert got["margin_nats"] == margin and got["alpha"] == alpha
        assert got["significant"] is expected and (p < alpha) is expected


def test_the_hand_made_groups_land_where_the_rules_disagree():
    # the noisy group is what practice merged and the README's rule would not (p ~ 0.19, like a merged row)
    t, df, p = welch(GROUPS["noisy"][0], REF, 0.0)
    assert 0.15 < p < 0.25 and df == pytest.approx(2.04, abs=0.01)
    assert welch(GROUPS["clear"][0], REF, 0.005)[2] < 0.01 < welch(GROUPS["noisy"][0], REF, 0.005)[2]


def test_a_published_mean_is_a_one_sample_test():
    values = GROUPS["clear"][0]
    v = verdicts(values, 2.3120)
    sd = statistics.stdev(values)
    for test, margin in (("readme", 0.005), ("practice", 0.0)):
        t = (statistics.fmean(values) - (2.3120 - margin)) / (sd / math.sqrt(3))
        assert v[test]["t"] == pytest.approx(t) and v[test]["df"] == 2
        assert v[test]["p"] == pytest.approx(student_t.cdf(t, 2))


def test_one_seed_has_no_verdict():
    v = verdicts([2.30], REF)
    assert math.isnan(v["readme"]["p"]) and v["readme"]["significant"] is False
    assert v["practice"]["note"] == "needs at least 2 seeds"


def write_run(root, name, *, seed, val_loss, config=None, status="completed", eval_s=30.0, budget=600.0):
    d = root / name
    d.mkdir(parents=True)
    cfg = {"arch": {"name": "a"}, "train": {"iterations": 100}, "eval": {"budget_s": budget}, "seed": seed,
           **(config or {})}
    OmegaConf.save(OmegaConf.create(cfg), d / "config.yaml")
    summary = {"status": status, "seed": seed, "val_loss": val_loss, "val_bpb": val_loss / 2, "steps": 100,
               "ms_per_step": 50.0, "artifact_bytes": 15_000_000, "final_eval_s": eval_s}
    (d / "summary.json").write_text(json.dumps(summary))


def warning_lines(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("warnings ("))
    return [line.strip() for line in lines[start + 1:] if line.startswith("  [")]


def test_a_group_of_five_runs_reporting_three_seeds_is_flagged(tmp_path, capsys):
    for seed, loss in zip(range(1, 6), [2.30, 2.31, 2.32, 2.40, 2.41]):
        write_run(tmp_path / "runs", f"s{seed}", seed=seed, val_loss=loss)
    assert main([str(tmp_path / "runs"), "--seeds", "1,2,3", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert warning_lines(out) == [
        "[all] 5 runs for 3 reported seeds (seeds 4, 5 not reported): a record's mean is over every run of its "
        "configuration, one per seed (reporting the best seeds of more runs was objected to, #1769)"]
    group = json.loads((tmp_path / "r.json").read_text())["groups"]["all"]
    assert (group["distinct_seeds"], group["runs"]) == (3, 5)
    assert group["val_loss"]["mean"] == pytest.approx(2.31)  # the reported seeds only
    assert main([str(tmp_path / "runs")]) == 0  # all five reported: nothing to object to
    assert "warnings (" not in capsys.readouterr().out


def test_mixed_configurations_too_few_seeds_and_an_eval_over_budget(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "a1", seed=1, val_loss=2.30)
    write_run(runs, "a2", seed=2, val_loss=2.31, config={"train": {"iterations": 200}}, eval_s=612.5)
    write_run(runs, "b1", seed=1, val_loss=2.35, config={"arch": {"name": "b"}})
    write_run(runs, "b2", seed=2, val_loss=2.36, config={"arch": {"name": "b"}})
    assert main([str(runs), "--by", "arch.name", "--reference", "arch.name=b"]) == 0
    out = capsys.readouterr().out
    assert warning_lines(out) == [
        "[a] mixes configurations: train.iterations = 100, 200 (an audit takes the mean of one configuration, #2124)",
        "[a] 2 seeds; the README asks for 3",
        "[a] seed 2: evaluation took 612.5 s (final_eval_s), over eval.budget_s=600",
        "[b] 2 seeds; the README asks for 3"]
    assert "significance against the group 'b': README = better by >= 0.005 nats at one-sided Welch p < 0.01" in out
    head, row = out.splitlines()[-2:]
    assert head.split() == ["group", "seeds", "Δ", "val_loss", "(nats)", "p", "README", "README", "p", "practice",
                            "practice"]
    t, df, p = welch([2.30, 2.31], [2.35, 2.36], 0.005)
    assert row.split() == ["a", "2", "+0.05000", f"{p:.3g}", "no", f"{welch([2.30, 2.31], [2.35, 2.36], 0.0)[2]:.3g}",
                           "yes"]
