"""Phased LoRA TTT across gloo ranks: with adapters drawn per batch (reset=ab) the same val_bpb as one
process; with warm adapters (the record's reset=b) every rank still passes the ledger."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.eval.test_dist_eval import _free_port
from tests.eval.test_phased import phased_cfg, run_eval, stream, tiny_model

pytestmark = pytest.mark.dist

LENS = [30, 12, 25, 7, 40, 18, 9, 33, 21, 5, 16]


def _run(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    out[rank] = [run_eval(phased_cfg(reset=r), stream(LENS, seed=2), tiny_model(), rank, world).to_dict()
                 for r in ("ab", "b")]
    dist.destroy_process_group()


def test_two_ranks_match_one_process():
    out = mp.Manager().dict()
    mp.spawn(_run, args=(2, _free_port(), out), nprocs=2)
    ranks = [out[0], out[1]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: several threads on a busy machine can take a minute here
    try:
        one = run_eval(phased_cfg(reset="ab"), stream(LENS, seed=2), tiny_model()).to_dict()
    finally:
        torch.set_num_threads(threads)
    for i in range(2):
        assert ranks[0][i]["val_bpb"] == ranks[1][i]["val_bpb"]  # every rank reports the reduced score
        assert ranks[0][i]["val_tokens"] == one["val_tokens"] == sum(LENS)
    two = ranks[0][0]
    assert two["ttt_steps"] == one["ttt_steps"] and two["ttt_phase_steps"] == one["ttt_phase_steps"]
    assert two["ttt_phase1_docs"] == one["ttt_phase1_docs"] and two["ttt_phase2_docs"] == one["ttt_phase2_docs"]
    assert two["val_bpb"] == pytest.approx(one["val_bpb"], rel=1e-6)
    assert two["val_bytes"] == one["val_bytes"]
    assert one["ttt_balance"] == 1.0 and 1.0 <= two["ttt_balance"] < 1.5
