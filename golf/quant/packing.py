"""Integer code layouts: int8 containers or true k-bit packing (PR #1573's int6/int5 packing).

Bit packing shifts codes in [lo, hi] to unsigned ``u = q − lo`` (< 2^k) and writes value i to bits
[i·k, (i+1)·k) of a little-endian bit stream, least significant bit first. Hence int6 puts 4 values in
3 bytes, int5 8 values in 5 bytes, int4 2 values in 1 byte; a stream of n codes takes ⌈n·k/8⌉ bytes
(the last byte zero-padded). With int8 containers the compressor has to discover the unused high bits
itself (spec §2.21: zstd reaches ~1.9× on int5, ~1.5× on int6 that way).
"""

from __future__ import annotations

import numpy as np

_CHUNK = 1 << 22  # values per chunk (a multiple of 8, so chunks end on byte boundaries)


def packed_nbytes(n: int, bits: int) -> int:
    return (n * bits + 7) // 8


def pack_codes(q: np.ndarray, lo: int, bits: int) -> bytes:
    """Pack int codes (any integer dtype, values in [lo, lo + 2^bits − 1]) into a k-bit stream."""
    u = (q.reshape(-1).astype(np.int16) - lo).astype(np.uint8)
    if u.size and int(u.max()) >= 1 << bits:
        raise ValueError(f"codes exceed {bits} bits after offset {lo}")
    parts = []
    for start in range(0, u.size, _CHUNK):
        chunk = u[start:start + _CHUNK]
        planes = np.unpackbits(chunk[:, None], axis=1, bitorder="little")[:, :bits]  # [n, bits]
        parts.append(np.packbits(planes.reshape(-1), bitorder="little").tobytes())
    return b"".join(parts)


def unpack_codes(buf: bytes, lo: int, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: n int8 codes from a k-bit stream."""
    if len(buf) != packed_nbytes(n, bits):
        raise ValueError(f"{len(buf)} bytes cannot hold exactly {n} codes of {bits} bits")
    raw = np.frombuffer(buf, dtype=np.uint8)
    out = np.empty(n, dtype=np.int8)
    chunk_bytes = _CHUNK * bits // 8
    for i, start in enumerate(range(0, n, _CHUNK)):
        count = min(_CHUNK, n - start)
        planes = np.unpackbits(raw[i * chunk_bytes:], count=count * bits, bitorder="little")
        planes = np.pad(planes.reshape(count, bits), ((0, 0), (0, 8 - bits)))  # [count, 8]
        u = np.packbits(planes, axis=1, bitorder="little").reshape(-1)
        out[start:start + count] = (u.astype(np.int16) + lo).astype(np.int8)
    return out
