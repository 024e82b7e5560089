"""The ``arch`` config group: the model's typed schema and its validation.

Defaults are the official baseline (spec §1.5): 9 layers of width 512, 8 query / 4 KV heads, relu² MLP
x2, tied embeddings, plain U-Net skips, 17,059,912 parameters. Every technique is a sub-config that is
``None`` when off; variants are enums. :func:`validate_arch` rejects impossible settings with the full
dotted key before anything is built. Presets live in ``conf/arch/`` (one per seed submission).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golf.config.errors import ConfigError
from golf.kernel.arch import encoder_layers, head_dim, layer_ids, mlp_hidden, rope_dims
from golf.kernel.depth import depth_steps
from golf.model.config_parts import (
    AttentionConfig,
    AttnGateConfig,
    BackoutConfig,
    BackoutSource,
    BigramConfig,
    BigramForm,
    CatalyticConfig,
    DepthConfig,
    DocumentMaskConfig,
    EmbedInit,
    EncoderRecurrenceConfig,
    GateKind,
    InitConfig,
    InputConfig,
    LoopConfig,
    MLPActivation,
    MLPConfig,
    OrthoRule,
    ParallelResidualConfig,
    PreEnrichConfig,
    ProjInit,
    RecycleConfig,
    ResidMixInit,
    ResidualConfig,
    RopeConfig,
    SkipConfig,
    SkipKind,
    SmearConfig,
    SmearVariant,
    TrigramConfig,
    TwoLaneConfig,
    ValueEmbedConfig,
    ValueResidualConfig,
    ValueResidualInit,
    XSAConfig,
    XSAValue,
)

__all__ = [
    "ArchConfig",
    "AttentionConfig",
    "AttnGateConfig",
    "BackoutConfig",
    "BackoutSource",
    "BigramConfig",
    "BigramForm",
    "CatalyticConfig",
    "DepthConfig",
    "DocumentMaskConfig",
    "EmbedInit",
    "EncoderRecurrenceConfig",
    "GateKind",
    "InitConfig",
    "InputConfig",
    "LoopConfig",
    "MLPActivation",
    "MLPConfig",
    "OrthoRule",
    "ParallelResidualConfig",
    "PreEnrichConfig",
    "ProjInit",
    "RecycleConfig",
    "ResidMixInit",
    "ResidualConfig",
    "RopeConfig",
    "SkipConfig",
    "SkipKind",
    "SmearConfig",
    "SmearVariant",
    "TrigramConfig",
    "TwoLaneConfig",
    "ValueEmbedConfig",
    "ValueResidualConfig",
    "ValueResidualInit",
    "XSAConfig",
    "XSAValue",
    "encoder_layers",
    "head_dim",
    "mlp_hidden",
    "parse_layers",
    "rope_dims",
    "validate_arch",
]

# ----------------------------------------------------------------------------- the group

PARAM_DTYPES = ("float32", "bfloat16")


@dataclass
class ArchConfig:
    # preset name (used in run names)
    name: str = "baseline"
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    # logits <- cap * tanh(logits / cap)
    logit_softcap: float = 30.0
    # cap fp32 logits; false: cap them in the stream's dtype (bf16 under autocast) and cast for the loss,
    # as the official script and every record do (a bf16 logit near 30 moves in steps of 0.125)
    logit_softcap_fp32: bool = False
    tie_embeddings: bool = True
    # dtype of the token-embedding parameter: "float32", or "bfloat16" as #1493 (frontier spec §3.1: its
    # AdamW moments, EMA cast-back and dequantized copy are bf16; under bf16 autocast the residual stream
    # it starts is bf16; without autocast the stream is upcast to fp32)
    embedding_dtype: str = "float32"
    # the tokenizer's BOS id (golf.data.tokenizer.BOS_ID: every document starts with it; the arch presets
    # follow data.bos_id); read by the techniques that respect document starts (SmearGate
    # scalar_gate_bos, document-aware attention)
    bos_id: int = 1
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    skips: SkipConfig | None = field(default_factory=SkipConfig)
    backout: BackoutConfig | None = None
    input: InputConfig = field(default_factory=InputConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    init: InitConfig = field(default_factory=InitConfig)


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-9


def _int(text: str, key: str, spec: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(key, spec, f"'{text}' is not a layer index") from None


def parse_layers(spec: str, num_layers: int, key: str) -> tuple[int, ...]:
    """The layer indices selector ``spec`` names in a ``num_layers``-layer model (:func:`golf.kernel.arch.
    layer_ids`), after checking it: a malformed selector or a layer outside ``[0, L)`` is a
    :class:`ConfigError` naming ``key``."""
    text = str(spec).strip().lower()
    if ":" in text:
        kind, _, arg = text.partition(":")
        n = _int(arg, key, spec)
        if kind in ("last", "first") and not 0 <= n <= num_layers:
            raise ConfigError(key, spec, f"asks for {n} layers of a {num_layers}-layer model")
        if kind == "from" and not 0 <= n < num_layers:
            raise ConfigError(key, spec, f"layer {n} does not exist (layers are 0..{num_layers - 1})")
        if kind not in ("last", "first", "from"):
            raise ConfigError(key, spec, "unknown selector; use all, none, last:N, first:N, from:I or '3,4'")
    elif text not in ("all", "", "none"):
        layers = tuple(_int(part, key, spec) for part in text.split(","))
        for i in layers:
            if not 0 <= i < num_layers:
                raise ConfigError(key, spec, f"layer {i} does not exist (layers are 0..{num_layers - 1})")
        if len(set(layers)) != len(layers):
            raise ConfigError(key, spec, "names a layer twice")
    return layer_ids(spec, num_layers)


def _positive(cfg, prefix: str, *keys: str) -> None:
    for k in keys:
        v = getattr(cfg, k)
        if v is None or v <= 0:
            raise ConfigError(f"{prefix}.{k}", v, "must be positive")


def _validate_attention(cfg: ArchConfig, prefix: str) -> None:
    a, L, p = cfg.attention, cfg.num_layers, f"{prefix}.attention"
    hd = head_dim(cfg)
    r = a.rope
    _positive(r, f"{p}.rope", "base")
    if r.dims is not None and (r.dims <= 0 or r.dims % 2 or r.dims > hd):
        raise ConfigError(f"{p}.rope.dims", r.dims, f"must be even and in [2, head dim {hd}]")
    if r.ntk_reference_len is not None:
        _positive(r, f"{p}.rope", "ntk_reference_len")
        if rope_dims(cfg) <= 2:
            raise ConfigError(f"{p}.rope.dims", r.dims, "NTK scaling uses the exponent dims/(dims-2): needs dims > 2")
    if a.xsa is not None:
        parse_layers(a.xsa.layers, L, f"{p}.xsa.layers")
    if a.gate is not None:
        parse_layers(a.gate.layers, L, f"{p}.gate.layers")
        if a.gate.kind is GateKind.sparse and not 1 <= a.gate.window <= cfg.model_dim:
            raise ConfigError(f"{p}.gate.window", a.gate.window, f"must be in [1, model_dim {cfg.model_dim}]")
    if a.value_residual is not None:
        parse_layers(a.value_residual.layers, L, f"{p}.value_residual.layers")
    if a.value_embed is not None:
        _positive(a.value_embed, f"{p}.value_embed", "dim")
        if a.value_embed.embed_std < 0:
            raise ConfigError(f"{p}.value_embed.embed_std", a.value_embed.embed_std, "must be >= 0")
        parse_layers(a.value_embed.layers, L, f"{p}.value_embed.layers")
    if a.document is not None:
        _positive(a.document, f"{p}.document", "max_len")


def _validate_mlp(cfg: ArchConfig, prefix: str) -> None:
    m, p = cfg.mlp, f"{prefix}.mlp"
    if m.hidden is not None:
        _positive(m, p, "hidden")
        return
    _positive(m, p, "mult")
    width = m.mult * cfg.model_dim
    if not _whole(width):
        raise ConfigError(f"{p}.mult", m.mult, f"mult x model_dim = {width} is not a whole hidden size")
    if m.activation is MLPActivation.swiglu and not _whole(2 * width / 3):
        raise ConfigError(f"{p}.mult", m.mult,
                          f"SwiGLU's parameter-matched hidden 2 x {width:g} / 3 = {2 * width / 3:.3f} is not a "
                          "whole number; set mlp.hidden explicitly")


def _validate_input(cfg: ArchConfig, prefix: str) -> None:
    i, p = cfg.input, f"{prefix}.input"
    if i.bigram is not None:
        _positive(i.bigram, f"{p}.bigram", "dim")
        if i.bigram.buckets < 2:
            raise ConfigError(f"{p}.bigram.buckets", i.bigram.buckets, "must be >= 2")
        if i.bigram.table_std < 0:
            raise ConfigError(f"{p}.bigram.table_std", i.bigram.table_std, "must be >= 0")
        if i.bigram.form is BigramForm.xor_per_layer and i.bigram.scale_init is None:
            raise ConfigError(f"{p}.bigram.scale_init", None, "xor_per_layer needs per-layer scales")
    if i.trigram is not None:
        _positive(i.trigram, f"{p}.trigram", "dim")
        if i.trigram.buckets < 2:
            raise ConfigError(f"{p}.trigram.buckets", i.trigram.buckets, "must be >= 2")
    if i.smear is not None and i.smear.variant in (SmearVariant.scalar_gate, SmearVariant.scalar_gate_bos):
        if not 1 <= i.smear.gate_dims <= cfg.model_dim:
            raise ConfigError(f"{p}.smear.gate_dims", i.smear.gate_dims, f"must be in [1, model_dim {cfg.model_dim}]")
    if i.pre_enrich is not None:
        _positive(i.pre_enrich, f"{p}.pre_enrich", "hidden")


def _validate_depth(cfg: ArchConfig, prefix: str) -> None:
    d, L, p = cfg.depth, cfg.num_layers, f"{prefix}.depth"
    e = encoder_layers(cfg)
    if not 0 <= e <= L:
        raise ConfigError(f"{p}.encoder_layers", d.encoder_layers, f"must be in [0, num_layers {L}]")
    if d.encoder_recurrence is not None:
        if d.encoder_recurrence.passes < 1:
            raise ConfigError(f"{p}.encoder_recurrence.passes", d.encoder_recurrence.passes, "must be >= 1")
        if e == 0:
            raise ConfigError(f"{p}.encoder_recurrence", "passes", "the model has no encoder layers to repeat")
    if d.recycle is not None:
        if d.recycle.repeats < 1:
            raise ConfigError(f"{p}.recycle.repeats", d.recycle.repeats, "must be >= 1")
        parse_layers(d.recycle.layers, L, f"{p}.recycle.layers")
    if d.loop is not None:
        _validate_loop(cfg, prefix)
    if cfg.residual.parallel is not None:
        parse_layers(cfg.residual.parallel.layers, L, f"{prefix}.residual.parallel.layers")
    if cfg.residual.two_lane is not None:
        _validate_two_lane(cfg, prefix)
    b = cfg.backout
    if b is not None:
        if b.source is BackoutSource.encoder_output and e == 0:
            raise ConfigError(f"{prefix}.backout.source", b.source.name, "the model has no encoder layers")
        if b.source is BackoutSource.first_decoder_output and e == L:
            raise ConfigError(f"{prefix}.backout.source", b.source.name, "the model has no decoder layers")


def _validate_two_lane(cfg: ArchConfig, prefix: str) -> None:
    start, key = cfg.residual.two_lane.start_layer, f"{prefix}.residual.two_lane.start_layer"
    if cfg.residual.parallel is not None:
        raise ConfigError(f"{prefix}.residual.parallel", cfg.residual.parallel.layers,
                          "cannot be combined with residual.two_lane (two different parallel residuals)")
    if not 0 <= start < cfg.num_layers:
        raise ConfigError(key, start, f"must be a block index in [0, num_layers {cfg.num_layers})")
    for order in ([s[0] for s in steps] for steps in depth_steps(cfg)[0]):
        lanes = order[next(k for k, i in enumerate(order) if i >= start):]
        if min(lanes) < start:
            raise ConfigError(key, start, f"block {min(lanes)} runs after the lanes open (block order {order}): "
                                          "every application from the first of a block >= start_layer must be one")


def _validate_loop(cfg: ArchConfig, prefix: str) -> None:
    d, p = cfg.depth, f"{prefix}.depth.loop"
    layers = parse_layers(d.loop.layers, cfg.num_layers, f"{p}.layers")
    if not layers or list(layers) != list(range(layers[0], layers[0] + len(layers))):
        raise ConfigError(f"{p}.layers", d.loop.layers, "must name a contiguous ascending range of blocks, e.g. '3,4,5'")
    if d.loop.extra_passes < 1:
        raise ConfigError(f"{p}.extra_passes", d.loop.extra_passes, "must be >= 1 (null depth.loop for no loop)")
    if not 0.0 <= d.loop.switch_at < 1.0:
        raise ConfigError(f"{p}.switch_at", d.loop.switch_at, "must be in [0, 1) (0 = looped from the first step)")
    for key in ("encoder_layers", "encoder_recurrence", "recycle"):
        if getattr(d, key) is not None:
            raise ConfigError(f"{prefix}.depth.{key}", getattr(d, key),
                              "cannot be combined with depth.loop (the loop splits each block sequence in half)")


def validate_arch(cfg: ArchConfig, prefix: str = "arch") -> None:
    """Every check of the ``arch`` group; raises :class:`ConfigError` naming the dotted key."""
    _positive(cfg, prefix, "vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "logit_softcap")
    if cfg.model_dim % cfg.num_heads:
        raise ConfigError(f"{prefix}.num_heads", cfg.num_heads, f"must divide model_dim {cfg.model_dim}")
    if cfg.num_heads % cfg.num_kv_heads:
        raise ConfigError(f"{prefix}.num_kv_heads", cfg.num_kv_heads, f"must divide num_heads {cfg.num_heads}")
    if head_dim(cfg) % 2:
        raise ConfigError(f"{prefix}.model_dim", cfg.model_dim,
                          f"head dim {head_dim(cfg)} = model_dim / num_heads must be even for RoPE")
    _positive(cfg.init, f"{prefix}.init", "embed_std")
    if not 0 <= cfg.bos_id < cfg.vocab_size:
        raise ConfigError(f"{prefix}.bos_id", cfg.bos_id, f"must be a token id in [0, vocab_size {cfg.vocab_size})")
    for key, value in ((f"{prefix}.embedding_dtype", cfg.embedding_dtype),
                       (f"{prefix}.attention.rope.freq_dtype", cfg.attention.rope.freq_dtype)):
        if value not in PARAM_DTYPES:
            raise ConfigError(key, value, f"must be one of {', '.join(PARAM_DTYPES)}")
    _validate_attention(cfg, prefix)
    if cfg.skips is not None and cfg.skips.merge not in ("mix", "lerp"):
        raise ConfigError(f"{prefix}.skips.merge", cfg.skips.merge, "must be mix or lerp")
    _validate_mlp(cfg, prefix)
    _validate_input(cfg, prefix)
    _validate_depth(cfg, prefix)
