"""Byte shuffle: regroup a byte stream by position modulo a stride before entropy coding.

Used by the #1394 lineage and the 2026-04-09 record (#1493, spec §5.5) in front of Brotli: with int8
codes next to fp16 scales, the high and low bytes of 2-byte values land in separate runs, which a
context-modelling coder compresses better. Layout for stride ``n`` over bytes ``b``:

    b"BSHF" | n (one byte) | b[0::n] | b[1::n] | ... | b[n-1::n]

so for n = 2 the even-offset bytes (⌈len/2⌉ of them) come first, then the odd-offset ones. The
inverse reads the stride from the stream itself. It interacts only with :mod:`golf.quant.container`,
which records in the artifact frame whether the body was shuffled.
"""

from __future__ import annotations

import numpy as np

SHUFFLE_MAGIC = b"BSHF"
HEADER_BYTES = len(SHUFFLE_MAGIC) + 1


class ShuffleError(ValueError):
    """A shuffled stream is malformed (bad magic or stride)."""


def byte_shuffle(data: bytes, stride: int) -> bytes:
    """``data`` regrouped by offset modulo ``stride``, behind the 5-byte header."""
    if not 1 <= stride <= 255:
        raise ValueError(f"byte shuffle stride must be in [1, 255], got {stride}")
    arr = np.frombuffer(data, dtype=np.uint8)
    return SHUFFLE_MAGIC + bytes([stride]) + b"".join(arr[k::stride].tobytes() for k in range(stride))


def byte_unshuffle(data: bytes) -> bytes:
    """The original bytes of a :func:`byte_shuffle` stream."""
    if len(data) < HEADER_BYTES or data[:4] != SHUFFLE_MAGIC:
        raise ShuffleError(f"byte-shuffled stream lacks its {SHUFFLE_MAGIC!r} header")
    stride = data[4]
    if stride < 1:
        raise ShuffleError("byte-shuffled stream has stride 0")
    body = np.frombuffer(data, dtype=np.uint8, offset=HEADER_BYTES)
    n = body.size
    out = np.empty(n, dtype=np.uint8)
    start = 0
    for k in range(stride):
        count = (n - k + stride - 1) // stride if n > k else 0  # bytes at offsets k, k+stride, ... < n
        out[k::stride] = body[start:start + count]
        start += count
    return out.tobytes()
