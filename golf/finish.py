"""The end of a run: exported weights ─► artifact ─► round trip ─► the reported score.

1. The averager picks the weights to export (raw, EMA, SWA, ...); they are loaded into the model.
2. ``prequant_val_bpb``: those weights scored with the evaluator's plain (non-adapting) form (optional).
3. Calibration, when a quant scheme uses GPTQ (:mod:`golf.quant.calibrate`): the exported weights run
   over calibration inputs and yield per-layer Hessians.
   Quantize ─► pack ─► compress on the main rank; ``artifact_bytes = model_bytes + code_bytes``
   (see :mod:`golf.code_bytes`; by default code is the runnable ``submission.py`` written here); the
   budget is checked.
4. Every rank decompresses and dequantizes the *same bytes* and loads them into the model.
5. ``val_bpb``: the round-tripped model scored with the configured evaluator. This is the score. The
   evaluator owns what it changes (a test-time-training evaluator adapts its own copy), so the
   weights exported in step 3 are the weights every evaluation started from.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch

from golf.code_bytes import (
    BUNDLE_NAME,
    PACKAGE_DIR,
    bundle_config,
    bundle_source,
    code_files,
    count_code_bytes,
)
from golf.config.schema import GolfConfig
from golf.dist import DistInfo, broadcast_object
from golf.files import write_atomic
from golf.logging import RunRecorder
from golf.logging.progress import stage_progress
from golf.quant import BudgetExceededError, check_budget, export_state_dict, load_artifact
from golf.quant.calibrate import calibrate
from golf.quant.config import needs_calibration
from golf.quant.export import EXPORT_STAGES

log = logging.getLogger("golf")

ARTIFACT_NAME = "model.golf"


def finish_run(cfg: GolfConfig, dist: DistInfo, run_dir: Path, recorder: RunRecorder, *, model, averager,
               qat, evaluator, step: int, train_loader=None, autocast=None) -> dict:
    """``train_loader`` makes a fresh training loader (calibration's ``train`` source)."""
    state, source = averager.final_state_dict(model)
    qat.remove(model)
    model.load_state_dict(state)
    recorder.update_summary(export_weights=source, eval=cfg.eval.name, eval_kind=cfg.eval.kind)

    if cfg.eval.prequant:
        t_pre = time.perf_counter()
        pre = evaluator.plain()(model)
        pre_s = round(time.perf_counter() - t_pre, 3)
        recorder.log("prequant_eval", step, eval_s=pre_s, **pre.to_dict())
        recorder.update_summary(prequant_eval_s=pre_s, **pre.to_dict(prefix="prequant_"))
        log.info("prequant val_loss:%.4f val_bpb:%.6f (%s weights)", pre.val_loss, pre.val_bpb, source)

    hessians = None
    if needs_calibration(cfg.quant):
        cal = calibrate(model, cfg.quant, dist, train_loader=train_loader, batch_tokens=cfg.train.batch_tokens,
                        seq_len=cfg.train.seq_len, autocast=autocast)
        if cal is not None:
            hessians = cal.hessians
            recorder.update_summary(calibration_s=cal.seconds, calibration_batches=cal.batches,
                                    calibration_tokens=cal.tokens)
            log.info("calibration: %d Hessians from %d batches in %.1f s", len(hessians), cal.batches, cal.seconds)

    # Quantize and compress once, on the main rank; every rank loads exactly those bytes. A failure
    # there is broadcast too, so no rank is left waiting.
    payload: tuple = ("error", "the main rank did not export")
    if dist.is_main:
        try:
            t_export = time.perf_counter()
            payload = ("ok", *_export(cfg, run_dir, recorder, model, step, hessians))
            recorder.update_summary(export_s=round(time.perf_counter() - t_export, 3))
        except Exception as err:  # re-raised below on every rank, with the original on this one
            payload = ("error", f"{type(err).__name__}: {err}")
            export_error = err
    status, *rest = broadcast_object(payload)
    if status != "ok":
        if dist.is_main:
            raise export_error
        raise RuntimeError(f"artifact export failed on the main rank: {rest[0]}")
    blob, artifact_bytes = rest
    over_budget: BudgetExceededError | None = None
    try:
        check_budget(artifact_bytes, cfg.quant)
    except BudgetExceededError as err:  # raised once the score is recorded: the training is not wasted
        over_budget = err

    load_into(model, load_artifact(blob))
    t_eval = time.perf_counter()
    result = evaluator(model)
    eval_s = round(time.perf_counter() - t_eval, 3)
    recorder.log("final_eval", step, eval_s=eval_s, **result.to_dict())
    recorder.update_summary(final_eval_s=eval_s, **result.to_dict())
    if cfg.eval.prequant:  # what quantization cost, in bpb (the report's quant gap)
        recorder.update_summary(quant_gap_bpb=result.val_bpb - pre.val_bpb)
    log.info("final %s eval of the round-tripped artifact: val_loss:%.4f val_bpb:%.6f (%d targets, %d bytes)",
             cfg.eval.kind, result.val_loss, result.val_bpb, result.val_tokens, result.val_bytes)
    if not (math.isfinite(result.val_bpb) and math.isfinite(result.val_loss)):
        raise FloatingPointError(f"final val_bpb is {result.val_bpb} (val_loss {result.val_loss}): "
                                 "the round-tripped model does not give a finite score")
    if over_budget is not None:
        raise over_budget
    return dict(recorder.summary) if dist.is_main else result.to_dict()


def _export(cfg: GolfConfig, run_dir: Path, recorder: RunRecorder, model, step: int,
            hessians: dict[str, torch.Tensor] | None = None) -> tuple[bytes, int]:
    cpu_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob, report = export_state_dict(cpu_state, cfg.quant, model.param_roles, hessians,
                                     on_stage=stage_progress("export", list(EXPORT_STAGES)))
    if cfg.code_bytes == "bundle":  # the runnable single-file submission is what gets counted
        files = code_files("bundle")
        bundle = bundle_source(bundle_config(cfg), files)
        write_atomic(run_dir / BUNDLE_NAME, bundle)
        code_bytes = len(bundle.encode("utf-8"))
        counted = [str(p.relative_to(PACKAGE_DIR.parent)) for p in files]
    else:
        code_bytes, counted = count_code_bytes(cfg.code_bytes)
    artifact_bytes = report.model_bytes + code_bytes
    write_atomic(run_dir / ARTIFACT_NAME, blob)  # whole or absent: a full disk leaves no truncated artifact
    write_atomic(run_dir / "quant_report.json", json.dumps(report.to_dict(), indent=1) + "\n")
    write_atomic(run_dir / "code_files.txt", "\n".join(counted) + "\n")
    sizes = dict(model_bytes=report.model_bytes, code_bytes=code_bytes, artifact_bytes=artifact_bytes,
                 artifact_limit=cfg.quant.limit_bytes, quant=cfg.quant.name)
    recorder.update_summary(**sizes, artifact_fits=artifact_bytes <= cfg.quant.limit_bytes,
                            quantize_s=report.quantize_s, compress_s=report.compress_s)
    recorder.log("artifact", step, **sizes)
    log.info("artifact: model %d + code %d = %d bytes (limit %d)", report.model_bytes, code_bytes,
             artifact_bytes, cfg.quant.limit_bytes)
    return blob, artifact_bytes


def load_into(model, state: dict[str, torch.Tensor]) -> None:
    """Load dequantized tensors into ``model``, cast to the dtypes of its own parameters."""
    own = model.state_dict()
    model.load_state_dict({k: v.to(dtype=own[k].dtype) if k in own else v for k, v in state.items()})


def load_artifact_file(path: Path) -> dict[str, torch.Tensor]:
    """Dequantized state dict of a saved artifact (plain data; never executes code)."""
    return load_artifact(Path(path).read_bytes())
