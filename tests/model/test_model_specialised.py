"""The model as a recipe's script carries it: the kernel folded against the recipe's config
(:mod:`golf.specialise`) and run on a plain namespace config computes exactly what golf's model does."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import python_minifier
import torch

from golf.config.validate import load_config
from golf.model import build_model
from golf.specialise import Node, plain, specialise
from tests.helpers import compose_config

NARROW = ["arch.model_dim=64", "arch.num_heads=4", "arch.num_kv_heads=2"]


def _namespace(value):
    """A config as the script holds it: namespaces of plain values."""
    if isinstance(value, Node):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})
    return [_namespace(v) for v in value] if isinstance(value, list) else value


def _script(cfg) -> dict:
    """The specialised model's definitions (annotations removed, as the submission's minifier does)."""
    source = specialise(cfg, {"build_gpt", "build_switch"})
    code = python_minifier.minify(source, remove_annotations=True, rename_locals=False, rename_globals=False,
                                  hoist_literals=False)
    namespace: dict = {}
    exec(compile(code, "<specialised>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("experiment", [
    "baseline", "pr1493",
    pytest.param("pr507", marks=pytest.mark.slow), pytest.param("pr1573", marks=pytest.mark.slow),
    pytest.param("pr344", marks=pytest.mark.slow), pytest.param("pr187", marks=pytest.mark.slow),
    pytest.param("pr295", marks=pytest.mark.slow),
])
def test_the_specialised_model_is_golfs_model(experiment):
    cfg = load_config(compose_config([f"experiment={experiment}", *NARROW]))
    script = _script(cfg)
    torch.manual_seed(0)
    ours = build_model(cfg.arch)
    torch.manual_seed(0)
    theirs = script["build_gpt"](_namespace(plain(cfg.arch)))
    assert list(theirs.state_dict()) == list(ours.state_dict())  # the same names in the same order
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), name  # the same init draws
    ids = torch.randint(0, cfg.arch.vocab_size, (2, 16))
    targets = torch.randint(0, cfg.arch.vocab_size, (2, 16))
    assert theirs.topology == ours.topology
    for topology in range(len(ours.layer_orders())):
        ours.set_topology(topology)
        theirs.topology = topology
        with torch.no_grad():
            assert torch.equal(theirs(ids, targets), ours(ids, targets))


def test_the_specialised_switch_switches_once():
    cfg = load_config(compose_config(["experiment=pr1493", *NARROW]))
    script = _script(cfg)
    model = script["build_gpt"](_namespace(plain(cfg.arch)))
    switch = script["build_switch"](model, _namespace(plain(cfg.arch)))
    assert list(switch.warmup_phases()) == ["plain", "looped"]
    switch.begin()
    assert model.topology == 0
    assert [switch.update(s, 10.0 * s, 100.0, 100) for s in range(6)] == [False] * 4 + [True, False]
    assert switch.switch_step == 4 and model.topology == 1
