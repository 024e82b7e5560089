"""Row 4: shards that would hang or kill a run mid-training are refused before training,
with a ShardError naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from golf.data import ShardError, write_shard
from golf.data.shards import HEADER_BYTES, check_shards, check_train_shards


def test_an_empty_training_shard_is_refused_before_the_first_batch(tmp_path):
    empty = write_shard(tmp_path / "fineweb_train_000000.bin", [])  # valid header, count 0
    assert empty.stat().st_size == HEADER_BYTES
    with pytest.raises(ShardError, match="fineweb_train_000000.bin: the header declares 0 tokens"):
        check_train_shards(str(tmp_path / "fineweb_train_*.bin"), 1024)


def test_a_corrupt_second_shard_is_found_before_training(tmp_path):
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(100))
    bad = write_shard(tmp_path / "fineweb_train_000001.bin", np.arange(100))
    with open(bad, "r+b") as f:  # a truncated copy: the header promises more than the file holds
        f.truncate(HEADER_BYTES + 50)
    with pytest.raises(ShardError, match="fineweb_train_000001.bin: file size 1074"):
        check_train_shards(str(tmp_path / "fineweb_train_*.bin"), 1024)  # before the run, not when the stream gets there


def test_every_header_is_checked(tmp_path):
    files = [write_shard(tmp_path / f"s{i}.bin", np.arange(10 + i)) for i in range(3)]
    assert check_shards(files) == [10, 11, 12]
    files[2].write_bytes(b"\0" * HEADER_BYTES)
    with pytest.raises(ShardError, match="s2.bin: wrong magic 0"):
        check_shards(files)
