"""One training run as the lab drives it: the kernel's run (:func:`golf.kernel.run.run`) with the lab's hooks.

The kernel trains, exports and scores; :class:`LabHooks` adds what a researcher's lab needs around it
and changes nothing it computes: metrics and the summary in the run directory (and W&B), progress on
the console, resume from a checkpoint, checkpoints on a stop signal / every ``train.checkpoint_every_s``
/ at the end inside a scheduler job, and the code bytes of the generated submission
(:mod:`golf.submission`), written beside the artifact. A run over the byte limit is refused once its
score is recorded (:func:`golf.quant.check_budget`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import traceback
from pathlib import Path

import torch
from omegaconf import OmegaConf

from golf.checkpoint import check_state_components, load_checkpoint, resolved_config, save_checkpoint
from golf.config.schema import GolfConfig
from golf.config.validate import eval_seq_len, grad_accum_steps
from golf.data import DataPaths, check_data
from golf.dist import DistInfo, scheduler_job_id
from golf.eval import EvalBudget, eval_progress
from golf.files import write_atomic
from golf.kernel.hooks import Hooks, mean_loss
from golf.kernel.run import run
from golf.logging import RunRecorder
from golf.logging.progress import Progress, format_seconds
from golf.model import build_model
from golf.plan import run_plan, submission_of
from golf.preempt import Preempted, StopSignal
from golf.quant.export import check_hessians
from golf.quant.report import QuantReport, check_budget, stream_bytes, tensor_report
from golf.quant.routing import route_state_dict
from golf.quant.validate_artifact import FRAME

log = logging.getLogger("golf")
ARTIFACT_NAME = "model.golf"


def run_training(cfg: GolfConfig, dist: DistInfo, run_dir: Path, data: DataPaths) -> dict:
    """Train, export and score one configuration (validated, its ``data`` prepared by the entry);
    returns the summary (same on every rank)."""
    run_dir = Path(run_dir)
    if dist.is_main and (run_dir / "error.txt").exists():
        (run_dir / "error.txt").unlink()  # left by an earlier attempt of this run (requeue, retry)
    recorder = RunRecorder(run_dir, cfg.logger, enabled=dist.is_main, run_name=cfg.run_name,
                           config=OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True))
    try:
        with StopSignal(immediate=True) as stop:  # a stop acts at once until the loop can checkpoint
            hooks = LabHooks(cfg, dist, run_dir, recorder, stop)
            periodic_len = cfg.train.seq_len if cfg.eval.periodic == "standard" else eval_seq_len(cfg)
            check_data(cfg.data, data, world_size=dist.world_size, seq_len=cfg.train.seq_len,
                       val_seq_len=max(eval_seq_len(cfg), periodic_len),
                       row_tokens=cfg.train.batch_tokens // (dist.world_size * grad_accum_steps(cfg, dist.world_size)))
            result = run(cfg, run_plan(cfg, dist), data, dist, hooks)
        if dist.is_main:
            check_budget(recorder.summary["artifact_bytes"], cfg.quant)  # the score is recorded by now
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
    return {**(dict(recorder.summary) if dist.is_main else result), "status": "completed"}


class LabHooks(Hooks):
    def __init__(self, cfg: GolfConfig, dist: DistInfo, run_dir: Path, recorder: RunRecorder, stop: StopSignal):
        super().__init__(dist, cfg.train.log_every)
        self.cfg, self.run_dir, self.recorder, self.stop = cfg, run_dir, recorder, stop
        self.resolved = resolved_config(cfg)  # recorded with every checkpoint (golf.train checks it on resume)
        self.show = cfg.logger.console_every > 0  # 0: no training progress lines at all
        self.budget = EvalBudget(cfg.eval.budget_s)
        self.progress = eval_progress(dist, budget=self.budget)
        self.saved_step = None
        with torch.device("meta"):
            self.roles = build_model(cfg.arch).param_roles  # the routes' reasons in the quant report
        self.recorder.update_summary(run_name=cfg.run_name, eval=cfg.eval.name, eval_kind=cfg.eval.kind)

    def seed(self, seed: int) -> int:
        return seed  # the config's (a SEED variable in the environment is for submissions only)

    # -- records
    def log(self, kind: str, step: int, **fields) -> None:
        self.recorder.log(kind, step, **fields)
        line = _CONSOLE.get(kind)
        # the loop switch is each rank's own decision (from the agreed clock): every rank's log shows it
        if line is not None and (self.dist.is_main or kind in _EVERY_RANK):
            log.info(line, step, fields)

    def summary(self, **fields) -> None:
        if "final_eval_s" in fields:  # the final evaluation (from the artifact's load) against its budget
            fields.update(self.budget.fields(fields["final_eval_s"]))
            if fields["eval_over_budget"] and self.dist.is_main:
                log.warning("evaluation took %.1f s, over eval.budget_s=%g", fields["eval_s"], self.budget.budget_s)
        self.recorder.update_summary(**fields)
        if "model_params" in fields:
            log.info("model_params:%d world_size:%d grad_accum_steps:%d micro_batch_tokens:%d device:%s compile:%s",
                     fields["model_params"], fields["world_size"], fields["grad_accum_steps"],
                     fields["micro_batch_tokens"], self.dist.device, fields["compile"])

    # -- resume, progress, requests
    def resume(self, st) -> None:
        resumed = load_checkpoint(self.run_dir, self.dist)
        if resumed is not None:
            check_state_components(resumed)
            st.load_state_dict(resumed)
            self.saved_step = st.step
            self.recorder.log("resume", st.step, train_time_s=st.train_time)
            log.info("resumed from checkpoint at step %d (%.1f s of training)", st.step, st.train_time)
        self.last_ckpt = st.train_time
        self.start = (st.step, st.train_time)
        self.console = False
        self.bar = Progress("train", total=self.cfg.train.iterations, unit="step", every=self.cfg.logger.console_every,
                            first=3, enabled=self.dist.is_main and self.show, eta=False, start=st.step)
        self.stop.arm()  # from here a stop is honoured at the next step boundary, with a checkpoint

    def after_step(self, st, loss, lr_mul: float, elapsed: float) -> None:
        every, s = self.cfg.train.log_every, st.step
        record = every and (s % every == 0 or s == 1)
        self.console = self.show and self.bar.due(s)  # the same answer on every rank: the loss is read then
        if record or self.console:
            try:
                value = mean_loss(loss, self.dist)
            except FloatingPointError as err:
                raise FloatingPointError(f"{err} at step {s}") from None
        if record:
            self.recorder.log("train", s, train_loss=value, lr_mul=lr_mul, train_time_s=elapsed,
                              ms_per_step=1000.0 * elapsed / s, qat_active=bool(st.qat.active))
        self.bar.update(s, **(self._fields(s, elapsed, value, lr_mul) if self.console else {}))
        self.loss, self.lr_mul = loss, lr_mul

    def _fields(self, step: int, elapsed: float, loss: float, lr_mul: float) -> dict:
        """A progress line: loss, schedule, throughput and the time left (the sooner of the wall-clock
        cap and the step budget at the current speed)."""
        tc = self.cfg.train
        steps, seconds = step - self.start[0], max(elapsed - self.start[1], 1e-9)
        left = (tc.iterations - step) * seconds / max(steps, 1)
        if tc.max_wallclock_s:
            left = min(left, max(tc.max_wallclock_s - elapsed, 0.0))
        return {"loss": loss, "lr_mul": round(lr_mul, 3), "tok/s": int(steps * tc.batch_tokens / seconds),
                "ms/step": round(1000.0 * seconds / max(steps, 1), 1), "train_time": format_seconds(elapsed),
                "left": format_seconds(left)}

    def requests(self, st, elapsed: float) -> tuple:
        every = self.cfg.train.checkpoint_every_s
        return float(self.stop.requested), float(every is not None and elapsed - self.last_ckpt >= every)

    def settled(self, st, agreed: list[float]) -> None:
        self._checkpoint(st)
        self.last_ckpt = st.train_time
        if agreed[0]:
            self.stop.after_checkpoint()
            raise Preempted(f"stop requested at step {st.step}; checkpoint written to {self.run_dir}")

    def _checkpoint(self, st) -> None:
        save_checkpoint(self.run_dir, self.dist, st.state_dict(), config=self.resolved)
        self.recorder.log("checkpoint", st.step, train_time_s=st.train_time)
        self.saved_step = st.step

    def trained(self, st) -> None:
        if self.show and st.step > self.start[0] and not self.console:  # stopped off the cadence: last line
            value = mean_loss(self.loss, self.dist)
            self.bar.line(**self._fields(st.step, st.train_time, value, self.lr_mul))
        self.bar.close()
        tc = self.cfg.train
        at_end = tc.checkpoint_at_end if tc.checkpoint_at_end is not None else scheduler_job_id() is not None
        if at_end and self.saved_step != st.step:
            self._checkpoint(st)  # a stop from here on (export, evaluation) resumes at the finish
        self.stop.release()  # from here a stop acts at once (nothing left that a checkpoint would save)
        log.info("training done: %d steps, %.1f s (%.1f ms/step), %d tokens", st.step, st.train_time,
                 1000.0 * st.train_time / max(st.step, 1), st.step * tc.batch_tokens)

    # -- the export: its Hessians, the artifact and the code that counts beside it
    def calibrated(self, model, hessians: dict) -> None:
        c = self.cfg.quant.calibration
        self.recorder.update_summary(calibration_batches=c.batches, calibration_source=str(c.source),
                                     calibration_tensors=len(hessians))
        sd = model.state_dict()
        check_hessians(sd, route_state_dict(sd, self.cfg.quant, self.roles), hessians)  # one GPTQError line

    def artifact(self, blob: bytes, state: dict, stored: dict) -> int:
        submission = submission_of(self.cfg)
        submission.write(self.run_dir)
        q, summary = self.cfg.quant, self.recorder.summary
        routes = route_state_dict(state, q, self.roles)
        rows = [tensor_report(n, state[n], stored[n], routes[n].reason, q.packing) for n in stored]
        report = QuantReport(rows, len(blob), FRAME.unpack_from(blob)[4], q.compressor.value, int(q.level),
                             q.packing.value, shuffle=q.byte_shuffle, quantize_s=summary.get("quantize_s", 0.0),
                             compress_s=summary.get("compress_s", 0.0), streams=stream_bytes(blob))
        write_atomic(self.run_dir / ARTIFACT_NAME, blob)  # whole or absent: a full disk leaves no truncated one
        self.budget.start()
        write_atomic(self.run_dir / "quant_report.json", json.dumps(report.to_dict(), indent=1) + "\n")
        self.recorder.update_summary(quant=q.name, **({"model_streams": report.streams} if report.streams else {}))
        log.info("artifact: model %d + code %d = %d bytes (limit %d)", len(blob), submission.code_bytes,
                 len(blob) + submission.code_bytes, self.cfg.quant.limit_bytes)
        return submission.code_bytes


# console lines of the records that get one (the rest reach the console through the progress display)
_CONSOLE = {
    "val": "step:%d %s",
    "loop_switch": "step:%d depth loop on %s",
    "prequant_eval": "prequant eval at step %d: %s",
    "final_eval": "final eval of the round-tripped artifact at step %d: %s",
}
_EVERY_RANK = frozenset({"loop_switch"})
