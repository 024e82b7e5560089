"""Parameter roles: what each parameter of a built model is, labelled by the model itself (DESIGN 5).

Every parameter gets a :class:`Role` when the GPT is built:

* ``kind``   – ``matrix`` (a projection trained as a matrix: attention, MLP, input projections),
  ``embedding`` (the token embedding), ``head`` (an untied output head), ``table`` (hashed or value
  embedding tables), ``control`` (scalars, gates, gains, mixes: small tensors that steer the stream);
* ``place``  – ``input`` (before the first block), ``encoder`` / ``decoder`` (blocks ``< E`` / ``≥ E``,
  E = the encoder size of the U-Net split), ``middle`` (between the two stacks: U-Net skips, the
  recycled core's modulations), ``exit`` (after the last block);
* ``layer``  – the block index for block parameters, else None;
* ``part``   – ``attn`` / ``mlp`` / ``residual`` inside a block, ``none`` outside;
* ``family`` – the technique that owns it (``core`` for the baseline's parts, ``bigram``, ``smear``, ...);
* ``ndim`` / ``numel`` – its shape, for size-based policies.

Each kernel module that owns parameters declares them in a ``PARAM_ROLES`` class attribute (local
parameter name -> ``(kind, family[, place])``, plain tuples: the kernel carries no lab types), read here
as :class:`Label`; the GPT declares the parameters it holds directly (U-Net skips, backout) and those of
its hash embeddings. Block parameters take ``layer``/``place`` from their block and ``part`` from the
branch they sit in. :func:`label_parameters` fails on a parameter no module labels, so a new technique
cannot slip past the policies (optimizer groups, quantization, QAT) that select parameters by role
(:mod:`golf.rules`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

KINDS = ("matrix", "embedding", "head", "table", "control")
PLACES = ("input", "encoder", "decoder", "middle", "exit")
PARTS = ("attn", "mlp", "residual", "none")
FAMILIES = ("core", "unet", "catalytic", "backout", "value_residual", "attn_gate", "sparse_attn_gate", "value_embed", "bigram",
            "trigram", "smear", "pre_enrich", "recycle", "two_lane")
BLOCK_PARTS = {"attn": "attn", "mlp": "mlp"}  # a block's child module → its part; the rest is ``residual``


@dataclass(frozen=True)
class Label:
    """What a module says about one of its parameters (``place`` only outside blocks)."""

    kind: str
    family: str
    place: str | None = None


@dataclass(frozen=True)
class Role:
    """Everything a policy may select a parameter by (see the module docstring)."""

    name: str
    kind: str
    place: str
    layer: int | None
    part: str
    family: str
    ndim: int
    numel: int

    def describe(self) -> str:
        layer = "" if self.layer is None else f" layer={self.layer}"
        return (f"kind={self.kind} place={self.place}{layer} part={self.part} family={self.family} "
                f"ndim={self.ndim} numel={self.numel}")


def label_parameters(model: nn.Module, encoder_layers: int,
                     host_roles: Mapping[str, Label] | None = None) -> dict[str, Role]:
    """The :class:`Role` of every parameter of ``model`` (a GPT), in ``named_parameters`` order.

    ``host_roles`` labels parameters by their full name (ahead of the modules' ``PARAM_ROLES``);
    ``encoder_layers`` splits the blocks into encoder and decoder. Raises ``ValueError`` naming a
    parameter that nothing labels.
    """
    modules = dict(model.named_modules())
    roles: dict[str, Role] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        label = (host_roles or {}).get(name)
        for cut in range(len(parts) - 1, -1, -1):  # deepest owner first: "a.b.weight" asks a.b, then a, then root
            if label is not None:
                break
            declared = getattr(modules[".".join(parts[:cut])], "PARAM_ROLES", None) or {}
            label = declared.get(".".join(parts[cut:]))
        if label is None:
            raise ValueError(f"parameter {name!r} has no role: its module declares none in PARAM_ROLES")
        if isinstance(label, tuple):
            label = Label(*label)
        layer, part, place = None, "none", label.place
        if parts[0] == "blocks":
            layer = int(parts[1])
            part = BLOCK_PARTS.get(parts[2], "residual") if len(parts) > 3 else "residual"
            place = "encoder" if layer < encoder_layers else "decoder"
        if place not in PLACES or label.kind not in KINDS or label.family not in FAMILIES:
            raise ValueError(f"parameter {name!r} has an unknown role label {label}")
        roles[name] = Role(name, label.kind, place, layer, part, label.family, p.ndim, p.numel())
    return roles
