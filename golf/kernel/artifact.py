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
An int entry may carry an ``lqer`` object (``quant.lqer``, :mod:`golf.kernel.lqer`): rank, group,
a_bits, b_bits and the byte ranges of A's and B's int8 codes (with the codes) and of their fp16 scales
(with the scales); loading adds the correction before the cast.
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
from golf.kernel.lqer import Corrected, add_lqer, lqer_delta
from golf.kernel.quantize import QuantizedTensor, dequantize, prune_tensor, quantize

if TYPE_CHECKING:
    from golf.quant.config import QuantConfig

def pack_codes(c, lo: int, k: int) -> bytes:
    """Int codes ``c`` (numpy, values in [lo, lo + 2^k − 1]) as a k-bit stream."""
    u = (c.reshape(-1).astype(np.int16) - lo).astype(np.uint8)
    return np.packbits(np.unpackbits(u[:, None], axis=1, bitorder="little")[:, :k].reshape(-1),
                       bitorder="little").tobytes()


def unpack_codes(b: bytes, lo: int, k: int, n: int):
    """``n`` int8 codes from a k-bit stream."""
    p = np.unpackbits(np.frombuffer(b, dtype=np.uint8), count=n * k, bitorder="little").reshape(n, k)
    u = np.packbits(np.pad(p, ((0, 0), (0, 8 - k))), axis=1, bitorder="little").reshape(-1)  # [n]
    return (u.astype(np.int16) + lo).astype(np.int8)


def byte_shuffle(b: bytes, n: int) -> bytes:
    a = np.frombuffer(b, dtype=np.uint8)
    return b"BSHF" + bytes([n]) + b"".join(a[k::n].tobytes() for k in range(n))


def byte_unshuffle(b: bytes) -> bytes:
    n = b[4]
    a = np.frombuffer(b, dtype=np.uint8, offset=5)
    out = np.empty_like(a)
    i = 0
    for k in range(n):
        m = out[k::n]  # offsets k, k+n, ... (a view)
        m[:] = a[i:i + m.size]
        i += m.size
    return out.tobytes()


def _abytes(t) -> bytes:
    """The raw bytes of a CPU tensor."""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def quantize_state_dict(sd, q: QuantConfig, schemes, hs=None, prune=()):
    """name → (scheme name, original dtype, stored data: QuantizedTensor or tensor) of the state dict
    ``sd``, from CPU copies (the input is not modified). ``schemes``: the lab's table; ``prune``: the names
    magnitude-pruned first (the lab's table); ``hs``: name → Hessian of every tensor to quantize with GPTQ."""
    out = {}
    for n, t in sd.items():
        t = t.detach().cpu()
        if q.prune is not None and n in prune:
            t = prune_tensor(t, q.prune.fraction)
        s = q.schemes.get(schemes[n])  # None: raw (not a float tensor)
        if s is None:
            d = t
        elif s.kind == "int":
            d = gptq_quantize(t, hs[n], s) if q.calibration is not None and n in (hs or ()) else quantize(t, s)
        else:
            d = t.to(torch.float16 if s.kind == "fp16" else torch.float32)
        out[n] = schemes[n], t.dtype, d
    if q.lqer is not None:
        add_lqer(sd, out, q.lqer)
    return out


def serialize(st, q: QuantConfig) -> bytes:
    """Header + payload of stored tensors ``st`` (the body, before compression)."""
    bits = q.packing == "bits"
    entries, sections = [], ([], [], [])  # codes, scales, kept tensors: (entry, key, bytes)
    for n, (sn, dt, d) in st.items():
        e = {"name": n, "dtype": str(dt)[6:], "scheme": sn}
        if q.lqer is not None and isinstance(d, Corrected):
            f = e["lqer"] = {"rank": d.a.shape[1], "group": q.lqer.group, "a_bits": q.lqer.a_bits,
                             "b_bits": q.lqer.b_bits}
            sections[0].extend([(f, "a", _abytes(d.a)), (f, "b", _abytes(d.b))])
            sections[1].extend([(f, "sa", _abytes(d.sa)), (f, "sb", _abytes(d.sb))])
            d = d.base
        if isinstance(d, QuantizedTensor):
            e.update(shape=list(d.q.shape), enc="int", bits=d.bits, lo=d.lo, hi=d.hi, packed=bits and d.bits < 8,
                     scale_dtype=str(d.scale.dtype)[6:], scale_shape=list(d.scale.shape))
            sections[0].append((e, "codes", pack_codes(d.q.numpy(), d.lo, d.bits) if bits and d.bits < 8 else _abytes(d.q)))
            sections[1].append((e, "scale", _abytes(d.scale)))
        else:
            e.update(shape=list(d.shape), enc="tensor", store_dtype=str(d.dtype)[6:])
            sections[2].append((e, "data", _abytes(d)))
        entries.append(e)
    parts = sections[0] + sections[1] + sections[2]
    o = 0
    for e, k, b in parts:
        e[k] = [o, len(b)]
        o += len(b)
    head = json.dumps({"format": "golf-quant", "version": 1, "byteorder": "little", "payload_bytes": o,
                       "tensors": entries}, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + b"".join(b for _, _, b in parts)


def frame_body(b: bytes, q: QuantConfig) -> bytes:
    """The artifact of a body ``b``: (byte-shuffled,) compressed and framed."""
    z = b if q.byte_shuffle is None else byte_shuffle(b, q.byte_shuffle)
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
    return struct.pack("<4sBBQQ32s", b"GQNT", 1, c, len(z), len(b), hashlib.sha256(b).digest()) + z


def export_state_dict(sd, q: QuantConfig, schemes, hs=None, prune=()):
    """(artifact bytes, stored tensors) of a state dict: see :func:`quantize_state_dict`."""
    st = quantize_state_dict(sd, q, schemes, hs, prune)
    return frame_body(serialize(st, q), q), st


def decode_body(b: bytes, q: QuantConfig):
    """Dequantized tensors (original names, shapes, dtypes) of a body ``b``; bit-packed codes are read when
    ``q.packing`` is ``bits``."""
    (k,) = struct.unpack_from("<I", b)
    p = b[4 + k:]
    out = {}
    for e in json.loads(b[4:4 + k])["tensors"]:
        def get(r, dt, sh=e["shape"]):  # the bytes at [offset, length] r as a tensor
            return torch.from_numpy(np.frombuffer(bytearray(p[r[0]:sum(r)]), dtype=np.uint8)).view(getattr(torch, dt)).reshape(sh)

        if e["enc"] == "int":
            c = get(e["codes"], "int8") if not (q.packing == "bits" and e["packed"]) else torch.from_numpy(unpack_codes(
                p[e["codes"][0]:sum(e["codes"])], e["lo"], e["bits"], math.prod(e["shape"]))).reshape(e["shape"])
            t = dequantize(QuantizedTensor(c, get(e["scale"], e["scale_dtype"], e["scale_shape"]), 0, 0, 0))
            if q.lqer is not None and "lqer" in e:
                f, (r, k) = e["lqer"], e["shape"]
                t = t + lqer_delta(get(f["a"], "int8", [r, f["rank"]]), get(f["sa"], "float16", []),
                                   get(f["b"], "int8", [f["rank"], k]), get(f["sb"], "float16", [-1]), f["group"])
        else:
            t = get(e["data"], e["store_dtype"])
        out[e["name"]] = t.to(getattr(torch, e["dtype"]))
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
