"""The export report (bytes per tensor, entropy reference) and the budget check."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from golf.quant import (
    ESTIMATE_TOLERANCE,
    BudgetExceededError,
    BudgetWarning,
    check_budget,
    check_estimate,
    export_state_dict,
)
from golf.quant.config import OverLimit, QuantConfig
from golf.quant.report import code_entropy_bits
from tests.helpers import roles_by_name

from .conftest import load_preset


def test_code_entropy_of_known_distributions():
    assert code_entropy_bits(torch.zeros(100, dtype=torch.int8)) == 0.0
    assert code_entropy_bits(torch.tensor([-1, 1, -1, 1], dtype=torch.int8)) == pytest.approx(1.0)
    q = torch.tensor([0, 0, 1, 2], dtype=torch.int8)  # p = 1/2, 1/4, 1/4 → 1.5 bits
    assert code_entropy_bits(q) == pytest.approx(1.5)
    assert code_entropy_bits(torch.arange(-128, 128, dtype=torch.int16).to(torch.int8)) == pytest.approx(8.0)


def test_report_rows_and_totals(state_dict):
    blob, report = export_state_dict(state_dict, load_preset("pr1573"), roles_by_name(state_dict))
    rows = {r.name: r for r in report.tensors}
    fc = rows["blocks.0.mlp.fc.weight"]  # [64, 32] int5, bit-packed, fp16 scale per row
    assert (fc.scheme, fc.bits, fc.bytes_before) == ("int5_gptq", 5, 64 * 32 * 4)
    assert fc.code_bytes == 64 * 32 * 5 // 8 and fc.bytes_after == fc.code_bytes + 64 * 2
    tok = rows["tok_emb.weight"]  # bf16 original → 2 bytes per value before
    assert tok.bytes_before == 64 * 32 * 2 and tok.scheme == "int8"
    gain = rows["blocks.0.attn.q_gain"]
    assert gain.entropy_bits is None and gain.bytes_after == 4 * 2  # #1573: every small tensor fp16 (spec §6)
    totals = report.to_dict()["totals"]
    assert totals["model_bytes"] == len(blob)
    assert totals["code_entropy_bytes"] == round(sum(
        r.entropy_bits * math.prod(r.shape) / 8 for r in report.tensors if r.entropy_bits is not None))
    assert totals["side_bytes"] == sum(r.bytes_after - r.code_bytes for r in report.tensors)
    assert totals["ratio_to_entropy_bound"] == pytest.approx(len(blob) / report.entropy_bound_bytes)
    assert "model bytes" in report.summary()


def test_check_budget_returns_headroom_raises_or_warns():
    cfg = QuantConfig(limit_bytes=1000)
    assert check_budget(999, cfg) == 1 and check_budget(1000, cfg) == 0
    with pytest.raises(BudgetExceededError, match="OVER BUDGET: 1,001 bytes > limit 1,000 by 1 bytes"):
        check_budget(1001, cfg)
    cfg.over_limit = OverLimit.warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_budget(1500, cfg) == -500
    assert len(caught) == 1 and issubclass(caught[0].category, BudgetWarning)
    assert "by 500 bytes" in str(caught[0].message)


def test_estimates_are_refused_only_beyond_their_tolerance():
    """An estimate made before training is refused when over by more than 3% (with over_limit=error);
    less than that only warns, since the written artifact is checked exactly."""
    assert ESTIMATE_TOLERANCE == 0.03
    cfg = QuantConfig(limit_bytes=1_000_000)
    assert check_estimate(999_000, cfg) == 1_000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_estimate(1_030_000, cfg) == -30_000  # exactly 3.0% over: still a warning
    assert len(caught) == 1 and issubclass(caught[0].category, BudgetWarning)
    assert "by 30,000 bytes (3.0%)" in str(caught[0].message)
    with pytest.raises(BudgetExceededError, match=r"by 30,001 bytes \(3.0%\).*over_limit=warn"):
        check_estimate(1_030_001, cfg)
    cfg.over_limit = OverLimit.warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_estimate(2_000_000, cfg) == -1_000_000
    assert len(caught) == 1
