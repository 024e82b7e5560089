"""Typed configuration of the export's optional stages from PR #1855 (spec frontier-1855 §5.5, §5.7):
LQER's low-rank correction (``quant.lqer``, :mod:`golf.kernel.lqer`) and the per-group container
(``quant.pergroup``, :mod:`golf.kernel.pergroup`). Both are off (null) unless a preset sets them; their
validation runs from :func:`golf.quant.config.validate_quant`, and :func:`check_tools` refuses a run
whose export needs a program (lrzip) this machine lacks, before it trains.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from golf.config.errors import ConfigError
from golf.rules import check_expression

if TYPE_CHECKING:
    from golf.quant.config import QuantConfig

FACTOR_BITS = (2, 8)  # code widths of LQER's factors


class GroupCodec(str, Enum):
    """The codec of one per-group stream (:class:`PackGroupConfig`): the body's codecs, or lrzip."""

    zlib = "zlib"
    zstd = "zstd"
    lzma = "lzma"
    brotli = "brotli"
    lrzip = "lrzip"  # the Debian ``lrzip`` binary, ZPAQ back end (``-z``, #1855); levels 1..9


GROUP_LEVELS = {GroupCodec.zlib: (0, 9), GroupCodec.zstd: (1, 22), GroupCodec.lzma: (0, 9),
                GroupCodec.brotli: (0, 11), GroupCodec.lrzip: (1, 9)}


@dataclass
class LQERConfig:
    """LQER, a low-rank correction of the quantization error (Zhang et al. 2024, "LQER: Low-Rank Quantization
    Error Reconstruction for LLMs"; PR #1797's asymmetric packing as #1855 runs it, spec frontier-1855 §5.5).

    After quantization, E = W − Ŵ for every matrix stored with integer codes; the ``top_n`` largest by
    ‖E‖_F get E ≈ A·B from a thin SVD (A = U_r·diag(S_r), B = V_rᵀ), stored as integer codes: A with one
    scale for the matrix, B with one scale per group of ``group`` values (B flattened row-major). A code
    range of k bits is [−2^(k−1), 2^(k−1) − 1] and its scale max|x| / (2^(k−1) − 0.5), rounded to fp16.
    Loading adds (qA·sA)(qB·sB) to q·s in fp32, before the cast to the parameter's dtype."""

    top_n: int = 3     # matrices corrected (#1855: 3, over all 67 GPTQ matrices, tok_emb included)
    rank: int = 4      # r (at most min(rows, cols) of each matrix is used)
    a_bits: int = 2    # bits of A's codes (#1855: int2, levels −2..1, scale max|A|/1.5)
    b_bits: int = 4    # bits of B's codes (#1855: int4, levels −8..7, scale max|group|/7.5)
    group: int = 64    # values of B per scale (#1855: 64; the last group of B may be shorter)


@dataclass
class PackGroupConfig:
    """One stream of the per-group container: the integer codes of the matrices ``select`` chooses."""

    select: str = ""                     # role expression (golf.rules) of the matrices in this group
    codec: GroupCodec = GroupCodec.lrzip
    level: int = 9                       # the codec's level (lrzip: -L, 1..9; #1855: 9)
    # reorder each matrix's rows by a greedy L1 nearest-neighbour chain before the transpose (the
    # permutation is stored); #1855 sorts tok_emb, c_q and fc
    sort: bool = False


@dataclass
class PerGroupConfig:
    """The per-group container (PR #1855, spec frontier-1855 §5.7): the int8 codes of the matrices each
    group selects leave the body and are stored as one stream per group — each matrix (rows optionally
    sorted) transposed, the group's matrices concatenated in state-dict order, compressed with the
    group's codec; the rest of the body (header, scales, other tensors) and the row permutations are
    compressed with ``quant.compressor``. A matrix is in the first group that selects it; needs int8
    containers (``packing: int8``)."""

    groups: list[PackGroupConfig] = field(default_factory=list)
    # lrzip's thread count, pinned: lrzip splits its input by threads, so the bytes depend on it
    # (spec frontier-1855 §5.7: 4,889,448 B with -p 1 against 4,889,858 B with -p 2 on one blob)
    lrzip_threads: int = 8


def validate_lqer(c: LQERConfig, prefix: str = "quant.lqer") -> None:
    for key in ("top_n", "rank", "group"):
        if getattr(c, key) < 1:
            raise ConfigError(f"{prefix}.{key}", getattr(c, key), "must be positive")
    for key in ("a_bits", "b_bits"):
        if not FACTOR_BITS[0] <= getattr(c, key) <= FACTOR_BITS[1]:
            raise ConfigError(f"{prefix}.{key}", getattr(c, key), f"must be in [{FACTOR_BITS[0]}, {FACTOR_BITS[1]}]")


def validate_pergroup(p: PerGroupConfig, prefix: str = "quant.pergroup") -> None:
    if len(p.groups) == 0:
        raise ConfigError(f"{prefix}.groups", [], "needs at least one group (or pergroup: null)")
    for i, g in enumerate(p.groups):
        check_expression(g.select, f"{prefix}.groups[{i}].select")
        lo, hi = GROUP_LEVELS[g.codec]
        if not lo <= g.level <= hi:
            raise ConfigError(f"{prefix}.groups[{i}].level", g.level, f"{g.codec.value} takes levels {lo}..{hi}")
    if p.lrzip_threads < 1:
        raise ConfigError(f"{prefix}.lrzip_threads", p.lrzip_threads, "must be positive")


def lrzip_missing(cfg: QuantConfig) -> str | None:
    """The key of the first group that needs the ``lrzip`` binary when it is not on PATH, else None."""
    if cfg.pergroup is None or shutil.which("lrzip") is not None:
        return None
    return next((f"quant.pergroup.groups[{i}].codec" for i, g in enumerate(cfg.pergroup.groups)
                 if g.codec is GroupCodec.lrzip), None)


def check_tools(cfg: QuantConfig) -> None:
    """The programs the export runs exist on this machine: checked before a run trains, not at its export."""
    key = lrzip_missing(cfg)
    if key is not None:
        raise ConfigError(key, "lrzip", "the lrzip binary is not on PATH: apt-get install lrzip (Debian/Ubuntu)")
