"""Test helpers: compose configs from conf/ exactly as ``python -m golf.train`` does."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig

from golf.config.store import composition_error, register_schemas

register_schemas()
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# A tiny run of the demo experiment: seconds on 2 CPU cores.
TINY = [
    "experiment=demo",
    "arch.num_layers=2",
    "arch.model_dim=32",
    "arch.num_heads=2",
    "arch.num_kv_heads=1",
    "train.iterations=6",
    "train.batch_tokens=512",
    "train.seq_len=64",
    "train.val_every=3",
    "train.log_every=1",
    "eval.max_tokens=2048",
    "logger=none",
]


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The composed config; a composition that fails on a key or value raises golf's ConfigError, as the
    command line reports it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            return compose(config_name="train", overrides=list(overrides or []))
        except HydraException as err:
            golf_error = composition_error(err)
            if golf_error is None:
                raise
            raise golf_error from None


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


# Stand-in labels for state dicts built by hand in tests (a real GPT labels its own parameters):
# (regex on the name, kind, family, place outside blocks), first match wins.
_NAME_LABELS = [
    (r"^tok_emb\.weight$", "embedding", "core", "input"),
    (r"^lm_head\.weight$", "head", "core", "exit"),
    (r"^skip_(weights|gates)$", "control", "unet", "middle"),
    (r"^(bigram|trigram)\.embed\.weight$", "table", None, "input"),
    (r"^(bigram|trigram)\.proj\.weight$", "matrix", None, "input"),
    (r"^(bigram|trigram)\.scale$", "control", None, "input"),
    (r"^smear\.", "control", "smear", "input"),
    (r"^blocks\.\d+\.(attn|mlp)\.(c_q|c_k|c_v|proj|fc|gate)\.weight$", "matrix", "core", None),
    (r"^blocks\.\d+\.attn\.attn_gate\.", "control", "sparse_attn_gate", None),
    (r"^blocks\.\d+\.", "control", "core", None),
]


def roles_by_name(tensors, layers: int | None = None, kinds: dict[str, str] | None = None):
    """Roles for the parameter names of a hand-built state dict or name → shape mapping (tests only).

    ``kinds`` labels names outside the golf layout (name → kind, family core, place input).
    """
    import re

    from golf.model.roles import Role

    def shape(v):
        return tuple(v.shape) if hasattr(v, "shape") else tuple(v)

    blocks = [int(n.split(".")[1]) for n in tensors if n.startswith("blocks.")]
    layers = layers if layers is not None else (max(blocks) + 1 if blocks else 0)
    roles = {}
    for name, value in tensors.items():
        if hasattr(value, "is_floating_point") and not value.is_floating_point():
            continue  # buffers of counts and ids have no role (exported raw)
        dims = shape(value)
        numel = 1
        for d in dims:
            numel *= d
        if kinds and name in kinds:
            roles[name] = Role(name, kinds[name], "input", None, "none", "core", len(dims), numel)
            continue
        label = next((entry[1:] for entry in _NAME_LABELS if re.search(entry[0], name)), None)
        if label is None:
            raise KeyError(f"roles_by_name: no stand-in label for {name!r}")
        kind, family, place = label
        family = family or name.split(".")[0]
        layer, part = None, "none"
        if name.startswith("blocks."):
            layer = int(name.split(".")[1])
            part = name.split(".")[2] if name.split(".")[2] in ("attn", "mlp") and len(name.split(".")) > 3 else "residual"
            place = "encoder" if layer < layers // 2 else "decoder"
        roles[name] = Role(name, kind, place, layer, part, family, len(dims), numel)
    return roles


def demo_data_for(arch: str) -> str:
    """The demo data option of an arch preset's vocabulary (the FineWeb shards may be absent)."""
    return "data=demo_sp8192" if compose_config([f"arch={arch}"]).arch.vocab_size == 8192 else "data=demo"
