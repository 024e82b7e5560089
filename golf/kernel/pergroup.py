"""The per-group container: the integer codes of large matrices, grouped by role, each group its own
stream (PR #1855, spec frontier-1855 §5.7; the grouping and the similarity sort come from PRs #1586,
#1667 and #1729).

It wraps golf's body (:mod:`golf.kernel.artifact`) instead of replacing it. The lab's table gives the
group (an index into ``quant.pergroup.groups``) of each matrix that has one (int8 containers). Each
matrix's codes leave the body; its rows are optionally reordered by a greedy nearest-neighbour chain
under L1 distance (start at row 0, append the unused row nearest to the last one, ties to the lowest
index; the order is kept as uint16), then it is transposed (cols × rows bytes), and the group's
matrices, concatenated, are compressed with the group's codec — lrzip's ZPAQ back end (``lrzip -z
-L level -p threads``, through the Debian binary, its config file bypassed) or one of the body's
codecs. What is left of the body follows its own codec in a plain frame (:func:`frame_body`) with the
group table (JSON: per group its codec, whether it was sorted and the header indices of its matrices)
and the permutations before it:

    frame: b"GQNT" | version 2 | compressor id | section length u64 | body length u64 | sha256(body)
    section: n u32 | n × stream length u64 | stream 0: frame_body(rest) | streams 1..n−1: the groups
    rest: table length u32 | permutations length u32 | table | permutations (uint16 LE) | cut body

The cut body is the body without the grouped code ranges; loading decodes the groups in parallel
threads, inverts transpose and sort, splices the codes back at the offsets the header gives and checks
the body's sha256 before decoding it. The record compresses the codes of whole layers by tensor name
and its remainder with ``torch.save``; golf keeps its own header and container (13,875 B smaller than
the record's on the same codes, measured on #1493's export).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import brotli
import numpy as np
import torch
import zstandard

from golf.kernel.artifact import byte_unshuffle, decode_body, frame_body

if TYPE_CHECKING:
    from golf.quant.config import PackGroupConfig, PerGroupConfig, QuantConfig


def sort_rows(a):
    """The greedy L1 nearest-neighbour chain over the rows of int8 codes ``a`` [rows, cols] (numpy), as
    an index array. Distances are exact (integer sums in fp32), on the GPU when there is one."""
    x = torch.tensor(a, dtype=torch.float32, device="cuda" if torch.cuda.is_available() else "cpu")
    d = torch.cdist(x, x, p=1).cpu()  # [rows, rows]
    used = torch.zeros(len(a))
    used[0] = float("inf")
    order = [0]
    for _ in range(len(a) - 1):
        order.append(int((d[order[-1]] + used).argmin()))
        used[order[-1]] = float("inf")
    return np.array(order)


# lrzip's own config file (~/.lrzip/lrzip.conf) could change its output: the child runs without it
LRZIP_ENV = {**os.environ, "LRZIP": "NOCONFIG"}


def group_pack(b: bytes, g: PackGroupConfig, p: PerGroupConfig) -> bytes:
    """One group's stream compressed with its codec (an empty stream stays empty)."""
    if not b:
        return b
    if g.codec == "lrzip":
        return subprocess.run(["lrzip", "-q", "-z", "-L", str(g.level), "-p", str(p.lrzip_threads)], input=b,
                              capture_output=True, check=True, env=LRZIP_ENV).stdout
    if g.codec == "brotli":
        return brotli.compress(b, quality=g.level)
    if g.codec == "zstd":
        return zstandard.ZstdCompressor(level=g.level).compress(b)
    if g.codec == "lzma":
        return lzma.compress(b, format=lzma.FORMAT_XZ, preset=g.level)
    return zlib.compress(b, g.level)


def group_unpack(z: bytes, g: PackGroupConfig) -> bytes:
    if not z:
        return z
    if g.codec == "lrzip":
        return subprocess.run(["lrzip", "-q", "-d"], input=z, capture_output=True, check=True,
                              env=LRZIP_ENV).stdout
    if g.codec == "brotli":
        return brotli.decompress(z)
    if g.codec == "zstd":
        return zstandard.ZstdDecompressor().decompress(z)
    if g.codec == "lzma":
        return lzma.decompress(z)
    return zlib.decompress(z)


def header_of(body: bytes):
    """(the tensors' header entries, the payload's offset) of a body."""
    (k,) = struct.unpack_from("<I", body)
    return json.loads(body[4:4 + k])["tensors"], 4 + k


def pack_groups(body: bytes, q: QuantConfig, groups) -> bytes:
    """The per-group artifact of ``body``; ``groups``: the lab's table, tensor name → the index of its
    group in ``q.pergroup.groups`` (state-dict order)."""
    es, base = header_of(body)
    ix = {e["name"]: i for i, e in enumerate(es)}
    cut, table, perms, raws = [], [], [], []
    for g in range(len(q.pergroup.groups)):
        c = q.pergroup.groups[g]
        names = [n for n in groups if groups[n] == g]
        raw = []
        for n in names:
            o, m = es[ix[n]]["codes"]
            cut.append((base + o, m))
            a = np.frombuffer(body, np.int8, m, base + o).reshape(es[ix[n]]["shape"])
            if c.sort:
                s = sort_rows(a)
                perms.append(s.astype("<u2").tobytes())
                a = a[s]
            raw.append(a.T.tobytes())  # [cols, rows]
        table.append([c.codec, c.sort, [ix[n] for n in names]])
        raws.append(b"".join(raw))
    with ThreadPoolExecutor(len(raws)) as ex:
        zs = list(ex.map(lambda i: group_pack(raws[i], q.pergroup.groups[i], q.pergroup), range(len(raws))))
    rest, i = [], 0
    for o, m in sorted(cut):
        rest.append(body[i:o])
        i = o + m
    t, pm = json.dumps(table, separators=(",", ":")).encode(), b"".join(perms)
    f = frame_body(struct.pack("<II", len(t), len(pm)) + t + pm + b"".join(rest) + body[i:], q)
    sec = struct.pack(f"<I{len(zs) + 1}Q", len(zs) + 1, len(f), *map(len, zs)) + f + b"".join(zs)
    return struct.pack("<4sBBQQ32s", b"GQNT", 2, f[5], len(sec), len(body), hashlib.sha256(body).digest()) + sec


def split_streams(blob: bytes) -> list[bytes]:
    """The streams of a per-group artifact's section."""
    (n,) = struct.unpack_from("<I", blob, 54)
    o, out = 58 + 8 * n, []
    for m in struct.unpack_from(f"<{n}Q", blob, 58):
        out.append(blob[o:o + m])
        o += m
    return out


def restore_codes(rest: bytes, raws) -> bytes:
    """The body from the decompressed rest and the decompressed group streams ``raws``: each matrix's
    codes transposed back, unsorted and spliced in at its header offset."""
    k, n = struct.unpack_from("<II", rest)
    table, pm, cut = json.loads(rest[8:8 + k]), np.frombuffer(rest, "<u2", n // 2, 8 + k), rest[8 + k + n:]
    es, base = header_of(cut)
    pieces, j = [], 0
    for (_, srt, ids), raw in zip(table, raws):
        o = 0
        for i in ids:
            r, c = es[i]["shape"]
            a = np.frombuffer(raw, np.int8, r * c, o).reshape(c, r).T
            o += r * c
            if srt:
                b = np.empty_like(a)
                b[pm[j:j + r]] = a  # row s[t] of the matrix is row t of the sorted one
                a, j = b, j + r
            pieces.append((base + es[i]["codes"][0], a.tobytes()))
    out, i, d = [], 0, 0
    for o, b in sorted(pieces):
        out += [cut[i:o - d], b]
        i, d = o - d, d + len(b)
    return b"".join(out) + cut[i:]


def load_groups(blob: bytes, q: QuantConfig):
    """Dequantized tensors of a per-group artifact this recipe wrote (checksum checked)."""
    ss = split_streams(blob)
    z = ss[0][54:]
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
    with ThreadPoolExecutor(len(ss)) as ex:
        raws = list(ex.map(lambda i: group_unpack(ss[i + 1], q.pergroup.groups[i]), range(len(ss) - 1)))
    body = restore_codes(z, raws)
    if hashlib.sha256(body).digest() != blob[22:54]:
        raise ValueError("artifact checksum mismatch")
    return decode_body(body, q)
