"""Every seed's ablation plan: each point composes through Hydra, validates, builds and lacks exactly
the techniques it switches off; the path from the baseline to #507 adds one technique per step (slow:
a few hundred meta-device builds of full-size models)."""

from __future__ import annotations

import pytest

from golf.config.validate import load_config
from hydra_plugins.golf_ablation._techniques import find_techniques
from hydra_plugins.golf_launcher.checks import build_on_meta
from tests.ablation.helpers import SPEC_SEEDS, SPEC_TO_GOLF, composed, planner
from tests.helpers import compose_config

pytestmark = pytest.mark.slow


def _labels(overrides: list[str]) -> set[str]:
    cfg = load_config(compose_config(overrides))
    build_on_meta(cfg)  # the routing tables fit the model
    return {t.label for t in find_techniques(cfg)}


# the frontier recipes' own techniques are found without being named anywhere in the planner
FRONTIER = {"pr1493": {"parallel_residuals", "depth_loop", "muoneq_r"},
            "pr1855": {"two_lane_decoder", "depth_loop", "muoneq_r", "polar_express", "per_rank_clip", "smear_gate",
                       "attn_gate", "phased"}}


@pytest.mark.parametrize("experiment", [*sorted(set(SPEC_SEEDS) - {"baseline"}), *FRONTIER])
def test_every_leave_one_out_point_of_a_seed_validates(experiment):
    target = [f"experiment={experiment}"]
    plan = planner(target).plan()
    if experiment in SPEC_SEEDS:
        assert set(plan.techniques) == {SPEC_TO_GOLF[s] for s in SPEC_SEEDS[experiment]}
    else:
        assert FRONTIER[experiment] <= set(plan.techniques)
    assert not plan.skipped  # every technique can be switched off
    if experiment in SPEC_SEEDS:
        assert not plan.groups  # every technique of the seeds comes off alone
    elif experiment == "pr1493":  # TTT scores with sliding windows: the sliding evaluation comes off with it
        assert set(plan.groups) == {"ttt+sliding_eval"}
    else:  # phased TTT stands on the standard scorer: it comes off alone
        assert not plan.groups and "sliding_eval" not in plan.techniques
    dropped = [r.split(":", 1)[1] for p in plan.points for r in p.roles if r.startswith("drop:")]
    # one point per technique that comes off alone, one per group for the members that do not
    alone_only_in_group = {m for g in plan.groups for m in g.split("+")} - set(dropped)
    assert sorted(dropped) == sorted((set(plan.techniques) | set(plan.groups)) - alone_only_in_group)
    for point in plan.points:
        assert _labels([*target, *point.overrides]) == set(plan.techniques) - set(point.off), point.name


def test_the_path_from_the_baseline_to_pr507_adds_one_technique_per_step():
    plan = planner(["experiment=pr507"]).plan(leave_one_out=False, base_cfg=load_config(
        composed(["experiment=baseline"])))
    assert plan.base_techniques == ["unet_skips", "momentum_warmup"]
    steps = sorted(((int(r.split(":")[1]), p) for p in plan.points for r in p.roles if r.startswith("path:")),
                   key=lambda s: s[0])
    assert [k for k, _ in steps] == list(range(len(plan.techniques) - 1))  # 2 shared, 18 added, one each
    assert len(plan.path) == len(plan.techniques) - 2 and set(plan.path) | set(plan.base_techniques) == set(
        plan.techniques)
    previous = None
    for k, point in steps:
        labels = _labels(["experiment=pr507", *point.overrides])
        if previous is None:
            assert labels == {"unet_skips", "momentum_warmup"}  # the target's settings, the base's techniques
        else:
            assert previous < labels and labels - previous == {plan.path[k - 1]}
        previous = labels
    assert previous == set(plan.techniques)  # the last step is the full recipe
    assert steps[-1][1].off == [] and steps[-1][1].overrides == []
