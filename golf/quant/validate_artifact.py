"""Strict reading of an artifact that comes from outside the run that wrote it (``golf.evaluate``, a
file handed around): every length, offset, dtype and code range is checked before anything is decoded,
and anything inconsistent is one :class:`ArtifactError` naming the field or tensor. The run kernel
decodes its own artifacts without these checks (:func:`golf.kernel.artifact.load_artifact`); golf's
loaders run :func:`unframe` and :func:`check_body` first and then the kernel's
:func:`~golf.kernel.artifact.decode_body` on the verified body. The format is described there.

Memory stays bounded by a limit + one model (decompression bombs): the body size the frame declares is
refused before anything is inflated when it exceeds :func:`body_limit` — :data:`MAX_EXPANSION` times the
compressed length plus :data:`EXPANSION_SLACK` (real artifacts compress 1-4x), or, for a known model
larger than that, what an artifact of that model can hold (:func:`body_bound`: every tensor at 4 bytes
per element, or its own itemsize when wider, plus its header entry). A zstd frame that declares its own
content size must declare the same; decoding reads at most :data:`CHUNK` bytes at a time and stops one
byte past the declared size. A per-group artifact (version 2) is read by :mod:`golf.quant.validate_pergroup`
under the same limit on its body. The tensors of a known model are then checked against the header (names
and shapes, :func:`check_fits`) before anything is dequantized.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import math
import struct
import sys
import zlib
from collections.abc import Callable, Mapping

import brotli
import numpy as np
import zstandard

from golf.kernel.artifact import byte_unshuffle, unpack_codes

MAGIC = b"GQNT"
VERSION = 1
PERGROUP_VERSION = 2  # the per-group container (golf.kernel.pergroup, golf.quant.validate_pergroup)
SHUFFLED = 0x80  # flag bit of the compressor id byte
FRAME = struct.Struct("<4sBBQQ32s")
FRAME_BYTES = FRAME.size
COMPRESSORS = {0: "zlib", 1: "zstd", 2: "lzma", 3: "brotli"}
SHUFFLE_HEADER_BYTES = 5  # b"BSHF" + stride
DTYPES = ("float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2,
            "int32": 4, "int64": 8, "bool": 1}
CHUNK = 1 << 20                 # decoded bytes read per call
MAX_EXPANSION = 64              # body / compressed bytes a golf artifact may declare ...
EXPANSION_SLACK = 64 << 20      # ... plus this much (real artifacts compress 1-4x)
HEADER_ENTRY_BYTES = 1024       # a header entry's JSON beyond the tensor's name (a bound, not a size)


class ArtifactError(ValueError):
    """An artifact is truncated, corrupted, tampered with, not a golf artifact, or not this model's."""


def body_bound(expect: Mapping) -> int:
    """The largest body a golf artifact of the tensors ``expect`` (name → tensor, meta tensors included)
    can have: each stored at most at max(4, itemsize) bytes per element (+ 8 for a per-tensor scale),
    plus its header entry."""
    return 4 + 256 + SHUFFLE_HEADER_BYTES + sum(
        max(4, t.element_size()) * t.numel() + 8 + HEADER_ENTRY_BYTES + len(name) for name, t in expect.items())


def body_limit(compressed_bytes: int, model_bound: int | None = None) -> int:
    """The largest body an artifact of ``compressed_bytes`` may declare (``model_bound``: :func:`body_bound`
    of the model it is for, when known)."""
    return max(MAX_EXPANSION * compressed_bytes + EXPANSION_SLACK, model_bound or 0)


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


READERS: dict[str, Callable[[bytes], Reader]] = {
    "zlib": _zlib_reader, "zstd": _zstd_reader, "lzma": _lzma_reader, "brotli": _brotli_reader}
DECODE_ERRORS = (zlib.error, zstandard.ZstdError, lzma.LZMAError, brotli.error, EOFError)


def decompress(data: bytes, codec: str, expected_size: int) -> bytes:
    """Decode at most ``expected_size`` bytes, :data:`CHUNK` at a time, and check the size; any decoder
    failure is an :class:`ArtifactError`."""
    try:
        read, ended = READERS[codec](data)
        out = bytearray()
        while len(out) <= expected_size:
            piece = read(min(CHUNK, expected_size + 1 - len(out)))
            if not piece:
                break
            out += piece
        if len(out) > expected_size:
            raise ArtifactError(f"{codec} body decodes to more than the {expected_size} bytes the frame declares")
        if not ended():
            raise ArtifactError(f"{codec} body is truncated or followed by extra bytes")
    except DECODE_ERRORS as exc:
        raise ArtifactError(f"{codec} cannot decode the artifact body: {exc}") from None
    if len(out) != expected_size:
        raise ArtifactError(f"{codec} body decoded to {len(out)} bytes, header says {expected_size}")
    return bytes(out)


def unframe(blob: bytes, model_bound: int | None = None) -> bytes:
    """Check the frame and return the verified, decompressed body; ``model_bound``: :func:`body_bound` of
    the model the artifact is for, when known (see :func:`body_limit`)."""
    if len(blob) < FRAME_BYTES:
        raise ArtifactError(f"artifact truncated: {len(blob)} bytes, the frame alone needs {FRAME_BYTES}")
    magic, version, comp_id, comp_len, body_len, digest = FRAME.unpack_from(blob)
    if magic != MAGIC:
        raise ArtifactError(f"not a golf artifact: magic {magic!r}, expected {MAGIC!r}")
    if version not in (VERSION, PERGROUP_VERSION):
        raise ArtifactError(f"artifact format version {version} is not supported (this reader: {VERSION}, "
                            f"{PERGROUP_VERSION})")
    shuffled = bool(comp_id & SHUFFLED)
    codec = COMPRESSORS.get(comp_id & ~SHUFFLED)
    if codec is None:
        raise ArtifactError(f"unknown compressor id {comp_id & ~SHUFFLED}")
    if len(blob) != FRAME_BYTES + comp_len:
        raise ArtifactError(f"artifact length {len(blob)} != frame {FRAME_BYTES} + body {comp_len}: "
                            "truncated or extended")
    size = body_len + (SHUFFLE_HEADER_BYTES if shuffled else 0)
    limit = body_limit(comp_len, model_bound)
    if size > limit:
        raise ArtifactError(f"artifact declares a body of {size} bytes, more than the {limit} bytes that "
                            f"{comp_len} compressed bytes of a golf artifact expand to; refused before decompressing")
    if version == PERGROUP_VERSION:
        from golf.quant.validate_pergroup import unframe_groups

        return unframe_groups(blob, body_len, digest, model_bound)
    data = blob[FRAME_BYTES:]
    if codec == "zstd":
        try:
            declared = zstandard.get_frame_parameters(data).content_size
        except zstandard.ZstdError as exc:
            raise ArtifactError(f"zstd cannot decode the artifact body: {exc}") from None
        if declared != zstandard.CONTENTSIZE_UNKNOWN and declared != size:
            raise ArtifactError(f"the zstd frame declares {declared} bytes, the artifact frame {size}; "
                                "refused before decompressing")
    body = decompress(data, codec, size)
    if shuffled:
        if body[:4] != b"BSHF" or body[4] < 1:
            raise ArtifactError("byte-shuffled stream lacks its b'BSHF' header or has stride 0")
        body = byte_unshuffle(body)
    if hashlib.sha256(body).digest() != digest:
        raise ArtifactError("artifact checksum mismatch: header or payload was modified")
    return body


def _get(entry: dict, key: str, kind: type, where: str):
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ArtifactError(f"{where}: field {key!r} missing or not {kind.__name__} (got {value!r})")
    return value


def _dtype(name, where: str) -> str:
    if name not in DTYPES:
        raise ArtifactError(f"{where}: unsupported dtype {name!r}")
    return name


def _shape(entry: dict, key: str, where: str, payload_bytes: int) -> list[int]:
    """A shape whose element count is no larger than the payload could hold (a crafted header could
    otherwise overflow int64 element counts)."""
    shape = _get(entry, key, list, where)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ArtifactError(f"{where}: {key} {shape!r} is not a list of non-negative ints")
    if any(s > 8 * payload_bytes for s in shape) or math.prod(shape) > 8 * payload_bytes:  # >= 1 bit per element
        raise ArtifactError(f"{where}: {key} {shape!r} has more elements than the {payload_bytes}-byte payload can hold")
    return shape


def _slice(payload: bytes, entry: dict, key: str, nbytes: int, where: str) -> bytes:
    rng = _get(entry, key, list, where)
    if len(rng) != 2 or not all(isinstance(v, int) and v >= 0 for v in rng):
        raise ArtifactError(f"{where}: byte range {key}={rng!r} is malformed")
    start, length = rng
    if length != nbytes:
        raise ArtifactError(f"{where}: {key} holds {length} bytes, its shape and dtype need {nbytes}")
    if start + length > len(payload):
        raise ArtifactError(f"{where}: {key} range [{start}, {start + length}) is past the payload end {len(payload)}")
    return payload[start:start + length]


def _check_int(entry: dict, payload: bytes, shape: list[int], where: str) -> None:
    numel = math.prod(shape)
    bits, lo, hi = (_get(entry, k, int, where) for k in ("bits", "lo", "hi"))
    if not 2 <= bits <= 8 or hi != (1 << (bits - 1)) - 1 or lo not in (-hi, -hi - 1):
        raise ArtifactError(f"{where}: inconsistent code range bits={bits} lo={lo} hi={hi}")
    packed = _get(entry, "packed", bool, where)
    raw = _slice(payload, entry, "codes", (numel * bits + 7) // 8 if packed else numel, where)
    q = unpack_codes(raw, lo, bits, numel) if packed else np.frombuffer(raw, dtype=np.int8)
    if numel and (int(q.min()) < lo or int(q.max()) > hi):
        raise ArtifactError(f"{where}: codes outside [{lo}, {hi}]")
    scale_dtype = _dtype(entry.get("scale_dtype"), where)
    scale_shape = _shape(entry, "scale_shape", where, len(payload))
    if scale_shape != ([shape[0]] if len(shape) == 2 else []):
        raise ArtifactError(f"{where}: scale shape {scale_shape} does not fit tensor shape {shape}")
    _slice(payload, entry, "scale", math.prod(scale_shape) * ITEMSIZE[scale_dtype], where)
    if "lqer" in entry:
        _check_lqer(entry["lqer"], payload, shape, f"{where} lqer")


def _codes_in(raw: bytes, bits: int, where: str) -> None:
    q = np.frombuffer(raw, dtype=np.int8)
    m = 1 << (bits - 1)
    if q.size and (int(q.min()) < -m or int(q.max()) > m - 1):
        raise ArtifactError(f"{where}: codes outside [{-m}, {m - 1}]")


def _check_lqer(f, payload: bytes, shape: list[int], where: str) -> None:
    """An LQER correction (golf.kernel.lqer): A [rows, rank] and B [rank, cols] int8 codes in their bit
    ranges, one fp16 scale for A and one per ``group`` values of B."""
    if not isinstance(f, dict) or len(shape) != 2:
        raise ArtifactError(f"{where}: an LQER correction needs a matrix and a field object")
    rank, group, a_bits, b_bits = (_get(f, k, int, where) for k in ("rank", "group", "a_bits", "b_bits"))
    if not 1 <= rank <= min(shape) or group < 1 or not (2 <= a_bits <= 8 and 2 <= b_bits <= 8):
        raise ArtifactError(f"{where}: rank {rank}, group {group} or bits {a_bits}/{b_bits} do not fit {shape}")
    _codes_in(_slice(payload, f, "a", shape[0] * rank, where), a_bits, where)
    _codes_in(_slice(payload, f, "b", rank * shape[1], where), b_bits, where)
    _slice(payload, f, "sa", ITEMSIZE["float16"], where)
    _slice(payload, f, "sb", -(-rank * shape[1] // group) * ITEMSIZE["float16"], where)


def check_body(body: bytes) -> dict[str, list[int]]:
    """Validate a body (header + payload); returns every tensor's shape by name."""
    if len(body) < 4:
        raise ArtifactError("artifact body too short for its header length")
    (head_len,) = struct.unpack_from("<I", body)
    if 4 + head_len > len(body):
        raise ArtifactError(f"header length {head_len} runs past the body ({len(body)} bytes)")
    try:
        header = json.loads(body[4:4 + head_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"artifact header is not valid JSON: {exc}") from None
    if _get(header, "format", str, "header") != "golf-quant" or header.get("version") != VERSION:
        raise ArtifactError(f"header format/version {header.get('format')!r}/{header.get('version')!r} unsupported")
    if header.get("byteorder") != sys.byteorder:
        raise ArtifactError(f"artifact byte order {header.get('byteorder')!r} != this machine's {sys.byteorder!r}")
    payload = body[4 + head_len:]
    if _get(header, "payload_bytes", int, "header") != len(payload):
        raise ArtifactError(f"payload is {len(payload)} bytes, header says {header['payload_bytes']}")
    shapes: dict[str, list[int]] = {}
    for i, entry in enumerate(_get(header, "tensors", list, "header")):
        name = _get(entry, "name", str, f"tensors[{i}]")
        where = f"tensor {name!r}"
        if name in shapes:
            raise ArtifactError(f"{where} appears twice")
        shape = _shape(entry, "shape", where, len(payload))
        _dtype(entry.get("dtype"), where)
        _get(entry, "scheme", str, where)
        enc = entry.get("enc")
        if enc == "int":
            _check_int(entry, payload, shape, where)
        elif enc == "tensor":
            store = _dtype(entry.get("store_dtype"), where)
            _slice(payload, entry, "data", math.prod(shape) * ITEMSIZE[store], where)
        else:
            raise ArtifactError(f"{where}: unknown encoding {enc!r}")
        shapes[name] = shape
    return shapes


def check_fits(shapes: Mapping[str, list[int]], expect: Mapping) -> None:
    """The artifact's tensors (name → shape) are exactly the model's (name → tensor): otherwise one
    :class:`ArtifactError` naming the first tensor, in the model's order, that is missing or of another
    shape (both shapes), or else the first the model does not have."""
    for name, t in expect.items():
        if name not in shapes:
            raise ArtifactError(f"the artifact has no tensor {name!r} (the model's is {list(t.shape)}): "
                                "it was written for another architecture")
        if list(t.shape) != list(shapes[name]):
            raise ArtifactError(f"tensor {name!r} is {list(shapes[name])} in the artifact, {list(t.shape)} in "
                                "the model: it was written for another architecture")
    for name, shape in shapes.items():
        if name not in expect:
            raise ArtifactError(f"the artifact's tensor {name!r} {shape} is not in the model: it was written for "
                                "another architecture")
