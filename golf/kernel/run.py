"""One run, from a resolved config and its plan to the reported score; ``main`` is a submission's entry.

    data ─► model ─► optimizer / averager / QAT ─► compile warm-up (rolled back) ─► timed loop
    ─► exported weights ─► (calibrate) ─► quantize ─► compress ─► artifact ─► decompress ─► dequantize
    ─► evaluator: the reported val_bpb (always of the round-tripped artifact)

``plan`` is the lab's plain data for this config (:func:`golf.plan.run_plan`): the per-parameter tables
(``groups`` for the optimizer, ``schemes`` and ``prune`` for the export, ``qat`` targets, the
``ttt_frozen`` name prefixes) and ``micro_rows`` (sequences
per forward/backward on one rank; None = the official split). A submission embeds it as a literal.
"""

from __future__ import annotations

import contextlib
import random
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from golf.kernel.artifact import frame_body, load_artifact, quantize_state_dict, serialize
from golf.kernel.averaging import build_averager
from golf.kernel.data import build_train_loader, load_validation_tokens, validation_bytes
from golf.kernel.depth import build_switch
from golf.kernel.dist import DistInfo, broadcast_object, data_paths, init_distributed, shutdown
from golf.kernel.evaluator import build_evaluator
from golf.kernel.gptq import calibrate
from golf.kernel.hooks import Hooks
from golf.kernel.loop import step_batches, sync, train, warm_up
from golf.kernel.model import build_gpt
from golf.kernel.optim import build_optimizer
from golf.kernel.pergroup import load_groups, pack_groups
from golf.kernel.qat import apply_qat
from golf.kernel.state import TrainState

if TYPE_CHECKING:
    from golf.config.schema import GolfConfig


def grad_accum(cfg: GolfConfig, world_size: int) -> int:
    """Micro-steps per optimizer step: ``train.grad_accum_steps``, else 8 // world as the official script."""
    return cfg.train.grad_accum_steps or max(8 // world_size, 1)


def eval_len(cfg: GolfConfig) -> int:
    return cfg.eval.seq_len or cfg.train.seq_len


def run(cfg: GolfConfig, plan: dict, paths, dist: DistInfo, hooks: Hooks) -> dict:
    """Train, export and score; returns the final evaluation's fields."""
    t_setup = time.perf_counter()
    dev, tc = dist.device, cfg.train
    seed = hooks.seed(cfg.seed)
    random.seed(seed)
    torch.manual_seed(seed)
    bf16 = cfg.precision == "bf16" or cfg.precision == "auto" and dev.type == "cuda"
    autocast = (lambda: torch.autocast(dev.type, torch.bfloat16)) if bf16 else contextlib.nullcontext
    if cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    accum = grad_accum(cfg, dist.world_size)
    val = load_validation_tokens(paths.val_pattern, eval_len(cfg))
    periodic_len = tc.seq_len if cfg.eval.periodic == "standard" else eval_len(cfg)
    periodic_val = val if periodic_len == eval_len(cfg) else \
        load_validation_tokens(paths.val_pattern, periodic_len)
    val_bytes = validation_bytes(cfg.data, paths, max(val, periodic_val, key=len), cfg.arch.vocab_size)

    model = build_gpt(cfg.arch).to(dev)
    qat = apply_qat(model, cfg.quant, plan["qat"])
    topology = build_switch(model, cfg.arch)
    opt = build_optimizer(model, cfg.optimizer, plan["groups"], dist.world_size, dist.rank)
    averager = build_averager(cfg.averaging, model)
    compiled = cfg.compile if cfg.compile is not None else dev.type == "cuda"
    forward = torch.compile(model, fullgraph=True, dynamic=False) if compiled else model
    # grad_clip_scope=local: no DDP, the optimizer set averages the clipped gradients itself
    train_forward = DDP(forward, device_ids=[dist.local_rank] if dev.type == "cuda" else None,
                        broadcast_buffers=False) if cfg.optimizer.grad_clip_scope != "local" and dist.distributed \
        else forward
    rows = tc.batch_tokens // (dist.world_size * tc.seq_len)
    micro = plan["micro_rows"] or rows // accum
    # a packed micro-batch is one row of batch_tokens / (world x accum) tokens
    mbt = tc.batch_tokens // (dist.world_size * accum) if cfg.data.packing is not None else micro * tc.seq_len
    hooks.summary(model_params=sum(p.numel() for p in model.parameters()), seed=seed,
                  world_size=dist.world_size, grad_accum_steps=accum, micro_batch_tokens=mbt, compile=compiled)

    def new_loader():
        return build_train_loader(cfg.data, paths.train_pattern, dist.rank, dist.world_size, tc.seq_len)

    loader = new_loader()

    def train_step() -> torch.Tensor:
        """One step's gradient: the mean loss over equal micro-batches (the data does not depend on the split)."""
        batches = step_batches(loader, tc.batch_tokens, tc.seq_len, accum, micro, dev)
        n = len(batches)
        total = torch.zeros((), device=dev)
        for i, (x, y) in enumerate(batches):
            no_sync = train_forward.no_sync() if cfg.optimizer.grad_clip_scope != "local" and dist.distributed \
                and i < n - 1 else contextlib.nullcontext()
            with no_sync, autocast():
                loss = train_forward(x, y)
            with no_sync:
                (loss / n).backward()
            total += loss.detach()
        return total / n

    evaluator = build_evaluator(cfg.eval, val, val_bytes, eval_len(cfg), dist, autocast, compiled, None, hooks.progress,
                                plan["ttt_frozen"]).use_forward(model, forward)
    periodic = evaluator.plain() if cfg.eval.periodic == "same" else build_evaluator(
        cfg.eval, periodic_val, val_bytes, periodic_len, dist, autocast, compiled, "standard",
        hooks.progress).use_forward(model, forward)

    st = TrainState(model, opt, averager, loader, qat, topology)
    t_compile = time.perf_counter()
    warm_up(cfg, st, train_step)
    sync(dev)
    hooks.summary(setup_s=round(t_compile - t_setup, 2), compile_s=round(time.perf_counter() - t_compile, 2))
    hooks.resume(st)
    train(cfg, st, train_step, periodic, hooks, dev)
    hooks.trained(st)
    topology.finish()
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else 0.0
    hooks.summary(steps=st.step, train_time_s=round(st.train_time, 3), loop_switch_step=topology.switch_step,
                  tokens_seen=st.step * tc.batch_tokens, ms_per_step=round(1000 * st.train_time / max(st.step, 1), 3),
                  peak_mem_mib=round(peak, 1))
    return finish(cfg, plan, dist, hooks, st, evaluator, new_loader, autocast)


def finish(cfg: GolfConfig, plan: dict, dist: DistInfo, hooks: Hooks, st: TrainState, evaluator, new_loader,
           autocast) -> dict:
    """Exported weights ─► artifact ─► every rank loads the same bytes ─► the reported score."""
    model = st.model
    state, source = st.averager.final_state_dict(model)
    st.qat.remove(model)
    model.load_state_dict(state)
    hooks.summary(export_weights=source)
    if cfg.eval.prequant:
        t = time.perf_counter()
        pre = evaluator.plain()(model)
        hooks.log("prequant_eval", st.step, eval_s=round(time.perf_counter() - t, 3), **pre.to_dict())
        hooks.summary(**pre.to_dict("prequant_"))
    t = time.perf_counter()
    hessians = calibrate(model, cfg.quant, cfg.train, dist, plan["schemes"], new_loader, autocast)
    if hessians is not None:
        hooks.summary(calibration_s=round(time.perf_counter() - t, 3))
        hooks.calibrated(model, hessians)
    out = ("error", "the main rank did not export")
    if dist.is_main:  # quantized once; every rank loads exactly these bytes (a failure reaches every rank)
        try:
            t = time.perf_counter()
            sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            stored = quantize_state_dict(sd, cfg.quant, plan["schemes"], hessians, plan["prune"])
            t2 = time.perf_counter()
            blob = frame_body(serialize(stored, cfg.quant), cfg.quant) if cfg.quant.pergroup is None else \
                pack_groups(serialize(stored, cfg.quant), cfg.quant, plan["pergroup"])
            hooks.summary(quantize_s=round(t2 - t, 3), compress_s=round(time.perf_counter() - t2, 3))
            code = hooks.artifact(blob, sd, stored)
            hooks.summary(export_s=round(time.perf_counter() - t, 3))
            sizes = dict(model_bytes=len(blob), code_bytes=code, artifact_bytes=len(blob) + code,
                         artifact_limit=cfg.quant.limit_bytes)
            hooks.log("artifact", st.step, **sizes)
            hooks.summary(**sizes, artifact_fits=len(blob) + code <= cfg.quant.limit_bytes)
            out = ("ok", blob)
        except Exception as err:
            out, failure = ("error", f"{type(err).__name__}: {err}"), err
    status, blob = broadcast_object(out)
    if status != "ok":
        if dist.is_main:
            raise failure
        raise RuntimeError(f"artifact export failed on the main rank: {blob}")
    t = time.perf_counter()  # the evaluation's time counts decompression and dequantization
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in (
        load_artifact(blob, cfg.quant) if cfg.quant.pergroup is None else load_groups(blob, cfg.quant)).items()})
    result = evaluator(model)
    fields = dict(eval_s=round(time.perf_counter() - t, 3), **result.to_dict())
    hooks.log("final_eval", st.step, **fields)
    hooks.summary(final_eval_s=fields["eval_s"], **result.to_dict(),
                  **({"quant_gap_bpb": result.val_bpb - pre.val_bpb} if cfg.eval.prequant else {}))
    if not (abs(result.val_bpb) < float("inf") and abs(result.val_loss) < float("inf")):
        raise FloatingPointError(f"final val_bpb is {result.val_bpb} (val_loss {result.val_loss}): "
                                 "the round-tripped model does not give a finite score")
    return result.to_dict()


def main(cfg: GolfConfig, plan: dict) -> None:
    """A submission's entry: ranks from torchrun, data from ``DATA_DIR`` (or the variables of
    :func:`golf.kernel.dist.data_paths`), the record-style lines on rank 0."""
    dist = init_distributed(cfg.device)
    try:
        run(cfg, plan, SimpleNamespace(**data_paths(cfg.data)), dist, Hooks(dist, cfg.train.log_every))
    finally:
        shutdown()
