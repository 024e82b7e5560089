"""#1855's options cost nothing when off: the generated scripts of the recipes that do not use them hold
none of their code, and the #1855 recipe's script holds all of it (frontier-1855 spec §3.3, §3.5, §3.8,
§4.2, §4.5)."""

from __future__ import annotations

import pytest

from golf.config.validate import load_config
from golf.plan import submission_of
from tests.helpers import compose_config

# a name or literal that only the code of each option has
MARKS = {
    "BOS-masked SmearGate": "BosMaskedSmear",
    "sparse attention gate": "SparseAttnGate",
    "two-lane decoder": "two_lane_block",
    "per-rank clipping": "average_gradients",
    "Polar Express": "8.156554524902461",
}


def program(experiment: str) -> str:
    return submission_of(load_config(compose_config([f"experiment={experiment}"]))).readable


@pytest.mark.parametrize("experiment", ["baseline", "pr1493"])
def test_options_are_absent_when_off(experiment):
    text = program(experiment)
    assert [k for k, mark in MARKS.items() if mark in text] == []


def test_the_pr1855_recipe_carries_every_option():
    text = program("pr1855")
    assert [k for k, mark in MARKS.items() if mark not in text] == []
