"""One training run, from a validated config to the reported score.

    data ─► model ─► optimizer/averager/QAT ─► (compile warm-up, rolled back) ─► timed loop
    ─► averaged weights ─► quantize ─► compress ─► artifact ─► decompress ─► dequantize ─► eval

The loop follows the official script's semantics (spec §1.2, §1.7): the training clock excludes
validation and warm-up; the schedule multiplier ``lr_mul`` is recomputed every step from the step and
the clock and is also what averaging and late QAT key off; ranks agree on stopping through an
all-reduce. The score is always measured on the round-tripped artifact (:mod:`golf.finish`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import traceback
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel as DDP

from golf.averaging import build_averager
from golf.checkpoint import load_checkpoint, resolved_config, save_checkpoint
from golf.config.schema import GolfConfig
from golf.config.validate import eval_seq_len, grad_accum_steps
from golf.data import DataPaths, check_data
from golf.dist import DistInfo, all_reduce_, scheduler_job_id
from golf.eval import eval_progress, ttt_frozen_prefixes
from golf.finish import finish_run
from golf.flags import StepFlags
from golf.kernel.data import build_byte_luts, build_train_loader, load_validation_tokens
from golf.kernel.evaluator import build_evaluator
from golf.logging import RunRecorder
from golf.logging.progress import Progress, format_seconds, quiet
from golf.microbatch import StepBatches, resolve_micro_rows
from golf.model import build_model, count_parameters
from golf.model.loop import build_switch
from golf.optim import build_optimizer
from golf.optim.schedule import lr_multiplier
from golf.preempt import Preempted, StopSignal
from golf.quant.calibrate import check_calibration
from golf.quant.qat import apply_qat
from golf.train_state import TrainState

log = logging.getLogger("golf")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def autocast_factory(cfg: GolfConfig, device: torch.device):
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def run_training(cfg: GolfConfig, dist: DistInfo, run_dir: Path, data: DataPaths) -> dict:
    """Train, export and score one configuration (validated, its ``data`` prepared by the entry);
    returns the summary (same on every rank)."""
    run_dir = Path(run_dir)
    if dist.is_main and (run_dir / "error.txt").exists():
        (run_dir / "error.txt").unlink()  # left by an earlier attempt of this run (requeue, retry)
    recorder = RunRecorder(
        run_dir, cfg.logger, enabled=dist.is_main, run_name=cfg.run_name,
        config=OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True),
    )
    try:
        with StopSignal(immediate=True) as stop:  # a stop acts at once until the loop can checkpoint
            summary = _train(cfg, dist, run_dir, data, recorder, stop)
    except Preempted:
        recorder.update_summary(status="preempted")
        raise
    except BaseException as err:
        if dist.is_main:  # each record on its own: with a full disk, one may fail and the next succeed
            with contextlib.suppress(OSError):
                (run_dir / "error.txt").write_text(traceback.format_exc())
            with contextlib.suppress(OSError):
                recorder.update_summary(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
            with contextlib.suppress(OSError):
                recorder.finish("failed")
        raise
    recorder.finish("completed")
    return {**summary, "status": "completed"}


def _train(cfg: GolfConfig, dist: DistInfo, run_dir: Path, paths: DataPaths, recorder: RunRecorder,
           stop: StopSignal) -> dict:
    t_setup = time.perf_counter()
    resolved = resolved_config(cfg)  # recorded with every checkpoint (golf.train checks it before a resume)
    device = dist.device
    seed_everything(cfg.seed)
    autocast = autocast_factory(cfg, device)
    tc = cfg.train
    accum = grad_accum_steps(cfg, dist.world_size)

    # ---- data (prepared by the entry; concurrent demo builds of several ranks are atomic) ----
    periodic_len = tc.seq_len if cfg.eval.periodic == "standard" else eval_seq_len(cfg)
    check_data(cfg.data, paths, world_size=dist.world_size, seq_len=tc.seq_len,
               val_seq_len=max(eval_seq_len(cfg), periodic_len))
    luts = build_byte_luts(paths.tokenizer_path, cfg.arch.vocab_size).to(device)
    val_tokens = load_validation_tokens(paths.val_pattern, eval_seq_len(cfg))
    periodic_tokens = (val_tokens if periodic_len == eval_seq_len(cfg)
                       else load_validation_tokens(paths.val_pattern, periodic_len))

    # ---- model and its training companions ----
    model = build_model(cfg.arch).to(device)
    check_calibration(model, cfg.quant)
    qat = apply_qat(model, cfg.quant.qat)
    topology = build_switch(model, cfg.arch)  # depth loop switched on mid-run (no-op without one)
    opt = build_optimizer(model, cfg.optimizer, world_size=dist.world_size, rank=dist.rank)
    averager = build_averager(cfg.averaging, model)
    compile_model = cfg.compile if cfg.compile is not None else device.type == "cuda"
    forward = torch.compile(model, fullgraph=True, dynamic=False) if compile_model else model
    train_forward = forward
    if dist.distributed:
        train_forward = DDP(forward, device_ids=[dist.local_rank] if device.type == "cuda" else None,
                            broadcast_buffers=False)
    params = count_parameters(model)
    micro_rows = resolve_micro_rows(tc.micro_batch_tokens, arch=cfg.arch, model=model, batch_tokens=tc.batch_tokens,
                                    seq_len=tc.seq_len, world_size=dist.world_size, accum=accum, device=device,
                                    bf16=autocast is not contextlib.nullcontext)
    recorder.update_summary(model_params=params["total"], seed=cfg.seed, world_size=dist.world_size,
                            grad_accum_steps=accum, micro_batch_tokens=micro_rows * tc.seq_len,
                            run_name=cfg.run_name)
    log.info("model_params:%d world_size:%d grad_accum_steps:%d micro_batch_tokens:%d device:%s compile:%s",
             params["total"], dist.world_size, accum, micro_rows * tc.seq_len, device, compile_model)

    def new_loader():
        return build_train_loader(cfg.data, paths.train_pattern, dist.rank, dist.world_size, tc.seq_len)

    loader = new_loader()

    def train_step() -> torch.Tensor:
        """One step's gradient: the mean loss over its micro-batches (equal sizes), loss in the graph."""
        micro_batches = StepBatches(loader, batch_tokens=tc.batch_tokens, seq_len=tc.seq_len, accum=accum,
                                    micro_rows=micro_rows, device=device).next_step()
        n = len(micro_batches)
        total = torch.zeros((), device=device)
        for i, (x, y) in enumerate(micro_batches):
            sync = train_forward.no_sync() if dist.distributed and i < n - 1 else contextlib.nullcontext()
            with sync:
                with autocast():
                    loss = train_forward(x, y)
                (loss / n).backward()
            total += loss.detach()
        return total / n

    # the final evaluator (its plain form scores prequant weights) and the periodic one
    evaluator = build_evaluator(cfg.eval, tokens=val_tokens, luts=luts, seq_len=eval_seq_len(cfg), dist=dist,
                                autocast=autocast, compile_model=compile_model, progress=eval_progress(dist),
                                ttt_frozen=ttt_frozen_prefixes(cfg.eval, cfg.arch.num_layers)).use_forward(model, forward)
    periodic = (evaluator.plain() if cfg.eval.periodic == "same" else
                build_evaluator(cfg.eval, tokens=periodic_tokens, luts=luts, seq_len=periodic_len, dist=dist,
                                autocast=autocast, compile_model=compile_model, kind="standard",
                                progress=eval_progress(dist))
                .use_forward(model, forward))

    # ---- compile warm-up rolled back to the true initial state, then resume if a checkpoint exists ----
    recorder.update_summary(setup_s=round(time.perf_counter() - t_setup, 2))
    t_compile = time.perf_counter()
    topology.begin()
    averager.start(model)
    state = TrainState(model=model, optimizer=opt, averager=averager, loader=loader, qat=qat, topology=topology)
    if tc.warmup_steps > 0:
        initial = state.snapshot()
        model.train()
        for _ in topology.warmup_phases():  # every topology the run will use gets compiled here
            for w in range(tc.warmup_steps):
                train_step()
                opt.step(w, 1.0)
                opt.zero_grad(set_to_none=True)
        state.load_state_dict(initial)
        _sync(device)
    recorder.update_summary(compile_s=round(time.perf_counter() - t_compile, 2))
    resumed = load_checkpoint(run_dir, dist)
    if resumed is not None:
        state.load_state_dict(resumed)
        recorder.log("resume", state.step, train_time_s=state.train_time)
        log.info("resumed from checkpoint at step %d (%.1f s of training)", state.step, state.train_time)

    saved_step = state.step if resumed is not None else None

    def checkpoint() -> None:
        nonlocal saved_step
        save_checkpoint(run_dir, dist, state.state_dict(), config=resolved)
        recorder.log("checkpoint", state.step, train_time_s=state.train_time)
        saved_step = state.step

    # ---- the timed loop ----
    cap = (tc.max_wallclock_s - tc.reserve_s) if tc.max_wallclock_s else None  # reserve: calibration + GPTQ
    last_ckpt_time = state.train_time
    clock = state.train_time  # the training clock all ranks agreed on at the end of the previous step
    # divergence: a device-side flag, OR-ed every step without a host sync and read with the per-step
    # flags below (wherever those are read, the flag has seen every step since)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    flags = StepFlags(dist)
    model.train()
    show = cfg.logger.console_every > 0  # 0: no training progress lines at all
    bar = Progress("train", total=tc.iterations, unit="step", every=cfg.logger.console_every, first=3,
                   enabled=dist.is_main and show, eta=False, start=state.step)
    start_step, start_time = state.step, state.train_time
    console = False
    _sync(device)
    stop.arm()  # from here a stop is honoured at the next step boundary, with a checkpoint
    t0 = time.perf_counter()
    while True:
        last_step = state.step >= tc.iterations or (state.stop_at is not None and state.step >= state.stop_at)
        if last_step:
            break
        if tc.val_every > 0 and state.step > 0 and state.step % tc.val_every == 0:
            _sync(device)
            state.train_time += time.perf_counter() - t0
            with quiet():  # its result is the line below
                result = periodic(model)
            recorder.log("val", state.step, train_time_s=state.train_time, **result.to_dict())
            log.info("step:%d val_loss:%.4f val_bpb:%.4f train_time:%.1fs", state.step, result.val_loss,
                     result.val_bpb, state.train_time)
            t0 = time.perf_counter()
        lr_mul = lr_multiplier(cfg.optimizer.schedule, state.step, clock, tc.iterations, cap)
        qat.update(state.step, clock, lr_mul, cap)
        if topology.update(state.step, clock, cap, tc.iterations):
            recorder.log("loop_switch", state.step, train_time_s=clock)
            log.info("step:%d depth loop on (train_time:%.1fs)", state.step, clock)
        loss = train_step()
        nonfinite |= ~torch.isfinite(loss)
        opt.step(state.step, lr_mul)
        opt.zero_grad(set_to_none=True)
        state.step += 1
        averager.update(model, state.step, lr_mul)
        elapsed = state.train_time + (time.perf_counter() - t0)
        record = tc.log_every and (state.step % tc.log_every == 0 or state.step == 1)
        # the same answer on every rank: the loss is read (a host sync) only then
        console = show and bar.due(state.step)
        if record or console:
            loss_value = all_reduce_(loss.detach().clone()).item() / dist.world_size  # mean over ranks
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"train loss is {loss_value} at step {state.step}")
        if record:
            recorder.log("train", state.step, train_loss=loss_value, lr_mul=lr_mul, train_time_s=elapsed,
                         ms_per_step=1000.0 * elapsed / state.step,
                         qat_active=bool(qat.active))
        bar.update(state.step, **(_train_fields(cfg, state.step, start_step, elapsed, start_time, loss_value,
                                                lr_mul) if console else {}))
        # every rank takes the same decisions from the same agreed values (golf.flags: no per-step sync)
        checkpoint_due = tc.checkpoint_every_s is not None and elapsed - last_ckpt_time >= tc.checkpoint_every_s
        agreed = flags.exchange(elapsed, float(stop.requested), float(checkpoint_due), device_flag=nonfinite)
        if agreed is None:
            continue
        clock, stop_requested, checkpoint_due, diverged = agreed
        _check_diverged(diverged, state.step)  # before any checkpoint: a diverged state is never saved
        if cap is not None and flags.projected_clock() >= cap and state.stop_at is None:
            state.stop_at = state.step
        if stop_requested or checkpoint_due:
            _check_diverged((flags.flush() or [0.0])[-1], state.step)
            _sync(device)
            state.train_time += time.perf_counter() - t0
            checkpoint()
            last_ckpt_time = state.train_time
            if stop_requested:
                stop.after_checkpoint()
                raise Preempted(f"stop requested at step {state.step}; checkpoint written to {run_dir}")
            t0 = time.perf_counter()
    _check_diverged((flags.flush() or [0.0])[-1], state.step)
    _sync(device)
    state.train_time += time.perf_counter() - t0
    if show and state.step > start_step and not console:  # stopped off the cadence (wall-clock cap): last step
        loss_value = all_reduce_(loss.detach().clone()).item() / dist.world_size
        bar.line(**_train_fields(cfg, state.step, start_step, state.train_time, start_time, loss_value, lr_mul))
    bar.close()
    at_end = tc.checkpoint_at_end if tc.checkpoint_at_end is not None else scheduler_job_id() is not None
    if at_end and saved_step != state.step:
        checkpoint()  # a stop from here on (export, evaluation) resumes at the finish, not at step 0
    topology.finish()
    stop.release()  # from here on a stop signal acts at once (nothing left that a checkpoint would save)
    tokens_seen = state.step * tc.batch_tokens
    recorder.update_summary(steps=state.step, train_time_s=round(state.train_time, 3),
                            loop_switch_step=topology.switch_step, tokens_seen=tokens_seen,
                            ms_per_step=round(1000.0 * state.train_time / max(state.step, 1), 3),
                            peak_mem_mib=_peak_memory_mib(device))
    log.info("training done: %d steps, %.1f s (%.1f ms/step), %d tokens", state.step, state.train_time,
             1000.0 * state.train_time / max(state.step, 1), tokens_seen)

    return finish_run(cfg, dist, run_dir, recorder, model=model, averager=averager, qat=qat,
                      evaluator=evaluator, step=state.step, train_loader=new_loader, autocast=autocast)


def _train_fields(cfg: GolfConfig, step: int, start_step: int, elapsed: float, start_time: float,
                  loss_value: float, lr_mul: float) -> dict:
    """What a training progress line shows: loss, schedule, throughput and the time left (the sooner of
    the wall-clock cap and the step budget at the current speed)."""
    tc = cfg.train
    steps, seconds = step - start_step, max(elapsed - start_time, 1e-9)
    left = (tc.iterations - step) * seconds / max(steps, 1)
    if tc.max_wallclock_s:
        left = min(left, max(tc.max_wallclock_s - elapsed, 0.0))
    return {"loss": loss_value, "lr_mul": round(lr_mul, 3), "tok/s": int(steps * tc.batch_tokens / seconds),
            "ms/step": round(1000.0 * seconds / max(steps, 1), 1), "train_time": format_seconds(elapsed),
            "left": format_seconds(left)}


def _peak_memory_mib(device: torch.device) -> float:
    """Peak accelerator memory allocated by this process (CUDA), else the process's peak resident size."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def _check_diverged(flag: float, step: int) -> None:
    if flag:
        raise FloatingPointError(f"train loss became non-finite at or before step {step} "
                                 f"(on at least one rank); the run is stopped")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
