"""Entry point: ``python -m golf.train [group=option ...] [key=value ...]``.

Hydra composes ``conf/train.yaml`` with the command-line overrides; the result is validated against
the typed schema before anything expensive happens (one :class:`golf.config.errors.ConfigError` line
names the bad key and value). Then, depending on how the process was started:

* ``dry_run=true``: build the model on the meta device, print the resolved config, parameter counts per
  group and optimizer group, and the artifact-size estimate; no data is read, nothing is trained.
* a single process (``nproc_per_node=1``), or one rank of a group started by ``torchrun`` or ``srun``:
  train here.
* ``nproc_per_node=N>1`` outside a group: start N local workers (in-process torchrun, free port) that
  each train one rank; the Hydra job (run directory, sweep result) stays in this process.

The run directory is Hydra's output directory; it receives the resolved config, ``metrics.jsonl``,
``summary.json``, the artifact and, under W&B offline mode, the W&B files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch.distributed.elastic.multiprocessing.errors import record

from golf.config.errors import ConfigError
from golf.config.schema import GolfConfig
from golf.config.store import composed as composition_done
from golf.config.store import register_schemas, run_entry
from golf.config.validate import load_config
from golf.data.paths import DataPaths, prepare_data
from golf.dist import in_worker_group, init_distributed, rank_env, scheduler_job_id, shutdown
from golf.entry import entry_errors
from golf.files import discard_if_unused, run_dir_lock
from golf.logging.progress import final_line
from golf.preempt import Preempted, stop_signal_of
from golf.quant.config import check_tools

log = logging.getLogger("golf")
register_schemas()  # before Hydra composes conf/train.yaml (here, in a sweep's jobs, in a Slurm job)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def git_revision() -> dict:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    rev = git("rev-parse", "HEAD")
    return {"git_rev": rev or None, "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def write_run_header(cfg: GolfConfig, run_dir: Path) -> None:
    if rank_env()[0] != 0:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None
    meta = {**git_revision(), "slurm_job_id": scheduler_job_id(), "overrides": overrides, "swept": swept_keys(),
            "argv": sys.argv}
    (run_dir / "provenance.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(meta)))


def swept_keys() -> list[str] | None:
    """In a Hydra sweep: the keys whose value the sweep varies (the overrides of this job that differ
    from the sweep's own command line, e.g. ``arch.model_dim`` for ``arch.model_dim=32,48``)."""
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    sweep_file = Path(str(HydraConfig.get().sweep.dir)) / "multirun.yaml"
    if not sweep_file.is_file():
        return None
    own = set(HydraConfig.get().overrides.task)
    originals = OmegaConf.load(sweep_file).hydra.overrides.task
    return [str(o).split("=", 1)[0] for o in originals if str(o) not in own]


def dry_run(cfg: GolfConfig) -> dict:
    """Print what the run would build, without reading data or training."""
    import torch

    from golf.model import build_model, count_parameters
    from golf.model.build import tensor_table
    from golf.optim import build_optimizer
    from golf.quant.calibrate import check_calibration

    print(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    with torch.device("meta"):
        model = build_model(cfg.arch)
    counts = count_parameters(model)
    print("parameters:")
    for group, n in counts.items():
        print(f"  {group:<24} {n:>12,}")
    print("tensors:")
    for name, shape, count, numel in tensor_table(model):
        print(f"  {name:<32} {'x'.join(map(str, shape)):>10} {numel:>12,}" + (f"  x{count}" if count > 1 else ""))
    r = cfg.arch.residual
    for index, order in enumerate(model.layer_orders()):
        print(f"block order{f' (topology {index})' if len(model.layer_orders()) > 1 else ''}: {list(order)}")
        if r.two_lane is not None:  # the lanes open at the first application of a block >= start_layer
            first = next((k for k, i in enumerate(order) if i >= r.two_lane.start_layer), len(order))
            print(f"  two lanes from application {first} (block {r.two_lane.start_layer}): {list(order[first:])}, "
                  "skips into lane0, exit = mean of the lanes")
    opt = build_optimizer(model, cfg.optimizer, world_size=1, rank=0)
    print("optimizer groups:")
    for name, names, numel in opt.group_table():
        print(f"  {name:<24} {numel:>12,}  ({len(names)} tensors)")
    check_calibration(model, cfg.quant)
    estimate, code = estimate_run_bytes(cfg, model)
    total = estimate + code
    print(f"estimated artifact bytes ({cfg.quant.name}): model {estimate:,} (estimate) + code {code:,} (the "
          f"generated submission, exact) = {total:,} "
          f"(limit {cfg.quant.limit_bytes:,}{', OVER' if total > cfg.quant.limit_bytes else ''})")
    return {"model_params": counts["total"], "estimated_model_bytes": estimate, "code_bytes": code,
            "estimated_artifact_bytes": total}


def estimate_run_bytes(cfg: GolfConfig, model=None) -> tuple[int, int]:
    """(estimated model bytes, exact code bytes) of a config's artifact: the code is the submission
    generated for it (:mod:`golf.submission`), the file the run writes and counts. ``model``: the
    config's model, built on the meta device when not given."""
    import torch

    from golf.model import build_model
    from golf.plan import submission_of
    from golf.quant import estimate_artifact_bytes

    if model is None:
        with torch.device("meta"):
            model = build_model(cfg.arch)
    return estimate_artifact_bytes(model, cfg.quant), submission_of(cfg).code_bytes


def check_budget_estimate(cfg: GolfConfig) -> None:
    """Refuse, before training, a run whose artifact estimate (model estimate + exact code bytes) is over
    ``quant.limit_bytes`` by more than the estimate's tolerance (:func:`golf.quant.check_estimate`; a
    warning when within it or with ``quant.over_limit=warn``)."""
    from golf.quant import BudgetExceededError, check_estimate

    estimate, code = estimate_run_bytes(cfg)
    try:
        check_estimate(estimate + code, cfg.quant)
    except BudgetExceededError as err:
        raise ConfigError("quant.limit_bytes", cfg.quant.limit_bytes,
                          f"refused before training: {err} (model {estimate:,} + code {code:,})") from None


@record
def _worker(cfg: GolfConfig, data: DataPaths, run_dir: str) -> dict:
    """One rank of a local worker group (started by :func:`_launch_workers`), handed the config the
    entry validated and the data it prepared (for the group's world size, ``cfg.nproc_per_node``). A
    stop ends the worker without a traceback: the process that started it reports the stop."""
    rank, _, _ = rank_env()
    _log_to_files(Path(run_dir), rank)
    try:
        return _train_here(cfg, Path(run_dir), data)
    except Preempted as err:
        log.info("rank %d: %s", rank, err)
        raise SystemExit(1) from None


def _log_to_files(run_dir: Path, rank: int) -> None:
    """Workers started here have no Hydra logging: rank r logs to <run_dir>/rank{r}.log (rank 0 also to stderr)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(f"[%(asctime)s][%(name)s][rank{rank}][%(levelname)s] - %(message)s")
    handlers: list[logging.Handler] = [logging.FileHandler(run_dir / f"rank{rank}.log", delay=True)]
    if rank == 0:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)


def _train_here(cfg: GolfConfig, run_dir: Path, data: DataPaths) -> dict:
    from golf.trainer import run_training

    dist = init_distributed(cfg.device)
    try:
        return run_training(cfg, dist, run_dir, data)
    finally:
        shutdown()


def _launch_workers(cfg: GolfConfig, run_dir: Path, data: DataPaths) -> dict:
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=cfg.nproc_per_node,
                          run_id=uuid.uuid4().hex, rdzv_backend="c10d", rdzv_endpoint="localhost:0",
                          max_restarts=0, monitor_interval=0.5)
    try:
        results = elastic_launch(launch, _worker)(cfg, data, str(run_dir))
    except Exception as err:  # a worker died (any rank): make the run show as failed
        if _summary(run_dir).get("status") == "preempted":
            # a stop signal (Ctrl-C, scancel) reached the workers: they checkpointed and stopped
            signum = stop_signal_of(err)
            by = f"by {signal.Signals(signum).name}" if signum is not None else "by a stop signal"
            stopped = Preempted(f"stopped {by}; the workers' checkpoint is in {run_dir}")
            stopped.sigval = signum  # read back by golf.preempt.stop_signal_of (the Slurm launcher's requeue)
            raise stopped from err
        _record_failure(run_dir, err)
        raise
    return results[0]


def _summary(run_dir: Path) -> dict:
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):  # no summary (a new run) or a half-written one (a crashed run)
        return {}
    return summary if isinstance(summary, dict) else {}


def _record_failure(run_dir: Path, err: BaseException) -> None:
    """Mark a run failed from outside its workers (rank 0 may have been killed before it could)."""
    summary_file = run_dir / "summary.json"
    summary = _summary(run_dir)
    if summary.get("status") == "preempted":  # checkpointed on a stop signal: the requeued job resumes
        return
    if summary.get("status") != "failed":
        summary.update(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
        summary_file.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    with open(run_dir / "error.txt", "a") as f:
        f.write(f"worker group failed: {type(err).__name__}: {err}\n")


def check_resume(cfg: GolfConfig, run_dir: Path, world_size: int | None = None) -> None:
    """A checkpoint in ``run_dir`` must be readable (its marker and every rank's file), written by
    ``world_size`` ranks (default ``cfg.nproc_per_node``) and come from the same config (CheckpointError / ConfigError otherwise, before
    anything in the directory is touched). Without one, ``run_dir`` must not hold a completed run: a
    new run there would start from step 0 and append its records to the finished run's (with a
    checkpoint it resumes, and repeats only the finish)."""
    from golf.checkpoint import check_resumable, check_resume_config, has_checkpoint, resolved_config

    check_resumable(run_dir, world_size or cfg.nproc_per_node)
    check_resume_config(run_dir, resolved_config(cfg))
    if has_checkpoint(run_dir):
        return
    summary = _summary(run_dir)
    if summary.get("status") == "completed":
        score = summary.get("val_bpb")
        scored = f" (val_bpb {score:.6f})" if isinstance(score, (int, float)) else ""
        raise ConfigError("run_dir", str(run_dir), f"already holds a completed run{scored}; give another run_dir "
                          "or remove this one")


def run(cfg: GolfConfig, run_dir: Path, data: DataPaths | None = None) -> dict:
    """Run a validated config in ``run_dir`` (dry run, local workers, or this process). ``data``: the
    config's prepared data (:func:`golf.data.prepare_data`; prepared here when not given). The run holds
    the run directory's lock (:func:`golf.files.run_dir_lock`): a second run into it is refused. A run
    ends with one line naming its directory and its score (or its error)."""
    if cfg.dry_run:
        summary = dry_run(cfg)
        _announce(final_line(run_dir, summary))
        return summary
    check_budget_estimate(cfg)
    check_tools(cfg.quant)  # the export's programs (lrzip) exist here: refused now, not after training
    with run_dir_lock(run_dir) if rank_env()[0] == 0 else contextlib.nullcontext():
        check_resume(cfg, run_dir, rank_env()[2] if in_worker_group() else cfg.nproc_per_node)  # before any write
        if data is None:
            data = prepare_data(cfg.data)
        write_run_header(cfg, run_dir)
        try:
            if cfg.nproc_per_node > 1 and not in_worker_group():
                summary = _launch_workers(cfg, run_dir, data)
            else:
                summary = _train_here(cfg, run_dir, data)
        except BaseException as err:
            status = "preempted" if isinstance(err, Preempted) else "failed"
            _announce(final_line(run_dir, {"status": status, "error": f"{type(err).__name__}: {err}"[:300]}))
            raise
    _announce(final_line(run_dir, summary))
    return summary


def _announce(line: str) -> None:
    """A line for the researcher from rank 0: through logging when it is set up (console and run log)."""
    if rank_env()[0] != 0:
        return
    if logging.getLogger().handlers:
        log.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


def _entry_config(composed, world: int | None,
                  default_run_dir: Callable[[], str]) -> tuple[GolfConfig, Path, DataPaths | None]:
    """Validate a composed config (the only time in a run), settle its run directory and prepare its
    data (the only time in a run: missing or inconsistent files fail here, named by their key; the demo
    corpus is built or found in its cache). A dry run reads no data (None)."""
    cfg = load_config(composed, world_size=world)
    data = None if cfg.dry_run else prepare_data(cfg.data)
    run_dir = Path(cfg.run_dir or default_run_dir()).resolve()
    cfg.run_dir = str(run_dir)
    return cfg, run_dir, data


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(composed: DictConfig) -> float | None:
    composition_done()  # from here on Hydra reports errors its own way (golf.config.store.run_entry)
    world = rank_env()[2] if in_worker_group() else None
    hydra_cfg = HydraConfig.get()
    dirs: list[Path | None] = [Path(hydra_cfg.runtime.output_dir), None]
    with entry_errors("golf", lambda: dirs, in_sweep=hydra_cfg.mode == RunMode.MULTIRUN):
        cfg, run_dir, data = _entry_config(composed, world, lambda: hydra_cfg.runtime.output_dir)
        dirs[1] = run_dir
        summary = run(cfg, run_dir, data)  # a checkpoint of another config is refused here, before any write
    if cfg.dry_run:  # a dry run leaves no run directory behind
        discard_if_unused(dirs[0])
    return summary.get("val_bpb")


if __name__ == "__main__":
    run_entry(main, "golf")
