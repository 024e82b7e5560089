"""The train state round-trips whole: every component a step changes is saved and restored, so training
on from a reloaded state gives bit-identical weights; a checkpoint lacking a component, or holding one
the state does not have, is refused naming it (by the lab, before the kernel's state loads it)."""

from __future__ import annotations

import pytest
import torch

from golf.checkpoint import CheckpointError, check_state_components
from golf.config.validate import load_config
from golf.data import prepare_data
from golf.kernel.averaging import build_averager
from golf.kernel.data import build_train_loader
from golf.kernel.depth import build_switch
from golf.kernel.optim import build_optimizer, lr_multiplier
from golf.kernel.qat import apply_qat
from golf.kernel.state import STATE_COMPONENTS as COMPONENTS
from golf.kernel.state import TrainState
from golf.model import build_model
from golf.plan import tables
from tests.helpers import TINY, compose_config

# every component active: EMA and SWA (a snapshot every warm-down step), QAT switching on at lr_mul < 0.9 (from
# step 4 of 6 with 3 warm-down steps), a depth loop switching on halfway, the shuffled loader
STATEFUL = [*TINY, "averaging=swa_of_ema_pr344", "averaging.swa.every=1", "averaging.swa.lr_mul_below=1.0",
            "++quant.qat.schedule=lr_below", "++quant.qat.lr_threshold=0.9", "++quant.qat.min_numel=0",
            "++arch.depth.loop.layers='0,1'", "++arch.depth.loop.extra_passes=1", "++arch.depth.loop.switch_at=0.5",
            "++data.shuffle.seed=3", "optimizer.schedule.kind=iterations", "optimizer.schedule.warmdown_iters=3"]


@pytest.fixture(scope="module")
def setup():
    cfg = load_config(compose_config(STATEFUL))
    return cfg, prepare_data(cfg.data)


def new_state(cfg, paths, seed: int = 0) -> TrainState:
    torch.manual_seed(seed)  # two states start from different weights: only a load can make them agree
    model = build_model(cfg.arch)
    plan = tables(cfg, model)
    qat = apply_qat(model, cfg.quant, plan["qat"])
    topology = build_switch(model, cfg.arch)
    opt = build_optimizer(model, cfg.optimizer, plan["groups"], 1, 0)
    averager = build_averager(cfg.averaging, model)
    loader = build_train_loader(cfg.data, paths.train_pattern, 0, 1, cfg.train.seq_len)
    topology.begin()
    averager.start(model)
    return TrainState(model=model, optimizer=opt, averager=averager, loader=loader, qat=qat, topology=topology)


def train(state: TrainState, cfg, until: int) -> None:
    """The trainer's step, without a clock (an iteration schedule), up to step ``until``."""
    tc = cfg.train
    state.model.train()
    while state.step < until:
        lr_mul = lr_multiplier(cfg.optimizer.schedule, state.step, 0.0, tc.iterations, None)
        state.qat.update(state.step, 0.0, lr_mul, None)
        state.topology.update(state.step, 0.0, None, tc.iterations)
        x, y = state.loader.next_batch(tc.batch_tokens, tc.seq_len, 1)
        state.model(x, y).backward()
        state.optimizer.step(state.step, lr_mul)
        state.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.train_time += 0.25
        state.averager.update(state.model, state.step, lr_mul)


def assert_same(a, b, where: str = "state") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_a_reloaded_state_trains_on_bit_identically(setup, tmp_path):
    cfg, paths = setup
    straight = new_state(cfg, paths)
    train(straight, cfg, 3)
    saved = straight.state_dict()
    assert set(saved) == set(COMPONENTS)
    torch.save(saved, tmp_path / "rank0.pt")  # through the checkpoint's file format (weights only)
    rng_after_save = torch.get_rng_state()
    torch.manual_seed(1234)  # the process's RNG moves on before the resume
    resumed = new_state(cfg, paths, seed=1)
    assert not torch.equal(resumed.model.tok_emb.weight, straight.model.tok_emb.weight)
    resumed.load_state_dict(torch.load(tmp_path / "rank0.pt", weights_only=True))
    assert torch.equal(torch.get_rng_state(), rng_after_save)

    # every component is restored: its state equals the saved one
    assert_same(resumed.state_dict(), saved)
    assert resumed.topology.switch_step is None and not resumed.qat.active  # neither switched on yet
    assert resumed.averager.num_snapshots == straight.averager.num_snapshots

    train(straight, cfg, 6)
    train(resumed, cfg, 6)
    assert straight.topology.switch_step == resumed.topology.switch_step == 3  # switched after the resume
    assert straight.qat.active and resumed.qat.active
    assert_same(resumed.state_dict(), straight.state_dict())  # weights, moments, averages, position, clock


def test_the_snapshot_is_unchanged_by_training(setup):
    """The compile warm-up's rollback: a snapshot, some steps, then loading the snapshot back."""
    cfg, paths = setup
    state = new_state(cfg, paths)
    initial = state.snapshot()
    train(state, cfg, 4)
    assert not torch.equal(state.model.tok_emb.weight, initial["model"]["tok_emb.weight"])
    state.load_state_dict(initial)
    assert_same(state.state_dict(), initial)
    fresh = new_state(cfg, paths)  # the same seed: what an un-warmed run starts from
    train(state, cfg, 2)
    train(fresh, cfg, 2)
    assert_same(state.state_dict(), fresh.state_dict())


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_checkpoint_lacking_a_component_is_refused_naming_it(setup, component):
    cfg, paths = setup
    state = new_state(cfg, paths)
    saved = state.state_dict()
    del saved[component]
    with pytest.raises(CheckpointError, match=f"lacks the component '{component}'"):
        check_state_components(saved)


def test_a_checkpoint_with_an_unknown_component_is_refused_naming_it(setup):
    cfg, paths = setup
    state = new_state(cfg, paths)
    before = state.snapshot()
    with pytest.raises(CheckpointError, match="has an unknown component 'scaler'"):
        check_state_components({**state.state_dict(), "scaler": {}})
    assert_same(state.state_dict(), before)  # refused before anything was loaded
