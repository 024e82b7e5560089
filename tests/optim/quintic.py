"""The Newton-Schulz quintic computed on scalars: the hand computation the Muon tests compare against."""

from __future__ import annotations

import torch

COEFFS = (3.4445, -4.7750, 2.0315)


def quintic5(s: torch.Tensor) -> torch.Tensor:
    """Five applications of s -> a s + b s^3 + c s^5, in float64."""
    a, b, c = COEFFS
    s = s.double()
    for _ in range(5):
        s = a * s + b * s**3 + c * s**5
    return s


def quintic5_bf16(sigma: float, norm: float) -> float:
    """The same five steps on one singular value, every operation rounded to bf16 as the matmuls do."""
    a, b, c = COEFFS
    bf16 = torch.bfloat16
    x = torch.tensor(sigma, dtype=bf16) / (torch.tensor(norm, dtype=bf16) + 1e-7)
    for _ in range(5):
        gram = x * x
        poly = b * gram + (c * gram) * gram
        x = a * x + poly * x
    return x.item()
