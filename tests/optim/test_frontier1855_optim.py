"""PR #1855's optimizer against hand computation (frontier-1855 spec §4.2-4.6): Polar-Express
Newton-Schulz, the MIN_LR floor, momentum 0.92 -> 0.97, clipping each rank's gradient before averaging
(2 gloo processes), and the compile warm-up's roll-back of Muon's momentum."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from golf.config.errors import ConfigError
from golf.kernel.optim import build_muon, lr_multiplier, muon_momentum, newton_schulz
from golf.kernel.state import TrainState
from golf.optim import build_optimizer
from golf.optim.config import (
    MomentumWarmupConfig,
    MuonConfig,
    OptimizerConfig,
    ScheduleConfig,
    validate_optimizer,
)
from tests.optim.standin import decoder_cfg, fill_grads, seeded_model

# the five per-iteration (a, b, c) of the record (spec §4.2's table)
PE = [(8.156554524902461, -22.48329292557795, 15.878769915207462),
      (4.042929935166739, -2.808917465908714, 0.5000178451051316),
      (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
      (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
      (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)]


def by_hand(g: torch.Tensor, tuples) -> torch.Tensor:
    """X = G / ||G||_F (no 1.01 factor), then per tuple A = X X^T, B = b A + c A^2, X = a X + B X; fp64."""
    x = g.double() / (g.double().norm() + 1e-7)
    for a, b, c in tuples:
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x


def singular_by_hand(s: float) -> float:
    """The same five steps on one singular value: s -> a s + b s^3 + c s^5."""
    for a, b, c in PE:
        s = a * s + b * s**3 + c * s**5
    return s


# ----------------------------------------------------------------------------- Polar Express (§4.2)

def test_polar_express_against_the_tuples_by_hand():
    g = torch.randn(6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(newton_schulz(g, PE, torch.float64), by_hand(g, PE), rtol=0, atol=1e-12)
    # iteration k uses tuple k: the tuples in another order give another matrix
    assert not torch.allclose(newton_schulz(g, PE[::-1], torch.float64), by_hand(g, PE), atol=1e-3)


def test_polar_express_on_known_singular_values():
    # G = diag(3, 4) padded to 2 x 3: ||G||_F = 5, so the iteration starts at singular values 3 / (5 + 1e-7)
    # and 4 / (5 + 1e-7) (a 1.01 safety factor would make them 0.594 / 0.792) and maps each by the quintics
    g = torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]], dtype=torch.float64)
    out = newton_schulz(g, PE, torch.float64)
    s3, s4 = singular_by_hand(3 / (5 + 1e-7)), singular_by_hand(4 / (5 + 1e-7))
    expected = torch.tensor([[s3, 0.0, 0.0], [0.0, s4, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert abs(singular_by_hand(0.6) - 0.8712863) < 1e-6 and abs(singular_by_hand(0.8) - 1.0337503) < 1e-6


def test_polar_express_orthogonalises_better_than_the_fixed_quintic():
    g = torch.randn(64, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s = torch.linalg.svdvals(newton_schulz(g, PE, torch.float64))
    assert 0.85 < s.min() and s.max() < 1.15  # every singular value near 1 (the quintic: 0.68 .. 1.13)
    x = newton_schulz(g, PE, torch.float64)
    assert torch.linalg.matrix_norm(x @ x.T - torch.eye(64, dtype=torch.float64), ord=2) < 0.35
    quintic = torch.linalg.svdvals(newton_schulz(g, [(3.4445, -4.7750, 2.0315)] * 5, torch.float64))
    assert quintic.min() < 0.7


def test_polar_express_transposes_tall_matrices():
    g = torch.randn(10, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(newton_schulz(g, PE, torch.float64), by_hand(g.T, PE).T, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps,used", [(5, 5), (3, 3), (10, 5)])
def test_muon_runs_the_first_ns_steps_tuples(steps, used):
    """A first Muon step (momentum 0: u = g) with the per-step tuples; beyond five steps the list runs once."""
    m = MuonConfig(momentum=0.0, momentum_warmup=None, ns_steps=steps, ns_coefficients_per_step=[list(t) for t in PE],
                   ns_dtype="float32")
    g = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    p = torch.nn.Parameter(torch.zeros(4, 8))
    opt = build_muon([dict(params=[p], lr=0.1, base_lr=0.1, weight_decay=0.0)], m)
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(p.detach(), -0.1 * by_hand(g, PE[:used]).float(), rtol=0, atol=1e-5)


def test_per_step_coefficients_are_validated():
    bad = OptimizerConfig(muon=MuonConfig(ns_coefficients_per_step=[[1.0, 2.0, 3.0], [1.0, 2.0]]))
    with pytest.raises(ConfigError, match="optimizer.muon.ns_coefficients_per_step"):
        validate_optimizer(bad)
    with pytest.raises(ConfigError, match="optimizer.muon.ns_coefficients_per_step"):
        validate_optimizer(OptimizerConfig(muon=MuonConfig(ns_coefficients_per_step=[])))
    with pytest.raises(ConfigError, match="optimizer.grad_clip_scope"):
        validate_optimizer(OptimizerConfig(grad_clip_scope="rank"))


# ----------------------------------------------------------------------------- schedules (§4.3)

MIN_LR = ScheduleConfig(kind="wallclock_fraction", warmdown_iters=0, warmdown_frac=0.85, min_lr_mul=0.1)


@pytest.mark.parametrize("frac,expected", [
    (0.1, 1.0),            # before the decay starts at frac 0.15
    (0.15, 1.0),           # its first point: (1 - 0.15) / 0.85
    (0.5, 0.5 / 0.85),     # 0.588...
    (0.915, 0.1),          # the floor is reached at 1 - 0.085 = 0.915
    (0.95, 0.1),           # (1 - 0.95) / 0.85 = 0.059 < the floor 0.1
])
def test_min_lr_floor_schedule(frac, expected):
    assert lr_multiplier(MIN_LR, 0, frac * 599.5, 20000, 599.5) == pytest.approx(expected, abs=1e-12)


def test_momentum_warmup_to_097():
    m = MuonConfig(momentum=0.97, momentum_warmup=MomentumWarmupConfig(start=0.92, steps=1500))
    assert [muon_momentum(m, s) for s in (0, 750, 1500, 4000)] == pytest.approx([0.92, 0.945, 0.97, 0.97])


# ----------------------------------------------------------------------------- per-rank clipping (§4.5)

CLIP = 1.0
NORMS = (0.5, 4.0)  # rank 0's gradient is under the clip, rank 1's is 4x over it


def rank_grads(model, rank: int) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s gradient: pseudo-random, scaled to global norm NORMS[rank]."""
    fill_grads(model, 300 + rank)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    out = {n: p.grad * (NORMS[rank] / total) for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


def _clip_cfg(scope: str) -> OptimizerConfig:
    cfg = decoder_cfg()
    cfg.grad_clip_norm, cfg.grad_clip_scope = CLIP, scope
    return cfg


def _clip_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = seeded_model()
        if rank:  # another init: building the set hands every rank rank 0's weights, as DDP would
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
        opt = build_optimizer(model, _clip_cfg("local"), world_size=world, rank=rank)
        grads = rank_grads(model, rank)
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
        opt.step(0, 1.0)
        torch.save(({n: p.grad.clone() for n, p in model.named_parameters()},
                    {k: v.clone() for k, v in model.state_dict().items()}), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_local_clip_averages_the_clipped_gradients(tmp_path):
    mp.spawn(_clip_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    model = seeded_model()
    g0, g1 = rank_grads(model, 0), rank_grads(model, 1)
    # by hand: rank 0 keeps its gradient (0.5 < 1), rank 1's is scaled by 1 / 4; the optimizer sees the mean
    local = {n: (g0[n] + g1[n] / 4.0) / 2 for n in g0}
    # clipping the mean instead: the mean's own norm decides one scale for both
    mean = {n: (g0[n] + g1[n]) / 2 for n in g0}
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in mean.values()])).item()
    assert norm > CLIP
    averaged = {n: g * (CLIP / norm) for n, g in mean.items()}
    # a single process fed the hand-computed mean of the clips (no clip of its own) steps to the same weights
    ref = seeded_model()
    ref_opt = build_optimizer(ref, decoder_cfg())
    for n, p in ref.named_parameters():
        p.grad = local[n].clone()
    ref_opt.step(0, 1.0)
    for rank in range(2):
        grads, weights = torch.load(tmp_path / f"rank{rank}.pt")
        for n in g0:
            torch.testing.assert_close(grads[n], local[n], rtol=1e-5, atol=1e-7, msg=f"rank {rank}: {n}")
        assert not all(torch.allclose(grads[n], averaged[n], atol=1e-4) for n in g0)
        for k, w in ref.state_dict().items():
            torch.testing.assert_close(weights[k], w, rtol=1e-5, atol=1e-6, msg=f"rank {rank}: {k}")


def test_local_clip_on_one_rank_is_the_plain_clip():
    a, b = seeded_model(), seeded_model()
    oa, ob = build_optimizer(a, _clip_cfg("local")), build_optimizer(b, _clip_cfg("averaged"))
    for m, o in ((a, oa), (b, ob)):
        grads = rank_grads(m, 1)
        for n, p in m.named_parameters():
            p.grad = grads[n].clone()
        o.step(0, 1.0)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n


# ----------------------------------------------------------------------------- warm-up roll-back (§4.6)

class _Nothing:
    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


def test_warmup_rollback_restores_muon_momentum():
    """The record leaks its 40 warm-up steps' momentum into training (trap 7); golf's TrainState snapshot
    holds the optimizer state, so the roll-back restores Muon's momentum buffers and Adam's moments."""
    model = seeded_model()
    opt = build_optimizer(model, decoder_cfg())
    fill_grads(model, 1)
    opt.step(0, 1.0)  # a momentum state from before the warm-up
    before = {k: v.clone() for k, v in model.state_dict().items()}
    muon_before = [s["momentum_buffer"].clone() for s in opt.muon.state.values()]
    adam_before = [s["exp_avg"].clone() for s in opt.adam.state.values()]
    nothing = _Nothing()
    st = TrainState(model, opt, nothing, nothing, nothing, nothing)
    snap = st.snapshot()
    for w in range(3):  # the warm-up steps
        fill_grads(model, 10 + w)
        opt.step(w, 1.0)
    assert not torch.equal(next(iter(opt.muon.state.values()))["momentum_buffer"], muon_before[0])
    st.load_state_dict(snap)
    for b, s in zip(muon_before, opt.muon.state.values()):
        assert torch.equal(s["momentum_buffer"], b)
    for b, s in zip(adam_before, opt.adam.state.values()):
        assert torch.equal(s["exp_avg"], b)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# ----------------------------------------------------------------------------- bf16 momentum (§4.2)

def test_bf16_momentum_buffer_by_hand():
    """b <- mu b + g kept in bf16; the Nesterov vector g + mu b in fp32; a state round trip keeps bf16."""
    m = MuonConfig(momentum=0.5, momentum_warmup=None, ns_steps=5, momentum_dtype="bfloat16", ns_dtype="float32")
    p = torch.nn.Parameter(torch.zeros(2, 4))
    opt = build_muon([dict(params=[p], lr=1.0, base_lr=1.0, weight_decay=0.0)], m)
    g1 = torch.tensor([[1.001, 0.0, 2.0, 0.0], [0.0, 3.0009, 0.0, 1.0]])
    g2 = torch.tensor([[0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.25]])
    p.grad = g1.clone()
    opt.step()
    b1 = opt.state[p]["momentum_buffer"]
    assert b1.dtype == torch.bfloat16 and torch.equal(b1, g1.bfloat16())  # 1.001 -> 1.0, 3.0009 -> 3.0
    opt.load_state_dict(opt.state_dict())  # torch casts the loaded state to the parameter's fp32
    before = p.detach().clone()
    p.grad = g2.clone()
    opt.step()
    b2 = opt.state[p]["momentum_buffer"]
    assert b2.dtype == torch.bfloat16 and torch.equal(b2, (0.5 * g1.bfloat16().float() + g2).bfloat16())
    u = g2 + 0.5 * b2.float()
    torch.testing.assert_close(p.detach(), before - newton_schulz(u, [(3.4445, -4.7750, 2.0315)] * 5, torch.float32),
                               rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="optimizer.muon.momentum_dtype"):
        validate_optimizer(OptimizerConfig(muon=MuonConfig(momentum_dtype="fp16")))
