"""Evaluation gives the same totals on 1 process and on 2 gloo processes."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from golf.dist import DistInfo
from tests.eval.test_windows import TinyCausalLM

pytestmark = pytest.mark.dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(rank, world, port, tokens, sp_model, out):
    from golf.kernel.data import byte_tables, piece_bytes
    from golf.kernel.evaluate import evaluate_sliding, evaluate_standard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    info = DistInfo(rank=rank, local_rank=rank, world_size=world, device=torch.device("cpu"))
    nbytes = piece_bytes(byte_tables(sp_model, 1024), tokens)
    model = TinyCausalLM().eval()
    std = evaluate_standard(model, tokens, nbytes, seq_len=32, batch_tokens=128, dist=info)
    sld = evaluate_sliding(model, tokens, nbytes, seq_len=32, stride=8, batch_windows=5, dist=info)
    out[rank] = (std.to_dict(), sld.to_dict())
    dist.destroy_process_group()


def test_two_processes_match_one(val_prefix_shard, sp_model_path):
    from golf.data import read_shard

    tokens = read_shard(val_prefix_shard)[: 32 * 13 + 1].to(torch.int64)
    manager = mp.Manager()
    one, two = manager.dict(), manager.dict()
    mp.spawn(_run, args=(1, _free_port(), tokens, str(sp_model_path), one), nprocs=1)
    mp.spawn(_run, args=(2, _free_port(), tokens, str(sp_model_path), two), nprocs=2)
    for kind in (0, 1):
        a, b, c = one[0][kind], two[0][kind], two[1][kind]
        assert b == c  # every rank reports the reduced totals
        assert a["val_tokens"] == b["val_tokens"] and a["val_bytes"] == b["val_bytes"]
        assert a["val_bpb"] == pytest.approx(b["val_bpb"], rel=1e-9)
