"""What makes two runs the same idea: the configuration without its seed (and without names and paths).

Runs that differ only in ``seed`` (or in where they write, what they are called, how they log) are
seeds of one idea. :func:`idea_hash` is a short stable hash of that reduced configuration; W&B groups
runs by it (so the dashboard's grouped mean ± std over seeds is the comparison) and ``golf.report``
ignores the same keys when it looks for what differs between runs.
"""

from __future__ import annotations

import hashlib
import json
import re

# configuration keys (with everything below them) that do not change what is trained and scored
NOT_THE_IDEA = ("seed", "run_name", "run_dir", "logger", "data.root", "hydra", "dry_run", "eval.budget_s")


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their JSON text."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, sort_keys=True) if isinstance(v, list) else v
    return out


def is_idea_key(key: str) -> bool:
    """False for the keys of :data:`NOT_THE_IDEA` and anything below them."""
    return not any(key == p or key.startswith(p + ".") for p in NOT_THE_IDEA)


def idea_config(config: dict) -> dict:
    """The flattened configuration without the keys of :data:`NOT_THE_IDEA`."""
    return {k: v for k, v in flatten(config).items() if is_idea_key(k)}


def idea_hash(config: dict, length: int = 8) -> str:
    """A short hash of :func:`idea_config`, stable across processes and key order."""
    text = json.dumps(idea_config(config), sort_keys=True, default=lambda v: getattr(v, "value", str(v)))  # enums by value
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def _override_key(override: str) -> str:
    return re.sub(r"^[+~]+", "", override.split("=", 1)[0]).replace("/", ".")


def idea_overrides(overrides: list[str] | None) -> list[str]:
    """The command-line overrides that choose the idea (``seed=...`` and path/name overrides dropped)."""
    return [o for o in overrides or [] if is_idea_key(_override_key(o))]


def wandb_identity(config: dict, overrides: list[str] | None, run_name: str | None = None,
                   swept: list[str] | None = None) -> tuple[str, list[str]]:
    """The W&B group and tags of a run: ``<overrides>-<hash>`` and the idea overrides as tags.

    The hash alone decides the grouping; the readable part says what the idea is: the overrides of
    the keys a sweep varies (``swept``) when there are such, else all idea overrides, else the run name
    without its seed suffix."""
    h = idea_hash(config)
    ideas = idea_overrides(overrides)
    swept_keys = {_override_key(k) for k in swept or []}
    shown = [o for o in ideas if _override_key(o) in swept_keys] or ideas
    if shown:
        readable = ",".join(shown)
    else:
        seed = config.get("seed")
        readable = re.sub(rf"-s{re.escape(str(seed))}$", "", run_name or "") if seed is not None else (run_name or "")
    readable = readable[:100] or "run"
    return f"{readable}-{h}", [t[:64] for t in ideas] + [f"idea-{h}"]
