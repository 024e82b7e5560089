"""The lr multiplier against the spec's formulas (§1.7) at given steps and elapsed times."""

from __future__ import annotations

import pytest

from golf.kernel.optim import lr_multiplier
from golf.optim.config import ScheduleConfig

WALL = ScheduleConfig(kind="wallclock", warmdown_iters=1200)
ITERS = ScheduleConfig(kind="iterations", warmdown_iters=1200)


@pytest.mark.parametrize(
    "step,elapsed,expected",
    [
        # 43.5 ms/step: warmdown = 1200 * 0.0435 = 52.2 s; 595.65 s remain -> before the warmdown
        (100, 4.35, 1.0),
        # 570 s after 13000 steps: step 0.0438462 s, warmdown 52.615 s, 30 s remain -> 30 / 52.615
        (13000, 570.0, 30.0 / (1200 * 570.0 / 13000)),
        # 552 s after 12000 steps: 46 ms/step, warmdown 55.2 s, 48 s remain -> 48 / 55.2
        (12000, 552.0, 48.0 / 55.2),
        # 46 ms/step at 506 s: warmdown 55.2 s, 94 s remain -> still 1
        (11000, 506.0, 1.0),
        # past the cap: nothing remains
        (14000, 610.0, 0.0),
        # step 0: the average step time uses max(step, 1)
        (0, 0.0, 1.0),
    ],
)
def test_wallclock_multiplier(step, elapsed, expected):
    assert lr_multiplier(WALL, step, elapsed, 20000, 600.0) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_wallclock_warmdown_is_linear_in_remaining_time():
    # constant 50 ms steps, cap 100 s, warmdown 400 steps = 20 s: the last 20 s ramp 1 -> 0
    cfg = ScheduleConfig(kind="wallclock", warmdown_iters=400)
    assert lr_multiplier(cfg, 1600, 80.0, 10**6, 100.0) == pytest.approx(1.0)
    assert lr_multiplier(cfg, 1800, 90.0, 10**6, 100.0) == pytest.approx(0.5)
    assert lr_multiplier(cfg, 1960, 98.0, 10**6, 100.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "step,expected",
    [(0, 1.0), (18799, 1.0), (18800, 1.0), (19400, 0.5), (19999, 1 / 1200), (20000, 0.0)],
)
def test_iteration_multiplier(step, expected):
    assert lr_multiplier(ITERS, step, 123.0, 20000, 600.0) == pytest.approx(expected)


def test_wallclock_without_a_cap_counts_iterations():
    assert lr_multiplier(WALL, 19400, 5.0, 20000, None) == pytest.approx(0.5)
    assert lr_multiplier(WALL, 19400, 5.0, 20000, 0.0) == pytest.approx(0.5)


def test_no_warmdown_keeps_one():
    cfg = ScheduleConfig(kind="wallclock", warmdown_iters=0)
    assert lr_multiplier(cfg, 19999, 599.0, 20000, 600.0) == 1.0
