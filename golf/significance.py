"""Whether a group of runs beats a reference, judged both ways records have been judged, and what an
audit would object to in a group (read by :mod:`golf.report` and :mod:`golf.record`).

Both tests compare mean ``val_loss`` (nats) over seeds with a one-sided Welch t-test (unequal variances;
against a published mean only, ``--reference-mean``, a one-sample t-test):

* **README** (the challenge's rule): better than the reference by at least ``margin`` = 0.005 nats,
  H1: mean(new) < mean(reference) - margin, at p < 0.01, over 3 seeds.
* **practice**: from the leaderboard update of PR #1902 on, maintainers admitted a row against the
  previous frontier row at one-sided Welch p < 0.25 with no margin (rows at p = 0.188 and p = 0.063
  were merged; fewer than 15% of merged records meet the 0.005-nat bar, issue #2148).

Warnings of a group (:func:`group_warnings`): more runs than the seeds it reports (a rerun seed, a
failed run, seeds left out by ``--seeds``: reporting the best seeds of more runs was objected to, #1769
reported its best 5 of 7); runs of more than one configuration or code revision (audits take the 3-seed
mean of one configuration, #2124); fewer than 3 seeds when a test or a record needs them; an evaluation
over its time budget (``eval.budget_s``; the challenge: 600 s on 8xH100, apart from training's).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter

from scipy import stats as scipy_stats

from golf.logging.identity import is_idea_key

MARGIN_NATS = 0.005  # README: the improvement a record must show
README_ALPHA = 0.01  # README: one-sided Welch p below this
PRACTICE_ALPHA = 0.25  # merged rows from PR #1902 on: one-sided Welch p against the previous row below this
SEEDS = 3  # README: the seeds a record reports


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


def verdicts(new: list[float], reference: list[float] | float, *, margin: float = MARGIN_NATS,
             alpha: float = README_ALPHA, practice_alpha: float = PRACTICE_ALPHA) -> dict:
    """Both tests of a group's val_loss values against the reference: ``delta_nats`` (reference mean
    minus the group's; > 0 is better) and, per test, t, df, p and whether p is below its threshold."""
    ref_mean = reference if isinstance(reference, (int, float)) else (
        statistics.fmean(reference) if reference else math.nan)
    readme = {**improvement_test(new, reference, margin), "margin_nats": margin, "alpha": alpha}
    practice = {**improvement_test(new, reference, 0.0), "margin_nats": 0.0, "alpha": practice_alpha}
    for test in (readme, practice):
        test["significant"] = bool(test["p"] < test["alpha"])  # NaN compares False
    return {"seeds": len(new), "delta_nats": (ref_mean - statistics.fmean(new)) if new else math.nan,
            "readme": readme, "practice": practice}


def seed_of(run) -> str:
    return str(run.summary.get("seed"))


def eval_seconds(summary: dict) -> tuple[float | None, str]:
    """The evaluation time a run counts against its budget and the summary field it came from: ``eval_s``
    (everything the rule counts: load, decompression, warm-up on validation data, scoring, TTT) where
    the evaluator reports it, else ``final_eval_s`` (the final evaluation call)."""
    for key in ("eval_s", "final_eval_s"):
        value = summary.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value), key
    return None, "eval_s"


def eval_budget(run) -> float | None:
    """The run's ``eval.budget_s`` (as its summary or its config recorded it); None: no budget."""
    value = run.summary.get("eval_budget_s", run.config.get("eval.budget_s"))
    return float(value) if isinstance(value, (int, float)) else None


def mixed_configuration(runs: list) -> list[str]:
    """What differs between the runs' configurations (seed, names, paths and logging aside) and code
    revisions, one phrase per key; empty when they are one configuration."""
    out = []
    keys = sorted({k for r in runs for k in r.config if is_idea_key(k)})
    for key in keys:
        values = sorted({json.dumps(r.config.get(key), default=str) for r in runs})
        if len(values) > 1:
            out.append(f"{key} = {', '.join(values)}")
    revisions = sorted({r.revision for r in runs if r.revision})
    if len(revisions) > 1:
        out.append(f"code revision = {', '.join(revisions)}")
    return out


def group_warnings(runs: list, reported: list, *, need_seeds: bool = False) -> list[str]:
    """What an audit would object to in a group: all its runs and the runs it reports (see module doc)."""
    out = []
    seeds = Counter(seed_of(r) for r in reported)
    if len(runs) > len(seeds):
        why = [f"seed {s} {n} times" for s, n in seeds.items() if n > 1]
        failed = [r for r in runs if not r.ok]
        shown = {id(r) for r in reported}
        left_out = [r for r in runs if r.ok and id(r) not in shown]
        if failed:
            why.append(f"{len(failed)} did not complete")
        if left_out:
            why.append(f"seed{'s' if len(left_out) > 1 else ''} "
                       f"{', '.join(sorted(seed_of(r) for r in left_out))} not reported")
        out.append(f"{len(runs)} runs for {len(seeds)} reported seed{'s' if len(seeds) != 1 else ''} "
                   f"({'; '.join(why)}): a record's mean is over every run of its configuration, one per "
                   f"seed (reporting the best seeds of more runs was objected to, #1769)")
    mixed = mixed_configuration(reported)
    if mixed:
        out.append(f"mixes configurations: {'; '.join(mixed)} (an audit takes the mean of one configuration, "
                   f"#2124)")
    if need_seeds and len(seeds) < SEEDS:
        out.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}; the README asks for {SEEDS}")
    for r in reported:
        seconds, key = eval_seconds(r.summary)
        budget = eval_budget(r)
        if seconds is not None and budget is not None and seconds > budget:
            out.append(f"seed {seed_of(r)}: evaluation took {seconds:,.1f} s ({key}), over eval.budget_s="
                       f"{budget:g}")
    return out


def _p(test: dict) -> str:
    p = test.get("p")
    return "-" if p is None or math.isnan(p) else f"{p:.3g}"


def render_tests(rows: list[tuple[str, dict]], reference: str, fmt: str) -> str:
    """The verdicts as a table (``table`` or ``markdown``); ``rows``: (group label, :func:`verdicts`)."""
    head = ["group", "seeds", "Δ val_loss (nats)", "p README", "README", "p practice", "practice"]
    body = []
    for label, v in rows:
        delta = v["delta_nats"]
        body.append([label, str(v["seeds"]), "-" if math.isnan(delta) else f"{delta:+.5f}",
                     _p(v["readme"]), "yes" if v["readme"]["significant"] else "no",
                     _p(v["practice"]), "yes" if v["practice"]["significant"] else "no"])
    first = next(iter(rows))[1] if rows else {"readme": {"margin_nats": MARGIN_NATS, "alpha": README_ALPHA},
                                                   "practice": {"alpha": PRACTICE_ALPHA}}
    title = (f"significance against {reference}: README = better by >= {first['readme']['margin_nats']:g} nats "
             f"at one-sided Welch p < {first['readme']['alpha']:g}; practice = one-sided Welch p < "
             f"{first['practice']['alpha']:g} against the previous row (merged records from PR #1902 on)")
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join([title, "", *lines, *("| " + " | ".join(cells) + " |" for cells in body)])
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    return "\n".join([title, *("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                                         enumerate(zip(cells, widths))) for cells in [head, *body])])
