"""The CUDA path: torch.compile, bf16 autocast, flash SDPA, QAT switching inside the compiled graph, the
loss inside the compiled graph, the automatic micro-batch.

Skipped without a GPU. On a GPU machine: ``python -m pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.microbatch import activation_bytes_per_token, resolve_micro_rows
from golf.model import build_model
from golf.train import run
from tests.helpers import TINY, compose_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = [*TINY, "device=cuda", "compile=true", "precision=bf16", "arch.model_dim=128", "arch.num_heads=2",
        "arch.num_kv_heads=1"]


def test_compiled_bf16_run_end_to_end(tmp_path):
    cfg = load_config(compose_config(CUDA))
    cfg.run_dir = str(tmp_path / "run")
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and math.isfinite(summary["val_bpb"])
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["status"] == "completed" and saved["peak_mem_mib"] > 0
    for key in ("setup_s", "compile_s", "export_s", "final_eval_s"):
        assert saved[key] >= 0, key


def test_late_qat_switches_on_in_the_compiled_model(tmp_path):
    """pr187's int6 QAT rules with an lr-threshold schedule: the switch must take effect when compiled."""
    overrides = [*CUDA, "quant=pr187", "arch.model_dim=256", "quant.qat.min_numel=1024", "quant.qat.schedule=lr_below",
                 "++quant.qat.lr_threshold=0.5", "optimizer.schedule.kind=iterations", "optimizer.schedule.warmdown_iters=6"]
    cfg = load_config(compose_config(overrides))
    cfg.run_dir = str(tmp_path / "run")
    run(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    active = [r["qat_active"] for r in rows if r["event"] == "train"]
    assert active[0] is False and active[-1] is True


def test_pr1493_loop_switch_in_the_compiled_bf16_model(tmp_path):
    """experiment=pr1493 at small width, compiled with bf16 autocast: both topologies are warmed up, the
    loop switches on mid-run (the compiled graph follows it), the bf16 embedding trains, the run scores."""
    overrides = ["experiment=pr1493", "data=demo_sp8192", "logger=none", "device=cuda", "compile=true",
                 "precision=bf16", "arch.model_dim=128", "arch.num_heads=4", "arch.num_kv_heads=2",
                 "train.iterations=20", "train.max_wallclock_s=null", "train.batch_tokens=8192", "train.seq_len=256",
                 "train.warmup_steps=2", "train.val_every=0", "train.log_every=1", "eval.seq_len=256",
                 "eval.max_tokens=8192", "eval.ttt.chunk_tokens=4096", "eval.ttt.seq_len=256"]
    cfg = load_config(compose_config(overrides))
    cfg.run_dir = str(tmp_path / "run")
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and math.isfinite(summary["val_bpb"])
    assert summary["loop_switch_step"] == 7  # 7/20 = 0.35
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if r["event"] == "train"]
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)


def test_loss_in_the_compiled_graph_equals_the_eager_reference():
    """The soft-capped cross-entropy fused into the compiled bf16 graph against eager logits + F.cross_entropy."""
    cfg = load_config(compose_config(["experiment=baseline", "logger=none", "arch.num_layers=2"]))
    torch.manual_seed(0)
    model = build_model(cfg.arch).cuda()
    with torch.no_grad():  # zero-init output projections would make the blocks the identity
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.05)
    x = torch.randint(0, cfg.arch.vocab_size, (4, 256), device="cuda")
    y = torch.randint(0, cfg.arch.vocab_size, (4, 256), device="cuda")
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused = compiled(x, y)
        logits = model(x)
    reference = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
    assert fused.dtype == torch.float32 and torch.isfinite(fused)
    assert abs(fused.item() - reference.item()) <= 2e-2 * reference.item()
    fused.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_auto_micro_batch_fits_the_device_and_refuses_what_cannot():
    cfg = load_config(compose_config(["experiment=baseline", "logger=none"]))
    model = build_model(cfg.arch).cuda()
    t = cfg.train
    rows = resolve_micro_rows("auto", arch=cfg.arch, model=model, batch_tokens=t.batch_tokens, seq_len=t.seq_len,
                              world_size=1, accum=8, device=torch.device("cuda"), bf16=True)
    total_rows = t.batch_tokens // t.seq_len
    free, _ = torch.cuda.mem_get_info()
    need = activation_bytes_per_token(cfg.arch, max(len(o) for o in model.layer_orders()), bf16=True) * t.seq_len
    assert total_rows % rows == 0 and rows * need <= free
    assert rows == total_rows or (2 * rows * need > 0.85 * free or total_rows % (2 * rows))
    with pytest.raises(ConfigError, match="train.micro_batch_tokens"):
        resolve_micro_rows("auto", arch=cfg.arch, model=model, batch_tokens=2**40, seq_len=2**36, world_size=1,
                           accum=1, device=torch.device("cuda"), bf16=True)


def test_auto_micro_batch_run_matches_the_official_split(tmp_path):
    """A compiled run with the automatic micro-batch trains on the same data as the official 8-way split:
    the first losses agree to bf16 tolerance."""
    losses = {}
    for name, micro in (("auto", "auto"), ("official", "64")):
        over = [*CUDA, "train.warmup_steps=1", "train.grad_accum_steps=8", f"train.micro_batch_tokens={micro}"]
        cfg = load_config(compose_config(over))
        cfg.run_dir = str(tmp_path / name)
        summary = run(cfg, tmp_path / name)
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["train_loss"] for r in rows if r["event"] == "train"]
        if name == "auto":
            assert summary["micro_batch_tokens"] == cfg.train.batch_tokens  # the whole step fits at once
    assert len(losses["auto"]) == len(losses["official"])
    for a, b in zip(losses["auto"], losses["official"]):
        assert abs(a - b) <= 2e-2 * abs(b)


def test_step_flags_on_cuda_lag_one_step_and_carry_the_device_flag():
    from golf.kernel.state import StepFlags

    flags = StepFlags(torch.device("cuda"))
    assert flags.lag == 1
    assert flags.exchange(1.0, 0.0, 0.0, device_flag=torch.tensor(False, device="cuda")) is None
    assert flags.exchange(2.0, 1.0, 0.0, device_flag=torch.tensor(True, device="cuda")) == [1.0, 0.0, 0.0, 0.0]
    assert flags.exchange(3.5, 0.0, 0.0, device_flag=torch.tensor(False, device="cuda")) == [2.0, 1.0, 0.0, 1.0]
    assert flags.projected_clock() == 3.0  # 2.0 agreed, plus the last agreed step time (2.0 - 1.0)
    assert flags.flush() == [3.5, 0.0, 0.0, 0.0] and flags.flush() is None


def test_a_step_of_data_goes_to_the_device_without_a_host_sync(tmp_path):
    """One pinned, non-blocking copy per step: the host never waits for the device queue here."""
    import numpy as np

    from golf.data.shards import write_shard
    from golf.kernel.data import DistributedTokenLoader
    from golf.kernel.loop import step_batches

    write_shard(tmp_path / "t_000000.bin", np.arange(40_000, dtype=np.uint16) % 1024)
    loader = DistributedTokenLoader(str(tmp_path / "t_*.bin"), 0, 1)
    step_batches(loader, 8 * 1024, 256, 8, 16, torch.device("cuda"))  # first use: allocator and pinned pools
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = step_batches(loader, 8 * 1024, 256, 8, 16, torch.device("cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == 2 and batches[0][0].shape == (16, 256) and batches[0][0].is_cuda
