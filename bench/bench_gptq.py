"""GPTQ seconds on the CPU: one 512×2048 matrix, and every GPTQ-quantized tensor of the #1493 model.

    python bench/bench_gptq.py                 # both, on the CPU, with quant=pr1493's schemes
    python bench/bench_gptq.py --device cuda   # the same on a GPU
    python bench/bench_gptq.py --only-matrix

The #1493 model (spec §3, §5.3): 11 blocks of c_q 512×512, c_k 256×512, c_v 256×512, attn.proj 512×512,
mlp.fc 2048×512, mlp.proj 512×2048 (66 int6 matrices), plus the tied embedding 8192×512 (int8).
Weights are trained-like random values (Student-t rows, varying scales); Hessians come from correlated
random inputs (a low-rank part plus noise), one per input width, since GPTQ's time depends only on the
shapes. Hessian collection (a forward pass) is not timed here: that is the calibration stage's cost.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from golf.kernel.gptq import gptq_quantize
from golf.quant.config import QuantConfig

PRESET = Path(__file__).resolve().parents[1] / "conf" / "quant" / "pr1493.yaml"
D, KV, F, V, L = 512, 256, 2048, 8192, 11


def model_shapes() -> dict[str, tuple[tuple[int, int], str]]:
    """name → (shape, scheme) of the #1493 model's GPTQ tensors."""
    out = {"tok_emb.weight": ((V, D), "int8_emb_gptq")}
    for i in range(L):
        p = f"blocks.{i}."
        for name, shape in (("attn.c_q", (D, D)), ("attn.c_k", (KV, D)), ("attn.c_v", (KV, D)),
                            ("attn.proj", (D, D)), ("mlp.fc", (F, D)), ("mlp.proj", (D, F))):
            out[p + name + ".weight"] = (shape, "int6_gptq")
    return out


def weight(shape, g) -> torch.Tensor:
    chi2 = torch.randn((*shape, 5), generator=g).square().sum(-1) / 5
    return torch.randn(shape, generator=g) / chi2.sqrt() * 0.02 * (0.5 + torch.rand(shape[0], 1, generator=g))


def hessian(cols: int, g, tokens: int = 4096) -> torch.Tensor:
    x = torch.randn(tokens, 32, generator=g) @ torch.randn(32, cols, generator=g) + torch.randn(tokens, cols, generator=g)
    return x.T @ x / tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only-matrix", action="store_true", help="time the single 512x2048 matrix only")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg: QuantConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(QuantConfig), OmegaConf.load(PRESET)))
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    hs = {cols: hessian(cols, g).to(device) for cols in (D, F)}

    def timed(w, scheme) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        gptq_quantize(w, hs[w.shape[1]], cfg.schemes[scheme])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    w = weight((D, F), g)
    print(f"gptq 512x2048 int6 ({device.type}, {torch.get_num_threads()} threads): {timed(w, 'int6_gptq'):.2f} s")
    if args.only_matrix:
        return
    shapes = model_shapes()
    total, per_kind = 0.0, {}
    for name, (shape, scheme) in shapes.items():
        dt = timed(weight(shape, g), scheme)
        total += dt
        kind = name.split(".", 2)[-1] if name.startswith("blocks.") else name
        per_kind[kind] = per_kind.get(kind, 0.0) + dt
    params = sum(s[0] * s[1] for s, _ in shapes.values())
    print(f"gptq whole #1493 model ({len(shapes)} tensors, {params:,} params, {device.type}): {total:.1f} s")
    for kind, dt in per_kind.items():
        print(f"  {kind:<22} {dt:7.2f} s")


if __name__ == "__main__":
    main()
