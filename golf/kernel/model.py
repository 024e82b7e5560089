"""The GPT: the official baseline (spec §1.5) with every architecture technique of the seeds and #1493.

    x0 = input stage (tok_emb[ids] + hash embeddings, SmearGate, pre-enrichment, RMSNorm)
    for step in the depth schedule (:mod:`golf.kernel.depth`):
        (renorm) (modulation) (merge a U-Net skip) (+ per-layer inputs)  x = blocks[layer](x, x0, ctx, ve)
    (backout) RMSNorm; logits = x W_emb^T (tied) or lm_head(x); cap * tanh(logits / cap)
    with targets: the mean cross-entropy of those float32 logits (the training loss, spec §1.7)

The loss is computed inside ``forward`` (as the official script does) so that a compiled model fuses
soft-cap and cross-entropy into its graph. The forward has no data-dependent control flow and no
training-phase flags, so ``torch.compile(fullgraph=True)`` traces it once (once per topology with a
depth loop).

A block (pre-norm): ``x <- m0 x + m1 x0`` (``resid_mix``), ``x <- x + g_attn attn(s RMSNorm(x))``,
``x <- x + g_mlp mlp(s RMSNorm(x))``, with ``s`` the layer-wise LN scale 1/sqrt(l+1) (spec §2.6; absent,
not a multiply by 1, where it is off or 1) and ``g`` = ``attn_scale`` / ``mlp_scale``, times ``cat_attn``
/ ``cat_mlp`` with catalytic residuals (#507 from PR #450, spec §2.13). Parallel residuals (GPT-J form,
PR #1493 from #1412/#1204, frontier spec §3.3/§3.8) on the selected blocks: attention and MLP both read
``s RMSNorm(x_in)`` and both outputs add into the one stream (no extra parameters). The two-lane decoder
(#1855 from #1530, frontier-1855 spec §3.8; :class:`golf.model.config.TwoLaneConfig`) instead splits the
stream at its start block: attention reads ``resid_mix(lane0, x0)``, the MLP reads lane1, each lane takes
``Q[l,k] lane_k + P[l,0,k] attn + P[l,1,k] mlp``; skips merge into lane0; the exit is the lanes' mean.

MLP (spec §1.5, §2.12): ``proj(act(fc(x)))`` with relu² (baseline), LeakyReLU(0.5)² (PR #493/#518; #344,
#1493, #1573) or GELU; SwiGLU ``proj(silu(gate(x)) * fc(x))`` (#507). U-Net skips (spec §2.7):
``x + w_j skip`` (plain) or ``g x + (1-g)(w_j skip)``, g = sigma(gate_j) init 0 (gated, #507). Backout
(spec §2.14): ``x <- x - lambda h_mid`` before the final norm (#507: lambda 0, the encoder's output;
#295: 0.2, the first decoder output).

Init (spec §1.5, §2.11), after construction: orthogonal init (gain 1) of the weights a seed's rule
selects — every Linear (#344), Linears whose smaller dim is > 1 (#507), both dims >= 64 (03-22 lineage,
#1493, #1573), every 2-D parameter above 65,536 elements incl. embeddings (#295), where "Linear" covers
the input attention gate — then output projections back to 0; muP (03-22 lineage): the remaining
non-zero ``*.proj`` weights times 1/sqrt(2L); the token embedding N(0, embed_std^2) tied (N(0, 1)
untied), optionally Overtone (2026-03-19 Overtone record; #187, #295: SVD, S_k <- S_1 k^(-1/2));
``resid_mix`` [1; 0] or #295's phase transition [phi_i; 1 - phi_i], phi_i = sigma(3 (i/(L-1) - 0.5)).
All parameters are float32; ``embedding_dtype=bfloat16`` casts ``tok_emb`` after init (#1493).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.kernel.arch import layer_ids, mlp_hidden
from golf.kernel.attention import AttnGate, CausalSelfAttention, zero_linear
from golf.kernel.depth import RecycleModulation, depth_steps
from golf.kernel.inputs import bigram_buckets, build_inputs, input_stream
from golf.kernel.segments import segment_starts

if TYPE_CHECKING:
    from golf.model.config import ArchConfig


class MLP(nn.Module):
    PARAM_ROLES = {"gate.weight": ("matrix", "core"), "fc.weight": ("matrix", "core"), "proj.weight": ("matrix", "core")}

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        d = cfg.model_dim
        h = mlp_hidden(cfg)
        self.cfg = cfg
        if cfg.mlp.activation == "swiglu":
            self.gate = nn.Linear(d, h, bias=False)
        self.fc = nn.Linear(d, h, bias=False)
        self.proj = zero_linear(h, d)

    def forward(self, x: Tensor) -> Tensor:
        return mlp_forward(self, self.cfg, x)


def mlp_forward(m: MLP, cfg: ArchConfig, x: Tensor) -> Tensor:
    a = cfg.mlp.activation
    if a == "swiglu":
        return m.proj(F.silu(m.gate(x)) * m.fc(x))
    h = m.fc(x)
    if a == "relu2":
        h = torch.relu(h).square()
    elif a == "leaky_relu2":
        h = F.leaky_relu(h, cfg.mlp.negative_slope).square()
    else:
        h = F.gelu(h)
    return m.proj(h)


class Block(nn.Module):
    PARAM_ROLES = {"attn_scale": ("control", "core"), "mlp_scale": ("control", "core"), "resid_mix": ("control", "core"),
                   "cat_attn": ("control", "catalytic"), "cat_mlp": ("control", "catalytic")}

    def __init__(self, cfg: ArchConfig, i: int):
        super().__init__()
        r = cfg.residual
        d = cfg.model_dim
        self.cfg = cfg
        self.attn = CausalSelfAttention(cfg, i)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(d, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(d, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d))).float())  # [2, d]
        self.ln_scale = 1.0 / math.sqrt(i + 1) if r.ln_scale and i else None  # None where it would be 1
        if r.catalytic is not None:
            self.cat_attn = nn.Parameter(torch.full((d,), r.catalytic.init, dtype=torch.float32))
            self.cat_mlp = nn.Parameter(torch.full((d,), r.catalytic.init, dtype=torch.float32))
        if r.parallel is not None:
            self.parallel = i in layer_ids(r.parallel.layers, cfg.num_layers)

    def forward(self, x: Tensor, x0: Tensor, ctx: dict, ve: Tensor | None = None) -> Tensor:
        return block_forward(self, self.cfg, x, x0, ctx, ve)


def _block_norm(b: Block, cfg: ArchConfig, x: Tensor) -> Tensor:
    n = F.rms_norm(x, (x.size(-1),))
    return n * b.ln_scale if cfg.residual.ln_scale and b.ln_scale is not None else n


def block_forward(b: Block, cfg: ArchConfig, x: Tensor, x0: Tensor, ctx: dict, ve: Tensor | None) -> Tensor:
    r = cfg.residual
    mix = b.resid_mix.to(x.dtype)
    x = mix[0] * x + mix[1] * x0
    z = _block_norm(b, cfg, x)
    a = b.attn(z, ctx, ve)
    if r.parallel is not None and b.parallel:  # both branches read z
        m = b.mlp(z)
        return (x + (b.attn_scale if r.catalytic is None else b.attn_scale * b.cat_attn).to(x.dtype) * a
                + (b.mlp_scale if r.catalytic is None else b.mlp_scale * b.cat_mlp).to(x.dtype) * m)
    x = x + (b.attn_scale if r.catalytic is None else b.attn_scale * b.cat_attn).to(x.dtype) * a
    m = b.mlp(_block_norm(b, cfg, x))
    return x + (b.mlp_scale if r.catalytic is None else b.mlp_scale * b.cat_mlp).to(x.dtype) * m


class FinalNorm(nn.Module):
    """The weightless RMSNorm before the head: a module so that the head's input can be observed
    (calibration collects the tied embedding's Hessian from its output)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.size(-1),))


_HASH_ROLES = (("embed.weight", "table"), ("proj.weight", "matrix"), ("scale", "control"))


class GPT(nn.Module):
    PARAM_ROLES = {"tok_emb.weight": ("embedding", "core", "input"), "lm_head.weight": ("head", "core", "exit"),
                   "skip_weights": ("control", "unet", "middle"), "skip_gates": ("control", "unet", "middle"),
                   "backout_lambda": ("control", "backout", "exit"),
                   "parallel_post_lambdas": ("control", "two_lane", "decoder"),
                   "parallel_resid_lambdas": ("control", "two_lane", "decoder"),
                   **{f"{f}.{n}": (k, f, "input") for f in ("bigram", "trigram") for n, k in _HASH_ROLES}}

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        d = cfg.model_dim
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        build_inputs(self, cfg)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.steps, S = depth_steps(cfg)
        self.topology = len(self.steps) - 1  # built as exported: the looped topology when there is one
        if cfg.depth.recycle is not None:
            n = cfg.depth.recycle.repeats * len(layer_ids(cfg.depth.recycle.layers, cfg.num_layers))
            self.recycle_mods = nn.ModuleList(RecycleModulation(d) for _ in range(n))
        if cfg.skips is not None and S:
            self.skip_weights = nn.Parameter(torch.ones(S, d, dtype=torch.float32))
            if cfg.skips.kind == "gated":
                self.skip_gates = nn.Parameter(torch.zeros(S, d, dtype=torch.float32))
        if cfg.backout is not None:
            self.backout_lambda = nn.Parameter(torch.full((1,), cfg.backout.lambda_init, dtype=torch.float32))
        tl = cfg.residual.two_lane
        if tl is not None:
            self.parallel_post_lambdas = nn.Parameter(torch.full((cfg.num_layers, 2, 2), tl.post_init))  # [l, branch, lane]
            self.parallel_resid_lambdas = nn.Parameter(torch.full((cfg.num_layers, 2), tl.resid_init))  # [l, lane]
        self.final_norm = FinalNorm()
        self.lm_head = None if cfg.tie_embeddings else zero_linear(d, cfg.vocab_size)

    def set_topology(self, i: int) -> None:
        """Run step list ``i`` from now on (0 plain, 1 looped); the loop's controller calls this."""
        self.topology = i

    def layer_orders(self) -> list[tuple[int, ...]]:
        """The block of each application, per topology."""
        return [tuple(s[0] for s in steps) for steps in self.steps]

    def forward(self, input_ids: Tensor, targets: Tensor | None = None) -> Tensor:
        """``input_ids`` [B, T] -> soft-capped logits [B, T, vocab] float32; with ``targets`` [B, T] the
        scalar mean cross-entropy of those logits instead."""
        return gpt_forward(self, self.cfg, input_ids, targets)


def gpt_forward(m: GPT, cfg: ArchConfig, ids: Tensor, targets: Tensor | None) -> Tensor:
    b = cfg.input.bigram
    x = x0 = input_stream(m, cfg, ids)
    if b is not None and b.form == "xor_per_layer":
        bl = m.bigram(bigram_buckets(ids, b))  # added before each block, times its scale
    if cfg.attention.value_embed is not None:
        ve = m.ve_shared(ids)  # added to the target layers' values, times their scales
    d = cfg.attention.document  # document-aware attention: every layer reads the segment starts in ctx
    ctx, skips = {"segments": segment_starts(ids, cfg.bos_id, d.max_len)} if d is not None else {}, []
    tl = cfg.residual.two_lane
    if tl is not None:
        lane = None  # lane1 of the two-lane decoder (x is lane0), once open
    for i, merge, push, tap, renorm, mod, inputs in m.steps[m.topology]:
        if tl is not None and lane is None and i >= tl.start_layer:
            lane = x  # the lanes open before the skip merges (into lane0 only)
        if cfg.depth.encoder_recurrence is not None and renorm:
            x = F.rms_norm(x, (x.size(-1),))
        if cfg.depth.recycle is not None and mod is not None:
            x = m.recycle_mods[mod](x)
        if cfg.skips is not None and merge is not None:
            if cfg.skips.kind == "gated" and cfg.skips.merge == "lerp":  # #1493: in the stream's dtype
                x = torch.lerp(m.skip_weights[merge].to(x.dtype) * skips.pop(), x,
                               torch.sigmoid(m.skip_gates[merge].to(x.dtype)))
            elif cfg.skips.kind == "gated":
                g = torch.sigmoid(m.skip_gates[merge]).to(x.dtype)
                x = g * x + (1.0 - g) * (m.skip_weights[merge].to(x.dtype) * skips.pop())
            else:
                x = x + m.skip_weights[merge].to(x.dtype) * skips.pop()
        if b is not None and b.form == "xor_per_layer" and inputs:
            x = x + m.bigram.scale[i].to(bl.dtype) * bl
        v = None
        if cfg.attention.value_embed is not None and inputs and i in m.ve_shared.layers:
            v = ve * m.ve_shared.layer_scales[m.ve_shared.layers.index(i)].to(ve.dtype)
        if tl is not None and lane is not None:
            x, lane = two_lane_block(m, cfg, i, x, lane, x0, ctx, v)
        else:
            x = m.blocks[i](x, x0, ctx, v)
        if cfg.skips is not None and push:
            skips.append(x)
        if cfg.backout is not None and tap:
            h = x
    if tl is not None:
        x = 0.5 * (x + lane)
    if cfg.backout is not None:
        x = x - m.backout_lambda.to(x.dtype) * h
    x = m.final_norm(x)
    logits = F.linear(x, (m.tok_emb.weight if cfg.tie_embeddings else m.lm_head.weight).to(x.dtype))
    if cfg.logit_softcap_fp32:
        logits = logits.float()
    logits = (cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap)).float()
    if targets is None:
        return logits
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def two_lane_block(m: GPT, cfg: ArchConfig, i: int, x: Tensor, y: Tensor, x0: Tensor, ctx: dict, ve: Tensor | None):
    """Block ``i`` on the lanes (x, y) of the two-lane decoder: the new (lane0, lane1)."""
    r = cfg.residual
    b = m.blocks[i]
    mix = b.resid_mix.to(x.dtype)
    a = (b.attn_scale if r.catalytic is None else b.attn_scale * b.cat_attn).to(x.dtype) * b.attn(
        _block_norm(b, cfg, mix[0] * x + mix[1] * x0), ctx, ve)
    f = (b.mlp_scale if r.catalytic is None else b.mlp_scale * b.cat_mlp).to(x.dtype) * b.mlp(_block_norm(b, cfg, y))
    P = m.parallel_post_lambdas[i].to(x.dtype)  # [branch, lane]
    Q = m.parallel_resid_lambdas[i].to(x.dtype)
    return Q[0] * x + P[0, 0] * a + P[1, 0] * f, Q[1] * y + P[0, 1] * a + P[1, 1] * f


def orthogonal_targets(m: nn.Module, cfg: ArchConfig) -> list[tuple[str, Tensor]]:
    """(name, weight) of every parameter the rule ``cfg.init.orthogonal`` initialises orthogonally."""
    r = cfg.init.orthogonal
    if r == "matrices_numel_gt_65536":  # #295's int8 passthrough threshold
        return [(n, p) for n, p in m.named_parameters() if p.ndim == 2 and p.numel() > 65536]
    lo = 0 if r == "all_linears" else 2 if r == "linears_min_dim_gt_1" else 64
    return [(f"{n}.weight", x.weight) for n, x in m.named_modules()
            if (isinstance(x, nn.Linear) or cfg.attention.gate is not None and isinstance(x, AttnGate)
                and hasattr(x, "weight")) and not hasattr(x, "zero_init") and min(x.weight.shape) >= lo]


def overtone_(w: Tensor) -> None:
    """Keep the singular vectors and the top singular value, impose S_k = S_1 k^(-1/2)."""
    U, S, Vh = torch.linalg.svd(w.float(), full_matrices=False)
    w.copy_((U * (S[0] * torch.arange(1, S.numel() + 1, dtype=S.dtype, device=S.device) ** -0.5)[None, :]) @ Vh)


@torch.no_grad()
def init_gpt(m: GPT, cfg: ArchConfig) -> None:
    """The init scheme of ``cfg.init`` / ``cfg.residual`` on a freshly built GPT."""
    ic = cfg.init
    if ic.orthogonal is not None:
        for _, w in orthogonal_targets(m, cfg):
            nn.init.orthogonal_(w, gain=1.0)
        for x in m.modules():
            if hasattr(x, "zero_init"):
                x.weight.zero_()
    if ic.mup_proj_scale:
        for n, x in m.named_modules():
            if isinstance(x, nn.Linear) and not hasattr(x, "zero_init") and n.split(".")[-1] == "proj":
                x.weight.mul_(1.0 / math.sqrt(2 * cfg.num_layers))
    nn.init.normal_(m.tok_emb.weight, mean=0.0, std=ic.embed_std if cfg.tie_embeddings else 1.0)
    if ic.embed == "overtone":
        overtone_(m.tok_emb.weight)
    if cfg.residual.mix_init == "phase":
        for i, b in enumerate(m.blocks):
            phi = 1.0 / (1.0 + math.exp(-3.0 * (i / max(cfg.num_layers - 1, 1) - 0.5)))
            b.resid_mix[0].fill_(phi)
            b.resid_mix[1].fill_(1.0 - phi)


def build_gpt(cfg: ArchConfig) -> GPT:
    """The GPT of ``cfg``, initialised (not on the meta device), ``tok_emb`` cast to its dtype."""
    m = GPT(cfg)
    if not m.tok_emb.weight.is_meta:
        init_gpt(m, cfg)
    if cfg.embedding_dtype == "bfloat16":
        m.tok_emb.bfloat16()
    return m
