"""Rows 21 and 22: ``golf.report`` over runs of which some cannot be read lists those (path and reason)
and reports the others; a ``--by`` key that no run has is refused, naming the keys near it, instead of
putting every run into one group."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from golf.report import main


def make_run(root, name, *, arch, seed, val_loss):
    d = root / name
    d.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"arch": {"name": arch}, "quant": {"passthrough_max_numel": 65536}, "seed": seed}),
                   d / "config.yaml")
    summary = {"status": "completed", "seed": seed, "val_loss": val_loss, "val_bpb": val_loss / 2.0,
               "artifact_bytes": 15_000_000, "steps": 100, "ms_per_step": 50.0}
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "metrics.jsonl").write_text('{"event": "train", "step": 1, "train_loss": 5.0}\n')
    return d


DAMAGE = {
    "empty summary": lambda d: (d / "summary.json").write_text(""),
    "truncated summary": lambda d: (d / "summary.json").write_text('{"status": "compl'),
    "bad yaml": lambda d: (d / "config.yaml").write_text("arch: {name: [unclosed\n"),
    "latin-1 metrics": lambda d: (d / "metrics.jsonl").write_bytes(b'{"event": "train", "note": "caf\xe9"}\n'),
}
REASONS = {"empty summary": "summary.json: JSONDecodeError: ", "truncated summary": "summary.json: JSONDecodeError: ",
           "bad yaml": "config.yaml: ", "latin-1 metrics": "metrics.jsonl: UnicodeDecodeError: "}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_an_unreadable_run_is_listed_and_the_others_are_reported(tmp_path, capsys, damage):
    for seed, loss in [(1, 2.0), (2, 2.2)]:
        make_run(tmp_path, f"a{seed}", arch="a", seed=seed, val_loss=loss)
        make_run(tmp_path, f"b{seed}", arch="b", seed=seed, val_loss=loss + 1)
    broken = make_run(tmp_path, "b3", arch="b", seed=3, val_loss=9.0)
    DAMAGE[damage](broken)
    before = {p.name: p.read_bytes() for p in broken.iterdir()}
    assert main([str(tmp_path), "--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "4 runs in 2 groups" in out and "unreadable runs, left out (1):" in out
    line = next(line for line in out.splitlines() if line.startswith(f"  {broken}: "))
    assert line.startswith(f"  {broken}: {REASONS[damage]}")
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["unreadable"]) == [str(broken)]
    assert report["groups"]["arch.name=b"]["val_bpb"]["n"] == 2 and report["groups"]["arch.name=a"]["runs"] == 2
    assert (tmp_path / "plots" / "loss_curves.png").is_file()
    assert {p.name: p.read_bytes() for p in broken.iterdir()} == before  # read, never rewritten
    assert main([str(tmp_path), "--fail-on-failed"]) == 1  # for CI an unreadable run counts as a failure


def test_only_unreadable_runs_is_an_error_naming_them(tmp_path, capsys):
    DAMAGE["empty summary"](make_run(tmp_path, "a1", arch="a", seed=1, val_loss=2.0))
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "no readable golf run" in err and f"{tmp_path / 'a1'}: summary.json: JSONDecodeError" in err


def test_an_unknown_group_key_is_refused_with_the_keys_near_it(tmp_path, capsys):
    make_run(tmp_path, "a1", arch="a", seed=1, val_loss=2.0)
    make_run(tmp_path, "b1", arch="b", seed=1, val_loss=3.0)
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "a1"), str(tmp_path / "b1"), "--by", "quant.passthrough_max_numl"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("error: --by quant.passthrough_max_numl: no run's config has this key; the nearest keys: "
                        "quant.passthrough_max_numel")
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--by", "arch"])  # a group of keys, not a key: its keys are offered
    assert capsys.readouterr().err.strip().endswith("the nearest keys: arch.name")
    # a key some runs lack (written before it existed) is a key: those runs group under None
    make_run(tmp_path, "c1", arch="c", seed=1, val_loss=4.0)
    cfg = OmegaConf.load(tmp_path / "c1" / "config.yaml")
    cfg.quant.new_key = 1
    OmegaConf.save(cfg, tmp_path / "c1" / "config.yaml")
    assert main([str(tmp_path), "--by", "quant.new_key", "--json", str(tmp_path / "r.json")]) == 0
    assert sorted(json.loads((tmp_path / "r.json").read_text())["groups"]) == ["quant.new_key=1", "quant.new_key=None"]
