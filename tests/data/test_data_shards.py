"""The official shard format: every rejection, the round trip, atomic writes, globbing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf.data.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    ShardError,
    list_shards,
    read_header,
    read_shard,
    write_shard,
    write_split_shards,
)


def _raw_shard(path, tokens, magic=SHARD_MAGIC, version=1, num_tokens=None, extra=b""):
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, len(tokens) if num_tokens is None else num_tokens
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes() + extra)
    return path


def test_layout_is_header_of_256_int32_then_uint16(tmp_path):
    path = write_shard(tmp_path / "s.bin", [1, 2, 65535])
    raw = path.read_bytes()
    assert len(raw) == 1024 + 2 * 3
    assert np.frombuffer(raw[:12], dtype="<i4").tolist() == [20240520, 1, 3]
    assert not any(raw[12:1024])
    assert raw[1024:] == bytes([1, 0, 2, 0, 0xFF, 0xFF])  # little-endian uint16


@pytest.mark.parametrize("tokens", [[0, 1, 7, 1023], np.arange(5, dtype=np.int64), torch.tensor([3, 4, 5]),
                                    torch.tensor([9, 65535], dtype=torch.int32).to(torch.uint16)])
def test_round_trip(tmp_path, tokens):
    path = write_shard(tmp_path / "s.bin", tokens)
    got = read_shard(path)
    assert got.dtype == torch.uint16
    expected = tokens.to(torch.int64) if isinstance(tokens, torch.Tensor) else torch.as_tensor(np.asarray(tokens))
    assert got.to(torch.int64).tolist() == expected.tolist()
    assert read_header(path) == len(expected)


def test_empty_shard_round_trips(tmp_path):
    assert read_shard(write_shard(tmp_path / "e.bin", [])).numel() == 0


def test_too_short_for_header(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(ShardError, match=r"short\.bin: 100 bytes is too short"):
        read_shard(path)


def test_wrong_magic(tmp_path):
    path = _raw_shard(tmp_path / "m.bin", [1, 2], magic=12345)
    with pytest.raises(ShardError, match=r"m\.bin: wrong magic 12345 \(expected 20240520\)"):
        read_shard(path)


def test_wrong_version(tmp_path):
    path = _raw_shard(tmp_path / "v.bin", [1, 2], version=2)
    with pytest.raises(ShardError, match=r"v\.bin: unsupported shard version 2"):
        read_shard(path)


@pytest.mark.parametrize("num_tokens,extra", [(5, b""), (2, b"\0\0")])
def test_size_disagrees_with_header(tmp_path, num_tokens, extra):
    path = _raw_shard(tmp_path / "z.bin", [1, 2, 3], num_tokens=num_tokens, extra=extra)
    actual = HEADER_BYTES + 6 + len(extra)
    with pytest.raises(ShardError, match=rf"z\.bin: file size {actual} != {1024 + 2 * num_tokens}"):
        read_shard(path)


def test_token_outside_vocab_names_id_position_and_vocab(tmp_path):
    path = write_shard(tmp_path / "t.bin", [5, 1023, 1024, 2000])
    assert read_shard(path, vocab_size=2001).numel() == 4
    with pytest.raises(ShardError, match=r"t\.bin: token id 1024 at position 2 .*vocab_size=1024"):
        read_shard(path, vocab_size=1024)


def test_missing_file(tmp_path):
    with pytest.raises(ShardError, match="nope.bin: cannot read shard"):
        read_shard(tmp_path / "nope.bin")


@pytest.mark.parametrize("tokens,bad", [([1, -1], "token id -1 at position 1"), ([70000], "token id 70000 at position 0"),
                                        (np.array([1.5]), "must be integers")])
def test_write_rejects_bad_ids_and_leaves_nothing(tmp_path, tokens, bad):
    with pytest.raises(ShardError, match=bad):
        write_shard(tmp_path / "w.bin", tokens)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_replace(tmp_path):
    path = write_shard(tmp_path / "a.bin", [1, 2, 3])
    write_shard(path, [4])
    assert read_shard(path).tolist() == [4]
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temporary left behind


def test_split_shards_cut_at_shard_tokens(tmp_path):
    files = write_split_shards(np.arange(10), tmp_path, "train", 4)
    assert [f.name for f in files] == ["fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin"]
    assert [read_shard(f).tolist() for f in files] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_list_shards_sorted_and_empty_glob(tmp_path):
    for name in ["b_000002.bin", "b_000000.bin", "b_000001.bin"]:
        write_shard(tmp_path / name, [1])
    assert [p.name for p in list_shards(tmp_path / "b_*.bin")] == ["b_000000.bin", "b_000001.bin", "b_000002.bin"]
    with pytest.raises(ShardError, match=r"no shard files match .*nothing_\*\.bin"):
        list_shards(tmp_path / "nothing_*.bin")
