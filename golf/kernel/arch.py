"""Architecture arithmetic: the sizes an ``arch`` config implies and its layer selectors.

Shared by the model and the lab (the ``arch`` validation imports these). Sizes: head dim = d / H,
RoPE dims (partial RoPE, else the head dim), encoder blocks E of the U-Net split (``num_layers // 2``
unless set) and the MLP hidden size (``mult * d``; SwiGLU's parameter-matched ``2 * mult * d / 3``,
3 x 512 -> 1024; ``mlp.hidden`` overrides both).

A layer selector names physical layers of an ``L``-layer model: ``all``, ``none`` (or empty),
``last:N``, ``first:N``, ``from:I``, or explicit indices ``"3,4"`` kept in the order given (the order
of recycled layers and of per-layer value-embedding scales). The lab rejects a malformed selector
before a model is built (:func:`golf.model.config.parse_layers`), so :func:`layer_ids` only expands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from golf.model.config import ArchConfig


def head_dim(cfg: ArchConfig) -> int:
    return cfg.model_dim // cfg.num_heads


def rope_dims(cfg: ArchConfig) -> int:
    return head_dim(cfg) if cfg.attention.rope.dims is None else cfg.attention.rope.dims


def encoder_layers(cfg: ArchConfig) -> int:
    return cfg.num_layers // 2 if cfg.depth.encoder_layers is None else cfg.depth.encoder_layers


def mlp_hidden(cfg: ArchConfig) -> int:
    m = cfg.mlp
    if m.hidden is not None:
        return m.hidden
    return round(2 * m.mult * cfg.model_dim / 3) if m.activation == "swiglu" else round(m.mult * cfg.model_dim)


def layer_ids(spec, n: int) -> tuple[int, ...]:
    """The layers of an ``n``-layer model that selector ``spec`` names, in its order."""
    s = str(spec).strip().lower()
    if s in ("", "none"):
        return ()
    k, colon, a = s.partition(":")
    if s == "all" or colon:
        a = int(a or 0)
        return tuple(range(n - a, n) if k == "last" else range(a) if k == "first" else range(a, n))
    return tuple(int(p) for p in s.split(","))
