"""Compare runs: statistics over seeds, significance against a reference, plots, submission records.

    python -m golf.report multirun/2026-11-22/10-00-00.000000 [more dirs] [--by arch.name,quant.name]
                          [--reference LABEL | --reference-dir DIR | --reference-mean X] [--margin 0.005]
                          [--format table|markdown|csv] [--plots DIR] [--fail-on-failed]

Runs are found below the given directories: every golf run directory (it holds a ``summary.json``) and
every W&B offline run directory (``offline-run-*/run-*.wandb``) that is not inside a golf run directory.
A run directory inside another one (a ``golf_run-*`` folder written by a run's ``submission.py``, an
evaluation's output) is not another run. A run whose files cannot be read (:mod:`golf.run_records`) is
listed below the table as unreadable, with its path and the reason, and left out. Runs are grouped by
the configuration keys that differ between them (seed, names, paths and logging excluded) or by
``--by`` (a key that no run's config has is refused, naming the nearest keys); a group is labelled by the values of the
fewest keys that tell the groups apart (the keys are named above the table). For each group: distinct
seeds and runs, mean ± std of val_bpb and val_loss, the quantization gap, the largest artifact, steps
and step time; failed runs are listed below the table with their error line. With a reference, each
group is tested against it the way the challenge admits records: the new mean val_loss must be lower
than the reference by at least ``margin`` nats, judged by a one-sided Welch t-test (``p < 0.01`` in the
rules). ``--plots DIR`` writes the figures of :mod:`golf.plots`. The exit status is 0 when the report
was produced, also with failed or unreadable runs in it (``--fail-on-failed``: 1 then, for CI).

An ablation sweep (``hydra/sweeper=ablation``) gets its own table, one row per technique
(:mod:`golf.ablation_report`); its runs join the groups above only with ``--by``.

``--submission LABEL --record-dir DIR`` writes one group as a record folder in the layout of the
challenge's ``records/`` (see :func:`golf.record.write_record`): ``submission.json``, ``train_gpt.py`` (the runs'
``submission.py`` bundle), ``train_seed<S>.log`` per seed and a ``README.md``.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import io
import itertools
import json
import math
import statistics
from pathlib import Path

from scipy import stats as scipy_stats

from golf.logging.identity import is_idea_key
from golf.run_records import Run, find_runs


def varying_keys(runs: list[Run]) -> list[str]:
    keys = sorted({k for r in runs for k in r.config})
    return [k for k in keys
            if is_idea_key(k) and len({json.dumps(r.config.get(k), default=str) for r in runs}) > 1]


def group_runs(runs: list[Run], by: list[str]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for r in runs:
        label = ",".join(f"{k}={r.config.get(k)}" for k in by) or "all"
        groups.setdefault(label, []).append(r)
    return groups


def _value_text(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def distinguishing_keys(groups: dict[str, list[Run]], by: list[str], max_exhaustive: int = 12) -> list[str]:
    """The fewest of ``by`` whose values still tell every group apart (the first such set in key order;
    greedy beyond ``max_exhaustive`` keys)."""
    reps = [runs[0].config for runs in groups.values()]

    def distinct(keys) -> bool:
        return len({tuple(json.dumps(c.get(k), default=str) for k in keys) for c in reps}) == len(reps)

    if len(reps) < 2:
        return []
    if len(by) <= max_exhaustive:
        for size in range(1, len(by) + 1):
            for keys in itertools.combinations(by, size):
                if distinct(keys):
                    return list(keys)
        return list(by)
    chosen: list[str] = []
    while not distinct(chosen) and len(chosen) < len(by):  # add the key that separates most groups
        chosen.append(max((k for k in by if k not in chosen),
                          key=lambda k: len({tuple(json.dumps(c.get(x), default=str) for x in [*chosen, k])
                                             for c in reps})))
    return chosen


def group_labels(groups: dict[str, list[Run]], keys: list[str]) -> dict[str, str]:
    """Group key -> its label: the values of ``keys``, comma-separated (``all`` for a single group)."""
    if not keys:
        return {g: g for g in groups}
    return {g: ", ".join(_value_text(runs[0].config.get(k)) for k in keys) for g, runs in groups.items()}


def find_group(groups: dict[str, list[Run]], labels: dict[str, str], name: str) -> str | None:
    """The group a user named, by its label or by its ``key=value,...`` form."""
    if name in groups:
        return name
    matches = [g for g, label in labels.items() if label == name]
    return matches[0] if len(matches) == 1 else None


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


def summarize(groups: dict[str, list[Run]], labels: dict[str, str] | None = None) -> dict[str, dict]:
    out = {}
    for key, runs in groups.items():
        good = [r for r in runs if r.ok]
        gaps = [r.summary["val_bpb"] - r.summary["prequant_val_bpb"] for r in good
                if isinstance(r.summary.get("prequant_val_bpb"), (int, float))]
        seeds = [r.summary.get("seed") for r in good]
        out[key] = {
            "label": (labels or {}).get(key, key),
            "val_bpb": describe([r.summary["val_bpb"] for r in good]),
            "val_loss": describe([r.summary["val_loss"] for r in good]),
            "quant_gap_bpb": describe(gaps) if len(gaps) == len(good) else describe([]),
            "artifact_bytes_max": max((r.summary.get("artifact_bytes", 0) for r in good), default=None),
            "steps_mean": statistics.fmean([r.summary["steps"] for r in good]) if good else None,
            "ms_per_step_mean": statistics.fmean([r.summary["ms_per_step"] for r in good]) if good else None,
            "seeds": seeds,
            "distinct_seeds": len({json.dumps(s) for s in seeds}),
            "runs": len(runs),
            "failed": [str(r.path) for r in runs if not r.ok],
            "errors": {str(r.path): r.error for r in runs if not r.ok},
        }
    return out


def _mean(runs: list[Run], key: str) -> float | None:
    values = [r.summary[key] for r in runs if isinstance(r.summary.get(key), (int, float))]
    return statistics.fmean(values) if len(values) == len(runs) else None


def _fmt(d: dict) -> str:
    return "-" if d["n"] == 0 else (f"{d['mean']:.5f}" + (f" ± {d['std']:.5f}" if d["n"] > 1 else ""))


COLUMNS = ["group", "seeds", "runs", "val_bpb", "val_loss", "quant gap", "max artifact B", "steps", "ms/step",
           "p (vs ref)", "failed"]


def _ordered(table: dict[str, dict]) -> list[tuple[str, dict]]:
    return sorted(table.items(), key=lambda kv: kv[1]["val_bpb"]["mean"] if kv[1]["val_bpb"]["n"] else math.inf)


def _cells(row: dict, test: dict) -> list[str]:
    p = test.get("p")
    gap = row["quant_gap_bpb"]
    return [row["label"], str(row["distinct_seeds"]), str(row["runs"]), _fmt(row["val_bpb"]), _fmt(row["val_loss"]),
            "-" if gap["n"] == 0 else f"{gap['mean']:+.5f}",
            f"{row['artifact_bytes_max']:,}" if row["artifact_bytes_max"] else "-",
            f"{row['steps_mean']:g}" if row["steps_mean"] is not None else "-",
            f"{row['ms_per_step_mean']:.2f}" if row["ms_per_step_mean"] else "-",
            "-" if p is None or math.isnan(p) else f"{p:.2e}", str(len(row["failed"]))]


def render(table: dict[str, dict], tests: dict[str, dict], fmt: str = "markdown") -> str:
    """The comparison as an aligned terminal ``table``, a ``markdown`` table or ``csv`` (numbers unrounded)."""
    rows = _ordered(table)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["group", "distinct_seeds", "runs", "val_bpb_mean", "val_bpb_std", "val_loss_mean", "val_loss_std",
                    "quant_gap_bpb_mean", "artifact_bytes_max", "steps_mean", "ms_per_step_mean", "p_vs_ref",
                    "failed"])
        for key, row in rows:
            w.writerow([row["label"], row["distinct_seeds"], row["runs"], row["val_bpb"]["mean"], row["val_bpb"]["std"],
                        row["val_loss"]["mean"], row["val_loss"]["std"], row["quant_gap_bpb"]["mean"],
                        row["artifact_bytes_max"], row["steps_mean"], row["ms_per_step_mean"],
                        tests.get(key, {}).get("p"), len(row["failed"])])
        return buf.getvalue().rstrip("\n")
    body = [_cells(row, tests.get(key, {})) for key, row in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(c) for c in col) for col in zip(COLUMNS, *body)]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
                     for cells in [COLUMNS, *body])


def render_failed(table: dict[str, dict]) -> str:
    """One line per failed run: its group, its directory and its error line."""
    lines = [f"  [{row['label']}] {path}: {error}" for _, row in _ordered(table) for path, error in row["errors"].items()]
    return "\n".join([f"failed runs ({len(lines)}):", *lines]) if lines else ""


def render_unreadable(unreadable: dict[Path, str]) -> str:
    """One line per run that could not be read: its directory and why."""
    lines = [f"  {path}: {why}" for path, why in sorted(unreadable.items())]
    return "\n".join([f"unreadable runs, left out ({len(lines)}):", *lines]) if lines else ""


def unknown_keys(by: list[str], runs: list[Run]) -> str | None:
    """Why ``--by`` cannot group these runs (a key no run's config has, with the nearest ones), or None."""
    keys = sorted({k for r in runs for k in r.config})
    missing = [k for k in by if k not in keys]
    if not missing:
        return None
    key = missing[0]
    near = difflib.get_close_matches(key, keys, n=4, cutoff=0.6) or [k for k in keys if k.startswith(key + ".")][:4]
    hint = f"; the nearest keys: {', '.join(near)}" if near else ""
    return f"--by {key}: no run's config has this key{hint}"


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
    ap.add_argument("--format", choices=("table", "markdown", "csv"), default="table",
                    help="how the comparison is printed (default: an aligned terminal table)")
    ap.add_argument("--plots", type=Path, metavar="DIR", help="write loss_curves.png, bpb_vs_bytes.png, quant_gap.png here "
                    "(and ablation.png for an ablation sweep)")
    ap.add_argument("--fail-on-failed", action="store_true", help="exit 1 when any run failed (CI)")
    ap.add_argument("--submission", metavar="LABEL", help="write this group as a record folder (--record-dir)")
    ap.add_argument("--record-dir", type=Path, default=Path("record"), help="where --submission writes (default ./record)")
    ap.add_argument("--name", help="record name (default: the group label)")
    ap.add_argument("--author")
    ap.add_argument("--github-id")
    ap.add_argument("--blurb")
    args = ap.parse_args(argv)

    missing = [str(d) for d in args.dirs if not d.exists()]
    if missing:
        ap.error(f"no such directory: {', '.join(missing)}")
    from golf import ablation_report

    sweeps, ablation_failed = ablation_report.report(args.dirs, args.plots)
    unreadable: dict[Path, str] = {}
    runs = [r for r in find_runs(args.dirs, unreadable) if args.by or not any(r.path.is_relative_to(s) for s in sweeps)]
    skipped = render_unreadable(unreadable)
    if sweeps and not runs:
        if skipped:
            print(skipped)
        return 1 if args.fail_on_failed and (ablation_failed or unreadable) else 0
    if not runs:
        ap.error(f"no readable golf run (summary.json) or W&B offline run below {', '.join(map(str, args.dirs))}"
                 + (f"\n{skipped}" if skipped else ""))
    by = args.by.split(",") if args.by else varying_keys(runs)
    unknown = unknown_keys(by, runs)
    if unknown:
        ap.error(unknown)
    groups = group_runs(runs, by)
    label_keys = distinguishing_keys(groups, by)
    labels = group_labels(groups, label_keys)
    table = summarize(groups, labels)
    tests: dict[str, dict] = {}
    reference: list[float] | float | None = None
    choices = ", ".join(repr(v) for v in labels.values())
    if args.reference is not None:
        args.reference = find_group(groups, labels, args.reference)
        if args.reference is None:
            ap.error(f"--reference is not a group; groups: {choices}")
        reference = [r.summary["val_loss"] for r in groups[args.reference] if r.ok]
    elif args.reference_dir is not None:
        reference = [r.summary["val_loss"] for r in find_runs([args.reference_dir]) if r.ok]
    elif args.reference_mean is not None:
        reference = args.reference_mean
    if reference is not None:
        for label, grp in groups.items():
            if label != args.reference:
                tests[label] = improvement_test([r.summary["val_loss"] for r in grp if r.ok], reference, args.margin)
    if args.format != "csv":
        print(f"{len(runs)} runs in {len(groups)} groups; groups differ in: {', '.join(by) or '(nothing)'}; "
              f"labelled by: {', '.join(label_keys) or '-'}")
    print(render(table, tests, args.format))
    failed = render_failed(table)
    if failed and args.format != "csv":
        print(failed)
    if skipped and args.format != "csv":
        print(skipped)
    report = {"grouped_by": by, "labelled_by": label_keys, "groups": table, "tests": tests, "margin_nats": args.margin,
              "unreadable": {str(p): why for p, why in unreadable.items()}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.plots:
        from golf.plots import write_plots

        written = write_plots({labels[g]: groups[g] for g, _ in _ordered(table)}, args.plots,
                              ", ".join(label_keys) or None)
        print(f"wrote {', '.join(str(p) for p in written)}")
    if args.submission:
        name = args.submission
        args.submission = find_group(groups, labels, name)
        if args.submission is None:
            ap.error(f"--submission {name!r} is not a group; groups: {choices}")
        try:
            from golf.record import write_record  # the record folder builds on this module's runs

            out = write_record(groups[args.submission], args.name or labels[args.submission], args.record_dir,
                               author=args.author, github_id=args.github_id, blurb=args.blurb,
                               test=tests.get(args.submission))
        except ValueError as err:  # no completed run, a seed twice, an occupied folder
            ap.error(f"--submission {args.submission!r}: {err}")
        print(f"wrote the record folder {out}")
    failed_any = ablation_failed or bool(unreadable) or any(row["failed"] for row in table.values())
    return 1 if args.fail_on_failed and failed_any else 0


if __name__ == "__main__":
    raise SystemExit(main())
