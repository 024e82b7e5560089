"""Layer selectors: the per-layer choices of a config ("XSA on the last 4 layers") as strings.

A selector names a set of physical layer indices of an ``L``-layer model:

* ``"all"`` / ``"none"`` (or ``""``)
* ``"last:N"`` - the last N layers; ``"first:N"`` - the first N layers
* ``"from:I"`` - layers I .. L-1
* ``"3,4"`` or ``"7"`` - explicit indices, kept in the order given (the order matters for recycled layers
  and for the order of per-layer value-embedding scales)

Selectors are expanded once, at build time, into tuples of indices (:mod:`golf.model.plan`); a selector
that names a layer outside ``[0, L)`` is a :class:`ConfigError` naming the config key.
"""

from __future__ import annotations

from golf.config.errors import ConfigError


def _int(text: str, key: str, spec: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(key, spec, f"'{text}' is not a layer index") from None


def parse_layers(spec: str, num_layers: int, key: str) -> tuple[int, ...]:
    """Expand ``spec`` into layer indices of a ``num_layers``-layer model; ``key`` names it in errors."""
    text = str(spec).strip().lower()
    if text == "all":
        return tuple(range(num_layers))
    if text in ("", "none"):
        return ()
    if ":" in text:
        kind, _, arg = text.partition(":")
        n = _int(arg, key, spec)
        if kind in ("last", "first"):
            if not 0 <= n <= num_layers:
                raise ConfigError(key, spec, f"asks for {n} layers of a {num_layers}-layer model")
            return tuple(range(num_layers - n, num_layers)) if kind == "last" else tuple(range(n))
        if kind == "from":
            if not 0 <= n < num_layers:
                raise ConfigError(key, spec, f"layer {n} does not exist (layers are 0..{num_layers - 1})")
            return tuple(range(n, num_layers))
        raise ConfigError(key, spec, "unknown selector; use all, none, last:N, first:N, from:I or '3,4'")
    layers = tuple(_int(part, key, spec) for part in text.split(","))
    for i in layers:
        if not 0 <= i < num_layers:
            raise ConfigError(key, spec, f"layer {i} does not exist (layers are 0..{num_layers - 1})")
    if len(set(layers)) != len(layers):
        raise ConfigError(key, spec, "names a layer twice")
    return layers
