"""Compare runs: statistics over seeds, significance against a reference, submission records.

    python -m golf.report multirun/2026-11-22/10-00-00.000000 [more dirs] [--by arch.name,quant.name]
                          [--reference LABEL | --reference-dir DIR | --reference-mean X] [--margin 0.005]

Every directory below the given ones that holds a ``summary.json`` is a run. Runs are grouped by the
configuration keys that differ between them (seed, names and paths excluded) or by ``--by``. For each
group: number of seeds, mean ± std of val_bpb and val_loss, the largest artifact, steps and step time,
and failed runs listed by name. With a reference, each group is tested against it the way the challenge
admits records: the new mean val_loss must be lower than the reference by at least ``margin`` nats,
judged by a one-sided Welch t-test (``p < 0.01`` in the rules). ``--submission`` writes a
``submission.json``-style record (per-seed scores, mean, bytes) for one group.
"""

from __future__ import annotations

import argparse
import json
import math
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


def submission_record(runs: list[Run], name: str) -> dict:
    good = [r for r in runs if r.ok]
    if not good:
        raise ValueError(f"group {name!r} has no completed run")
    return {
        "name": name,
        "val_bpb": statistics.fmean(r.summary["val_bpb"] for r in good),
        "val_loss": statistics.fmean(r.summary["val_loss"] for r in good),
        "bytes_total": max(r.summary["artifact_bytes"] for r in good),
        "bytes_model": max(r.summary["model_bytes"] for r in good),
        "bytes_code": max(r.summary["code_bytes"] for r in good),
        "seeds": {str(r.summary.get("seed")): {"val_bpb": r.summary["val_bpb"], "val_loss": r.summary["val_loss"],
                                               "steps": r.summary.get("steps"), "run_dir": str(r.path)}
                  for r in good},
    }


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
    ap.add_argument("--submission", metavar="LABEL", help="write submission.json for this group (next to --json or ./)")
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
            ap.error(f"--submission {args.submission!r} is not a group")
        out = (args.json.parent if args.json else Path(".")) / "submission.json"
        out.write_text(json.dumps(submission_record(groups[args.submission], args.submission), indent=2) + "\n")
        print(f"wrote {out}")
    return 1 if any(row["failed"] for row in table.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
