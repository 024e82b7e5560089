"""The optimizer set: lrs, Adam/AdamW by hand, clipping, frozen parameters, resumable state."""

from __future__ import annotations

import copy

import pytest
import torch

from golf.optim import build_optimizer
from golf.optim.config import ParamRule
from tests.optim.standin import StandIn, decoder_cfg, fill_grads, seeded_model


def group_of(opt, param) -> dict:
    """The torch param group (of Muon or Adam) that holds ``param``."""
    for o in (opt.muon, opt.adam):
        for g in o.param_groups:
            if any(p is param for p in g["params"]):
                return g
    raise KeyError


def lr_of(opt, param) -> float:
    return group_of(opt, param)["lr"]


def wd_of(opt, param) -> float:
    return group_of(opt, param)["weight_decay"]


def test_lrs_are_base_times_rule_times_schedule():
    model = seeded_model()
    opt = build_optimizer(model, decoder_cfg())
    fill_grads(model, 1)
    opt.step(0, lr_mul=0.5)
    assert lr_of(opt, model.tok_emb.weight) == pytest.approx(0.03 * 0.5)
    assert lr_of(opt, model.blocks[0].attn.c_q.weight) == pytest.approx(0.02 * 0.5)
    assert lr_of(opt, model.blocks[3].attn.c_q.weight) == pytest.approx(0.02 * 2 * 0.5)
    assert lr_of(opt, model.blocks[1].attn_scale) == pytest.approx(0.01 * 0.5)
    assert lr_of(opt, model.blocks[2].attn_scale) == pytest.approx(0.01 * 2 * 0.5)
    assert [g["weight_decay"] for g in opt.muon.param_groups] == [0.04, 0.04]


def test_weight_decay_is_selected_by_role():
    """A rule's ``wd_mul`` scales its group's decay for exactly the parameters its role expression
    selects: here no decay on the attention matrices of the decoder, in Muon and in AdamW."""
    cfg = decoder_cfg()
    cfg.rules.insert(0, ParamRule(select="kind=matrix & place=decoder & part=attn", group="muon", wd_mul=0.0))
    model = seeded_model()
    opt = build_optimizer(model, cfg)
    for i, block in enumerate(model.blocks):
        decoder = i >= 2
        assert wd_of(opt, block.attn.c_q.weight) == (0.0 if decoder else 0.04)
        assert lr_of(opt, block.attn.c_q.weight) == pytest.approx(0.02)  # the first rule: no lr x2
        assert wd_of(opt, block.mlp.fc.weight) == 0.04
    p0 = model.blocks[3].attn.c_q.weight.detach().clone()
    fill_grads(model, 3)
    for p in model.parameters():  # only the decay can move a parameter whose gradient is zero
        p.grad.zero_()
    opt.step(0, lr_mul=1.0)
    assert torch.equal(model.blocks[3].attn.c_q.weight.detach(), p0)
    assert not torch.equal(model.blocks[0].attn.c_q.weight.detach(), seeded_model().blocks[0].attn.c_q.weight)


def test_first_adamw_step_by_hand():
    # step 1 with bias correction: m_hat = g, v_hat = g^2 -> p1 = p0 (1 - lr wd) - lr g / (|g| + eps)
    model = seeded_model()
    opt = build_optimizer(model, decoder_cfg())
    fill_grads(model, 2)
    p0_tok, g_tok = model.tok_emb.weight.detach().clone(), model.tok_emb.weight.grad.clone()
    p0_s, g_s = model.blocks[2].mlp_scale.detach().clone(), model.blocks[2].mlp_scale.grad.clone()
    opt.step(0, lr_mul=0.5)
    lr = 0.03 * 0.5
    torch.testing.assert_close(model.tok_emb.weight.detach(), p0_tok * (1 - lr * 0.1) - lr * g_tok / (g_tok.abs() + 1e-8))
    lr = 0.01 * 2 * 0.5
    torch.testing.assert_close(model.blocks[2].mlp_scale.detach(), p0_s - lr * g_s / (g_s.abs() + 1e-8))


def test_frozen_parameters_do_not_move_but_count_in_clipping():
    model = seeded_model()
    cfg = decoder_cfg()
    cfg.grad_clip_norm = 0.5
    opt = build_optimizer(model, cfg)
    fill_grads(model, 3)
    before = model.skip_weights.detach().clone()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    opt.step(0, lr_mul=1.0)
    torch.testing.assert_close(model.skip_weights.detach(), before)
    clipped = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    assert total > 0.5 and clipped.item() == pytest.approx(0.5, rel=1e-5)
    torch.testing.assert_close(model.skip_weights.grad, grads["skip_weights"] * (0.5 / (total.float() + 1e-6)))


def test_group_table_lists_every_group_once():
    model = seeded_model()
    table = build_optimizer(model, decoder_cfg()).group_table()
    labels = [label for label, _, _ in table]
    assert sorted(labels) == sorted(["tok", "muon[lr*2]", "muon", "scalar[lr*2]", "scalar", "frozen"])
    assert sum(n for _, _, n in table) == sum(p.numel() for p in model.parameters())
    assert dict((label, names) for label, names, _ in table)["frozen"] == ["skip_weights"]


def test_resuming_from_state_dict_continues_exactly():
    cfg = decoder_cfg()
    straight = seeded_model()
    opt = build_optimizer(straight, cfg)
    for step in range(4):
        fill_grads(straight, 10 + step)
        opt.step(step, lr_mul=1.0 - 0.2 * step)
        opt.zero_grad()

    first = seeded_model()
    opt1 = build_optimizer(first, cfg)
    for step in range(2):
        fill_grads(first, 10 + step)
        opt1.step(step, lr_mul=1.0 - 0.2 * step)
        opt1.zero_grad()
    saved_model, saved_opt = copy.deepcopy(first.state_dict()), copy.deepcopy(opt1.state_dict())

    resumed = StandIn(layers=4)
    resumed.load_state_dict(saved_model)
    opt2 = build_optimizer(resumed, cfg)
    opt2.load_state_dict(saved_opt)
    for step in range(2, 4):
        fill_grads(resumed, 10 + step)
        opt2.step(step, lr_mul=1.0 - 0.2 * step)
        opt2.zero_grad()
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_loaded_state_keeps_the_configured_hyperparameters():
    model = seeded_model()
    opt = build_optimizer(model, decoder_cfg())
    fill_grads(model, 4)
    opt.step(0, lr_mul=1.0)
    state = opt.state_dict()
    cfg = decoder_cfg()
    cfg.muon.lr = 0.5
    opt2 = build_optimizer(model, cfg)
    opt2.load_state_dict(state)
    assert {g["base_lr"] for g in opt2.muon.param_groups} == {0.5, 1.0}
    assert len(opt2.muon.state) == len(opt.muon.state)


def test_zero_grad():
    model = seeded_model()
    opt = build_optimizer(model, decoder_cfg())
    fill_grads(model, 5)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
