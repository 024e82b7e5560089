"""Sliding-window evaluation overhead: time(sliding W, S) / ((W/S) x time(standard W)).

    python bench/bench_eval.py                       # tiny baseline-shaped model on CPU
    python bench/bench_eval.py --dim 512 --layers 11 --device cuda --tokens 1000000   # on a GPU

A sliding evaluation runs about W/S times as many window forwards as the standard one (every later
window scores only its last S targets), so the ratio measures everything it adds on top of those
forwards: window gathering, masking, per-target byte accounting. Target: <= 1.1. On a GPU the
script also reports sliding-eval throughput in scored tokens per second. Tokens come from the real
validation prefix when ``../shared/data`` is present, otherwise from random ids (timing only).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from golf.dist import DistInfo
from golf.kernel.evaluate import evaluate_sliding, evaluate_standard
from golf.model import build_model
from golf.model.config import ArchConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def load_tokens(n: int, vocab: int) -> tuple[torch.Tensor, object]:
    from golf.data import read_shard
    from golf.kernel.data import byte_tables, piece_bytes

    shard = SHARED / "datasets" / "fineweb10B_sp1024_valprefix" / "fineweb_val_000000.bin"
    model = SHARED / "tokenizers" / "fineweb_1024_bpe.model"
    if shard.exists() and model.exists():
        tokens = read_shard(shard)[: n + 1].to(torch.int64)
        return tokens, piece_bytes(byte_tables(model, vocab), tokens)
    import sentencepiece  # noqa: F401  (only to fail early with a clear message if missing)

    raise SystemExit(f"real validation data not found at {SHARED}; this bench needs it for byte tables")


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--stride", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--batch-windows", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    heads = max(1, args.dim // 64) * 2
    cfg = ArchConfig(num_layers=args.layers, model_dim=args.dim, num_heads=heads, num_kv_heads=heads // 2)
    model = build_model(cfg).to(device).eval()
    tokens, nbytes = load_tokens(args.tokens, cfg.vocab_size)
    n = ((tokens.numel() - 1) // args.window) * args.window
    tokens = tokens[: n + 1]
    info = DistInfo(0, 0, 1, device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else None

    def ctx():
        return autocast() if autocast else torch.no_grad()

    def standard():
        with ctx(), torch.no_grad():
            return evaluate_standard(model, tokens, nbytes, seq_len=args.window,
                                     batch_tokens=args.batch_windows * args.window, dist=info)

    def sliding():
        with ctx(), torch.no_grad():
            return evaluate_sliding(model, tokens, nbytes, seq_len=args.window, stride=args.stride,
                                    batch_windows=args.batch_windows, dist=info)

    standard(), sliding()  # warm-up
    t_std = timed(standard, args.repeats)
    t_sld = timed(sliding, args.repeats)
    ratio = t_sld / ((args.window / args.stride) * t_std)
    print(f"model {args.layers}x{args.dim}, {n:,} targets, W={args.window} S={args.stride}, device {device}")
    print(f"standard eval: {t_std:.3f} s   sliding eval: {t_sld:.3f} s   ({n / t_sld:,.0f} scored tokens/s)")
    print(f"overhead ratio sliding / (W/S x standard) = {ratio:.3f}  (target <= 1.1)")


if __name__ == "__main__":
    main()
