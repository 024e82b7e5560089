"""How the lab drives the kernel: a handful of calls a run makes at fixed points.

The defaults below are what a submission does on its own: print the record-style lines (train loss
every ``train.log_every`` steps, evaluations, the artifact's sizes and the final score) on rank 0,
write the artifact next to the script, and count the script's own bytes as code. The lab's subclass
(:class:`golf.trainer.LabHooks`) records metrics and the summary, shows progress, resumes and writes
checkpoints, honours stop signals and counts the generated submission instead. No hook changes
what is computed: the same config trains the same weights with either.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from golf.kernel.dist import all_reduce_, env_seed


class Hooks:
    progress = None  # the evaluators' display: progress(kind, done, total, sums) after each batch

    def __init__(self, dist, log_every: int = 0):
        self.dist, self.log_every = dist, log_every

    def seed(self, seed: int) -> int:
        """The run's seed: ``SEED`` from the environment when set (records are run as ``SEED=42 torchrun
        ... train_gpt.py``), else the config's. The lab's runs take the config's only."""
        return env_seed(seed)

    def log(self, kind: str, step: int, **fields) -> None:
        """A record of the run (``train``, ``val``, ``loop_switch``, ``artifact``, ``final_eval``, ...)."""
        if self.dist.is_main:
            print(kind, f"step:{step}", *(f"{k}:{v}" for k, v in fields.items()), flush=True)

    def summary(self, **fields) -> None:
        """Facts of the run that are not per-step records (sizes, timings, counts)."""
        self.log("summary", 0, **fields)

    def resume(self, state) -> None:
        """Called once the compile warm-up is rolled back: the lab loads a checkpoint here."""

    def after_step(self, state, loss: torch.Tensor, lr_mul: float, elapsed: float) -> None:
        """After every optimizer step (the loss is read only when a record is due: a host sync)."""
        s = state.step
        if self.log_every and (s % self.log_every == 0 or s == 1):
            self.log("train", s, train_loss=mean_loss(loss, self.dist), lr_mul=lr_mul, train_time_s=elapsed)

    def requests(self, state, elapsed: float) -> tuple:
        """Host values every rank must agree on each step (the lab: stop requested, checkpoint due)."""
        return ()

    def settled(self, state, agreed: list[float]) -> None:
        """A request was agreed: the clock is settled (``state.train_time`` current) — act on it."""

    def trained(self, state) -> None:
        """Training is over (before the export)."""

    def calibrated(self, model, hessians: dict) -> None:
        """The export's Hessians are collected (the lab checks them before GPTQ runs)."""

    def artifact(self, blob: bytes, state: dict, stored: dict) -> int:
        """Keep the artifact (``state``: the exported weights, ``stored``: what each became); return the
        code bytes that count beside it."""
        Path("model.golf").write_bytes(blob)
        return Path(sys.argv[0]).stat().st_size


def mean_loss(loss: torch.Tensor, dist) -> float:
    """The step's loss averaged over ranks (every rank calls this at the same step); finite or an error."""
    v = all_reduce_(loss.detach().clone()).item() / dist.world_size
    if v != v or abs(v) == float("inf"):
        raise FloatingPointError(f"train loss is {v}")
    return v
