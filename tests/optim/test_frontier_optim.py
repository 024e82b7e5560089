"""PR #1493's optimizer pieces against hand computation (frontier spec §4.2, §4.4): MuonEq-R and the
warmdown over a fraction of the wall clock with a floor."""

from __future__ import annotations

import pytest
import torch

from golf.config.errors import ConfigError
from golf.kernel.optim import build_muon, lr_multiplier
from golf.kernel.optim import muon_row_normalize as row_normalize
from golf.optim.config import OptimizerConfig, ScheduleConfig, validate_optimizer
from tests.optim.quintic import quintic5_bf16
from tests.optim.standin import bf16_muon

# rows of norm 3, 4, 0, 0: MuonEq-R makes the first two unit rows, so both singular values become 1
G = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0], [0.0, 0.0]])


def muon(p, *, row_normalize_on: bool, momentum=0.9, lr=0.1):
    return build_muon([dict(params=[p], lr=lr, base_lr=lr, weight_decay=0.0)],
                      bf16_muon(momentum, row_normalize=row_normalize_on))


def test_row_normalize_by_hand():
    u = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    expected = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])  # a zero row stays zero
    torch.testing.assert_close(row_normalize(u), expected)
    assert row_normalize(u.bfloat16()).dtype == torch.float32  # the norm runs in fp32
    bank = torch.stack([u, 2 * u])
    torch.testing.assert_close(row_normalize(bank), torch.stack([expected, expected]))


def test_muoneq_r_first_step_by_hand():
    # b = g; Nesterov u = 1.9 g = [[5.7, 0], [0, 7.6], 0, 0]; rows -> [[1, 0], [0, 1], 0, 0], ||.||_F = sqrt 2;
    # NS5 maps both singular values 1/sqrt2 alike; rows/cols = 2 -> shape scale sqrt 2
    p = torch.nn.Parameter(torch.ones(4, 2))
    opt = muon(p, row_normalize_on=True)
    p.grad = G.clone()
    opt.step()
    q = quintic5_bf16(1.0, 2**0.5)
    update = (torch.tensor([[q, 0.0], [0.0, q], [0.0, 0.0], [0.0, 0.0]]).bfloat16() * 2**0.5).float()
    torch.testing.assert_close(p.detach(), torch.ones(4, 2) - 0.1 * update)
    # the buffer keeps the raw gradient: the normalization acts on the Nesterov update only
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], G)
    # plain Muon keeps the 3:4 ratio of the singular values, so its update differs
    plain = torch.nn.Parameter(torch.ones(4, 2))
    opt_plain = muon(plain, row_normalize_on=False)
    plain.grad = G.clone()
    opt_plain.step()
    assert not torch.allclose(plain.detach(), p.detach(), atol=1e-3)


def test_muoneq_r_normalizes_the_nesterov_update_not_the_gradient():
    # step 2 with mu = 0.5: b = 0.5 G + H, u = H + 0.5 b; the update is NS of rownorm(u), so it equals
    # a one-step update from a fresh optimizer whose Nesterov vector is rownorm(u) (with mu = 0: u = g)
    H = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    p = torch.nn.Parameter(torch.zeros(4, 2))
    opt = muon(p, row_normalize_on=True, lr=1.0)
    p.grad = G.clone()
    opt.step()
    after_one = p.detach().clone()
    opt.mu = 0.5
    p.grad = H.clone()
    opt.step()
    u = H + 0.5 * (0.5 * G + H)
    ref = torch.nn.Parameter(torch.zeros(4, 2))
    ref_opt = muon(ref, row_normalize_on=False, momentum=0.0, lr=1.0)
    ref.grad = row_normalize(u)
    ref_opt.step()
    torch.testing.assert_close(p.detach() - after_one, ref.detach(), atol=1e-6, rtol=0)


FRAC = ScheduleConfig(kind="wallclock_fraction", warmdown_iters=0, warmdown_frac=0.72)


@pytest.mark.parametrize("elapsed,expected", [
    (0.0, 1.0),
    (0.2799 * 588, 1.0),                  # before the warmdown starts at 0.28 x 588 s = 164.64 s
    (0.28 * 588, 1.0),                    # its first point: (1 - 0.28) / 0.72
    (0.35 * 588, 0.65 / 0.72),            # the loop switch (spec §3.7): 0.9028
    (0.64 * 588, 0.5),
    (0.91 * 588, 0.125),
    (588.0, 0.0),
    (600.0, 0.0),                          # past the cap the floor (0) holds
])
def test_warmdown_fraction_multiplier(elapsed, expected):
    assert lr_multiplier(FRAC, 1234, elapsed, 20000, 588.0) == pytest.approx(expected, abs=1e-12)


def test_warmdown_fraction_floor_and_iterations_without_a_cap():
    floor = ScheduleConfig(kind="wallclock_fraction", warmdown_frac=0.5, min_lr_mul=0.1)
    assert lr_multiplier(floor, 0, 95.0, 100, 100.0) == pytest.approx(0.1)   # (1 - .95)/.5 = .1 -> floor .1
    assert lr_multiplier(floor, 0, 99.0, 100, 100.0) == pytest.approx(0.1)   # .02 floored
    assert lr_multiplier(floor, 0, 70.0, 100, 100.0) == pytest.approx(0.6)
    # no cap: the fraction is step / iterations
    assert lr_multiplier(FRAC, 640, 1e9, 1000, None) == pytest.approx(0.5)
    assert lr_multiplier(FRAC, 100, 1e9, 1000, None) == 1.0


@pytest.mark.parametrize("schedule,key", [
    (ScheduleConfig(kind="wallclock_fraction", warmdown_frac=0.0), "optimizer.schedule.warmdown_frac"),
    (ScheduleConfig(kind="wallclock_fraction", warmdown_frac=1.5), "optimizer.schedule.warmdown_frac"),
    (ScheduleConfig(min_lr_mul=1.0), "optimizer.schedule.min_lr_mul"),
])
def test_bad_schedule_is_refused_by_key(schedule, key):
    with pytest.raises(ConfigError) as err:
        validate_optimizer(OptimizerConfig(schedule=schedule))
    assert err.value.key == key
