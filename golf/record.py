"""A finished group of runs as a record folder laid out like the challenge's ``records/`` entries
(``python -m golf.report DIRS --submission LABEL --record-dir DIR``): ``submission.json`` with the
records' fields, both significance tests and the compliance block, the first seed's generated
``submission.py`` as ``train_gpt.py``, one log per seed and a README.

The compliance block carries the fields records carry, each computed from the runs (never asserted):

* ``train_under_600s``: each seed's counted training time (``train_time_s``, plus ``calibration_s`` and
  ``quantize_s`` when the export calibrates: GPTQ runs inside the clock's reserve) is at most 600 s;
* ``artifact_under_16mb``: each seed's ``artifact_bytes`` (model + code) is at most 16,000,000;
* ``eval_under_600s``: each seed's evaluation time (:func:`golf.significance.eval_seconds`) is at most 600 s;
* ``score_first_ttt``: a seed that adapts at evaluation (``eval_kind`` ttt or phased) recorded its TTT
  statistics, which the evaluator writes only once its ledger has checked that every target was scored
  exactly once and before any update that used it (:class:`golf.kernel.ttt.ScoreLedger`,
  :class:`golf.kernel.phased.DocLedger`); true for a seed without TTT;
* ``no_pre_quant_ttt``: each seed's score was logged after its artifact (the round-tripped model is what
  is scored, and adapted, never the weights before quantization);
* ``three_seeds``: exactly 3 seeds, one run each, no completed run of the group left out, one
  configuration and code revision.

A field is false when a seed breaks it or lacks the record it is computed from; ``compliance_evidence``
holds the numbers each field was computed from. The limits are the challenge's (8xH100), whatever
hardware the runs had: the evidence names the world size.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
from pathlib import Path

from golf.report import _mean, describe
from golf.runs import Run
from golf.significance import SEEDS, eval_seconds, mixed_configuration, seed_of

TRAIN_LIMIT_S = 600.0  # the challenge's training time on 8xH100
EVAL_LIMIT_S = 600.0  # the challenge's evaluation time on 8xH100, apart from training's
ARTIFACT_LIMIT_BYTES = 16_000_000  # model + code, decimal


def counted_train_seconds(summary: dict) -> float | None:
    """Training seconds against the cap: the training clock, plus calibration and quantization when the
    export calibrates (they run inside the clock's reserve, ``train.reserve_s``); None if not recorded."""
    train = summary.get("train_time_s")
    if not isinstance(train, (int, float)):
        return None
    if isinstance(summary.get("calibration_s"), (int, float)):
        return float(train) + summary["calibration_s"] + float(summary.get("quantize_s") or 0.0)
    return float(train)


def _adapts(run: Run) -> bool:
    return (run.summary.get("eval_kind") or run.config.get("eval.kind")) in ("ttt", "phased")


def _scored_after_artifact(run: Run) -> bool:
    events = run.events()
    return ("artifact" in events and "final_eval" in events
            and events.index("artifact") < len(events) - 1 - events[::-1].index("final_eval"))


def compliance(runs: list[Run], reported: list[Run]) -> tuple[dict[str, bool], dict[str, dict]]:
    """The compliance block of a group (all its runs, the runs it reports) and the evidence of each field."""
    by_seed = {seed_of(r): r for r in reported}
    train = {s: counted_train_seconds(r.summary) for s, r in by_seed.items()}
    size = {s: r.summary.get("artifact_bytes") for s, r in by_seed.items()}
    evals = {s: eval_seconds(r.summary) for s, r in by_seed.items()}
    ttt = {s: (r.summary.get("ttt_chunks") if _adapts(r) else "no test-time training") for s, r in by_seed.items()}
    order = {s: _scored_after_artifact(r) for s, r in by_seed.items()}
    shown = {id(r) for r in reported}
    left_out = sorted(seed_of(r) for r in runs if r.ok and id(r) not in shown)
    mixed = mixed_configuration(reported)
    block = {
        "train_under_600s": all(v is not None and v <= TRAIN_LIMIT_S for v in train.values()),
        "artifact_under_16mb": all(isinstance(v, int) and v <= ARTIFACT_LIMIT_BYTES for v in size.values()),
        "eval_under_600s": all(v is not None and v <= EVAL_LIMIT_S for v, _ in evals.values()),
        "score_first_ttt": all(v == "no test-time training" or (isinstance(v, int) and v > 0) for v in ttt.values()),
        "no_pre_quant_ttt": all(order.values()),
        "three_seeds": len(reported) == SEEDS and len(by_seed) == SEEDS and not left_out and not mixed,
    }
    evidence = {
        "train_under_600s": {"limit_s": TRAIN_LIMIT_S, "seconds": train, "counted": "train_time_s (+ calibration_s "
                             "+ quantize_s when the export calibrates)"},
        "artifact_under_16mb": {"limit_bytes": ARTIFACT_LIMIT_BYTES, "bytes": size},
        "eval_under_600s": {"limit_s": EVAL_LIMIT_S, "seconds": {s: v for s, (v, _) in evals.items()},
                            "fields": sorted({k for _, k in evals.values()})},
        "score_first_ttt": {"ttt_chunks_checked": ttt},
        "no_pre_quant_ttt": {"scored_after_artifact": order},
        "three_seeds": {"seeds": sorted(by_seed), "runs": len(reported), "left_out": left_out, "mixed": mixed},
        "world_size": {s: r.summary.get("world_size") for s, r in by_seed.items()},
    }
    return block, evidence


def _strict(value):
    """NaN -> None, through dicts and lists (the record is strict JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def submission_record(runs: list[Run], name: str, *, reported: list[Run] | None = None, author: str | None = None,
                      github_id: str | None = None, blurb: str | None = None, test: dict | None = None) -> dict:
    """The ``submission.json`` of a group: the fields the challenge's records carry (means over the
    reported seeds, by default every completed run; bytes are the largest seed's), per-seed results, the
    significance tests (:func:`golf.significance.verdicts`) and the compliance block."""
    good = sorted(reported if reported is not None else [r for r in runs if r.ok], key=seed_of)
    if not good:
        raise ValueError(f"group {name!r} has no completed run")
    seeds = [seed_of(r) for r in good]
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise ValueError(f"group {name!r} has several completed runs with seed {dup}: "
                         + ", ".join(str(r.path) for r in good if seed_of(r) == dup))
    largest = max(good, key=lambda r: r.summary["artifact_bytes"])
    bpb, loss = describe([r.summary["val_bpb"] for r in good]), describe([r.summary["val_loss"] for r in good])
    block, evidence = compliance(runs, good)
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
        "seeds": {seed_of(r): {
            "val_bpb": r.summary["val_bpb"], "val_loss": r.summary["val_loss"], "steps": r.summary.get("steps"),
            "artifact_bytes": r.summary["artifact_bytes"], "run_dir": str(r.path)} for r in good},
        "compliance": block,
        "compliance_evidence": evidence,
    }
    if test is not None:
        record["significance"] = test
    return _strict(record)


def _run_log(run: Run) -> Path | None:
    """The run's log: rank 0's when local workers trained, else the Hydra job log."""
    for name in ("rank0.log", "train.log"):
        if (run.path / name).exists():
            return run.path / name
    return None


def _readme(record: dict, good: list[Run], bundle: bool) -> str:
    lines = [f"# {record['name']}", "", record["blurb"], "",
             "| seed | val_bpb | val_loss | steps | artifact bytes |", "|---|---|---|---|---|"]
    for seed, row in record["seeds"].items():
        lines.append(f"| {seed} | {row['val_bpb']:.5f} | {row['val_loss']:.5f} | {row['steps']} | "
                     f"{row['artifact_bytes']:,} |")
    std = f" ± {record['val_bpb_std']:.5f}" if record["val_bpb_std"] is not None else ""
    lines += ["", f"Mean val_bpb **{record['val_bpb']:.5f}**{std} over {len(good)} seed(s); largest artifact "
              f"{record['bytes_total']:,} bytes (model {record['bytes_model']:,} + code {record['bytes_code']:,})."]
    if "significance" in record:
        s = record["significance"]
        delta = "-" if s.get("delta_nats") is None else f"{s['delta_nats']:+.5f}"
        lines += ["", f"Against {s.get('reference', 'the reference')}: Δ val_loss {delta} nats (> 0: better)."]
        for key, rule in (("readme", "README (better by >= {margin_nats:g} nats, one-sided Welch p < {alpha:g})"),
                          ("practice", "practice (one-sided Welch p < {alpha:g} against the previous row)")):
            t = s[key]
            p = "-" if t.get("p") is None else f"{t['p']:.3g}"
            lines.append(f"- {rule.format(**t)}: p = {p}: {'yes' if t['significant'] else 'no'}"
                         + (f" ({t['note']})" if t.get("note") else ""))
    lines += ["", "Compliance (computed from the runs; evidence in `submission.json`):", ""]
    lines += [f"- `{k}`: {'true' if v else 'false'}" for k, v in record["compliance"].items()]
    if bundle:
        lines += ["", "Reproduce one seed (`train_gpt.py` is the generated submission of the first seed, its "
                  "config and tables inside; it needs torch, numpy, sentencepiece and the recipe's codec):",
                  "", "```", "SEED=<S> DATA_DIR=<dir with datasets/ and tokenizers/> "
                  "torchrun --standalone --nproc_per_node=8 train_gpt.py", "```"]
    return "\n".join(lines) + "\n"


def write_record(runs: list[Run], name: str, out_dir: Path, *, reported: list[Run] | None = None,
                 **record_fields) -> Path:
    """Write a group as a record folder: ``submission.json``, ``train_gpt.py`` (the generated submission
    of the first seed; the other seeds are the same file run with ``SEED=<S>``), ``train_seed<S>.log`` and a
    ``README.md`` summarizing the seeds. Returns the folder."""
    record = submission_record(runs, name, reported=reported, **record_fields)
    good = sorted(reported if reported is not None else [r for r in runs if r.ok], key=seed_of)
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
            shutil.copyfile(log, out_dir / f"train_seed{seed_of(r)}.log")
    (out_dir / "README.md").write_text(_readme(record, good, bundle.exists()))
    return out_dir
