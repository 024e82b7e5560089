"""Training stream and rank split with the official semantics, resume, validation truncation.

Token ids equal their position in the concatenated stream, so every expected value is a position.
"""

from __future__ import annotations

import json

import pytest
import torch

from golf.data.shards import ShardError, check_validation_shards, write_shard
from golf.kernel.data import DistributedTokenLoader, load_validation_tokens

SIZES = (10, 5, 7)  # three shards: positions 0-9, 10-14, 15-21
TOTAL = sum(SIZES)


@pytest.fixture
def shards(tmp_path):
    start = 0
    for i, n in enumerate(SIZES):
        write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", range(start, start + n))
        start += n
    return str(tmp_path / "fineweb_train_*.bin")


def _positions(start, n):
    return [(start + i) % TOTAL for i in range(n)]


def whole_stream(pattern):
    """The whole stream, as one rank of one sees it."""
    return DistributedTokenLoader(str(pattern), 0, 1)


def test_stream_crosses_shards_and_wraps(shards):
    s = whole_stream(shards)
    assert s.take(12).tolist() == list(range(12))
    assert s.take(10).tolist() == list(range(12, 22))
    assert s.take(3).tolist() == [0, 1, 2]  # wrapped to the first shard
    assert s.take(2 * TOTAL).tolist() == _positions(3, 2 * TOTAL)
    assert s.take(0).numel() == 0


def test_two_ranks_take_disjoint_spans_of_one_chunk(shards):
    # global 8 tokens, 2 ranks, 1 micro-step: local = 4, span = 5, chunk = 10 per call
    loaders = [DistributedTokenLoader(shards, r, 2) for r in range(2)]
    expected_starts = [(0, 5), (10, 15), (20, 3)]  # third chunk is 20, 21, then wraps to 0..7
    for start0, start1 in expected_starts:
        for rank, start in ((0, start0), (1, start1)):
            x, y = loaders[rank].next_batch(8, seq_len=2, grad_accum_steps=1)
            span = _positions(start, 5)
            assert x.dtype == torch.int64 and x.shape == (2, 2) and y.shape == (2, 2)
            assert x.flatten().tolist() == span[:-1]
            assert y.flatten().tolist() == span[1:]


def test_grad_accum_divides_the_global_batch(shards):
    loader = DistributedTokenLoader(shards, 1, 2)
    x, y = loader.next_batch(16, seq_len=2, grad_accum_steps=2)  # local = 16 // (2*2) = 4
    assert x.flatten().tolist() == [5, 6, 7, 8] and y.flatten().tolist() == [6, 7, 8, 9]


@pytest.mark.parametrize("steps_before", [1, 2, 3])
def test_resume_continues_at_the_same_token(shards, steps_before):
    a = DistributedTokenLoader(shards, 1, 2)
    for _ in range(steps_before):
        a.next_batch(8, 2, 1)
    state = json.loads(json.dumps(a.state_dict()))  # plain data survives a checkpoint file
    after = [a.next_batch(8, 2, 1) for _ in range(3)]
    b = DistributedTokenLoader(shards, 1, 2)
    b.load_state_dict(state)
    for (xa, ya), (xb, yb) in zip(after, [b.next_batch(8, 2, 1) for _ in range(3)]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_resume_at_the_end_of_a_shard(shards):
    a = whole_stream(shards)
    a.take(10)  # exactly the first shard
    b = whole_stream(shards)
    b.load_state_dict(a.state_dict())
    assert b.take(4).tolist() == a.take(4).tolist() == [10, 11, 12, 13]


def test_resume_refuses_a_changed_shard_set(shards, tmp_path):
    a = whole_stream(shards)
    a.take(12)
    other = tmp_path / "other"
    write_shard(other / "x_000000.bin", range(20))
    write_shard(other / "x_000001.bin", range(20))
    with pytest.raises(ShardError, match=r"cannot resume from \[.fineweb_train_000000.bin., .*\]: the shards are now \['x_000000.bin', 'x_000001.bin'\]"):
        whole_stream(other / "x_*.bin").load_state_dict(a.state_dict())


@pytest.mark.parametrize("seq_len,kept", [(4, 21), (6, 19), (7, 22), (21, 22)])
def test_validation_truncation(shards, seq_len, kept):
    check_validation_shards(shards, seq_len, vocab_size=TOTAL)
    val = load_validation_tokens(shards, seq_len)
    assert val.numel() == kept  # ((22 - 1) // seq_len) * seq_len + 1
    assert val.to(torch.int64).tolist() == list(range(kept))


def test_validation_needs_one_full_sequence(shards):
    with pytest.raises(ShardError, match="hold 22 tokens; need at least seq_len\\+1=23"):
        check_validation_shards(shards, 22, vocab_size=TOTAL)
    with pytest.raises(ShardError, match="token id 21 at position 6 .*vocab_size=21"):
        check_validation_shards(shards, 4, vocab_size=21)
