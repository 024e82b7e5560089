"""golf against the official ``train_gpt.py``: same data, same model, same tokens per step, one after the other.

    python bench/bench_vs_official.py                          # CUDA: official (torchrun) then golf, baseline
    python bench/bench_vs_official.py --steps 40 --warmup 10   # the issue's comparison
    python bench/bench_vs_official.py --experiment pr507 --no-official --reference-ms 589.7
    python bench/bench_vs_official.py --variant micro64k=train.micro_batch_tokens=65536 --variant ...
    python bench/bench_vs_official.py --cpu                    # what ``make bench`` runs without CUDA

On CUDA each side trains ``--steps`` timed steps after ``--warmup`` compile warm-up steps (both scripts
roll the warm-up back), no periodic validation, no wall-clock cap, then each exports and scores as it
always does. The table gives ms/step (training clock / steps, as both scripts report it), tokens/s,
golf's throughput over the official one, the peak of allocated device memory, and the MFU: model FLOPs
per token (6 N for the weights, N including the tied head, plus 6 L d T / 2 x 2 for causal attention)
times tokens/s over the device's dense bf16 peak (``--peak-tflops``; 989 for H100/H200 SXM).

Data: official-format shards under ``<data-root>/datasets/fineweb10B_sp1024/`` and the tokenizer under
``<data-root>/tokenizers/``. Without training shards there (``--data-root`` defaults to ``../shared/data``,
which holds only the 1M-token validation prefix) the bench trains both scripts on that validation
prefix as its one training shard: speed does not depend on which tokens are read, and both read the
same ones.

Without CUDA (``--cpu``, the ``make bench`` path): golf's step time for the baseline at full width
(9x512, fp32, eager, 8,192 tokens per step in 8 micro-steps) against the official script run in the
same process with its CUDA-only calls replaced (no compile, fp32 weights and autocast off, host device),
median of ``--steps`` timed steps after ``--warmup`` each.

``--no-official`` runs golf only (against ``--reference-ms`` when given), on CUDA and on the CPU; the
official script is then not needed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ROOT.parent / "shared" / "reference" / "official_train_gpt.py"
DATA_ROOT = ROOT.parent / "shared" / "data"
DATASET = "datasets/fineweb10B_sp1024"
TOKENIZER = "tokenizers/fineweb_1024_bpe.model"
VAL_PREFIX = "datasets/fineweb10B_sp1024_valprefix/fineweb_val_000000.bin"


def prepare_data(src: Path, dst: Path) -> Path:
    """Official layout under ``dst`` (links to ``src``'s files); the validation prefix doubles as the
    training shard when ``src`` has no training shards."""
    ds = dst / DATASET
    ds.mkdir(parents=True, exist_ok=True)
    (dst / "tokenizers").mkdir(parents=True, exist_ok=True)
    tok = dst / TOKENIZER
    if not tok.exists():
        shutil.copyfile(src / TOKENIZER, tok)
    train = sorted((src / DATASET).glob("fineweb_train_*.bin"))
    vals = sorted((src / DATASET).glob("fineweb_val_*.bin")) or [src / VAL_PREFIX]
    if not vals[0].exists():
        raise SystemExit(f"bench: no validation shard under {src} (looked for {DATASET}/fineweb_val_*.bin "
                         f"and {VAL_PREFIX})")
    for f in vals:
        _link(f, ds / f.name)
    for i, f in enumerate(train or vals[:1]):
        _link(f, ds / (f.name if train else f"fineweb_train_{i:06d}.bin"))
    return dst


def _link(src: Path, dst: Path) -> None:
    if not dst.exists():
        os.symlink(src.resolve(), dst)


def parse_official(log: str) -> dict:
    """Figures from the official script's output."""
    out: dict = {}
    steps = re.findall(r"step:(\d+)/\d+ val_loss:\S+ val_bpb:\S+ train_time:(\d+)ms step_avg:([\d.]+)ms", log)
    if steps:
        out["steps"], out["train_ms"], out["ms_per_step"] = int(steps[-1][0]), float(steps[-1][1]), float(steps[-1][2])
    m = re.search(r"peak memory allocated: (\d+) MiB", log)
    if m:
        out["peak_mib"] = int(m.group(1))
    m = re.search(r"model_params:(\d+)", log)
    if m:
        out["params"] = int(m.group(1))
    m = re.search(r"final_int8_zlib_roundtrip_exact val_loss:([\d.]+) val_bpb:([\d.]+)", log)
    if m:
        out["val_bpb"] = float(m.group(2))
    losses = re.findall(r"step:(\d+)/\d+ train_loss:([\d.]+)", log)
    out["train_losses"] = {int(s): float(v) for s, v in losses}
    return out


def run_official(args, data: Path, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATA_PATH": str(data / DATASET), "TOKENIZER_PATH": str(data / TOKENIZER),
           "ITERATIONS": str(args.steps), "WARMUP_STEPS": str(args.warmup), "VAL_LOSS_EVERY": "0",
           "TRAIN_LOG_EVERY": str(args.steps), "MAX_WALLCLOCK_SECONDS": "0", "RUN_ID": "bench",
           "SEED": str(args.seed)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(args.official)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t
    (work / "stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the official script failed (exit {proc.returncode}); see {work / 'stdout.txt'}\n"
                         + proc.stderr[-3000:])
    out = parse_official(proc.stdout)
    out["wall_s"] = round(wall, 1)
    return out


def run_golf(args, data: Path, run_dir: Path, overrides: list[str]) -> dict:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "golf.train", f"experiment={args.experiment}", f"data.root={data}",
           f"train.iterations={args.steps}", f"train.warmup_steps={args.warmup}", "train.val_every=0",
           f"train.log_every={args.steps}", "train.max_wallclock_s=null", "logger=none", f"seed={args.seed}",
           f"run_dir={run_dir}", *overrides]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bench_stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:  # reported in the table; the other runs still go ahead
        print(f"bench: golf failed (exit {proc.returncode}): {' '.join(cmd)}\n" + proc.stderr[-3000:], flush=True)
        return {"error": proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "failed",
                "wall_s": round(wall, 1)}
    summary = json.loads((run_dir / "summary.json").read_text())
    out = {"steps": summary["steps"], "ms_per_step": summary["ms_per_step"], "peak_mib": summary.get("peak_mem_mib"),
           "params": summary["model_params"], "val_bpb": summary.get("val_bpb"), "wall_s": round(wall, 1),
           "micro_batch_tokens": summary.get("micro_batch_tokens")}
    for key in ("setup_s", "compile_s", "prequant_eval_s", "export_s", "final_eval_s"):
        if key in summary:
            out[key] = summary[key]
    return out


def golf_shape(experiment: str) -> dict:
    """batch tokens, seq len, layers (block applications) and width of an experiment, from its config."""
    import torch
    from hydra import compose, initialize_config_dir

    from golf.config.store import register_schemas
    from golf.config.validate import load_config
    from golf.model import build_model

    register_schemas()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = load_config(compose(config_name="train", overrides=[f"experiment={experiment}", "logger=none"]))

    with torch.device("meta"):
        model = build_model(cfg.arch)
    return {"batch_tokens": cfg.train.batch_tokens, "seq_len": cfg.train.seq_len, "layers": max(len(o) for o in model.layer_orders()),
            "dim": cfg.arch.model_dim}


def flops_per_token(params: int, shape: dict) -> float:
    """6 N + causal attention (QK^T and AV: 2 x 2 T d per layer per token forward, halved, x3 with backward)."""
    return 6.0 * params + 6.0 * shape["layers"] * shape["dim"] * shape["seq_len"]


def peak_tflops(name: str, given: float | None) -> float:
    if given:
        return given
    return 989.0 if ("H100" in name or "H200" in name) else 312.0  # A100 otherwise


def table(rows: list[tuple[str, dict]], shape: dict, device_name: str, peak: float, baseline: float | None) -> str:
    lines = [f"device: {device_name}  (MFU against {peak:.0f} TFLOP/s dense bf16)",
             f"tokens/step {shape['batch_tokens']:,}  seq_len {shape['seq_len']}",
             f"{'run':<22}{'ms/step':>10}{'tokens/s':>14}{'ratio':>8}{'peak MiB':>10}{'MFU':>7}{'val_bpb':>12}"
             f"{'micro':>9}{'wall s':>8}"]
    for name, r in rows:
        if "error" in r:
            lines.append(f"{name:<22}failed: {r['error']}")
            continue
        ms = r.get("ms_per_step")
        tps = shape["batch_tokens"] / (ms / 1000.0) if ms else float("nan")
        ratio = (baseline / ms) if (baseline and ms) else float("nan")
        mfu = flops_per_token(r["params"], shape) * tps / (peak * 1e12) if r.get("params") and ms else float("nan")
        bpb = r.get("val_bpb")
        lines.append(f"{name:<22}{ms or float('nan'):>10.1f}{tps:>14,.0f}{ratio:>7.3f}x{r.get('peak_mib') or 0:>10}"
                     f"{100 * mfu:>6.1f}%{bpb if bpb is not None else float('nan'):>12.6f}"
                     f"{r.get('micro_batch_tokens') or '':>9}{r.get('wall_s', 0):>8}")
        extra = {k: r[k] for k in ("setup_s", "compile_s", "prequant_eval_s", "export_s", "final_eval_s") if k in r}
        if extra:
            lines.append(f"{'':<22}" + "  ".join(f"{k}={v}" for k, v in extra.items()))
    return "\n".join(lines)


def cuda_main(args) -> None:
    import torch

    device_name = torch.cuda.get_device_name(0)
    out = Path(args.out).resolve()
    data = prepare_data(Path(args.data_root), out / "data")
    shape = golf_shape(args.experiment)
    rows: list[tuple[str, dict]] = []
    baseline = args.reference_ms
    if args.official_run:
        print(f"== official {args.official} ({args.steps} steps after {args.warmup} warm-up)", flush=True)
        r = run_official(args, data, out / "official")
        rows.append(("official", r))
        baseline = r.get("ms_per_step")
        print(json.dumps(r), flush=True)
    elif baseline:
        rows.append((f"reference ({baseline} ms)", {"ms_per_step": baseline}))
    variants = [("golf", list(args.golf))] + [(v.split("=", 1)[0], v.split("=", 1)[1].split()) for v in args.variant]
    for name, overrides in variants:
        print(f"== {name}: experiment={args.experiment} {' '.join(overrides)}", flush=True)
        r = run_golf(args, data, out / f"golf-{name}", overrides)
        rows.append((name, r))
        print(json.dumps(r), flush=True)
    report = table(rows, shape, device_name, peak_tflops(device_name, args.peak_tflops), baseline)
    (out / "bench.txt").write_text(report + "\n")
    print(report)


def cpu_main(args) -> None:
    from bench.official_cpu import compare_cpu

    compare_cpu(args)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=None, help="timed steps (CUDA default 40, CPU default 3)")
    p.add_argument("--warmup", type=int, default=None, help="compile warm-up steps (CUDA default 10, CPU 1)")
    p.add_argument("--experiment", default="baseline")
    p.add_argument("--official", default=str(OFFICIAL), help="path of the official train_gpt.py")
    p.add_argument("--no-official", dest="official_run", action="store_false",
                   help="do not run the official script (compare with --reference-ms instead)")
    p.add_argument("--reference-ms", type=float, default=None, help="an earlier ms/step to compare with")
    p.add_argument("--data-root", default=str(DATA_ROOT))
    p.add_argument("--out", default=str(ROOT / "bench_out"))
    p.add_argument("--golf", nargs="*", default=[], help="extra overrides for the golf run")
    p.add_argument("--variant", action="append", default=[],
                   help="NAME='override override ...': one more golf run with these overrides")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--cpu", action="store_true", help="the CPU comparison (default without CUDA)")
    p.add_argument("--cpu-batch-tokens", type=int, default=8192, help="CPU: tokens per step")
    p.add_argument("--cpu-bf16-ns", action="store_true",
                   help="CPU: also compare with bf16 Newton-Schulz on both sides (slow without bf16 units)")
    p.add_argument("--cpu-val-tokens", type=int, default=16384, help="CPU: validation tokens scored at the end")
    args = p.parse_args(argv)
    import torch

    on_cpu = args.cpu or not torch.cuda.is_available()
    args.steps = args.steps if args.steps is not None else (3 if on_cpu else 40)
    args.warmup = args.warmup if args.warmup is not None else (1 if on_cpu else 10)
    args.official = str(Path(args.official).resolve())
    args.data_root = str(Path(args.data_root).resolve())
    if args.official_run and not Path(args.official).exists():  # --no-official never reads it
        raise SystemExit(f"bench: --official {args.official} does not exist (or run with --no-official)")
    (cpu_main if on_cpu else cuda_main)(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
