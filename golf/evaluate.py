"""Eval-only entry point: score a saved artifact on a data split with any eval config.

    python -m golf.evaluate run=<run dir> eval=sliding2048 [split=val] [data_root=...]
    python -m golf.evaluate run=<run dir> eval=ttt          # score-first test-time training

The run's ``config.yaml`` gives the architecture and the data; the artifact (``model.golf``) is loaded
as plain data, dequantized into a freshly built model and scored exactly as at the end of training.
The result is printed and written to ``<run>/eval/<time>_<eval>/result.json``, or to ``out=<dir>``
(for a run on a read-only mount; the check before Hydra makes the directory points to it). Works as
a single process or under ``torchrun`` (ranks split the windows; sums are all-reduced).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from golf.config.errors import ConfigError
from golf.config.store import composed as composition_done
from golf.config.store import register_schemas, run_entry
from golf.config.validate import load_config
from golf.data import prepare_data
from golf.data.shards import check_validation_shards
from golf.data.sidecar import check_sidecar_data
from golf.dist import init_distributed, shutdown
from golf.entry import entry_errors
from golf.eval import EvalConfig, check_ttt_model, eval_progress, ttt_frozen_prefixes, validate_eval
from golf.kernel.data import load_validation_tokens, validation_bytes
from golf.kernel.evaluator import build_evaluator
from golf.logging import RunRecorder
from golf.model import build_model
from golf.quant.export import read_artifact
from golf.trainer import ARTIFACT_NAME


def load_into(model, state: dict) -> None:
    """Load dequantized tensors into ``model``, cast to the dtypes of its own parameters."""
    own = model.state_dict()
    model.load_state_dict({k: v.to(dtype=own[k].dtype) if k in own else v for k, v in state.items()})


def autocast_factory(precision: str, device):
    """bf16 autocast as in training (``auto``: on CUDA), else none."""
    import contextlib

    import torch

    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext

# conf/evaluate.yaml names the output directory ``out`` when it is set, else one inside the run
OmegaConf.register_new_resolver("golf.either", lambda value, fallback: fallback if value is None else value,
                                replace=True)


def score_artifact(run_dir: Path, eval_cfg: EvalConfig, *, artifact: Path | None = None, split: str = "val",
                   data_root: str | None = None, device: str = "auto", precision: str = "auto",
                   compile_model: bool | None = None) -> dict:
    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ConfigError("run", str(run_dir), "is not a golf run directory (no config.yaml)")
    artifact = Path(artifact) if artifact else run_dir / ARTIFACT_NAME
    if not artifact.is_file():
        raise ConfigError("artifact", str(artifact), "no such artifact file")
    if split not in ("val", "train"):
        raise ConfigError("split", split, "must be 'val' or 'train'")
    validate_eval(eval_cfg, "eval")
    recorded = OmegaConf.load(config_file)
    if data_root is not None:
        recorded.data.root = data_root
    cfg = load_config(recorded)
    validate_eval(eval_cfg, "eval", window=cfg.train.seq_len)  # the window it falls back to is the run's
    check_ttt_model(eval_cfg, cfg.arch)
    if split != "val" and (cfg.data.text_transform is not None or cfg.data.val_bytes_pattern is not None):
        raise ConfigError("split", split, f"the run's data ({cfg.data.name}) is scored on original bytes from a "
                          "byte sidecar, which only the validation split has")
    cfg.precision, cfg.compile = precision, compile_model

    dist = init_distributed(device)
    try:
        model = build_model(cfg.arch)
        # checked before any data is read: an artifact of another shape, or a bomb, is one ArtifactError line
        load_into(model, read_artifact(artifact, expect=model.state_dict()))
        paths = prepare_data(cfg.data)
        seq_len = eval_cfg.seq_len or cfg.train.seq_len
        pattern = paths.val_pattern if split == "val" else paths.train_pattern
        check_validation_shards(pattern, seq_len, cfg.arch.vocab_size)
        if paths.val_bytes_pattern is not None:
            check_sidecar_data(paths.val_pattern, paths.val_bytes_pattern)
        tokens = load_validation_tokens(pattern, seq_len)
        nbytes = validation_bytes(cfg.data, paths, tokens, cfg.arch.vocab_size)
        model = model.to(dist.device).eval()
        use_compile = compile_model if compile_model is not None else dist.device.type == "cuda"
        evaluator = build_evaluator(eval_cfg, tokens=tokens, nbytes=nbytes, seq_len=seq_len, dist=dist,
                                    autocast=autocast_factory(cfg.precision, dist.device), compile_model=use_compile,
                                    progress=eval_progress(dist),
                                    ttt_frozen=ttt_frozen_prefixes(eval_cfg, cfg.arch.num_layers))
        result = evaluator(model)
    finally:
        shutdown()
    return {"artifact": str(artifact), "split": split, "eval": eval_cfg.name, "eval_kind": eval_cfg.kind,
            "seq_len": seq_len, "stride": eval_cfg.stride, **result.to_dict()}


def mirror_to_wandb(run_dir: Path, out: Path, result: dict) -> None:
    """An evaluation of a run that logged to W&B becomes a W&B run of ``job_type=eval`` in the same group
    (its summary: the result); the files stay in ``out`` as the primary record."""
    recorded = OmegaConf.load(Path(run_dir) / "config.yaml")
    cfg = load_config(recorded)
    if cfg.logger.wandb is None or cfg.logger.wandb.mode == "disabled":
        return
    if cfg.logger.wandb.dir is None:
        cfg.logger.wandb.dir = str(out)
    recorder = RunRecorder(out, cfg.logger, enabled=True, run_name=f"{cfg.run_name}-eval-{result['eval']}",
                           config=OmegaConf.to_container(recorded, resolve=True), job_type="eval",
                           provenance_dir=Path(run_dir))
    recorder.update_summary(**result)
    recorder.finish("completed")


register_schemas()  # before Hydra composes conf/evaluate.yaml


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(composed: DictConfig) -> float:
    composition_done()  # from here on Hydra reports errors its own way (golf.config.store.run_entry)
    out = Path(HydraConfig.get().runtime.output_dir)
    with entry_errors("golf.evaluate", lambda: [out]):  # one line; a config error leaves no eval directory
        try:
            eval_cfg = OmegaConf.to_object(composed.eval)  # typed while composing (golf.config.store)
        except OmegaConfBaseException as err:
            raise ConfigError(getattr(err, "full_key", None) or "eval", getattr(err, "value", None),
                              str(err).splitlines()[0]) from None
        result = score_artifact(Path(composed.run), eval_cfg, artifact=composed.artifact, split=composed.split,
                                data_root=composed.data_root, device=composed.device,
                                precision=composed.precision, compile_model=composed.compile)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        if not math.isfinite(result["val_bpb"]):  # recorded above, but never reported as a score
            raise FloatingPointError(f"val_bpb is {result['val_bpb']}: the artifact does not give a finite score")
        mirror_to_wandb(Path(composed.run), out, result)
    return result["val_bpb"]


if __name__ == "__main__":
    run_entry(main, "golf.evaluate")
