"""Newton-Schulz orthogonalisation: the quintic acts on singular values exactly as the scalar map says."""

from __future__ import annotations

import pytest
import torch

from golf.kernel.optim import newton_schulz
from tests.optim.quintic import COEFFS, quintic5, quintic5_bf16

# bf16 iterates: measured deviation from the exact scalar map is <= 0.016 on these shapes
BF16_TOL = 0.03


def normalized_singular_values(g: torch.Tensor) -> torch.Tensor:
    g = g.double()
    return torch.linalg.svdvals(g) / torch.linalg.norm(g)


# The matrices of an 11-layer d=512 model (c_q/proj, c_k/c_v, MLP fc (out x in) and proj, bigram proj);
# the default run uses the same aspect ratios at a quarter of the size, the slow run the real sizes.
FULL_SHAPES = [(512, 512), (256, 512), (1024, 512), (512, 1024), (512, 128)]
SMALL_SHAPES = [(r // 4, c // 4) for r, c in FULL_SHAPES]
SHAPES = [*SMALL_SHAPES, *(pytest.param(s, marks=pytest.mark.slow) for s in FULL_SHAPES)]
RECTANGULAR = [*(s for s in SMALL_SHAPES if s[0] != s[1]),
               *(pytest.param(s, marks=pytest.mark.slow) for s in FULL_SHAPES if s[0] != s[1])]


@pytest.mark.parametrize("shape", SHAPES)
def test_singular_values_follow_the_scalar_quintic(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    expected = torch.sort(quintic5(normalized_singular_values(g))).values
    actual = torch.sort(torch.linalg.svdvals(newton_schulz(g, [COEFFS] * 5).double())).values
    assert (actual - expected).abs().max().item() < BF16_TOL


@pytest.mark.parametrize("shape", RECTANGULAR)
def test_rectangular_updates_have_singular_values_in_the_quintic_band(shape):
    # For a Gaussian m x n matrix (m < n) the normalized singular values lie in roughly
    # [(sqrt(n)-sqrt(m)), (sqrt(n)+sqrt(m))] / sqrt(mn), i.e. >= 0.018 for these shapes; five quintic
    # steps map [0.018, 1] into [0.68, 1.14] (the scalar map's range); bf16 adds up to ~0.02.
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    s_in = normalized_singular_values(g)
    grid = quintic5(torch.linspace(s_in.min().item(), 1.0, 20001, dtype=torch.float64))
    band_lo, band_hi = grid.min().item(), grid.max().item()
    assert 0.67 < band_lo and band_hi < 1.15
    s = torch.linalg.svdvals(newton_schulz(g, [COEFFS] * 5).float())
    assert s.min().item() > band_lo - BF16_TOL
    assert s.max().item() < band_hi + BF16_TOL


def test_square_updates_overshoot_at_most_the_quintic_maximum():
    # A square Gaussian matrix has singular values near 0 that five steps cannot lift to the band;
    # none may exceed the map's global maximum on (0, 1] (about 1.20), and the bulk is in the band.
    g = torch.randn(128, 128, generator=torch.Generator().manual_seed(2))
    s = torch.linalg.svdvals(newton_schulz(g, [COEFFS] * 5).float())
    assert s.max().item() < quintic5(torch.linspace(1e-4, 1, 100001)).max().item() + 0.02
    in_band = ((s > 0.66) & (s < 1.16)).float().mean().item()
    assert in_band > 0.9


def test_hand_computed_diagonal_case():
    # singular values 3 and 4 with axis-aligned singular vectors: ||G||_F = 5, so the quintic runs on
    # 0.6 and 0.8 and the result keeps the same vectors; rows > cols exercises the transpose.
    # In exact arithmetic five steps give 0.7229 and 1.1192; bf16 rounding (amplified by the quintic's
    # slope > 1 near its band) moves them by up to 0.035, so the exact check replays the bf16 arithmetic.
    g = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    out = newton_schulz(g, [COEFFS] * 5)
    assert out.dtype == torch.bfloat16 and out.shape == (4, 2)
    expected = torch.zeros(4, 2)
    expected[0, 0], expected[1, 1] = quintic5_bf16(3.0, 5.0), quintic5_bf16(4.0, 5.0)
    torch.testing.assert_close(out.float(), expected, atol=0, rtol=0)
    exact = quintic5(torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(torch.stack([out[0, 0], out[1, 1]]).double(), exact, atol=0.05, rtol=0)


def test_batched_matches_one_matrix_at_a_time():
    gen = torch.Generator().manual_seed(3)
    mats = [torch.randn(64, 128, generator=gen) for _ in range(3)]
    batched = newton_schulz(torch.stack(mats), [COEFFS] * 5)  # [3, 64, 128]
    for i, m in enumerate(mats):
        torch.testing.assert_close(batched[i].float(), newton_schulz(m, [COEFFS] * 5).float(), atol=1e-2, rtol=0)
