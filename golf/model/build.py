"""Building a model from its config (validated, built by the kernel, roles labelled), and counting its
parameters."""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf
from torch import nn

from golf.kernel.arch import encoder_layers
from golf.kernel.model import GPT, build_gpt
from golf.model.config import ArchConfig, validate_arch
from golf.model.roles import label_parameters


def as_arch_config(cfg: ArchConfig | DictConfig | dict) -> ArchConfig:
    """An :class:`ArchConfig` from the dataclass itself or a (composed) mapping of its fields."""
    if isinstance(cfg, ArchConfig):
        return cfg
    if isinstance(cfg, DictConfig):  # the arch node of a whole config: ${data.vocab_size} resolves there
        cfg = OmegaConf.to_container(cfg, resolve=True)
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ArchConfig), cfg))


def build_model(cfg: ArchConfig | DictConfig | dict) -> GPT:
    """Validate ``cfg``, build the GPT (:func:`golf.kernel.model.build_gpt`: float32 parameters,
    initialised, ``tok_emb`` in ``arch.embedding_dtype``) and label every parameter's role
    (``model.param_roles``, :mod:`golf.model.roles`).

    Works under ``with torch.device("meta"):`` (for counting); the init is then skipped.
    """
    cfg = as_arch_config(cfg)
    validate_arch(cfg)
    model = build_gpt(cfg)
    model.param_roles = label_parameters(model, encoder_layers(cfg))
    return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total": n, <top-level name>: n, ...}``: e.g. tok_emb, blocks, skip_weights, bigram, ..."""
    counts: dict[str, int] = {"total": 0}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        counts[top] = counts.get(top, 0) + p.numel()
        counts["total"] += p.numel()
    return counts


def tensor_table(model: nn.Module) -> list[tuple[str, tuple[int, ...], int, int]]:
    """(name, shape, tensors, numel of each) per parameter kind, in model order: the per-block tensors
    of equal shape collapse into one row named ``blocks.{a..b}.<rest>``."""
    rows: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for name, p in model.named_parameters():
        m = re.match(r"^blocks\.(\d+)\.(.*)$", name)
        key = (f"blocks.*.{m.group(2)}" if m else name, tuple(p.shape))
        rows.setdefault(key, []).append(int(m.group(1)) if m else -1)
    table = []
    for (name, shape), layers in rows.items():
        if name.startswith("blocks.*."):
            span = f"{min(layers)}..{max(layers)}" if len(layers) > 1 else str(layers[0])
            name = name.replace("*", "{" + span + "}" if len(layers) > 1 else span, 1)
        numel = 1
        for n in shape:
            numel *= n
        table.append((name, shape, len(layers), numel))
    return table
