"""The typed schemas registered with Hydra, so that composing ``conf/`` types every field.

``conf/train.yaml`` lists ``golf_schema`` first in its defaults: Hydra starts from
:class:`golf.config.schema.GolfConfig` and merges the group options, the experiment and the command line
onto it, so every schema field can be set as typed (``optimizer.muon.ns_dtype=bfloat16``) whether or not
the chosen preset's YAML spells it out, and a value of the wrong type fails while composing.
``conf/evaluate.yaml`` starts from :class:`EvaluateConfig` the same way.

Two adapters keep the command line as it was without the schema:

* Hydra sets a command-line value with ``OmegaConf.update``, which cannot reach a field below an optional
  sub-config that is null (omegaconf issues #1035, #1280): ``quant.qat.schedule=lr_below`` on a recipe
  without QAT. Before Hydra applies the overrides, each such sub-config on an override's path is given its
  schema defaults, as a preset that switches it on would (:func:`_open_null_parents`).
* Hydra reports a failed composition as a multi-line exception. :func:`composition_error` turns one caused
  by a key or value into golf's :class:`~golf.config.errors.ConfigError`, and :func:`run_entry` runs a
  ``@hydra.main`` entry so that it ends in one line and exit status 2, like every other refused
  configuration (``HYDRA_FULL_ERROR=1`` keeps Hydra's own report).

Every entry that composes ``train`` or ``evaluate`` calls :func:`register_schemas` first.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from golf.config.errors import ConfigError
from golf.config.schema import GolfConfig
from golf.eval.config import EvalConfig

TRAIN_SCHEMA = "golf_schema"
EVALUATE_SCHEMA = "golf_evaluate_schema"


@dataclass
class EvaluateConfig:
    """``python -m golf.evaluate``: re-score a saved artifact (see :mod:`golf.evaluate`)."""

    # the run directory (holds config.yaml and model.golf)
    run: str = "???"
    # the artifact to score; null = <run>/model.golf
    artifact: str | None = None
    # which split of the run's data: val or train
    split: str = "val"
    # override the run's data.root (the data lives elsewhere on this machine); null = as recorded
    data_root: str | None = None
    # auto (CUDA when available) | cuda | cpu
    device: str = "auto"
    # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    precision: str = "auto"
    # torch.compile the model; null = on for CUDA, off for CPU
    compile: bool | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)


def register_schemas() -> None:
    """Store both schemas in Hydra's ConfigStore and install the null-parent adapter (idempotent)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name=TRAIN_SCHEMA, node=GolfConfig)
    store.store(name=EVALUATE_SCHEMA, node=EvaluateConfig)
    apply = ConfigLoaderImpl._apply_overrides_to_config
    if not getattr(apply, "_golf_opens_null_parents", False):
        def apply_overrides(overrides, cfg) -> None:
            _open_null_parents(overrides, cfg)
            apply(overrides, cfg)

        apply_overrides._golf_opens_null_parents = True  # type: ignore[attr-defined]
        ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_overrides)


def _open_null_parents(overrides, cfg) -> None:
    """Give each null optional sub-config above an override's key its schema defaults."""
    from omegaconf import DictConfig, OmegaConf, open_dict

    for override in overrides:
        if override.is_delete() or override.package is not None or override.is_hydra_override():
            continue
        parts = override.key_or_group.split(".")
        node = cfg
        for name in parts[:-1]:
            if not isinstance(node, DictConfig) or name not in node:
                break
            child = node._get_node(name)
            if isinstance(child, DictConfig) and child._is_none():
                schema = _structured_type(child)
                if schema is None:
                    break
                with open_dict(node):
                    node[name] = OmegaConf.structured(schema)
                child = node._get_node(name)
            node = child


def _structured_type(node) -> type | None:
    from omegaconf._utils import _resolve_optional

    _, ref = _resolve_optional(node._metadata.ref_type)
    return ref if isinstance(ref, type) and dataclasses.is_dataclass(ref) else None


def composition_error(err: BaseException) -> ConfigError | None:
    """golf's error for a Hydra composition that failed on a key or a value (None for anything else:
    a missing config group option, a syntax error, which keep Hydra's message)."""
    from omegaconf.errors import OmegaConfBaseException

    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    if not isinstance(cause, OmegaConfBaseException):
        return None
    key = getattr(cause, "full_key", None)
    if not key:
        return None
    value = getattr(cause, "value", None)
    if value is None:  # an unknown key carries no value: the override that named it does
        for word in str(err).replace("'", " ").split():
            if word.lstrip("+~").startswith(key + "="):
                value = word.split("=", 1)[1]
    reason = (getattr(cause, "msg", None) or str(cause)).splitlines()[0]
    return ConfigError(key, value, reason)


_FULL_ERROR = "HYDRA_FULL_ERROR"
_composing = [False]  # run_entry set HYDRA_FULL_ERROR for the composition only


def run_entry(hydra_main: Callable[[], object], prog: str) -> None:
    """Run a ``@hydra.main`` function; a composition that fails on a key or value ends with one line
    ``<prog>: invalid configuration: key=value: reason`` and exit status 2, a composition that fails
    otherwise (an unknown group option, a malformed override) with Hydra's message and status 2.
    Hydra raises instead of printing while ``HYDRA_FULL_ERROR`` is set; the task unsets it when it
    starts (:func:`composed`), so anything later is reported by Hydra as without this wrapper."""
    from hydra.errors import HydraException

    register_schemas()
    if os.environ.get(_FULL_ERROR) == "1":
        hydra_main()
        return
    os.environ[_FULL_ERROR] = "1"
    _composing[0] = True
    try:
        hydra_main()
    except HydraException as err:
        if not _composing[0]:
            raise
        golf_error = composition_error(err)
        text = str(golf_error) if golf_error is not None else str(err).strip()
        print(f"{prog}: invalid configuration: {text}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        composed()


def composed() -> None:
    """Called by a task when it starts: the composition is over (see :func:`run_entry`)."""
    if _composing[0]:
        _composing[0] = False
        os.environ.pop(_FULL_ERROR, None)
