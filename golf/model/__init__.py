"""The model in the lab: the ``arch`` config, its validation, parameter roles, and building a GPT.

The GPT itself (every architecture technique of the seeds and #1493) is kernel code,
:mod:`golf.kernel.model` with :mod:`golf.kernel.attention`, :mod:`golf.kernel.inputs` and
:mod:`golf.kernel.depth`. ``build_model(cfg: ArchConfig) -> GPT`` validates the config
(:func:`golf.model.config.validate_arch`), builds it with :func:`golf.kernel.model.build_gpt` and labels
every parameter's role (``model.param_roles``, :mod:`golf.model.roles`); ``model(input_ids [B, T]) ->
logits [B, T, V]`` (float32, soft-capped), ``model(input_ids, targets)`` -> the mean cross-entropy;
``count_parameters(model) -> {"total": n, <top-level>: n}``. Config: :class:`golf.model.config.ArchConfig`
(the ``arch`` group, presets in ``conf/arch/``).

PARAMS - parameter names by technique. Each is labelled with its role when the model is built
(``model.param_roles``, :mod:`golf.model.roles`); optimizer, quantization and QAT tables select by role:

baseline (spec §1.5)
    tok_emb.weight                                  [V, d]  tied head (untied: lm_head.weight [V, d])
    blocks.{i}.attn.c_q.weight / c_k / c_v          [d, d] / [kv, d] / [kv, d]   kv = Hkv * head_dim
    blocks.{i}.attn.proj.weight                     [d, d]  zero-init
    blocks.{i}.attn.q_gain                          [H]
    blocks.{i}.mlp.fc.weight / mlp.proj.weight      [h, d] / [d, h] (proj zero-init)
    blocks.{i}.attn_scale, mlp_scale                [d]
    blocks.{i}.resid_mix                            [2, d]
    skip_weights                                    [min(E, L-E), d]
SwiGLU MLP            blocks.{i}.mlp.gate.weight [h, d]
gated U-Net skips     skip_gates [n_skip, d]
catalytic residuals   blocks.{i}.cat_attn, blocks.{i}.cat_mlp [d]
backout               backout_lambda [1]
value residual        blocks.{i}.attn.vr_lambda [2]
gated attention       blocks.{i}.attn.attn_gate.weight [H, d] (input gate only), .attn_gate.bias [H]
sparse attention gate blocks.{i}.attn.attn_gate.weight [H, window] (#1855; family sparse_attn_gate)
two-lane decoder      parallel_post_lambdas [L, 2, 2], parallel_resid_lambdas [L, 2] (#1855; family two_lane)
XSA, RoPE, LN scale   (no parameters)
parallel residuals,   (no parameters; with a depth loop skip_weights/skip_gates have min(|enc|, |dec|)
depth loop (#1493)     rows of the looped sequence, e.g. 8 for blocks 3,4,5 x3 of 11)
value embeddings      ve_shared.embed.weight [V, k], ve_shared.proj.weight [kv, k], ve_shared.scale [1],
                      ve_shared.layer_scales [n targets]
BigramHash            bigram.embed.weight [B, k], bigram.proj.weight [d, k], bigram.scale [1] or [L]
                      (per-layer form; no scale in #187's form)
TrigramHash           trigram.embed.weight [B, k], trigram.proj.weight [d, k], trigram.scale [1]
SmearGate             smear.gate [d] (variants A, B) or [k] (variant C and its BOS fix) and smear.scale [1]
pre-enrichment        pre_enrich.up.weight [h, d], pre_enrich.down.weight [d, h]
recycled core         recycle_mods.{j}.scale, recycle_mods.{j}.bias [d]

All parameters are float32 (``arch.embedding_dtype=bfloat16`` makes ``tok_emb.weight`` bf16, as #1493); every Linear is a bias-free ``nn.Linear`` except the input-dependent
attention gate (a control tensor with a bias, deliberately not an ``nn.Linear``).
"""

from golf.model.build import as_arch_config, build_model, count_parameters
from golf.model.config import ArchConfig, validate_arch

__all__ = ["ArchConfig", "as_arch_config", "build_model", "count_parameters", "validate_arch"]
