"""The input stage: token-conditioned parts built from ``arch.input`` (and the value embedding).

Flow (spec §1.5, §2.1-2.3, §2.10, §2.16)::

    e  = tok_emb[ids] + sum(input terms)           BigramHash A/B, TrigramHash
    e  = pre-norm transforms(e)                    SmearGate A or C, then pre-enrichment
    x0 = post-norm transforms(RMSNorm(e))          SmearGate B

plus per-layer inputs computed once from the ids: stream inputs added to the residual stream before a
block (BigramHash B'), value inputs added to a layer's values (value embeddings). The GPT registers each
part under its name (the parameter prefixes: ``bigram``, ``trigram``, ``smear``, ``pre_enrich``,
``ve_shared``) and runs the lists in order without knowing what they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from golf.model.config import ArchConfig, BigramForm
from golf.model.hash_embed import build_bigram, build_trigram
from golf.model.plan import ArchPlan
from golf.model.pre_enrich import PreEnrich
from golf.model.smear_gate import PRE_NORM, build_smear
from golf.model.value_embed import ValueEmbedding


@dataclass
class InputParts:
    modules: dict[str, nn.Module] = field(default_factory=dict)
    # modules of ids whose outputs are added to the token embedding
    terms: list[str] = field(default_factory=list)
    # stream transforms before / after the input RMSNorm
    pre_norm: list[str] = field(default_factory=list)
    post_norm: list[str] = field(default_factory=list)
    # per-layer inputs: ``forward(ids)`` once, then ``at_layer(base, i)`` for each i in ``.layers``
    stream_inputs: list[str] = field(default_factory=list)
    value_inputs: list[str] = field(default_factory=list)

    def add(self, name: str, module: nn.Module, where: list[str]) -> None:
        self.modules[name] = module
        where.append(name)


def build_input_parts(cfg: ArchConfig, plan: ArchPlan) -> InputParts:
    parts, ic = InputParts(), cfg.input
    if ic.bigram is not None:
        per_layer = ic.bigram.form is BigramForm.xor_per_layer
        parts.add("bigram", build_bigram(ic.bigram, cfg), parts.stream_inputs if per_layer else parts.terms)
    if ic.trigram is not None:
        parts.add("trigram", build_trigram(ic.trigram, cfg), parts.terms)
    if ic.smear is not None:
        smear = build_smear(ic.smear, cfg.model_dim)
        parts.add("smear", smear, parts.pre_norm if smear.placement == PRE_NORM else parts.post_norm)
    if ic.pre_enrich is not None:
        parts.add("pre_enrich", PreEnrich(cfg.model_dim, ic.pre_enrich.hidden), parts.pre_norm)
    ve = cfg.attention.value_embed
    if ve is not None:
        kv_dim = cfg.num_kv_heads * (cfg.model_dim // cfg.num_heads)
        parts.add("ve_shared", ValueEmbedding(ve, cfg.vocab_size, kv_dim, plan.value_embed_layers),
                  parts.value_inputs)
    return parts
