"""The artifact container: plain data only, so loading an artifact can never run code (DESIGN 6).

Frame (what is written to disk, all integers little-endian):
    magic b"GQNT" | version u8 | compressor id u8 | compressed length u64 | body length u64 |
    sha256(body) (32 bytes) | compressed body
The compressor id's high bit (``SHUFFLED``) says the body was byte-shuffled (:mod:`golf.quant.shuffle`,
stride recorded in the shuffled stream) before compression; lengths and checksum are of the body.
Body (after decompression):
    header length u32 | header (UTF-8 JSON) | payload
The JSON header lists every tensor: name, shape, original dtype, scheme name and either an ``int``
encoding (bits, code range, packing, byte ranges of codes and scales) or a ``tensor`` encoding (stored
dtype, byte range). Payload sections are grouped (all codes, then all scales, then float tensors) so
the compressor sees long runs of similar data. Every length, offset, dtype and code range is checked
on load; anything inconsistent raises :class:`ArtifactError` naming the field or tensor.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from golf.quant.compress import COMPRESSOR_IDS, DecompressionError, compress, decompress
from golf.quant.config import Compressor, Packing
from golf.quant.packing import pack_codes, packed_nbytes, unpack_codes
from golf.quant.quantizer import QuantizedTensor
from golf.quant.shuffle import HEADER_BYTES as SHUFFLE_HEADER_BYTES
from golf.quant.shuffle import ShuffleError, byte_shuffle, byte_unshuffle

MAGIC = b"GQNT"
VERSION = 1
SHUFFLED = 0x80  # flag bit of the compressor id byte
_FRAME = struct.Struct("<4sBBQQ32s")
FRAME_BYTES = _FRAME.size
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8, torch.int16,
    torch.int32, torch.int64, torch.bool)}


class ArtifactError(ValueError):
    """An artifact is truncated, corrupted, tampered with, or not a golf artifact at all."""


@dataclass
class StoredTensor:
    """One tensor as stored: integer codes (``QuantizedTensor``) or a tensor kept as is (fp16/fp32/raw)."""

    scheme: str
    dtype: torch.dtype  # the original dtype, restored on load
    data: QuantizedTensor | Tensor


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _to_bytes(t: Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def encode_tensor(name: str, st: StoredTensor, packing: Packing) -> tuple[dict, list[tuple[str, str, bytes]]]:
    """Header entry (without byte ranges) and the (section, key, bytes) pieces of one stored tensor."""
    entry = {"name": name, "dtype": _dtype_name(st.dtype), "scheme": st.scheme}
    if isinstance(st.data, QuantizedTensor):
        qt = st.data
        packed = packing is Packing.bits and qt.bits < 8
        codes = pack_codes(qt.q.numpy(), qt.lo, qt.bits) if packed else _to_bytes(qt.q)
        entry.update(shape=list(qt.q.shape), enc="int", bits=qt.bits, lo=qt.lo, hi=qt.hi, packed=packed,
                     scale_dtype=_dtype_name(qt.scale.dtype), scale_shape=list(qt.scale.shape))
        return entry, [("codes", "codes", codes), ("scales", "scale", _to_bytes(qt.scale))]
    entry.update(shape=list(st.data.shape), enc="tensor", store_dtype=_dtype_name(st.data.dtype))
    return entry, [("tensors", "data", _to_bytes(st.data))]


def serialize(stored: dict[str, StoredTensor], packing: Packing) -> bytes:
    """Header + payload bytes of a stored state dict (before compression)."""
    sections: dict[str, list[bytes]] = {"codes": [], "scales": [], "tensors": []}
    sizes = dict.fromkeys(sections, 0)
    entries, placed = [], []  # placed: (entry, section, key, offset within its section)
    for name, st in stored.items():
        entry, pieces = encode_tensor(name, st, packing)
        entries.append(entry)
        for section, key, blob in pieces:
            placed.append((entry, section, key, sizes[section]))
            entry[key] = [0, len(blob)]
            sections[section].append(blob)
            sizes[section] += len(blob)
    base = {"codes": 0, "scales": sizes["codes"], "tensors": sizes["codes"] + sizes["scales"]}
    for entry, section, key, offset in placed:
        entry[key][0] = base[section] + offset
    header = {"format": "golf-quant", "version": VERSION, "byteorder": "little",
              "payload_bytes": sum(sizes.values()), "tensors": entries}
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + b"".join(b for s in sections.values() for b in s)


def encode_body(body: bytes, compressor: Compressor, level: int, shuffle: int | None = None) -> bytes:
    """The compressed bytes of a body: optionally byte-shuffled with stride ``shuffle``, then compressed."""
    return compress(body if shuffle is None else byte_shuffle(body, shuffle), compressor, level)


def frame(body: bytes, compressor: Compressor, level: int, shuffle: int | None = None) -> bytes:
    """Compress a body and wrap it with magic, version, lengths and the body checksum."""
    packed = encode_body(body, compressor, level, shuffle)
    digest = hashlib.sha256(body).digest()
    comp_id = COMPRESSOR_IDS[compressor] | (SHUFFLED if shuffle is not None else 0)
    return _FRAME.pack(MAGIC, VERSION, comp_id, len(packed), len(body), digest) + packed


def unframe(blob: bytes) -> bytes:
    """Check the frame and return the verified, decompressed body."""
    if len(blob) < FRAME_BYTES:
        raise ArtifactError(f"artifact truncated: {len(blob)} bytes, the frame alone needs {FRAME_BYTES}")
    magic, version, comp_id, comp_len, body_len, digest = _FRAME.unpack_from(blob)
    if magic != MAGIC:
        raise ArtifactError(f"not a golf artifact: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ArtifactError(f"artifact format version {version} is not supported (this reader: {VERSION})")
    by_id = {v: k for k, v in COMPRESSOR_IDS.items()}
    shuffled = bool(comp_id & SHUFFLED)
    comp_id &= ~SHUFFLED
    if comp_id not in by_id:
        raise ArtifactError(f"unknown compressor id {comp_id}")
    if len(blob) != FRAME_BYTES + comp_len:
        raise ArtifactError(f"artifact length {len(blob)} != frame {FRAME_BYTES} + body {comp_len}: "
                            "truncated or extended")
    try:
        body = decompress(blob[FRAME_BYTES:], by_id[comp_id], body_len + (SHUFFLE_HEADER_BYTES if shuffled else 0))
        if shuffled:
            body = byte_unshuffle(body)
    except (DecompressionError, ShuffleError) as exc:
        raise ArtifactError(str(exc)) from None
    if hashlib.sha256(body).digest() != digest:
        raise ArtifactError("artifact checksum mismatch: header or payload was modified")
    return body


def _get(entry: dict, key: str, kind: type, where: str):
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ArtifactError(f"{where}: field {key!r} missing or not {kind.__name__} (got {value!r})")
    return value


def _dtype(name, where: str) -> torch.dtype:
    if name not in DTYPES:
        raise ArtifactError(f"{where}: unsupported dtype {name!r}")
    return DTYPES[name]


def _shape(entry: dict, key: str, where: str, payload_bytes: int) -> list[int]:
    """A shape whose element count is no larger than the payload could hold (a crafted header could
    otherwise overflow int64 element counts)."""
    shape = _get(entry, key, list, where)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ArtifactError(f"{where}: {key} {shape!r} is not a list of non-negative ints")
    if any(s > 8 * payload_bytes for s in shape) or _numel(shape) > 8 * payload_bytes:  # >= 1 bit per element
        raise ArtifactError(f"{where}: {key} {shape!r} has more elements than the {payload_bytes}-byte payload can hold")
    return shape


def _numel(shape: list[int]) -> int:
    return math.prod(shape)  # Python integers: no overflow


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


def _from_bytes(buf: bytes, dtype: torch.dtype, shape: list[int]) -> Tensor:
    return torch.frombuffer(bytearray(buf), dtype=torch.uint8).view(dtype).reshape(shape).clone()


def _parse_int(entry: dict, payload: bytes, shape: list[int], where: str) -> QuantizedTensor:
    numel = _numel(shape)
    bits, lo, hi = (_get(entry, k, int, where) for k in ("bits", "lo", "hi"))
    if not 2 <= bits <= 8 or hi != (1 << (bits - 1)) - 1 or lo not in (-hi, -hi - 1):
        raise ArtifactError(f"{where}: inconsistent code range bits={bits} lo={lo} hi={hi}")
    packed = _get(entry, "packed", bool, where)
    raw = _slice(payload, entry, "codes", packed_nbytes(numel, bits) if packed else numel, where)
    q = unpack_codes(raw, lo, bits, numel) if packed else np.frombuffer(raw, dtype=np.int8)
    if numel and (int(q.min()) < lo or int(q.max()) > hi):
        raise ArtifactError(f"{where}: codes outside [{lo}, {hi}]")
    scale_dtype = _dtype(entry.get("scale_dtype"), where)
    scale_shape = _shape(entry, "scale_shape", where, len(payload))
    if scale_shape != ([shape[0]] if len(shape) == 2 else []):
        raise ArtifactError(f"{where}: scale shape {scale_shape} does not fit tensor shape {shape}")
    nscale = _numel(scale_shape) * scale_dtype.itemsize
    scale = _from_bytes(_slice(payload, entry, "scale", nscale, where), scale_dtype, scale_shape)
    return QuantizedTensor(torch.from_numpy(q.copy()).reshape(shape), scale, bits, lo, hi)


def parse(body: bytes) -> dict[str, StoredTensor]:
    """Validate and decode a body (header + payload) into stored tensors."""
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
    out: dict[str, StoredTensor] = {}
    for i, entry in enumerate(_get(header, "tensors", list, "header")):
        name = _get(entry, "name", str, f"tensors[{i}]")
        where = f"tensor {name!r}"
        if name in out:
            raise ArtifactError(f"{where} appears twice")
        shape = _shape(entry, "shape", where, len(payload))
        dtype = _dtype(entry.get("dtype"), where)
        scheme = _get(entry, "scheme", str, where)
        enc = entry.get("enc")
        if enc == "int":
            data = _parse_int(entry, payload, shape, where)
        elif enc == "tensor":
            store = _dtype(entry.get("store_dtype"), where)
            nbytes = _numel(shape) * store.itemsize
            data = _from_bytes(_slice(payload, entry, "data", nbytes, where), store, shape)
        else:
            raise ArtifactError(f"{where}: unknown encoding {enc!r}")
        out[name] = StoredTensor(scheme, dtype, data)
    return out
