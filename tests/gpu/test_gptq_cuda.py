"""GPTQ and calibration on a GPU: the CUDA path agrees with the CPU path (skipped without CUDA)."""

from __future__ import annotations

import math

import pytest
import torch

from golf.config.validate import load_config
from golf.kernel.gptq import gptq_quantize
from golf.kernel.quantize import dequantize
from golf.quant.config import ClipRule, GPTQConfig, RoundingScale, ScaleFloor, SchemeConfig
from golf.train import run
from tests.helpers import TINY, compose_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_gptq_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g) @ torch.randn(16, 512, generator=g) + torch.randn(4096, 512, generator=g)
    w = torch.randn(256, 512, generator=g) * 0.02
    h = x.T @ x
    scheme = SchemeConfig(bits=6, clip=ClipRule.sdclip, clip_sigmas=12.85, scale_floor=ScaleFloor.tiny,
                          rounding_scale=RoundingScale.fp16, gptq=GPTQConfig())
    torch.backends.cuda.matmul.allow_tf32 = False
    cpu = gptq_quantize(w, h, scheme)
    gpu = gptq_quantize(w.cuda(), h.cuda(), scheme)
    assert gpu.q.device.type == "cpu" and torch.equal(cpu.scale, gpu.scale)
    assert (cpu.q != gpu.q).float().mean() < 0.01  # float summation order may flip a few roundings
    err = [float(((w - dequantize(qt)) @ x.T).norm()) for qt in (cpu, gpu)]
    assert err[1] == pytest.approx(err[0], rel=0.02)


def test_pr1493_run_on_cuda(tmp_path):
    overrides = [*TINY, "device=cuda", "compile=true", "precision=bf16", "arch.model_dim=128", "arch.num_heads=2",
                 "arch.num_kv_heads=1", "quant=pr1493", "quant.passthrough_max_numel=1024",
                 "quant.calibration.batches=4"]
    cfg = load_config(compose_config(overrides))
    cfg.run_dir = str(tmp_path / "run")
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and math.isfinite(summary["val_bpb"])
    assert summary["calibration_batches"] == 4 and summary["quantize_s"] > 0


def test_hessians_on_the_cpu_and_tf32_as_the_record(tmp_path):
    """quant.calibration.device=cpu: the CUDA model's Hessians come back on the CPU and GPTQ runs there;
    tf32=true allows TF32 matmuls for the run (both #1493's settings)."""
    from golf.dist import DistInfo
    from golf.kernel.gptq import calibrate
    from golf.quant.routing import schemes_table

    cfg = load_config(compose_config([*TINY, "quant=pr1493", "quant.passthrough_max_numel=256",
                                      "quant.calibration.batches=2"]))
    assert cfg.quant.calibration.device == "cpu"
    torch.manual_seed(0)
    from golf.model import build_model
    model = build_model(cfg.arch).cuda()
    one = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cuda"))
    ids = torch.randint(0, cfg.arch.vocab_size, (8, cfg.train.seq_len + 1))

    class Once:
        def next_batch(self, *a):
            return ids[:, :-1], ids[:, 1:]

    hs = calibrate(model, cfg.quant, cfg.train, one, schemes_table(model, cfg.quant), Once)
    assert hs and all(h.device.type == "cpu" for h in hs.values())
    torch.backends.cuda.matmul.allow_tf32 = False
    run_cfg = load_config(compose_config([*TINY, "device=cuda", "tf32=true"]))
    run_cfg.run_dir = str(tmp_path / "run")
    run(run_cfg, tmp_path / "run")
    assert torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
