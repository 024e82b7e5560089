"""Muon's step against hand computation: momentum, Nesterov, shape scale, weight decay, warmup."""

from __future__ import annotations

import pytest
import torch

from golf.kernel.optim import build_muon, muon_momentum, newton_schulz
from golf.optim.config import MomentumWarmupConfig, MuonConfig
from tests.optim.quintic import COEFFS, quintic5_bf16
from tests.optim.standin import bf16_muon

# singular values 3 and 4 on the axes: orthogonalised to diag(q(0.6), q(0.8)) whatever the positive scale
G = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0], [0.0, 0.0]])


def ortho_of_g(scale: float) -> torch.Tensor:
    """NS5 of ``scale * G`` computed by hand (bf16 replay of the scalar quintic), as a 4x2 matrix."""
    out = torch.zeros(4, 2)
    out[0, 0], out[1, 1] = quintic5_bf16(3.0 * scale, 5.0 * scale), quintic5_bf16(4.0 * scale, 5.0 * scale)
    return out


def make_muon(param: torch.nn.Parameter, *, lr=0.1, wd=0.0, before=True, momentum=0.9):
    return build_muon([dict(params=[param], lr=lr, base_lr=lr, weight_decay=wd)],
                      bf16_muon(momentum, before, weight_decay=wd))


def test_first_step_by_hand():
    # b = g; u = g + 0.9 g = 1.9 g; NS(u) = diag(q(.6), q(.8)); rows/cols = 2 -> scale sqrt(2)
    p = torch.nn.Parameter(torch.ones(4, 2))
    opt = make_muon(p)
    p.grad = G.clone()
    opt.step()
    update = (ortho_of_g(1.9).bfloat16() * 2**0.5).float()  # the scale is applied to the bf16 update
    torch.testing.assert_close(p.detach(), torch.ones(4, 2) - 0.1 * update)
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], G)


def test_momentum_buffer_and_nesterov_over_two_steps():
    p = torch.nn.Parameter(torch.zeros(4, 2))
    opt = make_muon(p, lr=1.0)
    p.grad = G.clone()
    opt.step()
    after_one = p.detach().clone()
    opt.mu = 0.5
    g2 = 2.0 * G
    p.grad = g2.clone()
    opt.step()
    buf = 0.5 * G + g2  # b2 = mu * b1 + g2 = 2.5 G
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], buf)
    u = g2 + 0.5 * buf  # Nesterov = 3.25 G: same directions, so NS gives the same matrix again
    expected = after_one - (newton_schulz(u, [COEFFS] * 5) * 2**0.5).float()
    torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize("before", [True, False])
def test_decoupled_weight_decay_before_or_after_the_update(before):
    lr, wd = 0.1, 0.5
    p0 = torch.full((4, 2), 2.0)
    p = torch.nn.Parameter(p0.clone())
    opt = make_muon(p, lr=lr, wd=wd, before=before)
    p.grad = G.clone()
    opt.step()
    u = (ortho_of_g(1.9).bfloat16() * 2**0.5).float()
    decay = 1 - lr * wd  # 0.95
    expected = p0 * decay - lr * u if before else (p0 - lr * u) * decay
    torch.testing.assert_close(p.detach(), expected)


def test_wide_matrix_has_no_shape_scale_and_banks_are_per_slice():
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(3, 8, 16, generator=gen)
    bank = torch.nn.Parameter(torch.zeros(3, 8, 16))
    singles = [torch.nn.Parameter(torch.zeros(8, 16)) for _ in range(3)]
    opt_bank = make_muon(bank, lr=1.0)
    opt_single = build_muon([dict(params=singles, lr=1.0, base_lr=1.0, weight_decay=0.0)], bf16_muon())
    bank.grad = grads.clone()
    for s, g in zip(singles, grads):
        s.grad = g.clone()
    opt_bank.step()
    opt_single.step()
    for i, s in enumerate(singles):
        torch.testing.assert_close(bank.detach()[i], s.detach())
        # rows < cols: scale 1, update = -lr * NS(1.9 g)
        torch.testing.assert_close(s.detach(), -newton_schulz(1.9 * grads[i], [COEFFS] * 5).float())


def test_momentum_warmup_is_linear_then_constant():
    cfg = MuonConfig(momentum=0.95, momentum_warmup=MomentumWarmupConfig(start=0.85, steps=500))
    values = [muon_momentum(cfg, s) for s in (0, 100, 250, 500, 1000)]
    assert values == pytest.approx([0.85, 0.87, 0.90, 0.95, 0.95], abs=1e-12)
    seeds = MuonConfig(momentum=0.99, momentum_warmup=MomentumWarmupConfig(start=0.92, steps=1500))
    assert muon_momentum(seeds, 750) == pytest.approx(0.955)
    assert muon_momentum(MuonConfig(momentum=0.9, momentum_warmup=None), 0) == 0.9
