"""Byte compressors of the artifact body: zlib (baseline, level 9), zstd (records, level 22) and
LZMA/xz (#187 preset 6, #1573 preset 9). Each round-trips bytes exactly; the id byte recorded in the
artifact frame tells :func:`decompress` which one to use, so loading needs no configuration.
"""

from __future__ import annotations

import lzma
import zlib

import zstandard

from golf.quant.config import Compressor

COMPRESSOR_IDS = {Compressor.zlib: 0, Compressor.zstd: 1, Compressor.lzma: 2}


class DecompressionError(ValueError):
    """The compressed body is corrupt, truncated, or decompresses to an unexpected size."""


def compress(data: bytes, compressor: Compressor, level: int) -> bytes:
    if compressor is Compressor.zlib:
        return zlib.compress(data, level)
    if compressor is Compressor.zstd:
        return zstandard.ZstdCompressor(level=level).compress(data)
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=level)


def decompress(data: bytes, compressor: Compressor, expected_size: int) -> bytes:
    """Decompress and check the size; any decoder failure becomes a :class:`DecompressionError`."""
    try:
        if compressor is Compressor.zlib:
            out = zlib.decompress(data)
        elif compressor is Compressor.zstd:
            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=expected_size)
        else:
            out = lzma.decompress(data, format=lzma.FORMAT_XZ)
    except (zlib.error, zstandard.ZstdError, lzma.LZMAError) as exc:
        raise DecompressionError(f"{compressor.value} cannot decode the artifact body: {exc}") from None
    if len(out) != expected_size:
        raise DecompressionError(f"{compressor.value} body decoded to {len(out)} bytes, header says {expected_size}")
    return out
