"""golf run directories and W&B offline run directories as :class:`Run` records (read by
:mod:`golf.report`, :mod:`golf.record`, :mod:`golf.plots`): summary, flattened config, code revision and
logged events.

Runs are found below given directories: every golf run directory (it holds a ``summary.json``) and every
W&B offline run directory (``offline-run-*/run-*.wandb``) that is not inside a golf run directory. A run
directory inside another one (a ``golf_run-*`` folder written by a run's ``submission.py``, an evaluation's
output) is not another run. A run whose files cannot be read (an empty or truncated ``summary.json``, YAML
that does not parse, bytes in ``metrics.jsonl`` that are not UTF-8, a damaged W&B file) is not a run of
the report: :func:`find_runs` hands it back with its path and the reason, so that the report lists it and
goes on with the others.
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
            text = (self.path / "error.txt").read_text(encoding="utf-8", errors="replace")
            lines = [line for line in text.splitlines() if line.strip()]
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
        for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines() if metrics.is_file() else []:
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
            for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # a line being written
                    continue
                out.setdefault(row.pop("event", "?"), []).append(row)
        return out


def _golf_run(path: Path) -> Run:
    """Read a golf run directory; ValueError naming the file and what is wrong with it."""
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"summary.json: {_reason(err)}") from None
    if not isinstance(summary, dict):
        raise ValueError(f"summary.json: a JSON {type(summary).__name__}, not an object")
    config: dict = {}
    if (path / "config.yaml").exists():
        try:
            config = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"))
        except Exception as err:  # yaml's and OmegaConf's errors, unreadable bytes
            raise ValueError(f"config.yaml: {_reason(err)}") from None
        if not isinstance(config, dict):
            raise ValueError("config.yaml: not a mapping of keys")
    if (path / "metrics.jsonl").exists():
        try:
            (path / "metrics.jsonl").read_bytes().decode("utf-8")
        except (OSError, ValueError) as err:
            raise ValueError(f"metrics.jsonl: {_reason(err)}") from None
    revision = None
    if (path / "provenance.yaml").is_file():
        try:
            prov = OmegaConf.to_container(OmegaConf.load(path / "provenance.yaml"))
        except Exception:  # provenance is informative only: an unreadable one names no revision
            prov = {}
        if isinstance(prov, dict) and prov.get("git_rev"):
            revision = str(prov["git_rev"])[:12] + ("+dirty" if prov.get("git_dirty") else "")
    return Run(path, summary, flatten(config), revision=revision)


def _wandb_run(path: Path) -> Run:
    try:
        w = read_offline_run(path)
    except Exception as err:  # a damaged protobuf stream raises the decoder's own errors
        raise ValueError(f"W&B run file: {_reason(err)}") from None
    return Run(path, w.summary, flatten(w.config), history=w.history)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def find_runs(roots: list[Path], unreadable: dict[Path, str] | None = None) -> list[Run]:
    """golf run directories and W&B offline run directories below ``roots`` (nested ones skipped).
    A run that cannot be read is left out; ``unreadable`` (when given) receives its path and the reason."""
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
        try:
            runs.append(_golf_run(path) if found[path] == "golf" else _wandb_run(path))
        except ValueError as err:
            if unreadable is not None:
                unreadable[path] = str(err)
    return runs
