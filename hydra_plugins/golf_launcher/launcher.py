"""golf's Hydra launchers: Slurm through submitit, or one point after another in this process, each
with checks before and a report after.

``hydra/launcher=slurm_8xh100`` (or ``slurm_ci``) selects :class:`GolfSlurmLauncher` through
``_target_``; every option of Hydra's ``submitit_slurm`` config keeps its meaning. ``hydra/launcher=local``
selects :class:`GolfBasicLauncher` (Hydra's basic launcher: sequential, in-process). On top:

* **before submitting** (:mod:`.checks`): every sweep point is composed exactly as its job will
  compose it, validated with ``golf.config.validate.load_config`` and its artifact estimate checked
  against the budget; one invalid point refuses the whole sweep, so nothing is queued.
* **pickled by name**: a task function defined in ``__main__`` (``python -m golf.train``) would be
  pickled by value and its module-level helpers could not be pickled again for the job's worker
  processes; the job imports the entry module by its name instead (:func:`importable`).
* **same code**: the job refuses to start when the checkout's sources or configs differ from those
  submitted (:mod:`.revision`); it runs with the submitting shell's Python and environment.
* **in the job**: with several Slurm tasks (pattern A, ``tasks_per_node > 1``) the torch.distributed
  variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) are exported from
  the Slurm environment before the task starts, so ``golf.dist`` reads them as it reads torchrun's; a
  task that raised makes the job fail (see :mod:`.report`). On the scheduler's stop signal the job
  hands over to submitit (which requeues this same callable) only after training has stopped with a
  checkpoint, also when local workers do the training (:mod:`golf.preempt`); the requeued job
  composes the same config into the same run directory and the trainer resumes.
* **after**: the launcher waits for every job, prints a line per point and the failed ones, and the
  sweep exits non-zero if any failed (:func:`conclude`).
* **stopped** (``local``): a stop signal (TERM, USR2, Ctrl-C) while a point trains checkpoints it and
  ends the sweep; anywhere else (between points, while a point prepares or exports) the sweep ends at
  once. Either way the command prints the table so far (completed / failed / stopped / not started)
  and one line saying how to resume, exit status 1. Rerunning the command into the same sweep
  directory resumes: completed points are not run again, the stopped one continues from its checkpoint.

Built on hydra-submitit-launcher 1.2.0 (``BaseSubmititLauncher``), whose ``__call__`` and
``checkpoint`` run unchanged inside the job.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, OmegaConf

from golf.files import discard_if_unused
from golf.preempt import Preempted, StopSignal, stop_signal_of

from .checks import SweepPoint, SweepRefused, check_sweep
from .report import (
    JobFailed,
    PointResult,
    SweepFailed,
    error_line,
    first_line,
    read_summary,
    record_failure,
    sweep_report,
)
from .revision import check_unchanged, fingerprint, project_root

log = logging.getLogger(__name__)


def conclude(outcomes: list[tuple[JobReturn, PointResult]]) -> list[JobReturn]:
    """Print the sweep table and the failed points; every failed return then raises one SweepFailed."""
    table, failures = sweep_report([result for _, result in outcomes])
    log.info(table)
    if failures is not None:
        log.error(failures)
        err = SweepFailed(failures)
        for ret, _ in outcomes:
            if ret.status is JobStatus.FAILED:
                ret.return_value = err
    return [ret for ret, _ in outcomes]


def importable(task_function: TaskFunction) -> TaskFunction:
    """The same task function, referenced through the entry module's import name when it ran as ``-m``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if task_function.__module__ != "__main__" or spec is None:
        return task_function
    decorated = getattr(importlib.import_module(spec.name), task_function.__name__)
    return getattr(decorated, "__wrapped__", decorated)  # hydra.main keeps the plain function there


def _checked_sweep(hydra_context: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]],
                   initial_job_idx: int, params: dict[str, Any], checked: Sequence[SweepPoint] = ()) -> list[SweepPoint]:
    """:func:`check_sweep`; a refused sweep ends the command with its message (no traceback), status 2."""
    try:
        return check_sweep(hydra_context, config, job_overrides, initial_job_idx, params, checked)
    except SweepRefused as err:
        discard_if_unused(str(config.hydra.sweep.dir), own=("multirun.yaml",))  # Hydra's file, nothing ran
        print(f"golf: SweepRefused: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _failure_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


class GolfBasicLauncher(BasicLauncher):
    """Hydra's basic launcher (points one after another in this process), checked and reported; a stop
    signal ends the sweep resumably (see the module doc)."""

    checked: list[SweepPoint] = []  # points a sweeper has checked already (see checks.check_sweep)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = str(self.config.hydra.sweep.dir)  # resolves ${now:} once, for every point
        points = _checked_sweep(self.hydra_context, self.config, job_overrides, initial_job_idx, {}, self.checked)
        outcomes: list[tuple[JobReturn, PointResult]] = []
        running: SweepPoint | None = None
        try:
            # a point's training takes a signal over (checkpoint, then Preempted); elsewhere it stops at once
            with StopSignal(immediate=True) as stop:
                for point in points:
                    running = point
                    outcomes.append(self._run(point))
                    running = None
                    if stop.requested:  # arrived after the point's training: it finished, stop before the next
                        raise Preempted(f"stopped by {signal.Signals(stop.signum).name} after {point.label}")
        except Preempted as err:
            self._stopped(points, [result for _, result in outcomes], running, err, sweep_dir)
        return conclude(outcomes)

    def _run(self, point: SweepPoint) -> tuple[JobReturn, PointResult]:
        summary = read_summary(point.run_dir)
        if summary.get("status") == "completed":  # a rerun of a stopped sweep: done before, not run again
            log.info(f"golf: {point.label} completed before in {point.run_dir}; not run again")
            ret = JobReturn(overrides=list(point.overrides), working_dir=point.run_dir, status=JobStatus.COMPLETED)
            ret.return_value = summary.get("val_bpb")
            return ret, PointResult(point.label, point.run_dir, ok=True)
        (ret,) = super().launch([point.overrides], point.num)
        ok = ret.status is JobStatus.COMPLETED
        if not ok:
            record_failure(Path(point.run_dir), _failure_text(ret._return_value))
        error = "" if ok else read_summary(point.run_dir).get("error", first_line(ret._return_value))
        return ret, PointResult(point.label, point.run_dir, ok=ok, error=error)

    def _stopped(self, points: list[SweepPoint], done: list[PointResult], running: SweepPoint | None,
                 err: Preempted, sweep_dir: str) -> None:
        """The sweep was stopped: its table so far, one line on how to resume, exit status 1."""
        results = list(done)
        for point in points[len(done):]:
            state = "stopped" if point is running else "not started"
            results.append(PointResult(point.label, point.run_dir, ok=False, state=state,
                                       error=first_line(str(err)) if point is running else ""))
        table, failures = sweep_report(results)
        log.info(table)
        if failures is not None:
            log.error(failures)
        given = any(str(o).startswith("hydra.sweep.dir=") for o in self.config.hydra.overrides.hydra)
        again = "rerun the same command" if given else f"rerun the command with hydra.sweep.dir={sweep_dir}"
        print(f"golf: Preempted: the sweep was stopped ({first_line(str(err))}); to resume, {again}", file=sys.stderr)
        raise SystemExit(1)


SLURM_COMMANDS = ("sbatch", "srun")


def require_slurm(sweep_dir: Path | None = None) -> None:
    """Before anything else: a Slurm launcher on a machine without Slurm's commands ends the command
    with one line (exit status 2) saying what is missing and what runs here instead; the sweep
    directory Hydra has just made for it (holding only ``multirun.yaml``) is removed."""
    missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
    if missing:
        discard_if_unused(sweep_dir, own=("multirun.yaml",))  # Hydra's file, nothing ran
        print(f"golf: this Slurm launcher needs {' and '.join(SLURM_COMMANDS)} on PATH; not found: "
              f"{', '.join(missing)} (to run the sweep on this machine: hydra/launcher=local)", file=sys.stderr)
        raise SystemExit(2)


class GolfSlurmLauncher(BaseSubmititLauncher):
    """Hydra's submitit Slurm launcher, checked before and reported after (see the module doc)."""

    _EXECUTOR = "slurm"

    code: dict[str, str] = {}  # the submitted code's fingerprint (see .revision)
    checked: list[SweepPoint] = []  # points a sweeper has checked already (see checks.check_sweep)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=importable(task_function), config=config)

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict[type, Singleton]) -> JobReturn:
        import submitit

        check_unchanged(self.code, project_root())
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # pattern A: this Slurm task is one rank
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False,
                                                                   overwrite=True)
        with StopSignal() as stop:  # records the scheduler's signal until the job has stopped
            try:
                ret = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
            except Preempted as err:  # training (here, or in local workers that saw the signal) has checkpointed
                signum = stop.signum or stop_signal_of(err)
                if signum is not None:
                    stop.record(signum)
                stop.after_checkpoint()
                raise
            signum = stop.signum or stop_signal_of(ret._return_value)
            if ret.status is JobStatus.FAILED and signum is not None:
                # local workers saw the signal too, checkpointed and stopped; the agent reports that
                # as a failure (or as torch elastic's SignalException for TERM)
                stop.record(signum)
                stop.after_checkpoint()
                raise Preempted(f"job stopped by signal {signum} after its workers checkpointed") \
                    from ret._return_value
        if ret.status is JobStatus.FAILED:
            err = ret._return_value
            if env.global_rank == 0:
                record_failure(Path(str(ret.hydra_cfg.hydra.runtime.output_dir)), _failure_text(err))
            raise JobFailed(f"{type(err).__name__}: {err}") from err
        return ret

    def _executor(self) -> Any:
        import submitit

        params = dict(self.params)
        folder = params.pop("submitit_folder")
        init = {f"{self._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout")} if "max_num_timeout" in params else {}
        executor = submitit.AutoExecutor(folder=folder, cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))  # resolves ${now:} once, for every point
        require_slurm(sweep_dir)
        points = _checked_sweep(self.hydra_context, self.config, job_overrides, initial_job_idx, self.params,
                                self.checked)
        executor = self._executor()
        self.code = fingerprint(project_root())  # pickled with this launcher into every job
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        state = Singleton.get_state()
        args = [(p.overrides, "hydra.sweep.dir", p.num, f"job_id_for_{p.num}", state) for p in points]
        jobs = executor.map_array(self, *zip(*args))
        log.info(f"golf: submitted {len(jobs)} {self._EXECUTOR} jobs; sweep dir {sweep_dir}")
        for point, job in zip(points, jobs):
            est = f" (estimated artifact {point.estimated_bytes:,} B)" if point.estimated_bytes else ""
            log.info(f"\t{point.label} -> job {job.job_id}{est}")
        return conclude([self._wait(point, job) for point, job in zip(points, jobs)])

    def _wait(self, point: SweepPoint, job: Any) -> tuple[JobReturn, PointResult]:
        """Block until ``job`` ends; a job that raised or died becomes a FAILED JobReturn."""
        try:
            ret = (_results_across_requeues(job) if self._EXECUTOR == "slurm" else job.results())[0]
        except Exception as err:  # FailedJobError (the task raised) or UncompletedJobError (killed)
            summary = read_summary(point.run_dir)
            error = summary.get("error") if summary.get("status") == "failed" else None
            ret = JobReturn(overrides=point.overrides, working_dir=point.run_dir, status=JobStatus.FAILED)
            ret.return_value = err
            return ret, PointResult(point.label, point.run_dir, ok=False, error=error or error_line(err),
                                    log=str(job.paths.stderr))
        return ret, PointResult(point.label, point.run_dir, ok=ret.status is JobStatus.COMPLETED)


# Slurm states in which a job can still produce its result (submitit's own list plus transitional flags)
_ALIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING", "CONFIGURING",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "PREEMPTED", "UNKNOWN"}


def _slurm_state(job_id: str) -> str:
    """The job's state as sacct (or launch/shim/sacct) reports it now; "" when it cannot tell."""
    try:
        out = subprocess.run(["sacct", "-j", job_id, "-o", "JobID,State", "--parsable2", "-n"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in out.stdout.splitlines():
        jid, _, state = line.partition("|")
        if jid == job_id:
            return state.split(" ")[0]  # "CANCELLED by 0" -> "CANCELLED"
    return ""


def _results_across_requeues(job: Any, checks: int = 15, every_s: float = 2.0) -> list:
    """``job.results()``, but a job that submitit saw "finished" without a result while Slurm was
    moving it back to the queue (a requeue after preemption) is waited for again. A job that stays
    out of the queue for ``checks`` looks in a row really ended: its error is raised, with the
    states Slurm reported."""
    import submitit

    while True:
        try:
            return job.results()
        except submitit.core.utils.UncompletedJobError as err:
            seen = []
            for _ in range(checks):
                seen.append(_slurm_state(job.job_id) or "?")
                if seen[-1] in _ALIVE:
                    break
                time.sleep(every_s)
            else:
                raise submitit.core.utils.UncompletedJobError(
                    f"{err}\nSlurm state afterwards: {' '.join(dict.fromkeys(seen))}") from None
            log.info(f"golf: job {job.job_id} was requeued; waiting for it again")
            while _slurm_state(job.job_id) in _ALIVE:
                time.sleep(every_s)
