"""The document-packed training loader (data.packing; frontier-1855 §2.5) on a hand-built 3-shard case:
its rows, its cursor at a shard change, the shard it passes over, the wrap-around, and its resume."""

from __future__ import annotations

import pytest
import torch

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.data.shards import ShardError, check_packed_shards, write_shard
from golf.kernel.data import DocumentPackingLoader, build_train_loader
from tests.helpers import TINY, compose_config

#            BOS at 1                     BOS at 5                       BOS at 11
SHARD0 = [5, 1, 10, 11, 12, 1, 13, 14, 15, 16, 17, 1, 18, 19]
SHARD1 = [20, 21, 1, 22, 23, 24, 1, 25, 26, 27, 28, 29]  # first BOS at 2
SHARD2 = [40, 1, 41, 42]  # too short for a step of 2 x 4 tokens from its BOS: passed over
WORLD, LOCAL = 2, 3  # rows of 3 inputs: each rank takes 4 tokens, a step 8


@pytest.fixture
def shards(tmp_path):
    for i, tokens in enumerate((SHARD0, SHARD1, SHARD2)):
        write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", tokens)
    return str(tmp_path / "fineweb_train_*.bin")


def rows(loader, steps):
    out = []
    for _ in range(steps):
        x, y = loader.next_batch(WORLD * LOCAL, 1, 1)
        assert x.shape == y.shape == (1, LOCAL) and x.dtype == torch.int64
        assert torch.equal(x[0, 1:], y[0, :-1])  # targets are the inputs shifted by one
        out.append(x[0].tolist() + y[0, -1:].tolist())  # the rank's whole span
    return out


def test_rows_cursor_and_shard_changes_by_hand(shards):
    rank0 = rows(DocumentPackingLoader(shards, 0, WORLD, 1), 4)
    rank1 = rows(DocumentPackingLoader(shards, 1, WORLD, 1), 4)
    # step 1: shard 0 from its first BOS (position 1), the ranks side by side
    assert (rank0[0], rank1[0]) == ([1, 10, 11, 12], [1, 13, 14, 15])
    # step 2: 9 + 8 > 14 tokens: shard 0's tail [16, 17, 1, 18, 19] is dropped, shard 1 entered at its BOS
    assert (rank0[1], rank1[1]) == ([1, 22, 23, 24], [1, 25, 26, 27])
    # step 3: shard 1 is used up, shard 2 cannot hold a step from its BOS, so back to shard 0's first BOS
    assert (rank0[2], rank1[2]) == (rank0[0], rank1[0])
    assert (rank0[3], rank1[3]) == (rank0[1], rank1[1])


def test_every_rank_reads_the_same_order_whatever_the_seed(shards):
    """The loader takes no seed; its state after a step says where both ranks are."""
    a, b = DocumentPackingLoader(shards, 0, WORLD, 1), DocumentPackingLoader(shards, 1, WORLD, 1)
    rows(a, 1), rows(b, 1)
    assert a.state_dict() == b.state_dict() == {"files": ["fineweb_train_000000.bin", "fineweb_train_000001.bin",
                                                          "fineweb_train_000002.bin"], "shard": 0, "pos": 9}


@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_resume_is_bit_identical(shards, after):
    straight = DocumentPackingLoader(shards, 1, WORLD, 1)
    rows(straight, after)
    state = straight.state_dict()
    expected = rows(straight, 5)
    resumed = DocumentPackingLoader(shards, 1, WORLD, 1)
    rows(resumed, 2)  # wherever it is, the state puts it back
    resumed.load_state_dict(state)
    assert rows(resumed, 5) == expected


def test_resume_onto_other_shards_is_refused(shards, tmp_path):
    loader = DocumentPackingLoader(shards, 0, WORLD, 1)
    state = loader.state_dict()
    state["files"] = state["files"][:2]
    with pytest.raises(ShardError, match="cannot resume"):
        loader.load_state_dict(state)


def test_built_from_the_data_config(shards):
    from golf.data.config import DataConfig

    loader = build_train_loader(DataConfig(packing=1), shards, 0, WORLD, seq_len=2)
    assert isinstance(loader, DocumentPackingLoader)
    # a row of local = global / (world x accum) tokens, whatever seq_len: 8 / (2 x 2) = 2 inputs per call
    x, _ = loader.next_batch(8, 2, 2)
    assert x.tolist() == [[1, 10]]


def test_the_lab_refuses_shards_the_loader_cannot_use(shards, tmp_path):
    check_packed_shards(shards, 1, WORLD * (LOCAL + 1))
    with pytest.raises(ShardError, match="no training shard .* holds a packed step of 14 tokens"):
        check_packed_shards(shards, 1, 14)  # shard 0 holds 13 tokens from its first BOS
    write_shard(tmp_path / "fineweb_train_000003.bin", [7, 8, 9])
    with pytest.raises(ShardError, match="fineweb_train_000003.bin: no document start"):
        check_packed_shards(shards, 1, 8)


def test_config_checks():
    cfg = load_config(compose_config([*TINY, "+data.packing={}"]))
    assert cfg.data.packing is not None and cfg.data.bos_id == cfg.arch.bos_id == 1
    with pytest.raises(ConfigError, match="data.shuffle=.*cannot be combined with data.packing"):
        load_config(compose_config([*TINY, "+data.packing={}", "+data.shuffle={}"]))
    with pytest.raises(ConfigError, match="train.micro_batch_tokens=.*must be auto with data.packing"):
        load_config(compose_config([*TINY, "+data.packing={}", "train.micro_batch_tokens=128"]))
    with pytest.raises(ConfigError, match="ntk_reference_len=.*every packed training row of 512 tokens"):
        load_config(compose_config([*TINY, "+data.packing={}", "arch.attention.rope.ntk_reference_len=256"]))
