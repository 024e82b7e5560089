"""The typed schemas registered with Hydra, so that composing ``conf/`` types every field.

``conf/train.yaml`` lists ``golf_schema`` first in its defaults: Hydra starts from
:class:`golf.config.schema.GolfConfig` and merges the group options, the experiment and the command line
onto it, so every schema field can be set as typed (``optimizer.muon.ns_dtype=bfloat16``) whether or not
the chosen preset's YAML spells it out, and a value of the wrong type fails while composing.
``conf/evaluate.yaml`` starts from :class:`EvaluateConfig` the same way.

Two adapters keep the command line as it was without the schema:

* Hydra sets a command-line value with ``OmegaConf.update``, which cannot reach a field below an optional
  sub-config that is null, nor merge a dict into one (omegaconf issues #1035, #1280, #1360):
  ``quant.qat.schedule=lr_below`` or ``quant.qat={schedule: lr_below}`` on a recipe without QAT. Hydra's
  overrides are therefore applied one at a time, in order: a dict for a null sub-config is merged through
  its parent (as a preset's YAML is), and before any other override each null sub-config on its path is
  given its schema defaults, as a preset that switches it on would (:func:`_apply_override`).
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
    # where the evaluation writes result.json and its log; null = <run>/eval/<time>_<eval>
    out: str | None = None
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
    """Store both schemas in Hydra's ConfigStore and install the null sub-config adapter (idempotent)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name=TRAIN_SCHEMA, node=GolfConfig)
    store.store(name=EVALUATE_SCHEMA, node=EvaluateConfig)
    apply = ConfigLoaderImpl._apply_overrides_to_config
    if not getattr(apply, "_golf_null_sub_configs", False):
        def apply_overrides(overrides, cfg) -> None:
            for override in overrides:
                _apply_override(override, cfg, apply)

        apply_overrides._golf_null_sub_configs = True  # type: ignore[attr-defined]
        ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_overrides)


def _apply_override(override, cfg, apply) -> None:
    """Apply one override with Hydra's ``apply``, null optional sub-configs handled (see module doc)."""
    from hydra.errors import ConfigCompositionException
    from omegaconf import DictConfig, OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    if override.is_delete() or override.package is not None or override.is_hydra_override():
        apply([override], cfg)
        return
    *parents, last = override.key_or_group.split(".")
    node = cfg
    for name in parents:  # each null sub-config on the path gets its schema defaults
        if not isinstance(node, DictConfig) or name not in node:
            break
        child = node._get_node(name)
        if isinstance(child, DictConfig) and child._is_none() and _structured_type(child) is not None:
            with open_dict(node):
                node[name] = OmegaConf.structured(_structured_type(child))
            child = node._get_node(name)
        node = child
    else:
        target = node._get_node(last) if isinstance(node, DictConfig) and last in node else None
        value = override.value()
        if isinstance(target, DictConfig) and target._is_none() and isinstance(value, dict) \
                and _structured_type(target) is not None:  # a dict for a null sub-config: through its parent
            try:
                node.merge_with({last: value})
            except OmegaConfBaseException as err:
                raise ConfigCompositionException(f"Error merging override {override.input_line}") from err
            return
    apply([override], cfg)


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


def full_error() -> bool:
    """The user asked for tracebacks (``HYDRA_FULL_ERROR=1``; not the one :func:`run_entry` sets while
    composing)."""
    return os.environ.get(_FULL_ERROR) == "1" and not _composing[0]


def composed() -> None:
    """Called by a task when it starts: the composition is over (see :func:`run_entry`)."""
    if _composing[0]:
        _composing[0] = False
        os.environ.pop(_FULL_ERROR, None)
