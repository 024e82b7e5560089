"""The lab's display of an evaluation's progress, fed by the kernel's hook calls."""

from __future__ import annotations

import logging
import math

import torch

from golf.dist import DistInfo
from golf.eval import eval_progress


def _lines(caplog, name):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(name)]


def test_lines_at_the_first_two_items_each_tenth_and_the_last(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    hook = eval_progress(DistInfo(0, 0, 1, torch.device("cpu")))
    sums = torch.tensor([math.log(2.0) * 30.0, 10.0, 10.0], dtype=torch.float64)  # 30 bits over 10 bytes
    for done in range(1, 21):
        hook("sliding", done, 20, sums)
    lines = _lines(caplog, "eval sliding")
    assert [int(line.split()[2].split("/")[0]) for line in lines] == [1, 2, *range(4, 21, 2)]
    assert all("| running_bpb 3 " in line or line.endswith("| running_bpb 3") for line in lines)
    assert "| left ?" in lines[0] and "| left " in lines[1] and "| left" not in lines[-1]
    hook("ttt", 1, 3, sums)  # another evaluation: a bar of its own, in its own unit
    assert _lines(caplog, "eval ttt")[0].startswith("eval ttt 1/3 chunks | running_bpb 3 ")
    caplog.clear()
    for done in (1, 2):  # the finished sliding bar was closed: a new evaluation starts a new one
        hook("sliding", done, 2, sums)
    assert [line.split(" | ")[0] for line in _lines(caplog, "eval sliding")] == ["eval sliding 1/2 windows",
                                                                                 "eval sliding 2/2 windows"]


def test_other_ranks_show_nothing(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    hook = eval_progress(DistInfo(1, 1, 2, torch.device("cpu")))
    for done in range(1, 5):
        hook("standard", done, 4, torch.zeros(3, dtype=torch.float64))
    assert not _lines(caplog, "eval standard")


def test_the_budget_projects_each_scorer_from_its_first_item(caplog):
    """A sliding pass of 10 batches then a TTT of 4 chunks, on a clock the test moves: the projection at
    each scorer's first item is the time so far plus that item's time times the scorer's count."""
    from golf.eval import EvalBudget

    caplog.set_level(logging.INFO, logger="golf")
    now = [100.0]
    budget = EvalBudget(30.0, clock=lambda: now[0])
    hook = eval_progress(DistInfo(0, 0, 1, torch.device("cpu")), budget=budget)
    sums = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    hook("sliding", 1, 10, sums)  # before the artifact: a prequant pass, not the final evaluation
    for done in range(2, 11):
        hook("sliding", done, 10, sums)
    assert budget.projected is None and not _lines(caplog, "eval sliding: projected")
    budget.start()
    now[0] += 1.0  # the load, then the first of 10 batches: 2 s so far
    now[0] += 1.0
    hook("sliding", 1, 10, sums)
    assert budget.projected == 1.0 * 0 + 2.0 * 10  # 20 s
    assert _lines(caplog, "eval sliding: projected") == ["eval sliding: projected evaluation time 20.0 s of "
                                                         "eval.budget_s=30"]
    for done in range(2, 11):
        now[0] += 1.5
        hook("sliding", done, 10, sums)  # the pass took 2 + 9 * 1.5 = 15.5 s
    now[0] += 5.0  # the first of 4 TTT chunks: 5 s
    hook("ttt", 1, 4, sums)
    assert budget.projected == 15.5 + 5.0 * 4  # 35.5 s: over
    assert _lines(caplog, "eval ttt: projected") == ["eval ttt: projected evaluation time 35.5 s exceeds "
                                                     "eval.budget_s=30 (the challenge gives the evaluation 600 s "
                                                     "on 8xH100)"]
    assert budget.fields(34.0) == {"eval_s": 34.0, "eval_budget_s": 30.0, "eval_projected_s": 35.5,
                                   "eval_over_budget": True}
    assert EvalBudget(None).fields(34.0)["eval_over_budget"] is False
