"""The CPU side of ``bench/bench_vs_official.py``: golf's eager fp32 step against the official script's.

The official ``train_gpt.py`` needs CUDA. Here it runs unmodified on disk and is adapted when loaded:
its device becomes the CPU, ``torch.compile`` the identity, bf16 autocast and the bf16 model cast are
switched off (fp32 weights, as golf on CPU), the CUDA-only calls (``set_device``, ``synchronize``,
memory statistics, ``nvidia-smi``) do nothing, and its Newton-Schulz runs in fp32: a plain eager fp32
implementation of the same model and optimizer, which is what golf's CPU default is compared with.
Both sides train the baseline at full width (9x512) on ``--cpu-batch-tokens`` tokens per step
(8 micro-steps), on the same shards; each side's per-step times come from its own step log (training
clock differences), and the median of the timed steps is reported.

``--cpu-bf16-ns`` adds the bf16 Newton-Schulz pair: the official script with its Newton-Schulz as
written (bf16) against golf with ``optimizer.muon.ns_dtype=bfloat16``. On a CPU without bf16 units a
bf16 matmul is tens of times slower than fp32, so this pair can take many minutes per step.
``--no-official`` leaves the official rows out (golf's rows against ``--reference-ms`` when given).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# (text in the official script, its CPU replacement); each must occur, or the adaptation is refused
ADAPT = [
    ('torch.device("cuda", local_rank)', 'torch.device("cpu")'),
    ('device_type="cuda", dtype=torch.bfloat16, enabled=True', 'device_type="cpu", dtype=torch.bfloat16, enabled=False'),
    (".to(device).bfloat16()", ".to(device).float()"),
    ('subprocess.run(["nvidia-smi"]', 'subprocess.run(["true"]'),
]
# the Newton-Schulz iteration and its flat update buffer in fp32 (left as written with --cpu-bf16-ns)
FP32_NS = [
    ("X = G.bfloat16()", "X = G.float()"),
    ("dtype=torch.bfloat16)", "dtype=torch.float32)"),
]


def run_official_cpu(official: Path, fp32_ns: bool = True) -> None:
    """Entry of the child process: run the adapted official script as ``__main__``."""
    import torch

    source = official.read_text()
    for old, new in ADAPT + (FP32_NS if fp32_ns else []):
        if old not in source:
            raise SystemExit(f"bench: cannot adapt {official} for the CPU: {old!r} not found")
        source = source.replace(old, new)
    torch.cuda.is_available = lambda: True
    for name in ("set_device", "synchronize", "manual_seed_all"):
        setattr(torch.cuda, name, lambda *a, **k: None)
    torch.cuda.max_memory_allocated = torch.cuda.max_memory_reserved = lambda *a, **k: 0
    torch.compile = lambda fn=None, **kw: fn if fn is not None else (lambda f: f)
    with tempfile.TemporaryDirectory() as tmp:
        adapted = Path(tmp) / "train_gpt_cpu.py"
        adapted.write_text(source)
        sys.argv = [str(adapted)]
        runpy.run_path(str(adapted), run_name="__main__")


def _write_shard(path: Path, tokens: np.ndarray) -> None:
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def cpu_data(src_val: Path, tokenizer: Path, dst: Path, val_tokens: int) -> Path:
    """Train shard = the whole validation prefix; val shard = its first ``val_tokens + 1`` tokens (a
    short final evaluation on the CPU)."""
    ds = dst / "datasets" / "fineweb10B_sp1024"
    ds.mkdir(parents=True, exist_ok=True)
    (dst / "tokenizers").mkdir(exist_ok=True)
    tokens = np.fromfile(src_val, dtype="<u2", offset=256 * 4)
    _write_shard(ds / "fineweb_train_000000.bin", tokens)
    _write_shard(ds / "fineweb_val_000000.bin", tokens[: val_tokens + 1])
    (dst / "tokenizers" / tokenizer.name).write_bytes(tokenizer.read_bytes())
    return dst


def step_times_ms(pairs: list[tuple[int, float]]) -> list[float]:
    """Per-step times from cumulative (step, train time ms) log entries of consecutive steps."""
    pairs = sorted(pairs)
    return [t1 - t0 for (s0, t0), (s1, t1) in zip(pairs, pairs[1:]) if s1 == s0 + 1] or \
        ([pairs[0][1] / pairs[0][0]] if pairs else [])


def compare_cpu(args) -> None:
    from bench.bench_vs_official import DATASET, TOKENIZER, VAL_PREFIX

    src = Path(args.data_root)
    val = src / DATASET / "fineweb_val_000000.bin"
    val = val if val.exists() else src / VAL_PREFIX
    out = Path(args.out).resolve() / "cpu"
    data = cpu_data(val, src / TOKENIZER, out / "data", args.cpu_val_tokens)
    steps, warmup, batch = args.steps, args.warmup, args.cpu_batch_tokens
    env = {**os.environ, "DATA_PATH": str(data / DATASET), "TOKENIZER_PATH": str(data / TOKENIZER),
           "ITERATIONS": str(steps), "WARMUP_STEPS": str(warmup), "VAL_LOSS_EVERY": "0",
           "TRAIN_LOG_EVERY": "1", "MAX_WALLCLOCK_SECONDS": "0", "RUN_ID": "bench_cpu", "SEED": str(args.seed),
           "TRAIN_BATCH_TOKENS": str(batch), "VAL_BATCH_SIZE": str(batch),
           "PYTHONPATH": str(ROOT)}
    # the official script always accumulates 8 micro-steps on one process; golf's default does the same
    pairs_to_run = [("official fp32 NS", True, "golf", [])]
    if args.cpu_bf16_ns:
        pairs_to_run.append(("official bf16 NS", False, "golf ns=bf16", ["optimizer.muon.ns_dtype=bfloat16"]))
    rows = []  # (name, ms/step, train losses, the ms/step it is compared with)
    for official_name, fp32_ns, golf_name, extra in pairs_to_run:
        ref = args.reference_ms
        if args.official_run:
            name, ms, losses = _official_row(args, official_name, fp32_ns, env, out)
            rows.append((name, ms, losses, ms))
            ref = ms
        rows.append((*_golf_row(args, golf_name, extra, data, out), ref))
    against = ("each golf row against the official row above it" if args.official_run else
               f"against --reference-ms {args.reference_ms}" if args.reference_ms else "no official run")
    lines = [f"CPU ({os.cpu_count()} threads), baseline 9x512 fp32 eager, {batch} tokens/step in 8 micro-steps, "
             f"median of {steps} steps after {warmup} warm-up; {against}",
             f"{'run':<22}{'ms/step':>10}{'vs official' if args.official_run else 'vs reference':>13}  train losses"]
    for name, ms, losses, ref in rows:
        ratio = f"{ref / ms:>12.3f}x" if ref else f"{'-':>13}"
        lines.append(f"{name:<22}{ms:>10.0f}{ratio}  {' '.join(losses)}")
    report = "\n".join(lines)
    (out / "bench_cpu.txt").write_text(report + "\n")
    print(report)


def _official_row(args, name: str, fp32_ns: bool, env: dict, out: Path) -> tuple[str, float, list[str]]:
    steps, warmup, batch = args.steps, args.warmup, args.cpu_batch_tokens
    print(f"== {name} (CPU-adapted, fp32, eager): {steps} steps of {batch} tokens in 8 micro-steps "
          f"after {warmup} warm-up", flush=True)
    run_dir = out / name.replace(" ", "_")
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", "from pathlib import Path; from bench.official_cpu import "
                           f"run_official_cpu; run_official_cpu(Path({str(args.official)!r}), {fp32_ns})"],
                          cwd=run_dir, env=env, capture_output=True, text=True, timeout=args.timeout)
    (run_dir / "stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the CPU-adapted official script failed:\n{proc.stderr[-3000:]}")
    pairs = [(int(s), float(t)) for s, t in re.findall(r"step:(\d+)/\d+ train_loss:\S+ train_time:(\d+)ms", proc.stdout)]
    return name, statistics.median(step_times_ms(pairs)), re.findall(r"step:\d+/\d+ train_loss:(\S+)", proc.stdout)


def _golf_row(args, name: str, extra: list[str], data: Path, out: Path) -> tuple[str, float, list[str]]:
    steps, warmup, batch = args.steps, args.warmup, args.cpu_batch_tokens
    run_dir = out / name.replace(" ", "_").replace("=", "")
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a continuation of an earlier bench's records
    print(f"== {name}: experiment=baseline, {steps} steps of {batch} tokens in 8 micro-batches", flush=True)
    cmd = [sys.executable, "-m", "golf.train", "experiment=baseline", f"data.root={data}", "device=cpu",
           f"train.iterations={steps}", f"train.warmup_steps={warmup}", "train.val_every=0", "train.log_every=1",
           f"train.batch_tokens={batch}", "train.max_wallclock_s=null", "logger=none", f"seed={args.seed}",
           f"run_dir={run_dir}", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"bench: golf failed on the CPU:\n{proc.stderr[-3000:]}")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in metrics if r["event"] == "train"]
    pairs = [(r["step"], 1000.0 * r["train_time_s"]) for r in train]
    return name, statistics.median(step_times_ms(pairs)), [f"{r['train_loss']:.4f}" for r in train]
