"""Optimizer step time on a full-size model: golf's Muon against a plain per-parameter Muon loop.

    python bench/bench_optim.py                       # #507's model (arch=unet11) with optimizer=pr507
    python bench/bench_optim.py --device cuda --steps 20
    python bench/bench_optim.py --override arch.model_dim=128 --check   # a quicker run, equivalence checked

golf's Muon orthogonalises all matrices of one shape as a single batch and updates momentum and weights
with multi-tensor (foreach) kernels; the reference runs the official script's loop, one matrix at a
time, in the same Newton-Schulz dtype (``muon.ns_dtype``: bf16 on CUDA, float32 on CPU). Both do the
same math (``--check`` compares one step of each first). On a CPU the matrix products dominate and
batching changes little; on a GPU it removes most kernel launches.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from golf.config.store import register_schemas
from golf.kernel.optim import newton_schulz
from golf.model import as_arch_config, build_model
from golf.optim import build_optimizer
from golf.optim.config import OptimizerConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class LoopMuon:
    """The official script's Muon step: per matrix momentum, NS5, scale, flat buffer, apply; in the same
    Newton-Schulz dtype as golf's Muon (bf16 on CUDA, float32 on CPU by default), so only the loop differs."""

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float, coefficients,
                 dtype: torch.dtype = torch.bfloat16):
        self.params, self.lr, self.momentum, self.dtype = params, lr, momentum, dtype
        self.coefficients = coefficients  # (a, b, c) per step
        self.bufs = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        flat = torch.zeros(sum(p.numel() for p in self.params), dtype=self.dtype, device=self.params[0].device)
        offset = 0
        for p, buf in zip(self.params, self.bufs):
            buf.mul_(self.momentum).add_(p.grad)
            u = newton_schulz(p.grad.add(buf, alpha=self.momentum), self.coefficients, self.dtype)
            u *= max(1.0, p.size(-2) / p.size(-1)) ** 0.5
            flat[offset:offset + p.numel()] = u.reshape(-1)
            offset += p.numel()
        offset = 0
        for p in self.params:
            p.add_(flat[offset:offset + p.numel()].view_as(p).to(p.dtype), alpha=-self.lr)
            offset += p.numel()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(fn, device: torch.device, warmup: int, steps: int) -> float:
    """Median milliseconds of ``fn`` over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(1000.0 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="unet11")
    ap.add_argument("--optimizer", default="pr507")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override, e.g. arch.num_layers=2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1, help="timed steps per row (the median is shown)")
    ap.add_argument("--check", action="store_true", help="first compare one step of both Muons (costs a step each)")
    args = ap.parse_args()
    device = torch.device(args.device)

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose(config_name="train", overrides=[f"arch={args.arch}", f"optimizer={args.optimizer}",
                                                           *args.override])
    torch.manual_seed(0)
    model = build_model(as_arch_config(composed.arch)).to(device)
    cfg: OptimizerConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(OptimizerConfig), composed.optimizer))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3

    opt = build_optimizer(model, cfg)
    muon_params = [p for g in opt.muon.param_groups for p in g["params"]]
    momentum, coeffs = cfg.muon.momentum, [cfg.muon.ns_coefficients] * cfg.muon.ns_steps
    auto = torch.bfloat16 if device.type == "cuda" else torch.float32  # muon.ns_dtype=auto
    dtype = auto if cfg.muon.ns_dtype == "auto" else getattr(torch, cfg.muon.ns_dtype)
    loop = LoopMuon([torch.nn.Parameter(p.detach().clone()) for p in muon_params], 1.0, momentum,
                    coeffs, dtype)
    for q, p in zip(loop.params, muon_params):
        q.grad = p.grad.clone()

    opt.muon.mu = momentum
    for g in opt.muon.param_groups:
        g["lr"], g["weight_decay"] = 1.0, 0.0

    shapes = sorted({tuple(p.shape) for p in muon_params})
    n_matrices = sum(p.numel() // (p.size(-2) * p.size(-1)) for p in muon_params)
    print(f"model arch={args.arch} optimizer={args.optimizer} {' '.join(args.override)}: "
          f"{sum(p.numel() for p in model.parameters()):,} params, {n_matrices} Muon matrices "
          f"of shapes {shapes}, device {device}, threads {torch.get_num_threads()}")
    if args.check:  # one step of each from the same weights and momentum gives the same matrices
        before = [p.detach().clone() for p in muon_params]
        opt.muon.step()
        loop.step()
        worst = max((p.detach() - q.detach()).abs().max().item() for p, q in zip(muon_params, loop.params))
        step_size = max((p.detach() - b).abs().max().item() for p, b in zip(muon_params, before))
        print(f"golf Muon vs loop after one step: max |difference| {worst:.3g} (bf16 rounding amplified by "
              f"Newton-Schulz) for updates up to {step_size:.3g}")

    all_params = list(model.parameters())
    warmup = 1 if device.type == "cuda" else 0  # a CPU step of the full model takes minutes
    rows = [
        ("Muon, per-matrix loop (official script)", time_steps(loop.step, device, warmup, args.steps)),
        ("Muon, golf (batched by shape, foreach)", time_steps(opt.muon.step, device, warmup, args.steps)),
        ("AdamW groups, golf", time_steps(opt.adam.step, device, 1, args.steps)),
        ("global grad-norm clipping", time_steps(lambda: torch.nn.utils.clip_grad_norm_(all_params, 1e9),
                                                 device, 1, args.steps)),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'step':<{width}}  {'ms (median)':>12}")
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:>12.1f}")
    print(f"speed-up of golf's Muon over the loop: {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
