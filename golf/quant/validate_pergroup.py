"""Strict reading of a per-group artifact (frame version 2, :mod:`golf.kernel.pergroup`): the section's
stream table, the rest's frame (read as any artifact frame, :func:`unframe`), the group table, the
grouped matrices' header entries and the permutations are all checked — and the body they rebuild is
sized — before any group stream is decompressed. Every group stream decodes to at most the bytes its
matrices need (lrzip: the size in its header must say so before the binary runs, and its output is
read from a pipe up to that size); the rebuilt body must have the length and sha256 the frame gives.
Anything inconsistent is one :class:`ArtifactError` naming what.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import threading

import numpy as np

from golf.kernel.pergroup import LRZIP_ENV, restore_codes
from golf.quant.validate_artifact import CHUNK, FRAME_BYTES, ArtifactError, decompress, unframe

GROUP_CODECS = ("zlib", "zstd", "lzma", "brotli", "lrzip")
MAX_STREAMS = 257  # the rest and up to 256 groups
LRZIP_MAGIC = b"LRZI"


def _lrzip(data: bytes, expected: int, where: str) -> bytes:
    """Decode an lrzip stream to exactly ``expected`` bytes, reading at most one byte more."""
    if shutil.which("lrzip") is None:
        raise ArtifactError(f"{where} is lrzip-compressed and the lrzip binary is not on PATH: apt-get install lrzip")
    if len(data) < 14 or data[:4] != LRZIP_MAGIC:
        raise ArtifactError(f"{where}: not an lrzip stream (magic {data[:4]!r})")
    declared = int.from_bytes(data[6:14], "little")
    if declared != expected:
        raise ArtifactError(f"{where}: the lrzip stream declares {declared} bytes, its matrices need {expected}; "
                            "refused before decompressing")
    proc = subprocess.Popen(["lrzip", "-q", "-d"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=LRZIP_ENV)

    def feed():
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except OSError:  # the decoder stopped reading (killed after too much output, or a broken stream)
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out = bytearray()
    while len(out) <= expected:
        piece = proc.stdout.read(min(CHUNK, expected + 1 - len(out)))
        if not piece:
            break
        out += piece
    if len(out) > expected:
        proc.kill()
    proc.stdout.close()
    code = proc.wait()
    feeder.join()
    if len(out) > expected:
        raise ArtifactError(f"{where}: lrzip output exceeds the {expected} bytes its matrices need")
    if code != 0 or len(out) != expected:
        raise ArtifactError(f"{where}: lrzip cannot decode it (exit {code}, {len(out)} of {expected} bytes)")
    return bytes(out)


def _streams(section: bytes) -> list[bytes]:
    if len(section) < 4:
        raise ArtifactError("per-group section truncated before its stream count")
    (n,) = struct.unpack_from("<I", section)
    if not 2 <= n <= MAX_STREAMS or len(section) < 4 + 8 * n:
        raise ArtifactError(f"per-group section declares {n} streams (2..{MAX_STREAMS}) or is truncated")
    lengths = struct.unpack_from(f"<{n}Q", section, 4)
    if sum(lengths) != len(section) - 4 - 8 * n:
        raise ArtifactError(f"per-group streams sum to {sum(lengths)} bytes, the section holds {len(section) - 4 - 8 * n}")
    out, o = [], 4 + 8 * n
    for m in lengths:
        out.append(section[o:o + m])
        o += m
    return out


def _json(raw: bytes, what: str):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{what} is not valid JSON: {exc}") from None


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_layout(rest: bytes, groups: int) -> tuple[list, list[int], int]:
    """(the group table, each group's decoded size, the body size) of a decompressed rest, every grouped
    matrix's entry, offsets and permutation checked."""
    if len(rest) < 8:
        raise ArtifactError("per-group rest truncated before its table lengths")
    k, pl = struct.unpack_from("<II", rest)
    if 8 + k + pl > len(rest):
        raise ArtifactError(f"per-group table ({k} B) and permutations ({pl} B) run past the rest ({len(rest)} B)")
    table, cut = _json(rest[8:8 + k], "per-group table"), rest[8 + k + pl:]
    if not isinstance(table, list) or len(table) != groups or not all(
            isinstance(g, list) and len(g) == 3 and g[0] in GROUP_CODECS and isinstance(g[1], bool)
            and isinstance(g[2], list) and all(_int(i) for i in g[2]) for g in table):
        raise ArtifactError(f"per-group table malformed: expected {groups} [codec, sorted, [tensor indices]] entries")
    if len(cut) < 4 or 4 + struct.unpack_from("<I", cut)[0] > len(cut):
        raise ArtifactError("per-group rest: body header length runs past the body")
    (h,) = struct.unpack_from("<I", cut)
    head = _json(cut[4:4 + h], "artifact header")
    tensors = head.get("tensors") if isinstance(head, dict) else None
    if not isinstance(tensors, list):
        raise ArtifactError("artifact header has no tensor list")
    sizes, ranges, seen, rows = [], [], set(), 0
    perms = np.frombuffer(rest, "<u2", pl // 2, 8 + k) if pl % 2 == 0 else None
    for g, (_, srt, ids) in enumerate(table):
        size = 0
        for i in ids:
            e = tensors[i] if i < len(tensors) else None
            where = f"per-group stream {g + 1}, tensor {i}"
            if i in seen or not isinstance(e, dict) or e.get("enc") != "int" or e.get("packed") is not False:
                raise ArtifactError(f"{where}: not an unpacked int tensor of the header, or grouped twice")
            shape, codes = e.get("shape"), e.get("codes")
            if not (isinstance(shape, list) and len(shape) == 2 and all(_int(s) for s in shape) and isinstance(codes, list)
                    and len(codes) == 2 and all(_int(c) for c in codes) and codes[1] == shape[0] * shape[1]):
                raise ArtifactError(f"{where}: a grouped tensor needs a 2-D shape and codes of rows x cols bytes")
            if srt:
                if perms is None or rows + shape[0] > len(perms) or not np.array_equal(
                        np.sort(perms[rows:rows + shape[0]]), np.arange(shape[0])):
                    raise ArtifactError(f"{where}: its row order is missing or not a permutation")
                rows += shape[0]
            seen.add(i)
            size += codes[1]
            ranges.append((4 + h + codes[0], codes[1]))
        sizes.append(size)
    if pl != 2 * rows:
        raise ArtifactError(f"per-group permutations hold {pl} bytes, the sorted matrices need {2 * rows}")
    at = d = 0
    for o, m in sorted(ranges):
        if o - d < at or o - d > len(cut):
            raise ArtifactError(f"per-group code ranges overlap or lie past the body (offset {o})")
        at, d = o - d, d + m
    return table, sizes, len(cut) + d


def unframe_groups(blob: bytes, body_len: int, digest: bytes, model_bound: int | None) -> bytes:
    """The verified body of a per-group artifact whose frame fields the caller has checked."""
    streams = _streams(blob[FRAME_BYTES:])
    if streams[0][4:5] != b"\x01":
        raise ArtifactError("per-group rest is not a version 1 frame")
    rest = unframe(streams[0], model_bound)
    table, sizes, size = _check_layout(rest, len(streams) - 1)
    if size != body_len:
        raise ArtifactError(f"per-group streams rebuild a body of {size} bytes, the frame says {body_len}")
    raws = []
    for g, ((codec, _, _), z, n) in enumerate(zip(table, streams[1:], sizes)):
        where = f"per-group stream {g + 1} ({codec})"
        if n == 0 or len(z) == 0:
            if n or z:
                raise ArtifactError(f"{where}: {len(z)} compressed bytes for {n} bytes of codes")
            raws.append(b"")
        else:
            raws.append(_lrzip(z, n, where) if codec == "lrzip" else decompress(z, codec, n))
    body = restore_codes(rest, raws)
    if hashlib.sha256(body).digest() != digest:
        raise ArtifactError("artifact checksum mismatch: header or payload was modified")
    return body
