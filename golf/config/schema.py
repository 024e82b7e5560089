"""The typed schema of a golf run: one dataclass per config group, composed into :class:`GolfConfig`.

Hydra composes YAML from ``conf/``; :func:`golf.config.validate.load_config` merges the result into this
schema (unknown keys and wrong types fail there, naming the key) and runs every cross-field check.
Each group's dataclass lives next to its implementation; this module only composes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golf.averaging.config import AveragingConfig
from golf.data.config import DataConfig
from golf.eval.config import EvalConfig
from golf.logging.config import LoggerConfig
from golf.model.config import ArchConfig
from golf.optim.config import OptimizerConfig
from golf.quant.config import QuantConfig


@dataclass
class TrainConfig:
    """The training loop (spec §1.2, §1.7)."""

    # optimizer steps at most (the wall-clock cap usually stops training first)
    iterations: int = 20000
    # tokens per optimizer step, summed over ranks and accumulation micro-steps
    batch_tokens: int = 524288
    seq_len: int = 1024
    # micro-steps per optimizer step; None = 8 // world_size as the official script (at least 1)
    grad_accum_steps: int | None = None
    # tokens per forward/backward pass on one rank: "auto" = on CUDA the largest split of the step that
    # fits the free device memory (golf/microbatch.py), elsewhere batch_tokens / (world x grad_accum_steps);
    # or a multiple of seq_len dividing batch_tokens / world. The data and the gradient do not depend on it.
    micro_batch_tokens: str = "auto"
    # stop when the training clock (which excludes validation and warm-up) reaches this; None = no cap
    max_wallclock_s: float | None = 600.0
    # seconds of max_wallclock_s kept for the export's calibration and GPTQ: training stops (and every
    # wall-clock schedule fraction is taken) at max_wallclock_s - reserve_s (#1493: 12 of 600)
    reserve_s: float = 0.0
    # compile warm-up: run this many real steps, then restore the initial weights, optimizer and data
    warmup_steps: int = 20
    # periodic validation every this many steps (0 = only the final evaluation)
    val_every: int = 1000
    # train-loss record every this many steps
    log_every: int = 200
    # write a resumable checkpoint every this many seconds of training (None = only on preemption)
    checkpoint_every_s: float | None = None
    # also checkpoint when training ends, so a stop during export/evaluation resumes at the finish
    # instead of training again; None = only inside a scheduler job (where a requeue can follow)
    checkpoint_at_end: bool | None = None


@dataclass
class GolfConfig:
    data: DataConfig = field(default_factory=DataConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 1337
    # a short name for the run (W&B name, logs)
    run_name: str = "golf"
    # auto (CUDA when available) | cuda | cpu
    device: str = "auto"
    # torch.compile the model; None = on for CUDA, off for CPU
    compile: bool | None = None
    # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    precision: str = "auto"
    # TF32 for fp32 matmuls on CUDA for the whole run (the records set it: Hessian sums, fp32 optimizer math)
    tf32: bool = False
    # worker processes started on this node by the entry point itself (1 = this process trains)
    nproc_per_node: int = 1
    # build everything, print the config, parameter groups and size estimate, then stop
    dry_run: bool = False
    # where the run writes its records; filled from Hydra's output directory by the entry point
    run_dir: str | None = None
