"""Read a W&B offline run directory (``wandb/offline-run-<time>-<id>/run-<id>.wandb``) without the network.

The ``.wandb`` file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version) and then
records framed as in LevelDB's log format (32 KiB blocks; each piece has a 7-byte header: CRC32C,
length, type FULL/FIRST/MIDDLE/LAST), each record a ``wandb_internal_pb2.Record`` protobuf. Of those,
this reader keeps the run record (name, group, job type, tags, config), the summary updates (merged in
order, so the last value wins) and the history rows.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEADER = b":W&B"
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    path: Path  # the offline-run directory
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def _records(data: bytes) -> list[bytes]:
    if data[:4] != HEADER:
        raise ValueError("not a W&B transaction log (bad header)")
    out, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a piece header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        piece = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            out.append(piece)
        elif kind == FIRST:
            pending = piece
        elif kind == MIDDLE:
            pending += piece
        elif kind == LAST:
            out.append(pending + piece)
    return out


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_offline_run(run_dir: Path) -> OfflineRun:
    """Parse the ``run-*.wandb`` file of an offline run directory."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
    run = OfflineRun(run_dir)
    for blob in _records(files[0].read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(blob)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.name, run.group, run.job_type, run.tags = r.display_name, r.run_group, r.job_type, list(r.tags)
            run.config.update({_key(i): _value(i.value_json) for i in r.config.update if _key(i) != "_wandb"})
        elif kind == "config":
            run.config.update({_key(i): _value(i.value_json) for i in rec.config.update if _key(i) != "_wandb"})
        elif kind == "summary":
            run.summary.update({_key(i): _value(i.value_json) for i in rec.summary.update
                                if not _key(i).startswith("_")})
        elif kind == "history":
            run.history.append({_key(i): _value(i.value_json) for i in rec.history.item})
    return run


def is_offline_run_dir(path: Path) -> bool:
    return path.is_dir() and path.name.startswith(("offline-run-", "run-")) and any(path.glob("run-*.wandb"))
