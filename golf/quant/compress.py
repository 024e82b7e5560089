"""Byte compressors of the artifact body: zlib (baseline, level 9), zstd (records, level 22),
LZMA/xz (#187 preset 6, #1573 preset 9) and Brotli (#1394 lineage and #1493: quality 11, default
window 22, generic mode; usually behind a byte shuffle, :mod:`golf.quant.shuffle`). Each round-trips
bytes exactly; the id byte recorded in the artifact frame tells :func:`decompress` which one to use, so loading needs no configuration.

Decompression never produces more than the size the frame declares (a crafted body that expands
without bound, a "decompression bomb", fails after ``expected_size + 1`` bytes): every codec is read
through an incremental reader that yields at most ``n`` bytes per call, and :func:`_read_capped`, the
one place the cap lives, stops reading there.
"""

from __future__ import annotations

import io
import lzma
import zlib
from collections.abc import Callable

import brotli
import zstandard

from golf.quant.config import Compressor

COMPRESSOR_IDS = {Compressor.zlib: 0, Compressor.zstd: 1, Compressor.lzma: 2, Compressor.brotli: 3}


class DecompressionError(ValueError):
    """The compressed body is corrupt, truncated, or decompresses to an unexpected size."""


def compress(data: bytes, compressor: Compressor, level: int) -> bytes:
    if compressor is Compressor.zlib:
        return zlib.compress(data, level)
    if compressor is Compressor.zstd:
        return zstandard.ZstdCompressor(level=level).compress(data)
    if compressor is Compressor.brotli:
        return brotli.compress(data, mode=brotli.MODE_GENERIC, quality=level)
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=level)


# An incremental reader: read(n) returns the next at most n decoded bytes, b"" once the stream has
# ended; ended() tells whether the compressed stream was complete (and nothing followed it).
Reader = tuple[Callable[[int], bytes], Callable[[], bool]]


def _zlib_reader(data: bytes) -> Reader:
    d = zlib.decompressobj()
    pending = [data]

    def read(n: int) -> bytes:
        out = d.decompress(pending[0], n)
        pending[0] = d.unconsumed_tail
        return out

    return read, lambda: d.eof and not d.unused_data


def _lzma_reader(data: bytes) -> Reader:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    pending = [data]

    def read(n: int) -> bytes:
        if d.eof:
            return b""
        out = d.decompress(pending[0], max_length=n)
        pending[0] = b""  # the decompressor buffers what it did not consume
        return out

    return read, lambda: d.eof and not d.unused_data


def _zstd_reader(data: bytes) -> Reader:
    source = io.BytesIO(data)
    stream = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=False)
    return stream.read, lambda: source.tell() == len(data)


def _brotli_reader(data: bytes) -> Reader:
    d = brotli.Decompressor()
    pending = [data]

    def read(n: int) -> bytes:
        if d.is_finished():
            return b""
        out = d.process(pending[0], output_buffer_limit=n)
        pending[0] = b""  # the decoder keeps what it did not consume and yields it on empty input
        return out

    return read, d.is_finished


READERS: dict[Compressor, Callable[[bytes], Reader]] = {
    Compressor.zlib: _zlib_reader, Compressor.zstd: _zstd_reader, Compressor.lzma: _lzma_reader,
    Compressor.brotli: _brotli_reader}
DECODE_ERRORS = (zlib.error, zstandard.ZstdError, lzma.LZMAError, brotli.error, EOFError)


def _read_capped(reader: Reader, limit: int, name: str) -> bytes:
    """All of a reader's output, failing as soon as it exceeds ``limit`` bytes."""
    read, ended = reader
    out = bytearray()
    while len(out) <= limit:
        piece = read(limit + 1 - len(out))
        if not piece:
            break
        out += piece
    if len(out) > limit:
        raise DecompressionError(f"{name} body decodes to more than the {limit} bytes the frame declares")
    if not ended():
        raise DecompressionError(f"{name} body is truncated or followed by extra bytes")
    return bytes(out)


def decompress(data: bytes, compressor: Compressor, expected_size: int) -> bytes:
    """Decompress at most ``expected_size`` bytes and check the size; any decoder failure becomes a
    :class:`DecompressionError`."""
    try:
        out = _read_capped(READERS[compressor](data), expected_size, compressor.value)
    except DECODE_ERRORS as exc:
        raise DecompressionError(f"{compressor.value} cannot decode the artifact body: {exc}") from None
    if len(out) != expected_size:
        raise DecompressionError(f"{compressor.value} body decoded to {len(out)} bytes, header says {expected_size}")
    return out
