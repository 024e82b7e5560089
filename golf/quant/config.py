"""Typed configuration of the post-training export (quantize → pack → compress) and of STE QAT.

Defaults reproduce the official baseline export (spec §1.8): tensors of at most 65,536 elements pass
through (fp32 for control tensors, fp16 otherwise), every other float tensor is int8 with a per-row
99.99984th-percentile clip and a ``max(c/127, 1/127)`` fp16 scale, zlib level 9, no QAT, no pruning.
Presets in ``conf/quant/`` reproduce each seed's export; :func:`validate_quant` checks a composed
config once, before any work, and names the offending dotted key.

Schemes are named entries (``schemes``); an ordered rule table (``base_rules`` then ``rules``, role
expression → scheme name, :mod:`golf.rules`) routes each tensor by its parameter's role, first match
wins (see :mod:`golf.quant.routing`). ``conf/quant/base/common.yaml`` holds what every preset shares
(the fp32 control tensors of ``base_rules``, the passthrough size, container, compressor, budget).
QAT has its own scheme/rule tables (:class:`QATConfig`): it fake-quantizes Linear weights in training.
#1855's optional stages, LQER and the per-group container, are in :mod:`golf.quant.config_stages`. A
scheme with a ``gptq`` sub-config quantizes with full-Hessian GPTQ (:mod:`golf.kernel.gptq`) and makes
the export need calibration (``calibration``, :mod:`golf.quant.calibrate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum

from golf.config.errors import ConfigError
from golf.quant.config_stages import (  # noqa: F401 (the optional stages' types, importable from here too)
    GroupCodec,
    LQERConfig,
    PackGroupConfig,
    PerGroupConfig,
    check_tools,
    validate_lqer,
    validate_pergroup,
)
from golf.rules import check_expression, check_rules

BASELINE_CLIP_QUANTILE = 0.9999984  # the baseline's 99.99984th percentile as a fraction
MIN_BITS, MAX_BITS = 2, 8


class SchemeKind(str, Enum):
    """What a scheme stores: per-row/per-tensor integers, or the float tensor itself."""

    int = "int"
    fp16 = "fp16"
    fp32 = "fp32"


class ClipRule(str, Enum):
    """How the per-row clip value ``c`` is chosen."""

    percentile = "percentile"  # c = the `clip_quantile` quantile of |W_r| (linear interpolation)
    rowmax = "rowmax"          # c = max |W_r|
    search = "search"          # GPTQ-lite: the candidate quantile with the lowest reconstruction MSE
    sdclip = "sdclip"          # SDClip (#1394 lineage): c = clip_sigmas · std(W_r) (unbiased std)


class SearchGranularity(str, Enum):
    """GPTQ-lite picks one candidate for the whole matrix (03-22, #1573) or one per row (#344)."""

    matrix = "matrix"
    row = "row"


class ScaleFloor(str, Enum):
    """Lower bound on the per-row scale ``s = c/qmax``."""

    qmax = "qmax"  # s = max(c/qmax, 1/qmax): baseline, #187, GPTQ-lite
    tiny = "tiny"  # s = max(c/qmax, 1e-12): the "amax" schemes of #295 and its lineage


class RangeConvention(str, Enum):
    """Integer range of a k-bit code."""

    symmetric = "symmetric"  # ±(2^(k−1) − 1): baseline, #187, GPTQ-lite
    full = "full"            # [−2^(k−1), 2^(k−1) − 1]: #295 and its lineage, late QAT


class ScalePrecision(str, Enum):
    """Which form of a row's scale ``max(c/qmax, floor)`` a computation uses (the artifact always stores fp16)."""

    fp32 = "fp32"  # the unrounded fp32 scale
    fp16 = "fp16"  # the scale rounded to the stored fp16 value


RoundingScale = ScalePrecision  # the type of ``SchemeConfig.rounding_scale``


class ClipOrder(str, Enum):
    """Where the clip ``c`` acts on a weight: before rounding, or only through the code range after it."""

    clip_then_round = "clip_then_round"    # q = clamp(round(clip(W, ±c)/s), lo, hi): baseline, #187, #344, #507
    round_then_clamp = "round_then_clamp"  # q = clamp(round(W/s), lo, hi) on the unclipped W: #1573


class PassthroughOrder(str, Enum):
    """Whether the rule table or the size threshold ``passthrough_max_numel`` speaks first."""

    rules_first = "rules_first"  # the rules choose; an int scheme chosen for a small tensor becomes fp16 (baseline)
    size_first = "size_first"    # every small float tensor is fp16 before any rule is looked at (#1573)


class Packing(str, Enum):
    """How integer codes are laid out in the artifact."""

    int8 = "int8"  # one int8 container per value; the compressor removes the unused high bits
    bits = "bits"  # true bit-packing: k-bit codes, 8 values in k bytes (#1573)


class Compressor(str, Enum):
    zlib = "zlib"
    zstd = "zstd"
    lzma = "lzma"
    brotli = "brotli"  # quality 0..11 (#1394 lineage, #1493: 11)


class CalibrationSource(str, Enum):
    """Where calibration inputs come from. Validation data is never a source (it is what gets scored)."""

    train = "train"          # the first ``batches`` batches of the training stream (#1493)
    generated = "generated"  # sequences sampled autoregressively from the exported model (#1019)


class HessianReduce(str, Enum):
    """How ranks combine their Hessians."""

    all_reduce = "all_reduce"  # sum over ranks: every rank's calibration data counts
    local = "local"            # no reduction; the main rank's own Hessians are used (#1493 as it ran)


class OverLimit(str, Enum):
    """What :func:`golf.quant.check_budget` does when the artifact is over ``limit_bytes``."""

    error = "error"
    warn = "warn"


class QATSchedule(str, Enum):
    """When fake quantization switches on (it never switches off)."""

    always = "always"                  # from step 0 (#187, #295)
    wallclock_fraction = "wallclock_fraction"  # elapsed ≥ start_fraction · max wall-clock (#344)
    lr_below = "lr_below"              # LR multiplier < lr_threshold (03-22 lineage, #1573)


LEVEL_RANGES = {Compressor.zlib: (0, 9), Compressor.zstd: (1, 22), Compressor.lzma: (0, 9),
                Compressor.brotli: (0, 11)}
SHUFFLE_STRIDES = (2, 4)  # byte-shuffle strides the container records (2 = #1493)


@dataclass
class GPTQConfig:
    """Full-Hessian GPTQ of one matrix (Frantar et al. 2022; #1394/#1493 settings, spec §5.2)."""

    damp: float = 0.01       # H += damp · mean(diag H) · I before the inverse; in (0, 1]
    block_size: int = 128    # columns per lazy-batch block
    act_order: bool = True   # quantize columns in order of descending diag(H)


@dataclass
class SchemeConfig:
    """One named storage scheme. Integer fields apply to ``kind: int`` only."""

    kind: SchemeKind = SchemeKind.int
    bits: int = 8                                  # k of the int-k code
    clip: ClipRule = ClipRule.percentile
    clip_quantile: float = BASELINE_CLIP_QUANTILE  # quantile (fraction) for clip=percentile
    candidates: list[float] = field(default_factory=list)  # quantiles tried by clip=search; 1.0 = rowmax
    search_granularity: SearchGranularity = SearchGranularity.matrix
    scale_floor: ScaleFloor = ScaleFloor.qmax
    range: RangeConvention = RangeConvention.symmetric
    # the scale the codes are computed with: it divides W before rounding and, for clip=search, rebuilds
    # each candidate (q·s) for its reconstruction MSE. fp32 = the unrounded scale (baseline, #507, #187,
    # #344's GPTQ-lite); fp16 = the stored one (#295 lineage, 03-22/#1573 GPTQ-lite). Dequantization
    # always uses the stored fp16 scale.
    rounding_scale: ScalePrecision = ScalePrecision.fp32
    clip_order: ClipOrder = ClipOrder.clip_then_round  # round_then_clamp: #1573's int5 (no pre-clip of W)
    grid_step: int = 1  # #507: codes rounded to multiples of this step (4 ≈ "int6", 8 ≈ "int5" on int8)
    clip_sigmas: float = 12.85  # k of clip=sdclip (#1493: 12.85 for int6 matrices, 20.0 for int8 tok_emb)
    gptq: GPTQConfig | None = None  # quantize with full-Hessian GPTQ (needs calibration); None = round to nearest
    # true: a tensor of at most ``passthrough_max_numel`` elements routed here is stored by this scheme
    # too, under either passthrough order (#1855's int8 per-row attention gates); false: it passes through fp16
    quantize_small: bool = False

    def live_fields(self) -> tuple[str, ...]:
        """The fields this scheme's storage depends on (a generated submission carries only these)."""
        return tuple(f.name for f in fields(self)) if self.kind == SchemeKind.int else ("kind",)


@dataclass
class RuleConfig:
    """Route the tensors selected by the role expression ``select`` (:mod:`golf.rules`) to ``scheme``."""

    select: str = ""
    scheme: str = ""


@dataclass
class PruneConfig:
    """Magnitude pruning before quantization (spec §2.22)."""

    fraction: float = 0.08   # entries with |w| below this quantile of |W| become 0 (#295: 0.08)
    # the tensors pruned: a role expression (golf.rules) over the parameters' roles; the default is
    # #295's "every matrix of more than 65,536 elements" (embeddings and heads included)
    select: str = "ndim=2 & numel>65536"


@dataclass
class CalibrationConfig:
    """Inputs that GPTQ's Hessians H = Σ XᵀX are collected on (spec §5.1); the export's calibration stage."""

    source: str = "train"  # train | generated (validation data is refused)
    batches: int = 64      # calibration batches (#1493: 64; #1019: 64 sequences in batches of 8)
    # tokens per batch over all ranks (train) / sequences·seq_len per batch (generated); None = train.batch_tokens
    batch_tokens: int | None = None
    seq_len: int | None = None  # None = train.seq_len
    reduce: HessianReduce = HessianReduce.all_reduce  # local = #1493's per-rank Hessians, rank 0's used
    temperature: float = 0.8  # source=generated: sampling temperature (#1019: 0.8)
    start_token: int = 1      # source=generated: first token of every sequence (1 = BOS of the challenge data)
    seed: int = 0             # source=generated: sampling seed (the same on every rank plus its rank)
    device: str = "model"     # where GPTQ runs: the model's device, or "cpu" (#1493/#1855: fp32, no TF32)


@dataclass
class QATConfig:
    """STE fake quantization of selected Linear weights during training (spec §2.20). Defaults: #187."""

    schedule: QATSchedule = QATSchedule.always
    start_fraction: float = 0.85  # schedule=wallclock_fraction
    lr_threshold: float = 0.15    # schedule=lr_below
    schemes: dict[str, SchemeConfig] = field(default_factory=lambda: {
        "int6": SchemeConfig(bits=6, clip=ClipRule.rowmax, scale_floor=ScaleFloor.tiny)})
    # Linear weights selected here are fake-quantized (first match wins); a Linear no rule selects is not
    rules: list[RuleConfig] = field(default_factory=lambda: [RuleConfig(select="*", scheme="int6")])
    min_numel: int = 0  # Linear weights with at most this many elements stay unquantized (#295: 65,536)
    # the scale the fake-quantized weight multiplies its codes by: fp32 = the unrounded scale (#187,
    # #295: the cast to fp16 happens only at export); fp16 = the scale the artifact stores
    fake_quant_scale: ScalePrecision = ScalePrecision.fp32


def _baseline_schemes() -> dict[str, SchemeConfig]:
    return {"int8": SchemeConfig(), "fp16": SchemeConfig(kind=SchemeKind.fp16),
            "fp32": SchemeConfig(kind=SchemeKind.fp32)}


@dataclass
class QuantConfig:
    """The export chain: (prune) → route → quantize → pack → serialize → compress."""

    name: str = "int8"  # the preset's name, for run names and reports
    schemes: dict[str, SchemeConfig] = field(default_factory=_baseline_schemes)
    # rules every preset shares, tried before ``rules`` (the base preset: control tensors stay fp32)
    base_rules: list[RuleConfig] = field(default_factory=lambda: [RuleConfig(select="kind=control", scheme="fp32")])
    # the preset's own rules; every float tensor must be selected by a rule of base_rules + rules
    rules: list[RuleConfig] = field(default_factory=lambda: [RuleConfig(select="*", scheme="int8")])
    # float tensors this small are never quantized: an int scheme chosen for one stores it fp16
    passthrough_max_numel: int = 65_536
    # rules_first: the rules choose, then an int scheme of a small tensor becomes fp16 (a float scheme such
    # as base_rules' fp32 stays); size_first: every small float tensor is fp16 whatever the rules say (#1573)
    passthrough_order: PassthroughOrder = PassthroughOrder.rules_first
    prune: PruneConfig | None = None
    packing: Packing = Packing.int8
    compressor: Compressor = Compressor.zlib
    level: int = 9  # zlib/zstd level, lzma preset or brotli quality
    byte_shuffle: int | None = None  # stride of the byte shuffle before compression (#1493: 2); None = off
    calibration: CalibrationConfig | None = None  # required when a scheme uses gptq; unused otherwise
    lqer: LQERConfig | None = None  # low-rank correction of the largest quantization errors (#1855); None = off
    pergroup: PerGroupConfig | None = None  # the per-group container (#1855); None = one compressed body
    qat: QATConfig | None = None
    limit_bytes: int = 16_000_000  # the challenge cap on model + code bytes (decimal)
    over_limit: OverLimit = OverLimit.error


def as_scheme(scheme) -> SchemeConfig:
    """A plain :class:`SchemeConfig` copy of a scheme given as a dataclass or an OmegaConf node."""
    values = {f.name: getattr(scheme, f.name) for f in fields(SchemeConfig)}
    values["candidates"] = [float(c) for c in values["candidates"]]
    return SchemeConfig(**values)


def validate_scheme(scheme: SchemeConfig, prefix: str) -> None:
    if scheme.kind is not SchemeKind.int:
        return
    if not MIN_BITS <= scheme.bits <= MAX_BITS:
        raise ConfigError(f"{prefix}.bits", scheme.bits, f"must be in [{MIN_BITS}, {MAX_BITS}]")
    if not 0.0 < scheme.clip_quantile <= 1.0:
        raise ConfigError(f"{prefix}.clip_quantile", scheme.clip_quantile, "must be a fraction in (0, 1]")
    if scheme.clip is ClipRule.search:
        if len(scheme.candidates) == 0:
            raise ConfigError(f"{prefix}.candidates", list(scheme.candidates), "clip=search needs candidates")
        for i, q in enumerate(scheme.candidates):
            if not 0.0 < q <= 1.0:
                raise ConfigError(f"{prefix}.candidates[{i}]", q, "must be a fraction in (0, 1]")
    elif len(scheme.candidates) > 0:
        raise ConfigError(f"{prefix}.candidates", list(scheme.candidates), "only used with clip=search")
    if scheme.clip is ClipRule.sdclip and not scheme.clip_sigmas > 0:
        raise ConfigError(f"{prefix}.clip_sigmas", scheme.clip_sigmas, "must be > 0")
    if scheme.gptq is not None:
        if not 0.0 < scheme.gptq.damp <= 1.0:  # 0: a rank-deficient Hessian (few tokens, a dead input) cannot be inverted
            raise ConfigError(f"{prefix}.gptq.damp", scheme.gptq.damp,
                              "must be a fraction in (0, 1]: without damping, a Hessian from too few calibration "
                              "tokens is singular (#1493: 0.01)")
        if scheme.gptq.block_size < 1:
            raise ConfigError(f"{prefix}.gptq.block_size", scheme.gptq.block_size, "must be positive")
    qmax = (1 << (scheme.bits - 1)) - 1
    if not 1 <= scheme.grid_step <= qmax:
        raise ConfigError(f"{prefix}.grid_step", scheme.grid_step, f"must be in [1, {qmax}] for {scheme.bits} bits")


def _validate_rules(rules, schemes, prefix: str) -> None:
    check_rules(rules, prefix)
    for i, rule in enumerate(rules):
        if rule.scheme not in schemes:
            raise ConfigError(f"{prefix}[{i}].scheme", rule.scheme,
                              f"unknown scheme (defined: {sorted(schemes.keys())})")


def validate_qat(cfg: QATConfig, prefix: str = "quant.qat") -> None:
    for name, scheme in cfg.schemes.items():
        validate_scheme(scheme, f"{prefix}.schemes.{name}")
        if scheme.kind is not SchemeKind.int:
            raise ConfigError(f"{prefix}.schemes.{name}.kind", scheme.kind.value, "QAT schemes must be int")
        if scheme.gptq is not None:
            raise ConfigError(f"{prefix}.schemes.{name}.gptq", "set", "GPTQ is an export-time method, not for QAT")
        if scheme.clip is ClipRule.search:
            raise ConfigError(f"{prefix}.schemes.{name}.clip", "search",
                              "the clip search is an export-time method; use rowmax or percentile for QAT")
    _validate_rules(cfg.rules, cfg.schemes, f"{prefix}.rules")
    if not 0.0 <= cfg.start_fraction <= 1.0:
        raise ConfigError(f"{prefix}.start_fraction", cfg.start_fraction, "must be in [0, 1]")
    if not 0.0 < cfg.lr_threshold <= 1.0:
        raise ConfigError(f"{prefix}.lr_threshold", cfg.lr_threshold, "must be in (0, 1]")
    if cfg.min_numel < 0:
        raise ConfigError(f"{prefix}.min_numel", cfg.min_numel, "must be >= 0")


def needs_calibration(cfg: QuantConfig) -> bool:
    """A scheme quantizes with GPTQ, so the export needs Hessians from calibration inputs."""
    return any(s.kind is SchemeKind.int and s.gptq is not None for s in cfg.schemes.values())


def validate_calibration(cfg: QuantConfig, prefix: str = "quant") -> None:
    cal = cfg.calibration
    if cal is None:
        if needs_calibration(cfg):
            users = sorted(n for n, s in cfg.schemes.items() if s.gptq is not None)
            raise ConfigError(f"{prefix}.calibration", None, f"schemes {users} use gptq, which needs calibration inputs")
        return
    key = f"{prefix}.calibration"
    if cal.source.lower() in ("val", "valid", "validation", "eval", "test"):
        raise ConfigError(f"{key}.source", cal.source, "validation data is never allowed for calibration "
                          "(it is the data being scored); use train or generated")
    if cal.source not in [s.value for s in CalibrationSource]:
        raise ConfigError(f"{key}.source", cal.source, f"must be one of {[s.value for s in CalibrationSource]}")
    if cal.batches < 1:
        raise ConfigError(f"{key}.batches", cal.batches, "must be positive")
    for name in ("batch_tokens", "seq_len"):
        value = getattr(cal, name)
        if value is not None and value < 1:
            raise ConfigError(f"{key}.{name}", value, "must be positive (or null for the train value)")
    if not cal.temperature > 0:
        raise ConfigError(f"{key}.temperature", cal.temperature, "must be > 0")
    if cal.device not in ("model", "cpu"):
        raise ConfigError(f"{key}.device", cal.device, "must be model or cpu")
    if cal.start_token < 0:
        raise ConfigError(f"{key}.start_token", cal.start_token, "must be a token id >= 0")


def validate_quant(cfg: QuantConfig, prefix: str = "quant") -> None:
    """Raise :class:`ConfigError` on the first invalid value of a quant config."""
    if len(cfg.schemes) == 0:
        raise ConfigError(f"{prefix}.schemes", {}, "needs at least one scheme")
    for name, scheme in cfg.schemes.items():
        validate_scheme(scheme, f"{prefix}.schemes.{name}")
    _validate_rules(cfg.rules, cfg.schemes, f"{prefix}.rules")
    if len(cfg.base_rules) > 0:
        _validate_rules(cfg.base_rules, cfg.schemes, f"{prefix}.base_rules")
    if cfg.passthrough_max_numel < 0:
        raise ConfigError(f"{prefix}.passthrough_max_numel", cfg.passthrough_max_numel, "must be >= 0")
    if cfg.prune is not None:
        if not 0.0 <= cfg.prune.fraction < 1.0:
            raise ConfigError(f"{prefix}.prune.fraction", cfg.prune.fraction, "must be in [0, 1)")
        check_expression(cfg.prune.select, f"{prefix}.prune.select")
    lo, hi = LEVEL_RANGES[cfg.compressor]
    if not lo <= cfg.level <= hi:
        raise ConfigError(f"{prefix}.level", cfg.level, f"{cfg.compressor.value} takes levels {lo}..{hi}")
    if cfg.byte_shuffle is not None and cfg.byte_shuffle not in SHUFFLE_STRIDES:
        raise ConfigError(f"{prefix}.byte_shuffle", cfg.byte_shuffle, f"must be one of {list(SHUFFLE_STRIDES)} or null")
    if cfg.limit_bytes <= 0:
        raise ConfigError(f"{prefix}.limit_bytes", cfg.limit_bytes, "must be > 0")
    validate_calibration(cfg, prefix)
    if cfg.lqer is not None:
        validate_lqer(cfg.lqer, f"{prefix}.lqer")
    if cfg.pergroup is not None:
        if cfg.packing is not Packing.int8:
            raise ConfigError(f"{prefix}.packing", cfg.packing.value, "the per-group container sorts and transposes "
                              "int8 containers: use packing: int8 with quant.pergroup (its codecs do the packing)")
        validate_pergroup(cfg.pergroup, f"{prefix}.pergroup")
    if cfg.qat is not None:
        validate_qat(cfg.qat, f"{prefix}.qat")
