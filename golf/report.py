"""Compare runs: statistics over seeds, significance against a reference, submission records.

    python -m golf.report multirun/2026-11-22/10-00-00.000000 [more dirs] [--by arch.name,quant.name]
                          [--reference LABEL | --reference-dir DIR | --reference-mean X] [--margin 0.005]

Every directory below the given ones that holds a ``summary.json`` is a run. Runs are grouped by the
configuration keys that differ between them (seed, names and paths excluded) or by ``--by``. For each
group: number of seeds, mean ± std of val_bpb and val_loss, the largest artifact, steps and step time,
and failed runs listed by name. With a reference, each group is tested against it the way the challenge
admits records: the new mean val_loss must be lower than the reference by at least ``margin`` nats,
judged by a one-sided Welch t-test (``p < 0.01`` in the rules).

``--submission LABEL --record-dir DIR`` writes one group as a record folder in the layout of the
challenge's ``records/`` (see :func:`write_record`): ``submission.json``, ``train_gpt.py`` (the runs'
``submission.py`` bundle), ``train_seed<S>.log`` per seed and a ``README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from scipy import stats as scipy_stats

IGNORED_KEYS = ("seed", "run_name", "run_dir", "logger.", "data.root", "hydra.")


@dataclass
class Run:
    path: Path
    summary: dict
    config: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.summary.get("status") == "completed" and isinstance(self.summary.get("val_bpb"), float)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, sort_keys=True) if isinstance(v, list) else v
    return out


def find_runs(roots: list[Path]) -> list[Run]:
    runs = []
    for root in roots:
        for summary in sorted(Path(root).rglob("summary.json")):
            config_file = summary.parent / "config.yaml"
            config = OmegaConf.to_container(OmegaConf.load(config_file)) if config_file.exists() else {}
            runs.append(Run(summary.parent, json.loads(summary.read_text()), _flatten(config)))
    return runs


def varying_keys(runs: list[Run]) -> list[str]:
    keys = sorted({k for r in runs for k in r.config})
    return [k for k in keys
            if not k.startswith(IGNORED_KEYS) and len({json.dumps(r.config.get(k)) for r in runs}) > 1]


def group_runs(runs: list[Run], by: list[str]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for r in runs:
        label = ",".join(f"{k}={r.config.get(k)}" for k in by) or "all"
        groups.setdefault(label, []).append(r)
    return groups


def describe(values: list[float]) -> dict:
    n = len(values)
    mean = statistics.fmean(values) if values else math.nan
    std = statistics.stdev(values) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std}


def improvement_test(new: list[float], reference: list[float] | float, margin: float) -> dict:
    """One-sided test of ``mean(new) < mean(reference) - margin``.

    Welch's t-test (unequal variances) against a list of reference runs, or a one-sample t-test against
    a published reference mean. Returns the t statistic, degrees of freedom and p-value.
    """
    if len(new) < 2:
        return {"t": math.nan, "df": math.nan, "p": math.nan, "note": "needs at least 2 seeds"}
    if isinstance(reference, (int, float)):
        res = scipy_stats.ttest_1samp(new, reference - margin, alternative="less")
        return {"t": float(res.statistic), "df": float(len(new) - 1), "p": float(res.pvalue)}
    if len(reference) < 2:
        return {"t": math.nan, "df": math.nan, "p": math.nan, "note": "reference needs at least 2 seeds"}
    shifted = [v - margin for v in reference]
    res = scipy_stats.ttest_ind(new, shifted, equal_var=False, alternative="less")
    return {"t": float(res.statistic), "df": float(res.df), "p": float(res.pvalue)}


def summarize(groups: dict[str, list[Run]]) -> dict[str, dict]:
    out = {}
    for label, runs in groups.items():
        good = [r for r in runs if r.ok]
        out[label] = {
            "val_bpb": describe([r.summary["val_bpb"] for r in good]),
            "val_loss": describe([r.summary["val_loss"] for r in good]),
            "artifact_bytes_max": max((r.summary.get("artifact_bytes", 0) for r in good), default=None),
            "steps_mean": statistics.fmean([r.summary["steps"] for r in good]) if good else None,
            "ms_per_step_mean": statistics.fmean([r.summary["ms_per_step"] for r in good]) if good else None,
            "seeds": [r.summary.get("seed") for r in good],
            "failed": [str(r.path) for r in runs if not r.ok],
        }
    return out


def _mean(runs: list[Run], key: str) -> float | None:
    values = [r.summary[key] for r in runs if isinstance(r.summary.get(key), (int, float))]
    return statistics.fmean(values) if len(values) == len(runs) else None


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


def _fmt(d: dict) -> str:
    return "-" if d["n"] == 0 else (f"{d['mean']:.5f}" + (f" ± {d['std']:.5f}" if d["n"] > 1 else ""))


def render(table: dict[str, dict], tests: dict[str, dict]) -> str:
    lines = ["| group | seeds | val_bpb | val_loss | max artifact B | steps | ms/step | p (vs ref) | failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, row in sorted(table.items(), key=lambda kv: kv[1]["val_bpb"]["mean"] if kv[1]["val_bpb"]["n"] else 9):
        p = tests.get(label, {}).get("p")
        lines.append(
            f"| {label} | {row['val_bpb']['n']} | {_fmt(row['val_bpb'])} | {_fmt(row['val_loss'])} | "
            f"{row['artifact_bytes_max'] or '-'} | {row['steps_mean'] or '-'} | "
            f"{round(row['ms_per_step_mean'], 2) if row['ms_per_step_mean'] else '-'} | "
            f"{'-' if p is None or math.isnan(p) else f'{p:.2e}'} | {len(row['failed'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m golf.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories")
    ap.add_argument("--by", default=None, help="comma-separated config keys to group by (default: the keys that differ)")
    ref = ap.add_mutually_exclusive_group()
    ref.add_argument("--reference", help="label of the reference group")
    ref.add_argument("--reference-dir", type=Path, help="runs of the reference (e.g. the current record)")
    ref.add_argument("--reference-mean", type=float, help="a published reference mean val_loss (nats)")
    ap.add_argument("--margin", type=float, default=0.005, help="required improvement in val_loss nats")
    ap.add_argument("--json", type=Path, help="write the report as JSON here")
    ap.add_argument("--submission", metavar="LABEL", help="write this group as a record folder (--record-dir)")
    ap.add_argument("--record-dir", type=Path, default=Path("record"), help="where --submission writes (default ./record)")
    ap.add_argument("--name", help="record name (default: the group label)")
    ap.add_argument("--author")
    ap.add_argument("--github-id")
    ap.add_argument("--blurb")
    args = ap.parse_args(argv)

    runs = find_runs(args.dirs)
    if not runs:
        ap.error(f"no summary.json below {', '.join(map(str, args.dirs))}")
    by = args.by.split(",") if args.by else varying_keys(runs)
    groups = group_runs(runs, by)
    table = summarize(groups)
    tests: dict[str, dict] = {}
    reference: list[float] | float | None = None
    if args.reference is not None:
        if args.reference not in groups:
            ap.error(f"--reference {args.reference!r} is not a group; groups: {', '.join(groups)}")
        reference = [r.summary["val_loss"] for r in groups[args.reference] if r.ok]
    elif args.reference_dir is not None:
        reference = [r.summary["val_loss"] for r in find_runs([args.reference_dir]) if r.ok]
    elif args.reference_mean is not None:
        reference = args.reference_mean
    if reference is not None:
        for label, grp in groups.items():
            if label != args.reference:
                tests[label] = improvement_test([r.summary["val_loss"] for r in grp if r.ok], reference, args.margin)
    print(f"{len(runs)} runs, grouped by: {', '.join(by) or '(nothing differs)'}")
    print(render(table, tests))
    report = {"grouped_by": by, "groups": table, "tests": tests, "margin_nats": args.margin}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.submission:
        if args.submission not in groups:
            ap.error(f"--submission {args.submission!r} is not a group; groups: {', '.join(groups)}")
        try:
            out = write_record(groups[args.submission], args.name or args.submission, args.record_dir,
                               author=args.author, github_id=args.github_id, blurb=args.blurb,
                               test=tests.get(args.submission))
        except ValueError as err:  # no completed run, a seed twice, an occupied folder
            ap.error(f"--submission {args.submission!r}: {err}")
        print(f"wrote the record folder {out}")
    return 1 if any(row["failed"] for row in table.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
