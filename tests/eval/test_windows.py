"""Standard and sliding evaluation: coverage, exact byte accounting, and agreement with brute force."""

from __future__ import annotations

import math

import pytest
import torch

from golf.dist import DistInfo
from golf.eval import EvalConfig
from golf.kernel.evaluate import evaluate_sliding, evaluate_standard, sliding_windows
from golf.kernel.evaluator import build_evaluator

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def context_start(j: int, n: int, w: int, s: int) -> int:
    """Where the context of target j (1-based, predicted from tokens[:j]) starts, by the definition."""
    if j <= w or n <= w:
        return 0
    k = math.ceil((j - w) / s)
    ws = k * s
    return ws if ws + w <= n else n - w


@pytest.mark.parametrize("n,w,s", [(10, 4, 2), (11, 4, 2), (17, 8, 3), (64, 16, 16), (5, 8, 2), (100, 32, 1)])
def test_sliding_windows_score_every_target_once_with_the_defined_context(n, w, s):
    counts = [0] * (n + 1)
    for start, length, offset in sliding_windows(n, w, s):
        assert 0 <= start and start + length <= n and length <= w
        for pos in range(offset, length):
            j = start + pos + 1  # target index
            counts[j] += 1
            assert start == context_start(j, n, w, s)
            if j > w:
                assert j - start >= w - s + 1  # at least W-S tokens before the scored position
    assert counts[1:] == [1] * n


def uniform_forward(vocab: int):
    return lambda x: torch.zeros(*x.shape, vocab)


def test_uniform_model_bpb_equals_hand_computation(val_prefix_shard, sp_model_path):
    """A uniform predictor has loss ln(V) per target, so val_bpb = log2(V) * targets / bytes."""
    from golf.data import read_shard
    from golf.kernel.data import byte_tables, piece_bytes

    tokens = read_shard(val_prefix_shard).to(torch.int64)
    nbytes = piece_bytes(byte_tables(sp_model_path, 1024), tokens)
    res = evaluate_standard(uniform_forward(1024), tokens, nbytes, seq_len=1, batch_tokens=65536, dist=CPU)
    assert res.val_tokens == 1_040_297
    assert res.val_bytes == 2_504_867  # the byte count of the official LUT rule on this prefix
    # the per-target nll is ln(1024) rounded to float32; the sums are float64
    assert res.val_loss == pytest.approx(math.log(1024), rel=1e-7)
    assert res.val_bpb == pytest.approx(10.0 * 1_040_297 / 2_504_867, rel=1e-7)


class TinyCausalLM(torch.nn.Module):
    """A real (small) causal model: embedding, causal depthwise convolution over 3 tokens, head."""

    def __init__(self, vocab: int = 1024, dim: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, dim)
        self.conv = torch.nn.Conv1d(dim, dim, 3, groups=dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, x):
        h = self.emb(x).transpose(1, 2)  # [B, D, T]
        h = self.conv(torch.nn.functional.pad(h, (2, 0))).transpose(1, 2)  # causal: left padding only
        # position-dependent term: the same target scores differently with a different context length
        pos = torch.arange(x.size(1)).float().unsqueeze(-1) / 7.0
        return self.head(torch.tanh(h + pos))


def brute_force_sliding(model, tokens, w, s, tables):
    """Target by target: its nll given its defined context, and its bytes read off the byte tables."""
    base, space, boundary = tables
    n = tokens.numel() - 1
    nll, nbytes = 0.0, 0
    for j in range(1, n + 1):
        start = context_start(j, n, w, s)
        ctx = tokens[start:j].unsqueeze(0)
        logits = model(ctx)[0, -1]
        nll += torch.nn.functional.cross_entropy(logits.double().unsqueeze(0), tokens[j : j + 1]).item()
        nbytes += int(base[tokens[j]]) + int(space[tokens[j]] and not boundary[tokens[j - 1]])
    return nll / n, nll / (math.log(2) * nbytes), nbytes


@pytest.mark.parametrize("n,w,s", [(150, 32, 8), (161, 32, 8), (40, 64, 8)])
def test_sliding_equals_brute_force(val_prefix_shard, sp_model_path, n, w, s):
    from golf.data import read_shard
    from golf.kernel.data import byte_tables, piece_bytes

    tokens = read_shard(val_prefix_shard)[: n + 1].to(torch.int64)
    tables = byte_tables(sp_model_path, 1024)
    model = TinyCausalLM().eval()
    with torch.no_grad():
        res = evaluate_sliding(model, tokens, piece_bytes(tables, tokens), seq_len=w, stride=s, batch_windows=3,
                               dist=CPU)
        loss, bpb, total = brute_force_sliding(model, tokens, w, s, tables)
    assert res.val_tokens == n
    assert res.val_bytes == total
    assert res.val_loss == pytest.approx(loss, rel=1e-5)
    assert res.val_bpb == pytest.approx(bpb, rel=1e-5)


def test_sliding_with_stride_equal_window_is_standard(val_prefix_shard, sp_model_path):
    from golf.data import read_shard
    from golf.kernel.data import byte_tables, piece_bytes

    w = 32
    tokens = read_shard(val_prefix_shard)[: 10 * w + 1].to(torch.int64)
    nbytes = piece_bytes(byte_tables(sp_model_path, 1024), tokens)
    model = TinyCausalLM().eval()
    std = evaluate_standard(model, tokens, nbytes, seq_len=w, batch_tokens=4 * w, dist=CPU)
    sld = evaluate_sliding(model, tokens, nbytes, seq_len=w, stride=w, batch_windows=4, dist=CPU)
    assert sld.val_tokens == std.val_tokens == 10 * w
    assert sld.val_bytes == std.val_bytes
    assert sld.val_bpb == pytest.approx(std.val_bpb, rel=1e-6)


def test_max_tokens_limits_the_scored_targets(val_prefix_shard, sp_model_path):
    from golf.data import read_shard
    from golf.kernel.data import byte_tables, piece_bytes

    tokens = read_shard(val_prefix_shard)[:4097].to(torch.int64)
    nbytes = piece_bytes(byte_tables(sp_model_path, 1024), tokens)
    cfg = EvalConfig(kind="sliding", seq_len=64, stride=16, max_tokens=1000)
    res = build_evaluator(cfg, tokens=tokens, nbytes=nbytes, seq_len=64, dist=CPU)(torch.nn.Module(), forward=uniform_forward(1024))
    assert res.val_tokens == 1000
