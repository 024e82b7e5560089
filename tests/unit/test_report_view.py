"""What the report shows on a synthetic sweep (two groups x three seeds, known values): labels, distinct
seeds, the failed-run listing, nested runs ignored, the exit status, markdown/csv, and the three plots."""

from __future__ import annotations

import csv
import io
import json
import struct

import pytest
from omegaconf import OmegaConf

from golf.plots import FIGURE_SIZES
from golf.report import (
    distinguishing_keys,
    find_runs,
    group_labels,
    group_runs,
    main,
    summarize,
    varying_keys,
)

GROUPS = {  # label value of arch.model_dim -> (config, val_bpb per seed)
    32: ({"arch": {"model_dim": 32, "num_layers": 2, "name": "demo"}, "quant": {"name": "int8"}}, [1.30, 1.32, 1.34]),
    48: ({"arch": {"model_dim": 48, "num_layers": 4, "name": "demo"}, "quant": {"name": "int8"}}, [1.20, 1.22, 1.24]),
}


def write_run(d, config, *, seed, bpb, status="completed", error=None, steps=10):
    d.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({**config, "seed": seed, "run_dir": str(d), "run_name": d.name,
                                     "logger": {"name": "none"}}), d / "config.yaml")
    summary = {"status": status, "seed": seed, "steps": steps, "ms_per_step": 100.0 + seed}
    if status == "completed":
        summary.update(val_bpb=bpb, val_loss=2 * bpb, prequant_val_bpb=bpb - 0.01,
                       artifact_bytes=int(15_000_000 + 100_000 * bpb), artifact_limit=16_000_000)
    else:
        summary["error"] = error
    (d / "summary.json").write_text(json.dumps(summary))
    rows = [{"event": "train", "step": s, "train_loss": 6.0 - 0.3 * s + 0.01 * seed, "train_time_s": 0.5 * s}
            for s in range(1, steps + 1)]
    rows += [{"event": "val", "step": s, "val_bpb": (bpb or 2.0) + 1.0 / s, "train_time_s": 0.5 * s} for s in (5, 10)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun"
    n = 0
    for dim, (config, bpbs) in GROUPS.items():
        for seed, bpb in enumerate(bpbs, start=1):
            write_run(root / f"{n}_d{dim}_s{seed}", config, seed=seed, bpb=bpb)
            n += 1
    # group 48 also has a rerun of seed 3 and a failed seed 4
    write_run(root / f"{n}_d48_s3_again", GROUPS[48][0], seed=3, bpb=1.24)
    write_run(root / f"{n + 1}_d48_s4", GROUPS[48][0], seed=4, bpb=None, status="failed",
              error="FloatingPointError: train loss is nan at step 7\nmore text")
    # a run's submission.py re-run inside its directory is not another run
    write_run(root / "0_d32_s1" / "golf_run-20261130-010000", GROUPS[32][0], seed=1, bpb=9.9)
    return root


def test_labels_seed_counts_and_failed_listing(sweep, capsys):
    runs = find_runs([sweep])
    assert len(runs) == 8  # 6 + the rerun + the failed one; the nested bundle run is not counted
    by = varying_keys(runs)
    assert by == ["arch.model_dim", "arch.num_layers"]
    groups = group_runs(runs, by)
    keys = distinguishing_keys(groups, by)
    assert keys == ["arch.model_dim"]  # one key tells the two groups apart
    labels = group_labels(groups, keys)
    assert sorted(labels.values()) == ["32", "48"]  # values only
    table = {row["label"]: row for row in summarize(groups, labels).values()}
    assert (table["32"]["distinct_seeds"], table["32"]["runs"]) == (3, 3)
    assert (table["48"]["distinct_seeds"], table["48"]["runs"]) == (3, 5)
    assert table["48"]["val_bpb"]["mean"] == pytest.approx((1.20 + 1.22 + 1.24 + 1.24) / 4)
    assert table["32"]["quant_gap_bpb"]["mean"] == pytest.approx(0.01)

    assert main([str(sweep)]) == 0  # a report with a failed run in it was still produced
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "8 runs in 2 groups; groups differ in: arch.model_dim, arch.num_layers; labelled by: arch.model_dim"
    assert lines[2].split()[:3] == ["48", "3", "5"] and lines[3].split()[:3] == ["32", "3", "3"]  # best first
    assert lines[4] == "failed runs (1):"
    assert lines[5] == f"  [48] {sweep / '7_d48_s4'}: FloatingPointError: train loss is nan at step 7"
    assert main([str(sweep), "--fail-on-failed"]) == 1


def test_markdown_and_csv(sweep, capsys):
    main([str(sweep), "--format", "markdown"])
    md = capsys.readouterr().out.splitlines()
    assert md[1].startswith("| group | seeds | runs | val_bpb |") and md[3].startswith("| 48 | 3 | 5 | 1.22500 ± ")
    main([str(sweep), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["group"] for r in rows] == ["48", "32"]
    assert float(rows[1]["val_bpb_mean"]) == pytest.approx(1.32) and rows[0]["failed"] == "1"
    assert (rows[0]["distinct_seeds"], rows[0]["runs"]) == ("3", "5")


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plots_are_written_as_images_of_the_expected_size(sweep, tmp_path):
    out = tmp_path / "plots"
    assert main([str(sweep), "--plots", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bpb_vs_bytes.png", "loss_curves.png", "quant_gap.png"]
    for name, size in FIGURE_SIZES.items():
        assert png_size(out / name) == size
        assert (out / name).stat().st_size > 10_000  # drawn, not blank


def test_a_missing_directory_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nope")])
    assert "no such directory" in capsys.readouterr().err
