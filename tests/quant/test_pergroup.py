"""The per-group container (spec frontier-1855 §5.7): the similarity sort by hand, a bit-exact round trip
for every codec, the strict reader's checks and the decompression cap on lrzip streams."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
import torch

from golf.config.errors import ConfigError
from golf.kernel.artifact import decode_body, quantize_state_dict, serialize
from golf.kernel.pergroup import header_of, load_groups, pack_groups, sort_rows, split_streams
from golf.quant import ArtifactError, load_artifact
from golf.quant.config import (
    GroupCodec,
    LQERConfig,
    PackGroupConfig,
    Packing,
    PerGroupConfig,
    QuantConfig,
    RuleConfig,
    SchemeConfig,
    SchemeKind,
    validate_quant,
)
from golf.quant.routing import pergroup_table
from golf.quant.validate_artifact import FRAME, FRAME_BYTES
from tests.helpers import roles_by_name

LRZIP = shutil.which("lrzip") is not None
needs_lrzip = pytest.mark.skipif(not LRZIP, reason="the lrzip binary is not installed (apt-get install lrzip)")
CODECS = [pytest.param(c, marks=needs_lrzip) if c is GroupCodec.lrzip else c for c in GroupCodec]


def test_similarity_sort_by_hand():
    a = np.array([[0, 0, 0], [5, 5, 5], [1, 0, 0], [4, 5, 5], [1, 1, 0], [0, 0, 1]], dtype=np.int8)
    # from row 0: rows 2 and 5 are both 1 away (tie: the lower index, 2); from 2 = [1,0,0]: 4 is 1 away;
    # from 4 = [1,1,0]: 5 is 3 away (3 is 12, 1 is 13); from 5 = [0,0,1]: 3 is 13 away, 1 is 14; then 1
    order = sort_rows(a)
    assert order.tolist() == [0, 2, 4, 5, 3, 1]
    s = a[order]
    back = np.empty_like(s)
    back[order] = s  # the inverse the loader applies
    assert np.array_equal(back, a)


def _cfg(codec=GroupCodec.lrzip, sort=True, **kw) -> QuantConfig:
    schemes = {"int6": SchemeConfig(bits=6, clip="sdclip", clip_sigmas=12.85, scale_floor="tiny", rounding_scale="fp16"),
               "int8": SchemeConfig(bits=8), "fp16": SchemeConfig(kind=SchemeKind.fp16)}
    groups = [PackGroupConfig("kind=embedding", codec, 9 if codec is not GroupCodec.zstd else 19, sort),
              PackGroupConfig("part=mlp & name~'fc'", codec, 9 if codec is not GroupCodec.zstd else 19, sort),
              PackGroupConfig("part=attn", codec, 6, False),
              PackGroupConfig("family=bigram", codec, 6, sort)]  # selects nothing: an empty stream
    return QuantConfig(schemes=schemes, base_rules=[], passthrough_max_numel=256, compressor="brotli", level=11,
                       rules=[RuleConfig("kind=embedding", "int8"), RuleConfig("*", "int6")],
                       pergroup=PerGroupConfig(groups=groups, lrzip_threads=2), **kw)


def _state(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {"tok_emb.weight": (torch.randn(96, 32, generator=g) * 0.05).bfloat16()}
    for i in range(2):
        p = f"blocks.{i}."
        sd |= {p + "attn.c_q.weight": torch.randn(32, 32, generator=g) * 0.05, p + "attn.c_k.weight": torch.randn(16, 32, generator=g),
               p + "mlp.fc.weight": torch.randn(64, 32, generator=g) * 0.05, p + "mlp.proj.weight": torch.randn(32, 64, generator=g),
               p + "attn_scale": torch.rand(32, generator=g)}
    return sd


def _export(cfg, sd):
    roles = roles_by_name(sd)
    from golf.quant.routing import schemes_table

    st = quantize_state_dict(sd, cfg, schemes_table(sd, cfg, roles))
    body = serialize(st, cfg)
    return body, pack_groups(body, cfg, pergroup_table(sd, cfg, roles))


def test_group_table_by_role():
    sd = _state()
    table = pergroup_table(sd, _cfg(), roles_by_name(sd))
    # mlp.proj is in no group; the small attn_scale is fp16; the fourth group selects nothing
    assert table == {"tok_emb.weight": 0, "blocks.0.attn.c_q.weight": 2, "blocks.0.attn.c_k.weight": 2,
                     "blocks.0.mlp.fc.weight": 1, "blocks.1.attn.c_q.weight": 2, "blocks.1.attn.c_k.weight": 2,
                     "blocks.1.mlp.fc.weight": 1}
    assert list(table) == [n for n in sd if n in table]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("shuffle", [None, 2])
def test_round_trip_is_bit_exact_for_every_codec(codec, shuffle):
    cfg = _cfg(codec, byte_shuffle=shuffle, lqer=LQERConfig(top_n=2, group=16))
    sd = _state()
    body, blob = _export(cfg, sd)
    magic, version, _, comp_len, body_len, _ = FRAME.unpack_from(blob)
    assert (magic, version, comp_len, body_len) == (b"GQNT", 2, len(blob) - FRAME_BYTES, len(body))
    assert len(split_streams(blob)) == 5  # the rest and 4 groups (the last one empty)
    assert split_streams(blob)[4] == b""
    kernel = load_groups(blob, cfg)
    expected = decode_body(body, cfg)
    assert list(kernel) == list(sd) and all(torch.equal(kernel[n], expected[n]) for n in sd)
    strict = load_artifact(blob, sd)
    assert all(torch.equal(strict[n], expected[n]) for n in sd)


@pytest.mark.parametrize("codec", [GroupCodec.brotli, pytest.param(GroupCodec.lrzip, marks=needs_lrzip)])
def test_sorted_groups_store_their_row_orders(codec):
    import brotli

    sd = _state()
    body, sorted_blob = _export(_cfg(codec, sort=True), sd)
    _, plain_blob = _export(_cfg(codec, sort=False), sd)
    assert split_streams(sorted_blob)[1] != split_streams(plain_blob)[1]
    for blob, rows in ((sorted_blob, 96 + 64 + 64), (plain_blob, 0)):
        rest = brotli.decompress(split_streams(blob)[0][FRAME_BYTES:])
        k, pl = struct.unpack_from("<II", rest)
        assert pl == 2 * rows  # uint16 row orders of tok_emb and the two fc
        assert rest[8 + k + pl:] == _cut(body)  # the rest ends with the body less the grouped codes
        assert torch.equal(load_groups(blob, _cfg(codec))["tok_emb.weight"], decode_body(body, _cfg())["tok_emb.weight"])


def _cut(body):
    """The body without the code ranges of tok_emb, the fc and the attention matrices, cut by hand."""
    es, base = header_of(body)
    keep, at = [], 0
    for o, m in sorted(tuple(e["codes"]) for e in es if e["name"] == "tok_emb.weight" or ".fc." in e["name"]
                       or ".attn.c_" in e["name"]):
        keep.append(body[at:base + o])
        at = base + o + m
    return b"".join(keep) + body[at:]


def _patched(blob, stream, data):
    """``blob`` with stream ``stream`` replaced by ``data`` (lengths and frame fixed, checksum kept)."""
    ss = split_streams(blob)
    ss[stream] = data
    sec = struct.pack(f"<I{len(ss)}Q", len(ss), *map(len, ss)) + b"".join(ss)
    f = list(FRAME.unpack_from(blob))
    f[3] = len(sec)
    return FRAME.pack(*f) + sec


@needs_lrzip
def test_lrzip_stream_size_is_checked_before_decompressing_and_capped():
    import subprocess

    sd = _state()
    _, blob = _export(_cfg(sort=False), sd)
    z = bytearray(split_streams(blob)[1])
    z[6:14] = (96 * 32 + 1).to_bytes(8, "little")  # declares one byte more than tok_emb's codes
    with pytest.raises(ArtifactError, match="declares 3073 bytes, its matrices need 3072"):
        load_artifact(_patched(blob, 1, bytes(z)))
    # a stream of 1 MB whose header claims tok_emb's size: at most size + 1 bytes are read, then refused
    big = subprocess.run(["lrzip", "-q", "-z", "-L", "1"], input=bytes(1 << 20), capture_output=True, check=True).stdout
    big = big[:6] + (96 * 32).to_bytes(8, "little") + big[14:]
    with pytest.raises(ArtifactError, match="exceeds|cannot decode"):
        load_artifact(_patched(blob, 1, big))


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:-1], "truncated or extended"),
    (lambda b: b[:FRAME_BYTES] + struct.pack("<I", 1) + b[FRAME_BYTES + 4:], "declares 1 streams"),
    (lambda b: _patched(b, 2, b"\x00" * 10), "zlib"),
    (lambda b: _patched(b, 3, split_streams(b)[2]), "decodes to more than the 3072 bytes"),
    (lambda b: _patched(b, 4, b"x"), "compressed bytes for 0 bytes"),
])
def test_strict_reader_refuses_damaged_containers(damage, message):
    sd = _state()
    _, blob = _export(_cfg(GroupCodec.zlib), sd)
    load_artifact(blob, sd)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(damage(blob), sd)


def test_strict_reader_refuses_a_permutation_that_is_not_one():
    import brotli

    from golf.kernel.artifact import frame_body

    cfg = _cfg(GroupCodec.zlib)
    sd = _state()
    _, blob = _export(cfg, sd)
    rest = bytearray(brotli.decompress(split_streams(blob)[0][FRAME_BYTES:]))
    k, _ = struct.unpack_from("<II", rest)
    p = 8 + k
    repeated = rest[:p] + rest[p + 2:p + 4] + rest[p + 2:]  # the first two entries equal
    with pytest.raises(ArtifactError, match="not a permutation"):
        load_artifact(_patched(blob, 0, frame_body(bytes(repeated), cfg)), sd)
    swapped = rest[:p] + rest[p + 2:p + 4] + rest[p:p + 2] + rest[p + 4:]  # a permutation, not the stored one
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact(_patched(blob, 0, frame_body(bytes(swapped), cfg)), sd)


def test_pergroup_config_errors():
    with pytest.raises(ConfigError, match="quant.packing"):
        validate_quant(_cfg(packing=Packing.bits))
    cfg = _cfg()
    cfg.pergroup.groups[0].level = 12
    with pytest.raises(ConfigError, match=r"quant.pergroup.groups\[0\].level"):
        validate_quant(cfg)
    cfg = _cfg()
    cfg.pergroup.groups[1].select = "part=nowhere"
    with pytest.raises(ConfigError, match=r"quant.pergroup.groups\[1\].select"):
        validate_quant(cfg)
    with pytest.raises(ConfigError, match="quant.pergroup.groups"):
        validate_quant(_cfg().__class__(pergroup=PerGroupConfig()))
    sd = {"tok_emb.weight": torch.empty(70000, 4, device="meta")}
    with pytest.raises(ConfigError, match=r"groups\[0\].sort"):
        pergroup_table(sd, _cfg(), roles_by_name(sd))


def test_missing_lrzip_is_named_with_its_install_command(monkeypatch):
    from golf.quant.config import check_tools

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match=r"quant.pergroup.groups\[0\].codec.*apt-get install lrzip"):
        check_tools(_cfg())
    check_tools(_cfg(GroupCodec.brotli))  # no lrzip group: nothing to check
