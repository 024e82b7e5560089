"""Sub-configs of the ``arch`` group, one per technique family (re-exported by :mod:`golf.model.config`).

Every technique is a sub-config that is ``None`` when off; variants are enums whose member names are
the YAML values. Layer selectors are strings: ``all``, ``none``, ``last:N``, ``first:N``, ``from:I`` or
explicit indices ``"3,4"`` (:mod:`golf.kernel.arch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

# ----------------------------------------------------------------------------- attention


@dataclass
class RopeConfig:
    """Rotary position embedding, half-split pairs (i, i + dims/2) inside the rotated block (spec §1.5, §2.5)."""

    base: float = 10000.0
    # rotated dims per head (partial RoPE: the first ``dims`` dims; the rest pass through); None = head dim
    dims: int | None = None
    # NTK base scaling of the #1573 lineage: when T > this, base <- base * (T/this)^(dims/(dims-2))
    ntk_reference_len: int | None = None
    # dtype the inverse frequencies are rounded to: "float32", or "bfloat16" as the #1493 lineage's
    # buffer cast left them (frontier spec §3.1, trap 12; positions and cos/sin stay fp32)
    freq_dtype: str = "float32"


class XSAValue(str, Enum):
    """Which value XSA removes: the layer's own value before value-residual blending, or the blended one."""

    raw = "raw"          # #344
    blended = "blended"  # #507, #1573


@dataclass
class XSAConfig:
    """Exclusive self attention (arXiv:2603.09078, spec §2.4) on selected layers."""

    layers: str = "last:4"
    value: XSAValue = XSAValue.blended


class GateKind(str, Enum):
    """Per-head gate on the attention output (spec §2.9)."""

    input = "input"    # sigma(W x + b), W: heads x model_dim (#344, #1573)
    static = "static"  # sigma(b), one logit per head (#507)
    # sigma(scale * W x[:window]), W: heads x window, zero-init, no bias: exactly 0.5 at init, so it
    # halves the attention output until it learns (#1855 from #1787; frontier-1855 spec §3.5)
    sparse = "sparse"


@dataclass
class AttnGateConfig:
    kind: GateKind = GateKind.input
    # input / static: the gate's bias (logit) at init: sigma(4) = 0.982, nearly open
    bias_init: float = 4.0
    layers: str = "all"
    # sparse: how many leading dims of the attention input (the normed, LN-scaled block input) the gate reads
    window: int = 12
    # sparse: the logit's multiplier (#1855 ran 0.5; its code default is 1.0)
    scale: float = 1.0


class ValueResidualInit(str, Enum):
    """Init of ``vr_lambda`` = (weight of the first layer's value, weight of the own value) (spec §2.8)."""

    half = "half"          # [0.5, 0.5] (#344, #1573)
    identity = "identity"  # [0, 1], i.e. alpha=1, beta=0: identity at init (#507)


@dataclass
class ValueResidualConfig:
    """ResFormer value residual (arXiv:2410.17897): blend the first layer's value into later layers."""

    init: ValueResidualInit = ValueResidualInit.half
    # layers owning a vr_lambda; layer 0 is the source, so its lambda only acts in replayed passes
    layers: str = "from:1"


@dataclass
class ValueEmbedConfig:
    """Value embeddings (spec §2.10): a shared token table projected into the values of selected layers."""

    dim: int = 128
    layers: str = "last:2"
    # the shared scalar ``scale`` at init (per-layer scales start at 1)
    scale_init: float = 0.1
    # std of the N(0, std^2) init of the table
    embed_std: float = 0.01


@dataclass
class DocumentMaskConfig:
    """Document-aware attention (#1530 lineage, #1855; frontier-1855 spec §2.6, :mod:`golf.kernel.segments`):
    a token attends only inside its segment: from the last document start (BOS) at or before it, cut into
    pieces of ``max_len`` tokens. Needed by document-packed rows (data.packing); works on any rows."""

    # the longest segment: a longer document is attended in consecutive pieces of this many tokens (#1855: 2048)
    max_len: int = 2048


@dataclass
class AttentionConfig:
    # per-head multiplier on q after q/k RMSNorm and RoPE
    q_gain_init: float = 1.5
    rope: RopeConfig = field(default_factory=RopeConfig)
    xsa: XSAConfig | None = None
    gate: AttnGateConfig | None = None
    value_residual: ValueResidualConfig | None = None
    value_embed: ValueEmbedConfig | None = None
    # attention cut at document starts and every max_len tokens; None = plain causal attention over the row
    document: DocumentMaskConfig | None = None


# ----------------------------------------------------------------------------- MLP


class MLPActivation(str, Enum):
    relu2 = "relu2"              # relu(x)^2 (baseline, #187, #295)
    leaky_relu2 = "leaky_relu2"  # leaky_relu(x, slope)^2 (#344, #1573)
    gelu = "gelu"                # gelu(x)
    swiglu = "swiglu"            # proj(silu(gate x) * fc x), three matrices (#507)


@dataclass
class MLPConfig:
    activation: MLPActivation = MLPActivation.relu2
    # hidden = mult * model_dim (must be a whole number: 3.5 x 512 = 1792); SwiGLU uses the
    # parameter-matched 2 * mult * model_dim / 3 (3 x 512 -> 1024), which must be a whole number too
    mult: float = 2.0
    # explicit hidden size (overrides mult)
    hidden: int | None = None
    # negative slope of leaky_relu2
    negative_slope: float = 0.5


# ----------------------------------------------------------------------------- residual stream


class ResidMixInit(str, Enum):
    """Init of each block's ``resid_mix`` = [m0; m1] in x <- m0 * x + m1 * x0 (spec §1.5, §2.11)."""

    plain = "plain"  # m0 = 1, m1 = 0
    phase = "phase"  # phase transition (#295): m0 = phi_i, m1 = 1 - phi_i, phi_i = sigma(3 (i/(L-1) - 0.5))


@dataclass
class CatalyticConfig:
    """Catalytic residuals (#507 from PR #450): per-dim ``cat_attn`` / ``cat_mlp`` on each branch."""

    init: float = 1.0


@dataclass
class ParallelResidualConfig:
    """Parallel residuals, GPT-J form (PR #1493 from #1412/#1204; frontier spec §3.8): attention and MLP
    of the selected blocks read the same mixed input and both outputs add into the one stream."""

    layers: str = "from:7"


@dataclass
class TwoLaneConfig:
    """Two-lane parallel decoder (#1855 from #1530; frontier-1855 spec §3.8), unlike ``parallel``'s one
    stream: at the first application of a block >= ``start_layer`` the stream splits into lane0 = lane1 = x;
    each later application of block l reads attention from ``resid_mix(lane0, x0)`` and the MLP from lane1
    directly (no resid_mix, no x0), then ``lane_k <- Q[l,k] lane_k + P[l,0,k] attn + P[l,1,k] mlp``; U-Net
    skips merge into lane0 only; the exit is the mean of the lanes. P = ``parallel_post_lambdas`` [L, 2, 2]
    (branch, lane) and Q = ``parallel_resid_lambdas`` [L, 2] (rows below ``start_layer`` unused, as #1855)."""

    # the first block that runs in lanes; every application after the lanes open must be of a block >= it
    start_layer: int = 8
    # init of every entry of P
    post_init: float = 1.0
    # init of every entry of Q
    resid_init: float = 1.1


@dataclass
class ResidualConfig:
    mix_init: ResidMixInit = ResidMixInit.plain
    # layer-wise LN scale: both norm outputs of block l are multiplied by 1/sqrt(l + 1) (spec §2.6)
    ln_scale: bool = False
    catalytic: CatalyticConfig | None = None
    # one stream, attention and MLP side by side (#1493); exclusive with two_lane
    parallel: ParallelResidualConfig | None = None
    two_lane: TwoLaneConfig | None = None


class SkipKind(str, Enum):
    plain = "plain"  # x <- x + w * skip (baseline)
    gated = "gated"  # g = sigma(gate): x <- g * x + (1 - g) * w * skip (#507)


@dataclass
class SkipConfig:
    """U-Net skips: decoder block i receives the output of encoder block E-1-i (spec §2.7)."""

    kind: SkipKind = SkipKind.plain
    # kind=gated: "mix" = g·x + (1−g)·(w·skip) with σ in fp32 (#507); "lerp" = torch.lerp(w·skip, x, g)
    # with σ of the gate cast to the stream's dtype first (#1493, #1855: bf16 under autocast)
    merge: str = "mix"


class BackoutSource(str, Enum):
    """The activation backout subtracts (spec §2.14)."""

    encoder_output = "encoder_output"              # output of the last encoder block (#507)
    first_decoder_output = "first_decoder_output"  # output of the first decoder block, block L//2 (#295)


@dataclass
class BackoutConfig:
    """x_final <- x_final - lambda * h_mid before the final norm."""

    source: BackoutSource = BackoutSource.encoder_output
    lambda_init: float = 0.0


# ----------------------------------------------------------------------------- input stage


class BigramForm(str, Enum):
    """The three hash / placement forms of BigramHash (spec §2.2)."""

    mult_input = "mult_input"        # A: (prev * 92821 + cur) mod B, prev_0 = 0; added once at the input
    xor_input = "xor_input"          # B: XOR hash mod (B-1), position 0 -> bucket B-1; added once at the input
    xor_per_layer = "xor_per_layer"  # B': XOR hash, position 0 -> bucket 0; added before every block


class ProjInit(str, Enum):
    zero = "zero"        # zero at construction (an orthogonal init rule may still replace it)
    default = "default"  # PyTorch's kaiming-uniform Linear init (#187)


@dataclass
class BigramConfig:
    form: BigramForm = BigramForm.xor_input
    buckets: int = 4096
    dim: int = 128
    # learned ``scale`` at init (one per layer for xor_per_layer); None = no scale parameter (#187)
    scale_init: float | None = 0.05
    # std of the N(0, std^2) table init; 0 = zeros
    table_std: float = 0.0
    proj_init: ProjInit = ProjInit.zero


@dataclass
class TrigramConfig:
    """TrigramHash (#344, spec §2.3): XOR of three tokens mod (B-1); positions 0 and 1 -> bucket B-1."""

    buckets: int = 4096
    dim: int = 128
    scale_init: float = 0.03


class SmearVariant(str, Enum):
    """The three SmearGates of spec §2.1, and C with #1855's BOS fix (frontier-1855 spec §3.3)."""

    pass_through = "pass_through"  # A: x_t <- g x_t + (1-g) x_{t-1}, gate init 3.0; before the input norm
    half_blend = "half_blend"      # B: x_t <- (1-g) x_t + g x_{t-1}, gate init 0; after the input norm
    scalar_gate = "scalar_gate"    # C: x_t <- x_t + lambda sigma(w . x_t[:k]) x_{t-1}, w = lambda = 0
    # C whose previous-token term is zeroed where the current token is BOS (arch.bos_id): a document's
    # first token never receives the previous document's last one (#1855)
    scalar_gate_bos = "scalar_gate_bos"


@dataclass
class SmearConfig:
    variant: SmearVariant = SmearVariant.half_blend
    # scalar_gate / scalar_gate_bos only: how many leading dims of x_t the gate reads
    gate_dims: int = 12


@dataclass
class PreEnrichConfig:
    """Pre-enrichment (#187, spec §2.16): x <- down(GELU(up(x))) before the input norm, no residual."""

    hidden: int = 768


@dataclass
class InputConfig:
    bigram: BigramConfig | None = None
    trigram: TrigramConfig | None = None
    smear: SmearConfig | None = None
    pre_enrich: PreEnrichConfig | None = None


# ----------------------------------------------------------------------------- depth and init


@dataclass
class EncoderRecurrenceConfig:
    """Run the encoder ``passes`` times with an RMSNorm between passes; skips from the last (#187)."""

    passes: int = 2


@dataclass
class RecycleConfig:
    """Recycled core (#1573): replay ``layers`` after the encoder, ``repeats`` times, each application
    preceded by its own x <- x * scale + bias modulation."""

    layers: str = "3,4"
    repeats: int = 1


@dataclass
class LoopConfig:
    """Depth recurrence switched on during training (PR #1493, from #1394/#1413; frontier spec §3.7).

    The contiguous block range ``layers`` runs ``1 + extra_passes`` times in a row once the loop is on:
    3,4,5 with 2 extra passes on 11 blocks gives 0 1 2 (3 4 5)x3 6..10, 17 applications split into
    8 encoder and 9 decoder slots. Before the switch the model is the plain U-Net of its blocks.
    """

    # the replayed blocks: a contiguous ascending range such as "3,4,5"
    layers: str = "3,4,5"
    # extra passes over ``layers`` (2 = three passes in all)
    extra_passes: int = 2
    # fraction of the training clock (of train.max_wallclock_s - train.reserve_s; of train.iterations
    # without a cap) at which the loop switches on, at the first step whose agreed clock reaches it;
    # 0 = on from step 0
    switch_at: float = 0.35


@dataclass
class DepthConfig:
    # encoder blocks E (U-Net encoder, recurrence and recycling act on it); None = num_layers // 2
    encoder_layers: int | None = None
    encoder_recurrence: EncoderRecurrenceConfig | None = None
    recycle: RecycleConfig | None = None
    # depth recurrence switched on mid-run (the encoder/decoder split is then half of each sequence)
    loop: LoopConfig | None = None


class OrthoRule(str, Enum):
    """Which weights get ``orthogonal_`` (gain 1) at init: each seed's selection rule (spec §2.11).

    Output projections (attention and MLP ``proj``, untied head) are zero in every rule.
    """

    all_linears = "all_linears"                          # every Linear (#344)
    linears_min_dim_gt_1 = "linears_min_dim_gt_1"        # Linears whose smaller dim is > 1 (#507)
    linears_dims_ge_64 = "linears_dims_ge_64"            # Linears with both dims >= 64 (03-22, #1573)
    matrices_numel_gt_65536 = "matrices_numel_gt_65536"  # every 2-D parameter above 65,536 (#295)


class EmbedInit(str, Enum):
    normal = "normal"      # N(0, embed_std^2) (tied) / N(0, 1) (untied), as the baseline
    overtone = "overtone"  # the normal init, then singular values S_k <- S_1 k^(-1/2) (#187, #295)


@dataclass
class InitConfig:
    orthogonal: OrthoRule | None = None
    embed: EmbedInit = EmbedInit.normal
    # std of the tied embedding's normal init
    embed_std: float = 0.005
    # multiply the non-zero ``*.proj`` weights (hash / value-embedding projections) by 1/sqrt(2L)
    mup_proj_scale: bool = False
