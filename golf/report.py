"""Compare runs: statistics over seeds, significance against a reference, plots, submission records.

    python -m golf.report multirun/2026-11-22/10-00-00.000000 [more dirs] [--by arch.name,quant.name]
                          [--reference LABEL | --reference-dir DIR | --reference-mean X] [--margin 0.005]
                          [--alpha 0.01] [--practice-alpha 0.25] [--seeds 1,2,3]
                          [--format table|markdown|csv] [--plots DIR] [--fail-on-failed]

Runs are found below the given directories (:func:`golf.runs.find_runs`); a run whose files cannot
be read is listed below the table as unreadable, with its path and the reason, and left out. Runs are grouped by the configuration keys that differ between
them (seed, names, paths and logging excluded) or by ``--by`` (a key that no run's config has is
refused, naming the nearest keys); a group is labelled by the values of the
fewest keys that tell the groups apart (the keys are named above the table). For each group: distinct
seeds and runs, mean ± std of val_bpb and val_loss, the quantization gap, the largest artifact, steps
and step time, over the completed runs it reports (all of them, or those of ``--seeds``); failed runs
are listed below the table with their error line, then what an audit would object to in a group (more
runs than reported seeds, mixed configurations, an evaluation over its budget; :mod:`golf.significance`).
With a reference, each group is tested against it both ways records have been judged
(:mod:`golf.significance`): the README's (mean val_loss lower by at least ``--margin`` 0.005 nats,
one-sided Welch p < 0.01) and the practice's (one-sided Welch against the previous row, p < 0.25).
``--plots DIR`` writes the figures of :mod:`golf.plots`. The exit status is 0 when the report was
produced, also with failed runs in it (``--fail-on-failed``: 1 then, for CI).

An ablation sweep (``hydra/sweeper=ablation``) gets its own table, one row per technique
(:mod:`golf.ablation_report`); its runs join the groups above only with ``--by``.

``--submission LABEL --record-dir DIR`` writes one group as a record folder in the layout of the
challenge's ``records/`` (see :func:`golf.record.write_record`): ``submission.json`` (with both tests and
the compliance block computed from the runs), ``train_gpt.py`` (the first seed's generated ``submission.py``),
``train_seed<S>.log`` per seed and a ``README.md``.
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

from golf import significance
from golf.logging.identity import is_idea_key
from golf.runs import Run, find_runs


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


def reported(runs: list[Run], seeds: set[str] | None = None) -> list[Run]:
    """The completed runs a group reports: all of them, or those of ``seeds``."""
    return [r for r in runs if r.ok and (seeds is None or significance.seed_of(r) in seeds)]


def summarize(groups: dict[str, list[Run]], labels: dict[str, str] | None = None,
              seeds: set[str] | None = None) -> dict[str, dict]:
    out = {}
    for key, runs in groups.items():
        good = reported(runs, seeds)
        gaps = [r.summary["val_bpb"] - r.summary["prequant_val_bpb"] for r in good
                if isinstance(r.summary.get("prequant_val_bpb"), (int, float))]
        run_seeds = [r.summary.get("seed") for r in good]
        out[key] = {
            "label": (labels or {}).get(key, key),
            "val_bpb": describe([r.summary["val_bpb"] for r in good]),
            "val_loss": describe([r.summary["val_loss"] for r in good]),
            "quant_gap_bpb": describe(gaps) if len(gaps) == len(good) else describe([]),
            "artifact_bytes_max": max((r.summary.get("artifact_bytes", 0) for r in good), default=None),
            "steps_mean": statistics.fmean([r.summary["steps"] for r in good]) if good else None,
            "ms_per_step_mean": statistics.fmean([r.summary["ms_per_step"] for r in good]) if good else None,
            "eval_s_max": max((s for s, _ in map(significance.eval_seconds, (r.summary for r in good))
                               if s is not None), default=None),
            "seeds": run_seeds,
            "distinct_seeds": len({json.dumps(s) for s in run_seeds}),
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
           "max eval s", "failed"]


def _ordered(table: dict[str, dict]) -> list[tuple[str, dict]]:
    return sorted(table.items(), key=lambda kv: kv[1]["val_bpb"]["mean"] if kv[1]["val_bpb"]["n"] else math.inf)


def _cells(row: dict) -> list[str]:
    gap = row["quant_gap_bpb"]
    return [row["label"], str(row["distinct_seeds"]), str(row["runs"]), _fmt(row["val_bpb"]), _fmt(row["val_loss"]),
            "-" if gap["n"] == 0 else f"{gap['mean']:+.5f}",
            f"{row['artifact_bytes_max']:,}" if row["artifact_bytes_max"] else "-",
            f"{row['steps_mean']:g}" if row["steps_mean"] is not None else "-",
            f"{row['ms_per_step_mean']:.2f}" if row["ms_per_step_mean"] else "-",
            f"{row['eval_s_max']:,.1f}" if row["eval_s_max"] is not None else "-", str(len(row["failed"]))]


def render(table: dict[str, dict], tests: dict[str, dict], fmt: str = "markdown") -> str:
    """The comparison as an aligned terminal ``table``, a ``markdown`` table or ``csv`` (numbers unrounded)."""
    rows = _ordered(table)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["group", "distinct_seeds", "runs", "val_bpb_mean", "val_bpb_std", "val_loss_mean", "val_loss_std",
                    "quant_gap_bpb_mean", "artifact_bytes_max", "steps_mean", "ms_per_step_mean", "eval_s_max",
                    "failed", "delta_nats", "p_readme", "readme_significant", "p_practice", "practice_significant"])
        for key, row in rows:
            v = tests.get(key, {})
            w.writerow([row["label"], row["distinct_seeds"], row["runs"], row["val_bpb"]["mean"], row["val_bpb"]["std"],
                        row["val_loss"]["mean"], row["val_loss"]["std"], row["quant_gap_bpb"]["mean"],
                        row["artifact_bytes_max"], row["steps_mean"], row["ms_per_step_mean"], row["eval_s_max"],
                        len(row["failed"]), v.get("delta_nats"), v.get("readme", {}).get("p"),
                        v.get("readme", {}).get("significant"), v.get("practice", {}).get("p"),
                        v.get("practice", {}).get("significant")])
        return buf.getvalue().rstrip("\n")
    body = [_cells(row) for _, row in rows]
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


def render_warnings(table: dict[str, dict]) -> str:
    """One line per warning of a group (:func:`golf.significance.group_warnings`)."""
    lines = [f"  [{row['label']}] {w}" for _, row in _ordered(table) for w in row.get("warnings", [])]
    return "\n".join([f"warnings ({len(lines)}):", *lines]) if lines else ""


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
    ap.add_argument("--margin", type=float, default=significance.MARGIN_NATS,
                    help="README test: required improvement in val_loss nats (0.005)")
    ap.add_argument("--alpha", type=float, default=significance.README_ALPHA, help="README test: p below this (0.01)")
    ap.add_argument("--practice-alpha", type=float, default=significance.PRACTICE_ALPHA,
                    help="practice test: p below this against the previous row (0.25)")
    ap.add_argument("--seeds", help="comma-separated seeds each group reports (default: all its completed runs)")
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
    seeds = set(args.seeds.split(",")) if args.seeds else None
    table = summarize(groups, labels, seeds)
    choices = ", ".join(repr(v) for v in labels.values())
    for option in ("reference", "submission"):
        name = getattr(args, option)
        if name is not None and find_group(groups, labels, name) is None:
            ap.error(f"--{option} {name!r} is not a group; groups: {choices}")
        setattr(args, option, None if name is None else find_group(groups, labels, name))
    reference: list[float] | float | None = None
    if args.reference is not None:
        reference = [r.summary["val_loss"] for r in reported(groups[args.reference], seeds)]
        described = f"the group {labels[args.reference]!r}"
    elif args.reference_dir is not None:
        reference = [r.summary["val_loss"] for r in find_runs([args.reference_dir]) if r.ok]
        described = f"the runs of {args.reference_dir}"
    elif args.reference_mean is not None:
        reference, described = args.reference_mean, f"the published mean val_loss {args.reference_mean}"
    tests: dict[str, dict] = {}
    for key, grp in groups.items():
        shown = reported(grp, seeds)
        table[key]["warnings"] = significance.group_warnings(
            grp, shown, need_seeds=reference is not None or key == args.submission)
        if reference is not None and key != args.reference:
            tests[key] = significance.verdicts([r.summary["val_loss"] for r in shown], reference, margin=args.margin,
                                               alpha=args.alpha, practice_alpha=args.practice_alpha)
            tests[key]["reference"] = described
    if args.format != "csv":
        print(f"{len(runs)} runs in {len(groups)} groups; groups differ in: {', '.join(by) or '(nothing)'}; "
              f"labelled by: {', '.join(label_keys) or '-'}")
    print(render(table, tests, args.format))
    if args.format != "csv":
        for text in (render_failed(table), skipped, render_warnings(table)):
            if text:
                print(text)
        if tests:
            print(significance.render_tests([(table[k]["label"], tests[k]) for k, _ in _ordered(table) if k in tests],
                                            described, args.format))
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
        try:
            from golf.record import write_record  # the record folder builds on this module's runs

            grp = groups[args.submission]
            out = write_record(grp, args.name or labels[args.submission], args.record_dir,
                               reported=reported(grp, seeds), author=args.author, github_id=args.github_id,
                               blurb=args.blurb, test=tests.get(args.submission))
        except ValueError as err:  # no completed run, a seed twice, an occupied folder
            ap.error(f"--submission {args.submission!r}: {err}")
        print(f"wrote the record folder {out}")
    failed_any = ablation_failed or bool(unreadable) or any(row["failed"] for row in table.values())
    return 1 if args.fail_on_failed and failed_any else 0


if __name__ == "__main__":
    raise SystemExit(main())
