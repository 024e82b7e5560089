"""Planning ablations from the tests exactly as ``hydra/sweeper=ablation`` does, and the seeds' technique
lists of ``spec/techniques.md`` §3 (§1 for the baseline) in golf's names."""

from omegaconf import OmegaConf

from hydra_plugins.golf_ablation._plan import Planner
from hydra_plugins.golf_ablation.sweeper import check_container, preset_values
from tests.helpers import CONF_DIR, compose_config

# spec wording -> golf's technique label
SPEC_TO_GOLF = {
    "SwiGLU h=1024": "swiglu",
    "LeakyReLU(0.5)²": "leaky_relu2",
    "U-Net skips": "unet_skips",
    "gated U-Net": "unet_skips",
    "plain U-Net": "unet_skips",
    "catalytic": "catalytic",
    "value residual": "value_residual",
    "static per-head gate": "attn_gate",
    "input-dependent gated attention": "attn_gate",
    "XSA": "xsa",
    "partial RoPE 16": "partial_rope",
    "NTK-scaled base": "ntk_rope",
    "LN scale": "ln_scale",
    "SmearGate": "smear_gate",
    "BigramHash": "bigram_hash",
    "TrigramHash": "trigram_hash",
    "Backout": "backout",
    "Ortho init": "ortho_init",
    "Overtone tok_emb init": "overtone_init",
    "phase-transition resid_mix": "phase_resid_mix",
    "pre-enrichment": "pre_enrich",
    "Encoder recurrence": "encoder_recurrence",
    "recycled core": "recycled_core",
    "VE128": "value_embed",
    "momentum warmup": "momentum_warmup",
    "Muon WD 0.04": "muon_wd",
    "AdamW wd": "adam_wd",
    "decoder 2x lr": "lr_mul",
    "grad clip 0.3": "grad_clip",
    "low-bit export": "lowbit_quant",
    "zstd-22": "zstd",
    "LZMA": "lzma",
    "bit-packed": "bit_packing",
    "magnitude pruning": "pruning",
    "STE QAT": "qat",
    "EMA": "ema",
    "SWA": "swa",
    "sliding eval": "sliding_eval",
}

# The technique items of each seed's §3 entry. Left out as settings, not switches: sizes (L, d, heads,
# MLP multiple), learning rates, batch, sequence length, warmdown length, soft-cap 30, q_gain 1.5, tied
# embeddings (every seed and the baseline has them); as implementation, not recipe: FA3/SDPA, parameter
# banks and Parallel Muon, torch.compile modes; as not run: #507's TTT and QAT, #344's VE (VE_DIM=0)
# and LN scale (USE_LN_SCALE=0), #1573's late-QAT flag (no effect). Where §3 leaves a detail to §2 (U-Net
# of #187, ortho init of #1573) the §2 entry names the seed.
SPEC_SEEDS = {
    "baseline": ["U-Net skips", "momentum warmup"],  # §1.5 skips, §1.6 momentum 0.85 -> 0.95 over 500
    "pr507": ["SwiGLU h=1024", "gated U-Net", "catalytic", "value residual", "static per-head gate", "XSA",
              "partial RoPE 16", "LN scale", "SmearGate", "BigramHash", "Backout", "Ortho init",
              "momentum warmup", "Muon WD 0.04", "decoder 2x lr", "grad clip 0.3", "low-bit export",
              "zstd-22", "EMA", "sliding eval"],
    "pr344": ["LeakyReLU(0.5)²", "SmearGate", "BigramHash", "TrigramHash", "value residual",
              "input-dependent gated attention", "XSA", "partial RoPE 16", "plain U-Net", "Ortho init",
              "momentum warmup", "Muon WD 0.04", "grad clip 0.3", "STE QAT", "low-bit export", "zstd-22", "EMA",
              "sliding eval"],
    "pr1573": ["LeakyReLU(0.5)²", "plain U-Net", "recycled core", "value residual",
               "input-dependent gated attention", "XSA", "partial RoPE 16", "NTK-scaled base", "LN scale",
               "SmearGate", "BigramHash", "VE128", "Ortho init", "momentum warmup", "Muon WD 0.04", "AdamW wd",
               "grad clip 0.3", "EMA", "SWA", "low-bit export", "bit-packed", "LZMA", "sliding eval"],
    "pr187": ["BigramHash", "SmearGate", "pre-enrichment", "Encoder recurrence", "XSA", "Overtone tok_emb init",
              "U-Net skips", "momentum warmup", "Muon WD 0.04", "AdamW wd", "EMA", "STE QAT", "low-bit export",
              "LZMA", "sliding eval"],
    "pr295": ["plain U-Net", "BigramHash", "SmearGate", "Backout", "Ortho init", "Overtone tok_emb init",
              "phase-transition resid_mix", "momentum warmup", "Muon WD 0.04", "AdamW wd", "grad clip 0.3",
              "STE QAT", "SWA", "magnitude pruning", "low-bit export", "zstd-22", "sliding eval"],
}


def composed(overrides: list[str]) -> dict:
    """The task config ``python -m golf.train <overrides>`` composes, unresolved, as the sweeper sees it."""
    return OmegaConf.to_container(compose_config(overrides), resolve=False, enum_to_str=True)


def candidates(key: str) -> list:
    return preset_values([CONF_DIR], key)


def planner(overrides: list[str]) -> Planner:
    target = composed(overrides)
    return Planner(target, check_container(target), check_container, candidates)
