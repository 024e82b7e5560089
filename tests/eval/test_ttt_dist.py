"""TTT across gloo ranks: the same val_bpb as one process, and score-first order on every rank."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.eval.test_dist_eval import _free_port
from tests.eval.test_windows import TinyCausalLM
from tests.eval.ttt_helpers import EventLog, check_score_first, evaluator, merge_by_chunk, ttt_config

pytestmark = pytest.mark.dist

# (eval window, stride, chunk, training sequence, targets): aligned chunks; windows cut by chunk
# boundaries (2 sequences per chunk: a rank without one at 3 ranks); 3 sequences over 2 or 3 ranks
CASES = [(32, 8, 64, 16, 300), (32, 6, 40, 16, 300), (16, 5, 48, 16, 200)]


def _run(rank, world, port, tokens, sp_model, out):
    from golf.kernel.data import byte_tables, piece_bytes

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    nbytes = piece_bytes(byte_tables(sp_model, 1024), tokens)
    results = []
    for seq_len, stride, chunk, train_len, n in CASES:
        log = EventLog()
        cfg = ttt_config(seq_len=seq_len, stride=stride, chunk=chunk, seq_len_ttt=train_len)
        result = evaluator(cfg, tokens[: n + 1], nbytes, rank=rank, world=world, on_event=log)(TinyCausalLM())
        results.append((result.to_dict(), log.events))
    out[rank] = results
    dist.destroy_process_group()


def _spawn(world, tokens, sp_model):
    out = mp.Manager().dict()
    mp.spawn(_run, args=(world, _free_port(), tokens, str(sp_model), out), nprocs=world)
    return [out[r] for r in range(world)]


def _one_process(tokens, sp_model):
    from golf.kernel.data import byte_tables, piece_bytes

    nbytes = piece_bytes(byte_tables(sp_model, 1024), tokens)
    return [evaluator(ttt_config(seq_len=w, stride=s, chunk=c, seq_len_ttt=t), tokens[: n + 1], nbytes)(TinyCausalLM())
            for w, s, c, t, n in CASES]


def _check(world, ranks, reference):
    for i, (*_, chunk, _t, n) in enumerate(CASES):
        dicts = [r[i][0] for r in ranks]
        assert all(d["val_tokens"] == n for d in dicts)
        assert all(d["val_bpb"] == dicts[0]["val_bpb"] for d in dicts)  # every rank reports the reduced score
        ref = reference[i]
        assert dicts[0]["val_bytes"] == ref.val_bytes
        assert dicts[0]["val_bpb"] == pytest.approx(ref.val_bpb, rel=1e-6), (world, CASES[i])
        check_score_first(merge_by_chunk([r[i][1] for r in ranks]), n, chunk)
        for r in ranks:  # on each rank, in real order: a chunk trains only after it was scored there
            events = r[i][1]
            for j, (kind, c, *_x) in enumerate(events):
                if kind == "train":
                    assert all(e[1] <= c for e in events[:j] if e[0] == "score")
        assert sum(1 for r in ranks for e in r[i][1] if e[0] == "train") > 0


def test_two_ranks_match_one_process(val_prefix_shard, sp_model_path):
    from golf.data import read_shard

    tokens = read_shard(val_prefix_shard)[:301].to(torch.int64)
    _check(2, _spawn(2, tokens, sp_model_path), _one_process(tokens, sp_model_path))


@pytest.mark.slow
def test_three_ranks_match_one_process(val_prefix_shard, sp_model_path):
    from golf.data import read_shard

    tokens = read_shard(val_prefix_shard)[:301].to(torch.int64)
    _check(3, _spawn(3, tokens, sp_model_path), _one_process(tokens, sp_model_path))
