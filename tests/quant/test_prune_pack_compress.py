"""Pruning, bit packing and compressors: each stage alone (spec §2.21, §2.22)."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.kernel.artifact import frame_body, pack_codes, unpack_codes
from golf.kernel.quantize import prune_tensor
from golf.quant.config import Compressor, PruneConfig, QuantConfig
from golf.quant.routing import prune_table, prune_targets
from golf.quant.validate_artifact import FRAME_BYTES, ArtifactError, check_body, decompress
from tests.helpers import compose_config, roles_by_name


def packed_nbytes(n: int, bits: int) -> int:
    return (n * bits + 7) // 8


def prune_state_dict(sd, cfg: PruneConfig, roles):
    """The kernel's pruning of the tensors the lab's table selects."""
    targets = prune_table(sd, QuantConfig(prune=cfg), roles)
    return {name: prune_tensor(t, cfg.fraction) if name in targets else t for name, t in sd.items()}


def compress(data: bytes, compressor: Compressor, level: int) -> bytes:
    return frame_body(data, QuantConfig(compressor=compressor, level=level))[FRAME_BYTES:]


def test_prune_zeroes_exactly_the_intended_fraction():
    # 101 distinct magnitudes: the 0.08-quantile is the 9th smallest |w| (0.08·100 = 8 exactly), and
    # entries strictly below it — the 8 smallest — become zero.
    mags = torch.randperm(101, generator=torch.Generator().manual_seed(0)).float() + 1
    signs = torch.where(torch.arange(101) % 2 == 0, 1.0, -1.0)
    w = (mags * signs).reshape(1, 101)
    pruned = prune_tensor(w, 0.08)
    zeroed = (pruned == 0) & (w != 0)
    assert int(zeroed.sum()) == 8
    assert set(w[zeroed].abs().tolist()) == set(range(1, 9))
    assert torch.equal(pruned[~zeroed], w[~zeroed])


def test_prune_state_dict_only_touches_large_matrices():
    g = torch.Generator().manual_seed(0)
    sd = {"big": torch.randn(100, 100, generator=g), "small": torch.randn(10, 10, generator=g),
          "vec": torch.randn(20000, generator=g), "ints": torch.arange(20000).reshape(200, 100)}
    roles = roles_by_name(sd, kinds={"big": "matrix", "small": "matrix", "vec": "control"})
    out = prune_state_dict(sd, PruneConfig(fraction=0.25, select="ndim=2 & numel>1000"), roles)
    assert int((out["big"] == 0).sum()) == 2500  # 0.25·9999 = 2499.75 → 2500 entries below the threshold
    for name in ("small", "vec", "ints"):
        assert torch.equal(out[name], sd[name])
    assert int((sd["big"] == 0).sum()) == 0  # the input is not modified


def test_the_default_prune_selection_is_every_matrix_over_65536_elements_by_role():
    """#295's targets: the 2-D tensors of more than 65,536 elements (embedding and MLP/attention matrices),
    nothing smaller, no vector, whatever their kind."""
    sd = {"blocks.0.mlp.fc.weight": torch.zeros(512, 256), "blocks.0.attn.c_q.weight": torch.zeros(256, 256),
          "tok_emb.weight": torch.zeros(1024, 512), "bigram.embed.weight": torch.zeros(4096, 16),
          "blocks.0.attn_scale": torch.zeros(70_000)}
    roles = roles_by_name(sd, kinds={"bigram.embed.weight": "table", "blocks.0.attn_scale": "control"})
    assert prune_targets(PruneConfig(), roles) == {"blocks.0.mlp.fc.weight", "tok_emb.weight"}
    only_mlp = PruneConfig(select="part=mlp")
    assert prune_targets(only_mlp, roles) == {"blocks.0.mlp.fc.weight"}
    out = prune_state_dict({k: torch.randn(v.shape) for k, v in sd.items()}, only_mlp, roles)
    assert int((out["blocks.0.mlp.fc.weight"] == 0).sum()) > 0 and int((out["tok_emb.weight"] == 0).sum()) == 0


def test_a_bad_prune_selection_is_refused_at_validation_naming_its_key():
    with pytest.raises(ConfigError, match=r"^quant\.prune\.select='kind=matrics': .*unknown kind"):
        load_config(compose_config(["experiment=demo", "quant=pr295", "quant.prune.select='kind=matrics'"]))


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("full", [True, False])
def test_bit_packing_round_trips_every_value(bits, full):
    hi = (1 << (bits - 1)) - 1
    lo = -hi - 1 if full else -hi
    values = np.arange(lo, hi + 1, dtype=np.int8)
    codes = np.concatenate([values, values[::-1], values[:3]])  # a length that is not a multiple of 8
    buf = pack_codes(codes, lo, bits)
    assert len(buf) == packed_nbytes(codes.size, bits) == (codes.size * bits + 7) // 8
    assert np.array_equal(unpack_codes(buf, lo, bits, codes.size), codes)


def test_bit_layouts_match_the_records():
    # int6: 4 values in 3 bytes; int5: 8 in 5; int4: 2 in 1 — value i at bits [i·k, (i+1)·k), LSB first
    assert len(pack_codes(np.zeros(4, np.int8), -32, 6)) == 3
    assert len(pack_codes(np.zeros(8, np.int8), -16, 5)) == 5
    assert pack_codes(np.array([-8 + 0x3, -8 + 0xA], np.int8), -8, 4) == bytes([0xA3])
    u = [1, 2, 3, 63]  # offsets already applied (lo = 0 for this check)
    word = sum(v << (6 * i) for i, v in enumerate(u))
    assert pack_codes(np.array(u, np.int8), 0, 6) == word.to_bytes(3, "little")


def test_the_reader_refuses_packed_codes_of_the_wrong_length_or_range():
    """The kernel packs what its quantizer made; the strict reader checks a packed stream's length and range."""
    def body(codes: bytes, n: int) -> bytes:
        entry = {"name": "w", "dtype": "float32", "scheme": "int5", "shape": [1, n], "enc": "int", "bits": 5,
                 "lo": -15, "hi": 15, "packed": True, "scale_dtype": "float16", "scale_shape": [1],
                 "codes": [0, len(codes)], "scale": [len(codes), 2]}
        payload = codes + b"\x00\x3c"
        head = json.dumps({"format": "golf-quant", "version": 1, "byteorder": "little",
                           "payload_bytes": len(payload), "tensors": [entry]}).encode()
        return struct.pack("<I", len(head)) + head + payload

    assert check_body(body(pack_codes(np.arange(-15, -7, dtype=np.int8), -15, 5), 8)) == {"w": [1, 8]}
    with pytest.raises(ArtifactError, match="holds 4 bytes, its shape and dtype need 5"):
        check_body(body(b"\x00" * 4, 8))
    with pytest.raises(ArtifactError, match=r"codes outside \[-15, 15\]"):
        check_body(body(pack_codes(np.array([16] * 8, np.int8), -15, 5), 8))  # u = 31 → code 16


def test_large_streams_cross_chunk_boundaries():
    codes = np.random.default_rng(0).integers(-16, 16, size=(1 << 22) + 13).astype(np.int8)
    assert np.array_equal(unpack_codes(pack_codes(codes, -16, 5), -16, 5, codes.size), codes)


@pytest.mark.parametrize("compressor, level", [(Compressor.zlib, 9), (Compressor.zstd, 22), (Compressor.zstd, 3),
                                               (Compressor.lzma, 6), (Compressor.lzma, 9)])
def test_compressors_round_trip_bytes_exactly(compressor, level):
    data = os.urandom(5000) + bytes(20000) + bytes(range(256)) * 40 + b""
    packed = compress(data, compressor, level)
    assert decompress(packed, compressor.value, len(data)) == data
    assert len(packed) < len(data)
    assert decompress(compress(b"", compressor, level), compressor.value, 0) == b""


@pytest.mark.parametrize("compressor", list(Compressor))
def test_corrupt_or_truncated_streams_raise(compressor):
    data = bytes(range(256)) * 64
    packed = compress(data, compressor, 6)
    with pytest.raises(ArtifactError):
        decompress(packed[: len(packed) // 2], compressor.value, len(data))
    with pytest.raises(ArtifactError):
        decompress(packed, compressor.value, len(data) + 1)
