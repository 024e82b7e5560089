"""Distributed Muon (2 gloo processes) gives the same parameters and state as one process."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from golf.optim import build_optimizer
from tests.optim.standin import decoder_cfg, fill_grads, seeded_model

STEPS = 3


def train(world_size: int, rank: int) -> tuple[dict, dict]:
    model = seeded_model()
    opt = build_optimizer(model, decoder_cfg(), world_size=world_size, rank=rank)
    for step in range(STEPS):
        fill_grads(model, 100 + step)  # identical on every rank, as after DDP's averaging
        opt.step(step, lr_mul=1.0)
        opt.zero_grad()
    buffers = {i: s["momentum_buffer"] for i, s in enumerate(opt.muon.state.values())}
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, buffers


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.save(train(world_size, rank), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_two_process_muon_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    weights, buffers = train(1, 0)
    for rank in range(2):
        got_weights, got_buffers = torch.load(tmp_path / f"rank{rank}.pt")
        for name, w in weights.items():
            torch.testing.assert_close(got_weights[name], w, rtol=0, atol=0, msg=f"rank {rank}: {name}")
        assert got_buffers.keys() == buffers.keys()
        for i, b in buffers.items():
            torch.testing.assert_close(got_buffers[i], b, rtol=0, atol=0)
