"""The run record: ``metrics.jsonl`` + ``summary.json`` in the run directory, mirrored to W&B.

The run directory is the primary record (W&B is never the only copy). Only the main rank writes.
W&B failures never fail a run: an init that fails or takes longer than ``init_timeout_s`` (online
without a network), or a later logging error, gives one warning line and the run goes on without it.
``metrics.jsonl`` holds one JSON object per logged event (``{"event": "train", "step": 100, ...}``);
``summary.json`` is rewritten whenever the summary changes, so a crashed run still leaves what it had.

W&B: one group per idea (the configuration without its seed, :mod:`golf.logging.identity`), named by
the overrides that chose it plus a short hash, those overrides as tags; ``job_type`` is ``train`` (or
``eval`` for ``golf.evaluate``); every summary value and every logged metric is mirrored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from golf.logging.config import LoggerConfig
from golf.logging.identity import wandb_identity

log = logging.getLogger("golf")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def _run_overrides(run_dir: Path) -> tuple[list[str] | None, list[str] | None]:
    """The command-line overrides and the swept keys recorded in the run's ``provenance.yaml``."""
    provenance = Path(run_dir) / "provenance.yaml"
    if not provenance.is_file():
        return None, None
    from omegaconf import OmegaConf

    meta = OmegaConf.load(provenance)
    overrides, swept = meta.get("overrides"), meta.get("swept")
    return ([str(o) for o in overrides] if overrides else None), ([str(k) for k in swept] if swept else None)


class RunRecorder:
    """Append-only metrics, an always-current summary, and an optional W&B run."""

    def __init__(self, run_dir: Path, cfg: LoggerConfig, *, enabled: bool, run_name: str,
                 config: dict | None = None, job_type: str = "train", provenance_dir: Path | None = None):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.summary: dict[str, Any] = {}
        self._t0 = time.time()
        self._wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        if cfg.wandb is not None and cfg.wandb.mode != "disabled":
            w = cfg.wandb
            wandb_dir = Path(w.dir) if w.dir else self.run_dir
            wandb_dir.mkdir(parents=True, exist_ok=True)
            # the training run's overrides name the group (an evaluation of it joins the same group)
            overrides, swept = _run_overrides(provenance_dir or self.run_dir)
            group, idea_tags = wandb_identity(config or {}, overrides, run_name, swept=swept)
            with self._wandb_guard("could not start"):
                import wandb

                self._wandb = wandb.init(
                    project=w.project, entity=w.entity, mode=w.mode, dir=str(wandb_dir), name=run_name,
                    group=w.group or group, tags=list(dict.fromkeys([*w.tags, *idea_tags])), job_type=job_type,
                    config=config, settings=wandb.Settings(console="off", silent=True, init_timeout=w.init_timeout_s),
                )

    @contextlib.contextmanager
    def _wandb_guard(self, doing: str):
        """A W&B error becomes one warning line and W&B is off for the rest of the run."""
        try:
            yield
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            log.warning("W&B %s (%s: %s); the run goes on, recorded in %s only", doing,
                        type(err).__name__, reason, self.run_dir)
            self._wandb = None

    def log(self, event: str, step: int, **metrics: Any) -> None:
        if not self.enabled:
            return
        row = {"event": event, "step": step, "wall_s": round(time.time() - self._t0, 3), **metrics}
        self._metrics.write(json.dumps(_jsonable(row)) + "\n")
        self._metrics.flush()
        if self._wandb is not None:
            with self._wandb_guard("stopped logging"):
                self._wandb.log({f"{event}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
                                step=step)

    def update_summary(self, **values: Any) -> None:
        if not self.enabled:
            return
        self.summary.update(_jsonable(values))
        tmp = self.run_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.run_dir / "summary.json")
        if self._wandb is not None:
            with self._wandb_guard("stopped logging"):
                for k, v in values.items():
                    if isinstance(v, (int, float, str, bool)):
                        self._wandb.summary[k] = v

    def finish(self, status: str) -> None:
        if not self.enabled:
            return
        self.update_summary(status=status)
        self._metrics.close()
        if self._wandb is not None:
            with self._wandb_guard("could not finish"):
                self._wandb.finish(exit_code=0 if status == "completed" else 1)
            self._wandb = None
