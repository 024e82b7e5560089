"""The training hot path on CPU: off is absent, the loss in the model's forward, micro-batching that keeps
the gradient, the step flags, and the ``train.micro_batch_tokens`` checks."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from golf.config.errors import ConfigError
from golf.data.shards import write_shard
from golf.kernel.attention import rotary
from golf.kernel.data import DistributedTokenLoader
from golf.kernel.loop import step_batches
from golf.kernel.state import StepFlags
from golf.microbatch import (
    activation_bytes_per_token,
    check_micro_batch_tokens,
    resolve_micro_rows,
)
from golf.model.config_parts import AttentionConfig, ResidualConfig, RopeConfig
from tests.model.lib import build, randomize, tiny


def _rotary(rd: int):
    cfg = tiny(attention=AttentionConfig(rope=RopeConfig(dims=rd)))
    return lambda x: rotary(x, cfg)


def _old_rotary(x: torch.Tensor, rd: int, base: float) -> torch.Tensor:
    """The rotation with an explicit pass-through slice (empty for full RoPE), as before."""
    T = x.size(1)
    inv_freq = 1.0 / (base ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    cos, sin = freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]
    half = rd // 2
    x1, x2, rest = x[..., :half], x[..., half:rd], x[..., rd:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos, rest), dim=-1)


@pytest.mark.parametrize("rd", [8, 4])
def test_rotary_equals_the_rotation_with_a_pass_through_slice(rd):
    x = torch.randn(2, 5, 3, 8)
    assert torch.equal(_rotary(rd)(x), _old_rotary(x, rd, 10000.0))


def test_rotary_hand_computed_case():
    """Position 1, rd=2, base 10000: inv_freq = 1, so (x1, x2) -> (x1 cos1 + x2 sin1, -x1 sin1 + x2 cos1)."""
    x = torch.zeros(1, 2, 1, 2)
    x[0, 1, 0] = torch.tensor([1.0, 2.0])
    c, s = torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(1.0))
    out = _rotary(2)(x)[0, 1, 0]
    assert torch.allclose(out, torch.stack((c + 2 * s, -s + 2 * c)))


def test_ln_scale_off_is_absent_and_the_forward_is_unchanged():
    model = randomize(build(tiny()))
    assert all(b.ln_scale is None for b in model.blocks)
    ids = torch.randint(0, 32, (2, 12))
    former = build(tiny(residual=ResidualConfig(ln_scale=True)))  # the former path: a multiply by 1.0 after both norms
    former.load_state_dict(model.state_dict())
    for b in former.blocks:
        b.ln_scale = 1.0
    assert torch.equal(model(ids), former(ids))


def test_ln_scale_on_keeps_its_factor_except_where_it_is_one():
    model = build(tiny(residual=ResidualConfig(ln_scale=True)))
    assert model.blocks[0].ln_scale is None and model.blocks[3].ln_scale == 0.5


def test_loss_from_the_forward_equals_cross_entropy_of_the_logits():
    model = randomize(build(tiny()))
    ids, targets = torch.randint(0, 32, (3, 10)), torch.randint(0, 32, (3, 10))
    logits = model(ids)
    expected = F.cross_entropy(logits.float().reshape(-1, 32), targets.reshape(-1))
    assert torch.equal(model(ids, targets), expected)


def _loader(tmp_path, n=20_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    write_shard(tmp_path / "train_000000.bin", torch.randint(0, 32, (n,), generator=g).numpy().astype("uint16"))
    return DistributedTokenLoader(str(tmp_path / "train_*.bin"), 0, 1)


def _step_grads(model, batches):
    model.zero_grad(set_to_none=True)
    n = len(batches)
    for x, y in batches:
        (model(x, y) / n).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_micro_batching_keeps_the_official_data_and_gradient(tmp_path):
    """8 official chunks of 2 rows, run as 8, 4, 2 or 1 micro-batches: the same rows, the same gradient."""
    model = randomize(build(tiny()))
    official = _loader(tmp_path)
    parts = [official.next_batch(16 * 8, 8, 8) for _ in range(8)]  # the official loop: one chunk per micro-step
    reference = _step_grads(copy.deepcopy(model), parts)
    for micro_rows in (2, 4, 8, 16):
        batches = step_batches(_loader(tmp_path), 16 * 8, 8, 8, micro_rows, torch.device("cpu"))
        assert len(batches) == 16 // micro_rows
        assert torch.equal(torch.cat([x for x, _ in batches]), torch.cat([x for x, _ in parts]))
        assert torch.equal(torch.cat([y for _, y in batches]), torch.cat([y for _, y in parts]))
        grads = _step_grads(copy.deepcopy(model), batches)
        for k, g in reference.items():
            assert torch.allclose(grads[k], g, rtol=1e-5, atol=1e-7), (micro_rows, k)
        if micro_rows == 2:  # the official split itself: the same arithmetic, bit for bit
            assert all(torch.equal(grads[k], g) for k, g in reference.items())


def test_micro_batch_tokens_checks_name_the_key():
    check_micro_batch_tokens("auto", 524288, 1024, 8)
    check_micro_batch_tokens(131072, 524288, 1024, 1)
    for bad in ("lots", 0, 1000, 3 * 1024):
        with pytest.raises(ConfigError, match="train.micro_batch_tokens"):
            check_micro_batch_tokens(bad, 524288, 1024, 1)


def test_auto_micro_batch_on_cpu_is_the_official_split():
    cfg, model = tiny(), build(tiny())
    kw = dict(arch=cfg, model=model, batch_tokens=4096, seq_len=64, world_size=2, accum=4,
              device=torch.device("cpu"), bf16=False)
    assert resolve_micro_rows("auto", **kw) == 4096 // (2 * 64 * 4)
    assert resolve_micro_rows("1024", **kw) == 16


def test_activation_estimate_grows_with_width_depth_and_vocabulary():
    base = activation_bytes_per_token(tiny(), 4, bf16=True)
    assert activation_bytes_per_token(tiny(), 8, bf16=True) > base
    assert activation_bytes_per_token(dataclasses.replace(tiny(), vocab_size=64), 4, bf16=True) > base
    assert activation_bytes_per_token(tiny(), 4, bf16=False) > base
    # 4 blocks of d=16, kv=8, hidden=32: 1.15 * (4 * (16*16 + 2*(64 + 32 + 96)) + 32 * 10) bytes
    assert base == int(1.15 * (4 * (16 * 16 + 2 * (4 * 16 + 4 * 8 + 3 * 32)) + 32 * 10))


def test_step_flags_on_cpu_agree_at_once_and_carry_the_device_flag():
    flags = StepFlags(torch.device("cpu"))
    assert flags.lag == 0
    assert flags.exchange(1.5, 0.0, 1.0, device_flag=torch.tensor(False)) == [1.5, 0.0, 1.0, 0.0]
    assert flags.exchange(2.5, 1.0, 0.0, device_flag=torch.tensor(True)) == [2.5, 1.0, 0.0, 1.0]
    assert flags.projected_clock() == 2.5  # no lag: the agreed clock itself
    assert flags.flush() is None
