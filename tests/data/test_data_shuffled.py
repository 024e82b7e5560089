"""The shuffled-sequence loader of PR #1493 (frontier spec §2.2) against its description, step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf.data.config import DataConfig, ShuffleConfig
from golf.data.shards import ShardError, check_train_shards, write_shard
from golf.kernel.data import DistributedTokenLoader, ShuffledSequenceLoader, build_train_loader

T = 4
UNSEEDED = ShuffleConfig()
SIZES = (23, 30, 17, 41, 9)  # tokens per shard; token value = shard * 1000 + position


@pytest.fixture
def shards(tmp_path):
    for s, n in enumerate(SIZES):
        write_shard(tmp_path / f"fineweb_train_{s:06d}.bin", np.arange(n) + 1000 * s)
    return str(tmp_path / "fineweb_train_*.bin")


def _decode(row):
    """(shard, start) of a window whose tokens are shard * 1000 + position."""
    return int(row[0]) // 1000, int(row[0]) % 1000


def _expected_batches(rank, world, rows, batches):
    """The spec's procedure written out with numpy: PCG64(rank); per own shard one phase draw then one
    permutation; each row picks a shard with p = remaining / total and pops its last start."""
    rng = np.random.Generator(np.random.PCG64(rank))
    own = list(range(len(SIZES)))[rank::world]

    def epoch(n):
        max_phase = min(T - 1, max(0, n - T - 1))
        phase = int(rng.integers(max_phase + 1)) if max_phase > 0 else 0
        return (phase + rng.permutation((n - 1 - phase) // T) * T).tolist()

    starts = [epoch(SIZES[s]) for s in own]
    out = []
    for _ in range(batches):
        batch = []
        for _ in range(rows):
            remaining = np.array([len(x) for x in starts], dtype=np.float64)
            if remaining.sum() <= 0:
                starts = [epoch(SIZES[s]) for s in own]
                remaining = np.array([len(x) for x in starts], dtype=np.float64)
            k = int(rng.choice(len(own), p=remaining / remaining.sum()))
            batch.append((own[k], starts[k].pop()))
        out.append(batch)
    return out


@pytest.mark.parametrize("rank,world", [(0, 1), (0, 2), (1, 2)])
def test_batches_follow_the_procedure(shards, rank, world):
    loader = ShuffledSequenceLoader(shards, rank, world, T, UNSEEDED)
    rows = 3
    for expected in _expected_batches(rank, world, rows, batches=12):  # several refills of the epoch
        x, y = loader.next_batch(rows * T * world, T, 1)
        assert x.shape == y.shape == (rows, T) and x.dtype == torch.int64
        assert [_decode(r) for r in x] == expected
        assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:, -1], x[:, -1] + 1)  # T + 1 consecutive tokens


def test_one_epoch_is_every_window_of_the_rank_once(shards):
    loader = ShuffledSequenceLoader(shards, 1, 2, T, UNSEEDED)
    total = sum(len(s) for s in loader.starts)
    seen = [_decode(r) for _ in range(total) for r in loader.next_batch(T * 2, T, 1)[0]]
    assert len(set(seen)) == total  # without replacement
    assert {s for s, _ in seen} == {1, 3}  # rank 1 of 2 owns shards 1 and 3 only
    for s in (1, 3):
        starts = sorted(p for t, p in seen if t == s)
        phase = starts[0]
        assert 0 <= phase <= T - 1 and starts == list(range(phase, phase + T * len(starts), T))
        assert starts[-1] + T + 1 <= SIZES[s] and len(starts) == (SIZES[s] - 1 - phase) // T


def test_order_depends_on_the_rank_only_unless_seeded(shards):
    a, b = ShuffledSequenceLoader(shards, 0, 1, T, UNSEEDED), ShuffledSequenceLoader(shards, 0, 1, T, UNSEEDED)
    torch.manual_seed(123)  # the run's seed plays no part
    assert torch.equal(a.next_batch(16, T, 1)[0], b.next_batch(16, T, 1)[0])
    c = ShuffledSequenceLoader(shards, 0, 1, T, ShuffleConfig(seed=7))
    d = ShuffledSequenceLoader(shards, 0, 1, T, ShuffleConfig(seed=7))
    xc = c.next_batch(64, T, 1)[0]
    assert torch.equal(xc, d.next_batch(64, T, 1)[0])
    assert not torch.equal(xc, ShuffledSequenceLoader(shards, 0, 1, T, UNSEEDED).next_batch(64, T, 1)[0])


def test_resume_replays_the_same_sequences(shards):
    loader = ShuffledSequenceLoader(shards, 0, 1, T, UNSEEDED)
    loader.next_batch(5 * T, T, 1)
    state = loader.state_dict()
    ahead = [loader.next_batch(5 * T, T, 1)[0] for _ in range(6)]
    other = ShuffledSequenceLoader(shards, 0, 1, T, UNSEEDED)
    other.load_state_dict(state)
    assert all(torch.equal(a, other.next_batch(5 * T, T, 1)[0]) for a in ahead)
    with pytest.raises(ShardError, match="cannot resume from"):  # rank 1 of 2 reads other shards
        ShuffledSequenceLoader(shards, 1, 2, T, UNSEEDED).load_state_dict(state)


def test_shards_the_loader_cannot_use_are_refused_before_it_starts(shards):
    check_train_shards(shards, 8192, world_size=5, seq_len=T, shuffled=True)
    with pytest.raises(ShardError, match="needs at least 8"):
        check_train_shards(shards, 8192, world_size=8, seq_len=T, shuffled=True)
    with pytest.raises(ShardError, match="cannot hold one sequence"):
        check_train_shards(shards, 8192, seq_len=16, shuffled=True)  # shard 4 has 9 tokens
    check_train_shards(shards, 8192, world_size=8, seq_len=16)  # the sequential stream needs neither
    with pytest.raises(ShardError, match="outside the vocabulary"):
        check_train_shards(shards, 20, seq_len=T, shuffled=True)


def test_the_data_config_chooses_the_loader(shards):
    seq = build_train_loader(DataConfig(vocab_size=8192), shards, 0, 1, T)
    shuf = build_train_loader(DataConfig(vocab_size=8192, shuffle=ShuffleConfig()), shards, 0, 1, T)
    assert isinstance(seq, DistributedTokenLoader) and isinstance(shuf, ShuffledSequenceLoader)
