"""Fail before queueing: compose, validate and budget-check every sweep point before any job exists.

For each sweep point the launcher asks Hydra's config loader for exactly the config the job will
compose (same overrides, same cached ``${now:}``), then

1. merges and validates it with :func:`golf.config.validate.load_config`, using the world size the job
   will have (``nproc_per_node`` workers in one Slurm task, or ``nodes x tasks_per_node`` Slurm tasks),
2. builds the model on the meta device with its optimizer, quant and QAT routing
   (:func:`build_on_meta`: a rule that selects nothing fails here, not in the job) and checks
   ``estimate_artifact_bytes`` plus the code bytes against ``quant.limit_bytes`` with :func:`golf.quant.check_estimate` (an error when
   ``quant.over_limit=error`` and the estimate is over by more than its tolerance, a warning otherwise).

Every point is checked; one :class:`SweepRefused` lists all that failed, so nothing is submitted.
The process layout rules live here too, since only the launcher sees both sides: a job runs either
one Slurm task that starts ``nproc_per_node`` workers itself (pattern B, one node), or one Slurm task
per rank with ``nproc_per_node=1`` (pattern A, any number of nodes).
"""


import copy
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from golf.config.errors import ConfigError


class SweepRefused(ValueError):
    """One or more sweep points are invalid or over budget; no job was submitted."""


@dataclass
class SweepPoint:
    num: int  # hydra.job.num
    overrides: list[str]
    run_dir: str = ""  # the job's output directory (known before submission)
    estimated_bytes: int | None = None
    shared: frozenset[str] = frozenset()  # overrides every point of the sweep has (left out of labels)

    @property
    def label(self) -> str:
        own = [o for o in self.overrides if o not in self.shared]
        return f"#{self.num} {' '.join(own) or '(no overrides)'}"


def world_size(composed: DictConfig, launcher_params: dict[str, Any]) -> int:
    """Ranks the job will have; raises ConfigError for layouts golf cannot run."""
    nproc = int(OmegaConf.select(composed, "nproc_per_node", default=1))
    tasks_per_node = int(launcher_params.get("tasks_per_node") or 1)
    nodes = int(launcher_params.get("nodes") or 1)
    tasks = tasks_per_node * nodes
    if tasks > 1 and nproc > 1:
        raise ConfigError("nproc_per_node", nproc,
                          f"the launcher already starts {tasks} Slurm tasks (hydra.launcher.tasks_per_node x "
                          "nodes), one per rank; use nproc_per_node=1 with tasks_per_node > 1")
    if nodes > 1 and tasks_per_node == 1:
        raise ConfigError("hydra.launcher.tasks_per_node", tasks_per_node,
                          f"a {nodes}-node job needs one Slurm task per GPU (e.g. tasks_per_node=8, "
                          "nproc_per_node=1); local worker groups cannot span nodes")
    return tasks if tasks > 1 else nproc


def build_on_meta(cfg) -> Any:
    """The run's model on the meta device (no memory, no init), after its optimizer, quant and QAT rule
    tables have been resolved against it (:func:`golf.config.policies.check_policies`); raises
    :class:`ConfigError` naming the rule or parameter that does not fit."""
    import torch

    from golf.config.policies import check_policies
    from golf.model import build_model

    check_policies(cfg)
    with torch.device("meta"):
        return build_model(cfg.arch)


def _budget(cfg, point: SweepPoint) -> None:
    """Build on the meta device (routing tables checked), estimate the artifact bytes (model + code) of a
    validated config and check them against its limit."""
    from golf.quant import BudgetWarning, check_estimate
    from golf.train import estimate_run_bytes

    point.estimated_bytes = sum(estimate_run_bytes(cfg, build_on_meta(cfg)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BudgetWarning)
        check_estimate(point.estimated_bytes, cfg.quant)  # raises BudgetExceededError when clearly over
    for w in caught:
        print(f"golf: sweep point {point.label} (estimate): {w.message}", file=sys.stderr)


def check_point(hydra_context: HydraContext, master: DictConfig, point: SweepPoint,
                launcher_params: dict[str, Any], budget: bool = True) -> Any:
    """Compose and check one point (fills ``run_dir`` and, with ``budget``, ``estimated_bytes``); returns
    the validated config, raises on a problem."""
    from golf.config.validate import load_config

    sweep_cfg = hydra_context.config_loader.load_sweep_config(master, list(point.overrides))
    with open_dict(sweep_cfg.hydra.job):
        sweep_cfg.hydra.job.num = point.num
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(sweep_cfg)  # lets ${hydra:...} resolve in the task config
    try:
        point.run_dir = str(Path(str(sweep_cfg.hydra.sweep.dir)) / str(sweep_cfg.hydra.sweep.subdir))
        task_cfg = copy.deepcopy(sweep_cfg)  # what the task function receives: everything but hydra
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        cfg = load_config(task_cfg, world_size=world_size(task_cfg, launcher_params))
        if budget and not cfg.dry_run:
            _budget(cfg, point)
        return cfg
    finally:
        HydraConfig.instance().cfg = previous


def check_sweep(hydra_context: HydraContext, master: DictConfig, job_overrides: Sequence[Sequence[str]],
                initial_job_idx: int, launcher_params: dict[str, Any],
                checked: Sequence[SweepPoint] = ()) -> list[SweepPoint]:
    """Check every point; raise :class:`SweepRefused` naming each bad one, or return them all.

    ``checked`` are points a sweeper has already put through :func:`check_point` (same number, same
    overrides); they are taken as they are."""
    shared = frozenset.intersection(*map(frozenset, job_overrides)) if len(job_overrides) > 1 else frozenset()
    points = [SweepPoint(initial_job_idx + i, list(o), shared=shared) for i, o in enumerate(job_overrides)]
    known = {(p.num, tuple(p.overrides)): p for p in checked}
    problems = []
    for i, point in enumerate(points):
        if (point.num, tuple(point.overrides)) in known:
            points[i] = known[(point.num, tuple(point.overrides))]
            points[i].shared = shared
            continue
        try:
            check_point(hydra_context, master, point, launcher_params)
        except Exception as err:  # every kind of bad input: composition, schema, layout, budget
            problems.append(f"  {point.label}\n      {type(err).__name__}: {err}")
    if problems:
        raise SweepRefused(f"{len(problems)} of {len(points)} sweep points were refused; nothing was submitted:\n"
                           + "\n".join(problems))
    return points
