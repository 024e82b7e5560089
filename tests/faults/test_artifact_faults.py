"""Row 12 and the crafted header: artifacts that would exhaust memory or escape ArtifactError."""

from __future__ import annotations

import hashlib
import json
import resource
import struct
import time
import zlib

import pytest

from golf.kernel.artifact import frame_body
from golf.quant.config import Compressor, QuantConfig
from golf.quant.validate_artifact import FRAME, MAGIC, VERSION, ArtifactError, check_body, decompress, unframe

COMPRESSOR_IDS = {Compressor.zlib: 0, Compressor.zstd: 1, Compressor.lzma: 2, Compressor.brotli: 3}
_FRAME = FRAME


def zlib_bomb(mib: int) -> bytes:
    """A zlib stream of ``mib`` MiB of zeros, built from one compressed MiB: a full flush byte-aligns
    the deflate stream and resets its state, so the same block can be repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    body = block * mib + b"\x03\x00"  # then an empty final block
    return b"\x78\xda" + body + struct.pack(">I", 1)  # zlib header, deflate, adler32 (never reached)


def test_a_zlib_bomb_fails_at_the_declared_size(tmp_path):
    bomb = zlib_bomb(2048)  # 2 GiB of zeros in ~2 MB
    assert 1 << 20 < len(bomb) < 3 << 20
    declared = 16_000_000
    blob = _FRAME.pack(MAGIC, VERSION, COMPRESSOR_IDS[Compressor.zlib], len(bomb), declared,
                       hashlib.sha256(b"").digest()) + bomb
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ArtifactError, match=f"more than the {declared} bytes the frame declares"):
        unframe(blob)
    assert time.perf_counter() - t0 < 5.0
    grew_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grew_kb < 200_000  # at most the declared size was ever decoded (the bomb holds 2 GiB)


@pytest.mark.parametrize("compressor", list(Compressor))
def test_every_codec_stops_at_the_declared_size(compressor):
    body = bytes(1 << 20)
    packed = frame_body(body, QuantConfig(compressor=compressor, level=1))[_FRAME.size:]
    assert decompress(packed, compressor.value, len(body)) == body
    with pytest.raises(ArtifactError, match="more than the 1000 bytes"):
        decompress(packed, compressor.value, 1000)
    with pytest.raises(ArtifactError):
        decompress(packed[: len(packed) // 2], compressor.value, len(body))  # truncated
    with pytest.raises(ArtifactError):
        decompress(packed + b"trailing", compressor.value, len(body))


def body_with(tensors: list[dict], payload: bytes) -> bytes:
    header = {"format": "golf-quant", "version": 1, "byteorder": "little", "payload_bytes": len(payload),
              "tensors": tensors}
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + payload


@pytest.mark.parametrize("shape", [[2**62, 4], [2**31, 2**31, 2**31], [0, 2**70]])
def test_element_counts_overflowing_int64_are_an_artifact_error(shape):
    payload = bytes(64)
    entry = {"name": "w", "dtype": "float32", "scheme": "fp32", "shape": shape, "enc": "tensor",
             "store_dtype": "float32", "data": [0, 64]}
    with pytest.raises(ArtifactError, match="more elements than the 64-byte payload can hold"):
        check_body(body_with([entry], payload))
    entry = {"name": "w", "dtype": "float32", "scheme": "int8", "shape": shape, "enc": "int", "bits": 8,
             "lo": -127, "hi": 127, "packed": False, "scale_dtype": "float16", "scale_shape": [4],
             "codes": [0, 60], "scale": [60, 4]}
    with pytest.raises(ArtifactError):
        check_body(body_with([entry], payload))
