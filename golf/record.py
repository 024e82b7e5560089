"""A finished group of runs as a record folder laid out like the challenge's ``records/`` entries
(``python -m golf.report DIRS --submission LABEL --record-dir DIR``): ``submission.json`` with the
records' fields, the runs' ``submission.py`` as ``train_gpt.py``, one log per seed and a README."""

from __future__ import annotations

import datetime
import json
import math
import shutil
from pathlib import Path

from golf.report import _mean, describe
from golf.run_records import Run


def submission_record(runs: list[Run], name: str, *, author: str | None = None, github_id: str | None = None,
                      blurb: str | None = None, test: dict | None = None) -> dict:
    """The ``submission.json`` of a group: the fields the challenge's records carry (means over the
    completed seeds; bytes are the largest seed's), plus per-seed results and the significance test."""
    good = sorted((r for r in runs if r.ok), key=lambda r: str(r.summary.get("seed")))
    if not good:
        raise ValueError(f"group {name!r} has no completed run")
    seeds = [str(r.summary.get("seed")) for r in good]
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise ValueError(f"group {name!r} has several completed runs with seed {dup}: "
                         + ", ".join(str(r.path) for r in good if str(r.summary.get("seed")) == dup))
    largest = max(good, key=lambda r: r.summary["artifact_bytes"])
    bpb, loss = describe([r.summary["val_bpb"] for r in good]), describe([r.summary["val_loss"] for r in good])
    record = {
        "name": name,
        "author": author,
        "github_id": github_id,
        "blurb": blurb or f"{name}: mean of {len(good)} seed(s), trained and scored with golf.",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "val_loss": loss["mean"],
        "val_bpb": bpb["mean"],
        "val_loss_std": loss["std"] if loss["n"] > 1 else None,
        "val_bpb_std": bpb["std"] if bpb["n"] > 1 else None,
        "pre_quant_val_loss": _mean(good, "prequant_val_loss"),
        "pre_quant_val_bpb": _mean(good, "prequant_val_bpb"),
        "step_stop": _mean(good, "steps"),
        "wallclock_seconds": _mean(good, "train_time_s"),
        "eval_time_seconds": _mean(good, "final_eval_s"),
        "bytes_total": largest.summary["artifact_bytes"],  # the largest seed's artifact, split as it was
        "bytes_model": largest.summary["model_bytes"],
        "bytes_code": largest.summary["code_bytes"],
        "seeds": {str(r.summary.get("seed")): {
            "val_bpb": r.summary["val_bpb"], "val_loss": r.summary["val_loss"], "steps": r.summary.get("steps"),
            "artifact_bytes": r.summary["artifact_bytes"], "run_dir": str(r.path)} for r in good},
    }
    if test is not None:
        record["significance"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in test.items()}
    return record


def _run_log(run: Run) -> Path | None:
    """The run's log: rank 0's when local workers trained, else the Hydra job log."""
    for name in ("rank0.log", "train.log"):
        if (run.path / name).exists():
            return run.path / name
    return None


def write_record(runs: list[Run], name: str, out_dir: Path, **record_fields) -> Path:
    """Write a group as a record folder: ``submission.json``, ``train_gpt.py`` (the bundle of the first
    seed; the other seeds are the same file run with ``seed=<S>``), ``train_seed<S>.log`` and a
    ``README.md`` summarizing the seeds. Returns the folder."""
    record = submission_record(runs, name, **record_fields)
    good = sorted((r for r in runs if r.ok), key=lambda r: str(r.summary.get("seed")))
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"record folder {out_dir} exists and is not empty; choose another --record-dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "submission.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    bundle = good[0].path / "submission.py"
    if bundle.exists():
        shutil.copyfile(bundle, out_dir / "train_gpt.py")
    for r in good:
        log = _run_log(r)
        if log is not None:
            shutil.copyfile(log, out_dir / f"train_seed{r.summary.get('seed')}.log")
    lines = [f"# {record['name']}", "", record["blurb"], "",
             "| seed | val_bpb | val_loss | steps | artifact bytes |", "|---|---|---|---|---|"]
    for seed, row in record["seeds"].items():
        lines.append(f"| {seed} | {row['val_bpb']:.5f} | {row['val_loss']:.5f} | {row['steps']} | "
                     f"{row['artifact_bytes']:,} |")
    std = f" ± {record['val_bpb_std']:.5f}" if record["val_bpb_std"] is not None else ""
    lines += ["", f"Mean val_bpb **{record['val_bpb']:.5f}**{std} over {len(good)} seed(s); largest artifact "
              f"{record['bytes_total']:,} bytes (model {record['bytes_model']:,} + code {record['bytes_code']:,})."]
    if "significance" in record:
        t = record["significance"]
        lines += ["", f"One-sided Welch t-test against the reference: t = {t.get('t')}, p = {t.get('p')}."]
    if bundle.exists():
        lines += ["", "Reproduce one seed (the resolved config is inside `train_gpt.py`; golf's dependencies "
                  "installed, data under `data.root`):", "", "```",
                  "python train_gpt.py seed=<S> data.root=<dir with datasets/ and tokenizers/>", "```"]
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")
    return out_dir
