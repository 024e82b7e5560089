"""Sweep comparison: grouping by what differs, statistics over seeds, the record significance test."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf

from golf.record import submission_record
from golf.report import find_runs, group_runs, main, varying_keys
from golf.significance import improvement_test


def make_run(root, name, *, arch, seed, val_loss, status="completed"):
    d = root / name
    d.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"arch": {"name": arch}, "seed": seed, "run_dir": str(d)}), d / "config.yaml")
    summary = {"status": status, "seed": seed, "val_loss": val_loss, "val_bpb": val_loss / 2.0,
               "artifact_bytes": 15_000_000 + seed, "model_bytes": 14_900_000, "code_bytes": 100_000 + seed,
               "steps": 100, "ms_per_step": 50.0}
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "train.log").write_text(f"log of {name}\n")
    (d / "submission.py").write_text(f"# bundle of {name}\n")


def test_welch_test_matches_hand_computation():
    new, ref = [1.0, 1.1, 1.2], [1.3, 1.4, 1.5]
    # means 1.1 vs 1.4 (shifted by the margin 0.05 -> 1.35); variances 0.01 each; se = sqrt(2 * 0.01 / 3)
    t = (1.1 - 1.35) / math.sqrt(2 * 0.01 / 3)
    res = improvement_test(new, ref, margin=0.05)
    assert res["t"] == pytest.approx(t)
    assert res["df"] == pytest.approx(4.0)  # equal variances and sizes: Welch df = 2(n-1)
    from scipy.stats import t as student_t

    assert res["p"] == pytest.approx(student_t.cdf(t, 4))


def test_one_sample_against_a_published_mean():
    res = improvement_test([1.0, 1.02, 0.98], 1.1, margin=0.005)
    t = (1.0 - 1.095) / (0.02 / math.sqrt(3))
    assert res["t"] == pytest.approx(t)
    assert res["p"] < 0.01


def test_grouping_statistics_and_submission(tmp_path, capsys):
    for s, v in [(1, 2.0), (2, 2.2), (3, 2.4)]:
        make_run(tmp_path, f"a{s}", arch="a", seed=s, val_loss=v)
    for s, v in [(1, 3.0), (2, 3.2)]:
        make_run(tmp_path, f"b{s}", arch="b", seed=s, val_loss=v)
    make_run(tmp_path, "b3", arch="b", seed=3, val_loss=float("nan"), status="failed")
    runs = find_runs([tmp_path])
    assert varying_keys(runs) == ["arch.name"]  # seed and run_dir differ too but are not configuration
    groups = group_runs(runs, ["arch.name"])
    assert sorted(groups) == ["arch.name=a", "arch.name=b"]
    record = submission_record(groups["arch.name=a"], "a")
    assert record["val_loss"] == pytest.approx(2.2) and record["val_bpb"] == pytest.approx(1.1)
    assert record["bytes_total"] == 15_000_003 and sorted(record["seeds"]) == ["1", "2", "3"]
    rec = tmp_path / "out" / "rec"
    rc = main([str(tmp_path / "a1"), str(tmp_path / "a2"), str(tmp_path / "a3"), str(tmp_path / "b1"),
               str(tmp_path / "b2"), str(tmp_path / "b3"), "--reference", "arch.name=b", "--json",
               str(tmp_path / "r.json"), "--submission", "arch.name=a", "--record-dir", str(rec),
               "--name", "Arch A", "--author", "Someone", "--github-id", "someone"])
    assert rc == 0  # the report was produced; its failed run is listed (--fail-on-failed: exit 1)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["groups"]["arch.name=b"]["failed"] == [str(tmp_path / "b3")]
    assert report["groups"]["arch.name=a"]["val_bpb"]["mean"] == pytest.approx(1.1)
    assert report["tests"]["arch.name=a"]["readme"]["p"] < 0.05
    out = capsys.readouterr().out
    assert "labelled by: arch.name" in out and "\na " in out and f"[b] {tmp_path / 'b3'}: status failed" in out
    assert main([str(tmp_path), "--fail-on-failed"]) == 1
    # the record folder, laid out as the challenge's records/ entries
    assert sorted(p.name for p in rec.iterdir()) == [
        "README.md", "submission.json", "train_gpt.py", "train_seed1.log", "train_seed2.log", "train_seed3.log"]
    sub = json.loads((rec / "submission.json").read_text())
    assert (sub["name"], sub["author"], sub["github_id"]) == ("Arch A", "Someone", "someone")
    assert sub["val_loss"] == pytest.approx(2.2) and sub["val_bpb"] == pytest.approx(1.1)
    assert sub["val_bpb_std"] == pytest.approx(0.1) and sub["step_stop"] == 100
    assert (sub["bytes_total"], sub["bytes_code"]) == (15_000_003, 100_003)
    assert sub["significance"]["readme"]["p"] == report["tests"]["arch.name=a"]["readme"]["p"]
    assert sub["significance"]["reference"] == "the group 'b'"
    assert sub["date"].endswith("Z") and sub["pre_quant_val_bpb"] is None  # not in these summaries
    assert (rec / "train_gpt.py").read_text() == "# bundle of a1\n"
    assert (rec / "train_seed2.log").read_text() == "log of a2\n"
    readme = (rec / "README.md").read_text()
    assert "| 3 | 1.20000 | 2.40000 | 100 | 15,000,003 |" in readme and "1.10000** ± 0.10000" in readme
    assert "SEED=<S> DATA_DIR=<dir with datasets/ and tokenizers/> torchrun --standalone" in readme


def test_a_record_needs_a_completed_run(tmp_path):
    make_run(tmp_path, "x", arch="x", seed=1, val_loss=float("nan"), status="failed")
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--submission", "all", "--record-dir", str(tmp_path / "rec")])
    assert not (tmp_path / "rec").exists()


def test_record_refuses_duplicate_seeds_and_an_occupied_folder(tmp_path):
    make_run(tmp_path / "runs", "a", arch="x", seed=1, val_loss=2.0)
    make_run(tmp_path / "runs", "b", arch="x", seed=1, val_loss=2.1)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "runs"), "--submission", "all", "--record-dir", str(tmp_path / "rec")])
    assert not (tmp_path / "rec").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "old.txt").write_text("x")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "runs" / "a"), "--submission", "all", "--record-dir", str(busy)])
    assert sorted(p.name for p in busy.iterdir()) == ["old.txt"]


def test_record_of_one_seed_against_a_reference_is_strict_json(tmp_path):
    make_run(tmp_path, "a", arch="a", seed=1, val_loss=2.0)
    make_run(tmp_path, "b1", arch="b", seed=1, val_loss=3.0)
    make_run(tmp_path, "b2", arch="b", seed=2, val_loss=3.1)
    main([str(tmp_path), "--reference", "arch.name=b", "--submission", "arch.name=a",
          "--record-dir", str(tmp_path / "rec")])
    text = (tmp_path / "rec" / "submission.json").read_text()
    assert "NaN" not in text
    sub = json.loads(text)
    for test in ("readme", "practice"):
        assert sub["significance"][test]["p"] is None and "2 seeds" in sub["significance"][test]["note"]
        assert sub["significance"][test]["significant"] is False
    assert sub["val_bpb_std"] is None
