"""The artifact: state dict → pruned → quantized → packed → (byte-shuffled) → compressed → framed bytes,
and back (DESIGN principle 6: plain data only, so loading an artifact can never run code).

Frame (all integers little-endian):
    magic b"GQNT" | version u8 | compressor id u8 | compressed length u64 | body length u64 |
    sha256(body) (32 bytes) | compressed body
Compressor ids: zlib 0 (baseline, level 9), zstd 1 (records, level 22), lzma/xz 2 (#187 preset 6, #1573
preset 9), brotli 3 (#1394 lineage and #1493: quality 11, generic mode); the high bit (0x80) says the
body was byte-shuffled first (#1394 lineage, #1493 spec §5.5: ``b"BSHF" | stride u8 | b[0::n] | b[1::n]
| ... | b[n-1::n]``, so the high and low bytes of 2-byte values land in separate runs).
Body: header length u32 | header (UTF-8 JSON) | payload. The header lists every tensor: name, shape,
original dtype, scheme name and either an ``int`` encoding (bits, code range, packing, byte ranges of
codes and scales) or a ``tensor`` encoding (stored dtype, byte range). Payload sections are grouped
(all codes, then all scales, then float tensors) so the compressor sees long runs of similar data.
Codes are int8 containers, or with ``packing=bits`` (#1573) k-bit packed: ``u = q − lo`` written to bits
[i·k, (i+1)·k) of a little-endian stream, LSB first (int6: 4 values in 3 bytes, int5: 8 in 5).

Per tensor the lab's scheme table (name → scheme name; ``raw`` for non-float tensors, ``fp16`` for small
ones) decides the storage; a tensor with a Hessian is quantized with GPTQ (:mod:`golf.kernel.gptq`).
The writer decodes only its own artifacts, with the recipe's codec: :func:`load_artifact` checks the
checksum and nothing else; the lab validates untrusted artifacts before :func:`decode_body`
(:mod:`golf.quant.validate_artifact`). Baseline reference: ``quantize_state_dict_int8`` /
``dequantize_state_dict_int8`` (spec §1.8).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
import struct
import zlib
from typing import TYPE_CHECKING

import brotli
import numpy as np
import torch
import zstandard

from golf.kernel.gptq import gptq_quantize
from golf.kernel.quantize import QuantizedTensor, dequantize, prune_tensor, quantize

if TYPE_CHECKING:
    from golf.quant.config import QuantConfig

def pack_codes(q, lo: int, bits: int) -> bytes:
    """Int codes (values in [lo, lo + 2^bits − 1]) as a k-bit stream."""
    u = (q.reshape(-1).astype(np.int16) - lo).astype(np.uint8)
    return np.packbits(np.unpackbits(u[:, None], axis=1, bitorder="little")[:, :bits].reshape(-1),
                       bitorder="little").tobytes()


def unpack_codes(buf: bytes, lo: int, bits: int, n: int):
    """``n`` int8 codes from a k-bit stream."""
    p = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), count=n * bits, bitorder="little").reshape(n, bits)
    u = np.packbits(np.pad(p, ((0, 0), (0, 8 - bits))), axis=1, bitorder="little").reshape(-1)  # [n]
    return (u.astype(np.int16) + lo).astype(np.int8)


def byte_shuffle(data: bytes, n: int) -> bytes:
    a = np.frombuffer(data, dtype=np.uint8)
    return b"BSHF" + bytes([n]) + b"".join(a[k::n].tobytes() for k in range(n))


def byte_unshuffle(data: bytes) -> bytes:
    n = data[4]
    a = np.frombuffer(data, dtype=np.uint8, offset=5)
    out = np.empty_like(a)
    i = 0
    for k in range(n):
        m = out[k::n]  # offsets k, k+n, ... (a view)
        m[:] = a[i:i + m.size]
        i += m.size
    return out.tobytes()


def _abytes(t) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _adtype(d) -> str:
    return str(d).removeprefix("torch.")


def quantize_state_dict(state, q: QuantConfig, schemes, hessians=None, prune=()):
    """name → (scheme name, original dtype, stored data: QuantizedTensor or tensor), from CPU copies (the
    input is not modified). ``prune``: the names magnitude-pruned first (the lab's table); ``hessians``:
    name → H of every tensor to quantize with GPTQ."""
    sd = {n: t.detach().cpu() for n, t in state.items()}
    if q.prune is not None:
        sd = {n: prune_tensor(t, q.prune.fraction) if n in prune else t for n, t in sd.items()}
    hs = hessians or {}
    out = {}
    for n, t in sd.items():
        sn = schemes[n]
        s = None if sn == "raw" else q.schemes[sn]
        if s is None:
            d = t
        elif s.kind == "int":
            d = gptq_quantize(t, hs[n], s) if q.calibration is not None and n in hs else quantize(t, s)
        else:
            d = t.to(torch.float16 if s.kind == "fp16" else torch.float32)
        out[n] = sn, t.dtype, d
    return out


def serialize(stored, q: QuantConfig) -> bytes:
    """Header + payload of stored tensors (the body, before compression)."""
    bits = q.packing == "bits"
    entries, parts = [], []  # parts: (section, entry, key, bytes)
    for n, (sn, dt, d) in stored.items():
        e = {"name": n, "dtype": _adtype(dt), "scheme": sn}
        if isinstance(d, QuantizedTensor):
            e.update(shape=list(d.q.shape), enc="int", bits=d.bits, lo=d.lo, hi=d.hi, packed=bits and d.bits < 8,
                     scale_dtype=_adtype(d.scale.dtype), scale_shape=list(d.scale.shape))
            parts += [(0, e, "codes", pack_codes(d.q.numpy(), d.lo, d.bits) if bits and d.bits < 8 else _abytes(d.q)),
                      (1, e, "scale", _abytes(d.scale))]
        else:
            e.update(shape=list(d.shape), enc="tensor", store_dtype=_adtype(d.dtype))
            parts.append((2, e, "data", _abytes(d)))
        entries.append(e)
    off, payload = 0, []
    for i in range(3):
        for j, e, k, b in parts:
            if j == i:
                e[k] = [off, len(b)]
                off += len(b)
                payload.append(b)
    head = json.dumps({"format": "golf-quant", "version": 1, "byteorder": "little", "payload_bytes": off,
                       "tensors": entries}, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + b"".join(payload)


def frame_body(body: bytes, q: QuantConfig) -> bytes:
    """The artifact of a body: (byte-shuffled,) compressed and framed."""
    z = body if q.byte_shuffle is None else byte_shuffle(body, q.byte_shuffle)
    if q.compressor == "zlib":
        c, z = 0, zlib.compress(z, q.level)
    elif q.compressor == "zstd":
        c, z = 1, zstandard.ZstdCompressor(level=q.level).compress(z)
    elif q.compressor == "brotli":
        c, z = 3, brotli.compress(z, mode=brotli.MODE_GENERIC, quality=q.level)
    else:
        c, z = 2, lzma.compress(z, format=lzma.FORMAT_XZ, preset=q.level)
    if q.byte_shuffle is not None:
        c |= 0x80
    # magic, version, compressor id, compressed length, body length, sha256 (54 bytes)
    return struct.pack("<4sBBQQ32s", b"GQNT", 1, c, len(z), len(body), hashlib.sha256(body).digest()) + z


def export_state_dict(state, q: QuantConfig, schemes, hessians=None, prune=()):
    """(artifact bytes, stored tensors) of a state dict: see :func:`quantize_state_dict`."""
    stored = quantize_state_dict(state, q, schemes, hessians, prune)
    return frame_body(serialize(stored, q), q), stored


def _afrom(p: bytes, rng, dtype: str, shape):
    return torch.frombuffer(bytearray(p[rng[0]:rng[0] + rng[1]]), dtype=torch.uint8).view(
        getattr(torch, dtype)).reshape(shape).clone()


def decode_body(body: bytes, q: QuantConfig):
    """Dequantized tensors (original names, shapes, dtypes) of a body; bit-packed codes are read when
    ``q.packing`` is ``bits``."""
    (k,) = struct.unpack_from("<I", body)
    p = body[4 + k:]
    out = {}
    for e in json.loads(body[4:4 + k])["tensors"]:
        dt, sh = getattr(torch, e["dtype"]), e["shape"]
        if e["enc"] == "int":
            a, n = e["codes"]
            c = unpack_codes(p[a:a + n], e["lo"], e["bits"], math.prod(sh)) if q.packing == "bits" and e["packed"] else \
                np.frombuffer(p[a:a + n], dtype=np.int8)
            qt = QuantizedTensor(torch.from_numpy(c.copy()).reshape(sh),
                                 _afrom(p, e["scale"], e["scale_dtype"], e["scale_shape"]), e["bits"], e["lo"], e["hi"])
            out[e["name"]] = dequantize(qt, dt)
        else:
            out[e["name"]] = _afrom(p, e["data"], e["store_dtype"], sh).to(dt)
    return out


def load_artifact(blob: bytes, q: QuantConfig):
    """Dequantized tensors of an artifact this recipe wrote (decoded with its codec; checksum checked)."""
    z = blob[54:]
    if q.compressor == "zlib":
        z = zlib.decompress(z)
    elif q.compressor == "zstd":
        z = zstandard.ZstdDecompressor().decompress(z)
    elif q.compressor == "brotli":
        z = brotli.decompress(z)
    else:
        z = lzma.decompress(z)
    if q.byte_shuffle is not None:
        z = byte_unshuffle(z)
    if hashlib.sha256(z).digest() != blob[22:54]:
        raise ValueError("artifact checksum mismatch")
    return decode_body(z, q)
