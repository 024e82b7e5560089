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
    assert all("| running_bpb 3.0000" in line for line in lines)
    assert "| left ?" in lines[0] and "| left " in lines[1] and "| left" not in lines[-1]
    hook("ttt", 1, 3, sums)  # another evaluation: a bar of its own, in its own unit
    assert _lines(caplog, "eval ttt")[0].startswith("eval ttt 1/3 chunks | running_bpb 3.0000")
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
