"""The step loop: compile warm-up rolled back, then training until the step budget or the clock runs out.

Semantics of the official script (spec §1.2, §1.7): the training clock excludes validation and the
warm-up; the schedule multiplier ``lr_mul`` is recomputed every step from the step and the agreed clock
and is also what averaging and late QAT key off; ranks agree on stopping (and on the lab's requests)
through :class:`golf.kernel.state.StepFlags`. A non-finite loss anywhere stops the run with an error
before anything is saved. The warm-up runs ``train.warmup_steps`` real steps per topology the run will
use (so each compiled graph exists before the clock starts), then restores the whole train state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from golf.kernel.optim import lr_multiplier
from golf.kernel.state import StepFlags, TrainState

if TYPE_CHECKING:
    from golf.config.schema import GolfConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_batches(loader, batch_tokens: int, seq_len: int, accum: int, micro: int, device) -> list:
    """One step's rows as the official loop reads them (``accum`` chunks), on the device in one copy,
    split into micro-batches of ``micro`` rows: the same data whatever the split."""
    parts = [loader.next_batch(batch_tokens, seq_len, accum) for _ in range(accum)]
    xy = torch.stack((torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])))  # [2, rows, T]
    xy = (xy.pin_memory() if device.type == "cuda" else xy).to(device, non_blocking=True)
    return [(xy[0, i:i + micro], xy[1, i:i + micro]) for i in range(0, xy.size(1), micro)]


def warm_up(cfg: GolfConfig, st: TrainState, train_step) -> None:
    """Compile every topology with real steps, then roll back to the state before them."""
    st.topology.begin()
    st.averager.start(st.model)
    if cfg.train.warmup_steps > 0:
        initial = st.snapshot()
        st.model.train()
        for _ in st.topology.warmup_phases():
            for w in range(cfg.train.warmup_steps):
                train_step()
                st.optimizer.step(w, 1.0)
                st.optimizer.zero_grad(set_to_none=True)
        st.load_state_dict(initial)


def _diverged(flag: float, step: int) -> None:
    if flag:
        raise FloatingPointError(f"train loss became non-finite at or before step {step} "
                                 f"(on at least one rank); the run is stopped")


def train(cfg: GolfConfig, st: TrainState, train_step, evaluate_periodic, hooks, device: torch.device) -> None:
    """Train from ``st`` (step, clock) until ``train.iterations`` or the wall-clock cap; ``train_step``
    runs one step's forward/backward and returns its loss, ``evaluate_periodic(model)`` a result."""
    tc = cfg.train
    cap = tc.max_wallclock_s - tc.reserve_s if tc.max_wallclock_s else None  # reserve: calibration + GPTQ
    clock = st.train_time
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    flags = StepFlags(device)
    st.model.train()
    sync(device)
    t0 = time.perf_counter()
    while st.step < tc.iterations and (st.stop_at is None or st.step < st.stop_at):
        if tc.val_every > 0 and st.step > 0 and st.step % tc.val_every == 0:
            sync(device)
            st.train_time += time.perf_counter() - t0
            r = evaluate_periodic(st.model)
            hooks.log("val", st.step, train_time_s=st.train_time, **r.to_dict())
            t0 = time.perf_counter()
        lr_mul = lr_multiplier(cfg.optimizer.schedule, st.step, clock, tc.iterations, cap)
        st.qat.update(st.step, clock, lr_mul, cap)
        if st.topology.update(st.step, clock, cap, tc.iterations):
            hooks.log("loop_switch", st.step, train_time_s=clock)
        loss = train_step()
        nonfinite |= ~torch.isfinite(loss)
        st.optimizer.step(st.step, lr_mul)
        st.optimizer.zero_grad(set_to_none=True)
        st.step += 1
        st.averager.update(st.model, st.step, lr_mul)
        elapsed = st.train_time + time.perf_counter() - t0
        hooks.after_step(st, loss, lr_mul, elapsed)
        agreed = flags.exchange(elapsed, *hooks.requests(st, elapsed), device_flag=nonfinite)
        if agreed is None:
            continue
        clock = agreed[0]
        _diverged(agreed[-1], st.step)  # before any checkpoint: a diverged state is never saved
        if cap is not None and flags.projected_clock() >= cap and st.stop_at is None:
            st.stop_at = st.step
        if any(agreed[1:-1]):
            _diverged((flags.flush() or [0.0])[-1], st.step)
            sync(device)
            st.train_time += time.perf_counter() - t0
            hooks.settled(st, agreed[1:-1])
            t0 = time.perf_counter()
    _diverged((flags.flush() or [0.0])[-1], st.step)
    sync(device)
    st.train_time += time.perf_counter() - t0
