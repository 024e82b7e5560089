"""golf run directories and W&B offline run directories as :class:`Run` records (read by
:mod:`golf.report`, :mod:`golf.record`, :mod:`golf.plots`): summary, flattened config, code revision and
logged events.

Runs are found below given directories: every golf run directory (it holds a ``summary.json``) and every
W&B offline run directory (``offline-run-*/run-*.wandb``) that is not inside a golf run directory. A run
directory inside another one (a ``golf_run-*`` folder written by a run's ``submission.py``, an evaluation's
output) is not another run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from golf.logging.identity import flatten
from golf.logging.wandb_offline import is_offline_run_dir, read_offline_run


@dataclass
class Run:
    path: Path
    summary: dict
    config: dict = field(default_factory=dict)
    history: list[dict] | None = None  # W&B history rows (offline runs); golf runs read metrics.jsonl
    revision: str | None = None  # the git revision the run's code came from (golf runs' provenance.yaml)

    @property
    def ok(self) -> bool:
        return self.summary.get("status") == "completed" and isinstance(self.summary.get("val_bpb"), float)

    @property
    def error(self) -> str:
        """The error line of a run that did not complete."""
        error = self.summary.get("error")
        if not error and (self.path / "error.txt").is_file():
            lines = [line for line in (self.path / "error.txt").read_text().splitlines() if line.strip()]
            error = lines[-1] if lines else ""
        if not error:
            status = self.summary.get("status")
            error = f"status {status}" if status != "completed" else "no val_bpb in its summary"
        return str(error).splitlines()[0][:300]

    def events(self) -> list[str]:
        """The kinds of the run's logged events (``train``, ``artifact``, ``final_eval``, ...) in order."""
        if self.history is not None:
            return [key.partition("/")[0] for row in self.history for key in row if "/" in key]
        metrics = self.path / "metrics.jsonl"
        out = []
        for line in metrics.read_text().splitlines() if metrics.is_file() else []:
            try:
                out.append(json.loads(line).get("event", "?"))
            except ValueError:  # a line being written
                continue
        return out

    def curves(self) -> dict[str, list[dict]]:
        """Logged events by kind (``train``, ``val``, ...), each ``{"step": ..., <metric>: ...}``."""
        out: dict[str, list[dict]] = {}
        if self.history is not None:  # W&B rows: "<event>/<metric>" keys, "_step"
            for row in self.history:
                by_event: dict[str, dict] = {}
                for key, value in row.items():
                    event, _, metric = key.partition("/")
                    if metric:
                        by_event.setdefault(event, {"step": row.get("_step")})[metric] = value
                for event, point in by_event.items():
                    out.setdefault(event, []).append(point)
            return out
        metrics = self.path / "metrics.jsonl"
        if metrics.is_file():
            for line in metrics.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # a line being written
                    continue
                out.setdefault(row.pop("event", "?"), []).append(row)
        return out


def _golf_run(path: Path) -> Run:
    config_file = path / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(config_file)) if config_file.exists() else {}
    revision = None
    if (path / "provenance.yaml").is_file():
        prov = OmegaConf.to_container(OmegaConf.load(path / "provenance.yaml"))
        if prov.get("git_rev"):
            revision = str(prov["git_rev"])[:12] + ("+dirty" if prov.get("git_dirty") else "")
    return Run(path, json.loads((path / "summary.json").read_text()), flatten(config), revision=revision)


def _wandb_run(path: Path) -> Run:
    w = read_offline_run(path)
    return Run(path, w.summary, flatten(w.config), history=w.history)


def find_runs(roots: list[Path]) -> list[Run]:
    """golf run directories and W&B offline run directories below ``roots`` (nested ones skipped)."""
    found: dict[Path, str] = {}
    for root in roots:
        root = Path(root)
        for summary in root.rglob("summary.json"):
            found.setdefault(summary.parent, "golf")
        for log in root.rglob("run-*.wandb"):
            if is_offline_run_dir(log.parent):
                found.setdefault(log.parent, "wandb")
    golf_dirs = {p for p, kind in found.items() if kind == "golf"}
    runs = []
    for path in sorted(found):
        if any(parent in golf_dirs for parent in path.parents):
            continue  # inside a golf run directory: its bundle run, its evaluation, its W&B mirror
        runs.append(_golf_run(path) if found[path] == "golf" else _wandb_run(path))
    return runs
