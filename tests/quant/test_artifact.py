"""The whole chain: export → bytes → load, for every preset; damaged artifacts are rejected."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from omegaconf import OmegaConf

from golf.kernel.artifact import export_state_dict as kernel_export
from golf.kernel.artifact import load_artifact as kernel_load
from golf.kernel.artifact import serialize
from golf.kernel.lqer import Corrected, add_lqer, lqer_delta
from golf.kernel.pergroup import load_groups, pack_groups
from golf.kernel.quantize import dequantize, prune_tensor, quantize
from golf.quant import ArtifactError, export_state_dict, load_artifact
from golf.quant.config import Packing, QuantConfig, SchemeKind
from golf.quant.routing import pergroup_table, prune_table, route_state_dict, uses_gptq
from golf.quant.validate_artifact import FRAME_BYTES, MAGIC, check_body, unframe
from tests.helpers import compose_config, roles_by_name

from .conftest import PRESETS, load_preset, named_state_dict


def _expected(sd, cfg):
    """Quantize → dequantize of each original tensor, computed stage by stage."""
    original = sd
    if cfg.prune is not None:
        targets = prune_table(sd, cfg, roles_by_name(sd))
        sd = {name: prune_tensor(t, cfg.prune.fraction) if name in targets else t for name, t in sd.items()}
    out, codes = {}, {}
    for name, route in route_state_dict(sd, cfg, roles_by_name(sd)).items():
        t = sd[name]
        if route.scheme is None:
            out[name] = t
        elif route.scheme.kind is SchemeKind.int:
            codes[name] = (route.scheme_name, t.dtype, quantize(t, route.scheme))
            out[name] = dequantize(codes[name][2], t.dtype)
        else:
            out[name] = t.to(torch.float16 if route.scheme.kind is SchemeKind.fp16 else torch.float32).to(t.dtype)
    if cfg.lqer is not None:  # the corrected matrices (tests/quant/test_lqer.py): q·s + (qA·sA)(qB·sB), then the cast
        add_lqer(original, codes, cfg.lqer)
        for name, (_, dt, d) in codes.items():
            if isinstance(d, Corrected):
                out[name] = (dequantize(d.base) + lqer_delta(d.a, d.sa, d.b, d.sb, cfg.lqer.group)).to(dt)
    return out


def identity_hessians(sd, cfg) -> dict[str, torch.Tensor]:
    """H = I for every tensor routed to GPTQ: GPTQ then equals round to nearest (tests/quant/test_gptq.py)."""
    return {name: torch.eye(sd[name].shape[1]) for name, route in route_state_dict(sd, cfg, roles_by_name(sd)).items()
            if uses_gptq(route)}


@pytest.mark.parametrize("preset", PRESETS)
def test_round_trip_equals_quantize_dequantize(preset, state_dict):
    cfg = load_preset(preset)
    blob, report = export_state_dict(state_dict, cfg, roles_by_name(state_dict), identity_hessians(state_dict, cfg))
    assert report.model_bytes == len(blob)
    loaded = load_artifact(blob)
    expected = _expected(state_dict, cfg)
    assert list(loaded) == list(state_dict)
    for name, t in loaded.items():
        assert t.dtype == state_dict[name].dtype and t.shape == state_dict[name].shape, name
        assert torch.equal(t, expected[name]), name
    quantized = [r for r in report.tensors if r.entropy_bits is not None]
    if preset != "none":
        assert quantized, "the small thresholds should make the preset quantize matrices"
    json.dumps(report.to_dict())  # JSON-able


@pytest.mark.parametrize("preset", PRESETS)
def test_the_kernel_loads_what_it_wrote_with_the_recipe_codec(preset, state_dict):
    """The submission's own load (the recipe's codec, checksum only) equals the validating lab load."""
    cfg = load_preset(preset)
    roles = roles_by_name(state_dict)
    table = {n: r.scheme_name for n, r in route_state_dict(state_dict, cfg, roles).items()}
    hessians = identity_hessians(state_dict, cfg)
    blob, stored = kernel_export(state_dict, cfg, table, hessians, set(prune_table(state_dict, cfg, roles)))
    load = kernel_load
    if cfg.pergroup is not None:  # the run's path (golf.kernel.run): the body into the per-group container
        blob, load = pack_groups(serialize(stored, cfg), cfg, pergroup_table(state_dict, cfg, roles)), load_groups
    assert blob == export_state_dict(state_dict, cfg, roles, hessians)[0]
    assert set(stored) == set(state_dict) and all(stored[n][0] == table[n] for n in stored)
    mine, lab = load(blob, cfg), load_artifact(blob)
    assert list(mine) == list(lab) and all(torch.equal(mine[n], lab[n]) for n in lab)
    bad = bytearray(blob)
    bad[30] ^= 1  # inside the stored checksum
    with pytest.raises(ValueError, match="checksum"):
        load(bytes(bad), cfg)


def test_empty_tensors_round_trip():
    """A tensor with no elements (a 1-layer model's skip weights, an empty buffer) is stored and loaded."""
    sd = {"w": torch.zeros(0, 4), "b": torch.randn(3), "ids": torch.zeros(0, dtype=torch.int64)}
    blob, report = export_state_dict(sd, QuantConfig(), roles_by_name(sd, kinds={"w": "matrix", "b": "matrix"}))
    loaded = load_artifact(blob)
    assert {k: (v.shape, v.dtype) for k, v in loaded.items()} == {k: (v.shape, v.dtype) for k, v in sd.items()}
    assert torch.equal(loaded["b"], sd["b"].half().float())
    assert [r.scheme for r in report.tensors] == ["fp16", "fp16", "raw"]


def test_presets_route_as_their_seeds_did(state_dict):
    schemes = {p: {r.name: r.scheme for r in export_state_dict(state_dict, load_preset(p), roles_by_name(state_dict))[1].tensors}
               for p in ("int5mix", "pr295", "pr1573")}
    assert schemes["int5mix"]["blocks.3.mlp.fc.weight"] == "int5_step"
    assert schemes["int5mix"]["bigram.embed.weight"] == "int5_step"
    assert schemes["int5mix"]["blocks.3.attn.c_k.weight"] == "int6_step"
    assert schemes["int5mix"]["tok_emb.weight"] == "fp16"
    assert schemes["pr295"]["blocks.9.attn.c_k.weight"] == "fp16"  # Late-K
    assert schemes["pr295"]["blocks.7.attn.c_k.weight"] == "int6_amax"
    assert schemes["pr295"]["blocks.3.mlp.proj.weight"] == "int5_amax"
    assert schemes["pr295"]["blocks.0.attn_scale"] == "fp16"  # no fp32 control tensors in #295
    assert schemes["pr1573"]["tok_emb.weight"] == "int8"
    assert schemes["pr1573"]["blocks.0.attn.c_v.weight"] == "int5_gptq"


def test_bit_packing_shrinks_the_body(state_dict):
    cfg = load_preset("pr1573")
    packed = export_state_dict(state_dict, cfg, roles_by_name(state_dict))[1]
    cfg.packing = Packing.int8
    containers = export_state_dict(state_dict, cfg, roles_by_name(state_dict))[1]
    row = next(r for r in packed.tensors if r.name == "blocks.0.mlp.fc.weight")
    assert row.code_bytes == (row.bits * 64 * 32 + 7) // 8  # 5 bits per value
    assert packed.body_bytes < containers.body_bytes


def test_load_does_not_need_the_config(state_dict):
    """The artifact is self-describing: the same bytes load without knowing the preset."""
    for preset in ("int8", "pr1573", "pr295"):
        blob, _ = export_state_dict(state_dict, load_preset(preset), roles_by_name(state_dict))
        assert set(load_artifact(blob)) == set(state_dict)


@pytest.fixture(scope="module")
def blob() -> bytes:
    return export_state_dict(named_state_dict(layers=2), load_preset("pr1573"), roles_by_name(named_state_dict(layers=2)))[0]


def test_truncated_artifact_is_rejected(blob):
    for cut in (0, 10, FRAME_BYTES, len(blob) - 1):
        with pytest.raises(ArtifactError, match="truncated"):
            load_artifact(blob[:cut])


def test_extended_artifact_is_rejected(blob):
    with pytest.raises(ArtifactError, match="truncated or extended"):
        load_artifact(blob + b"\x00")


def test_corrupted_body_is_rejected(blob):
    for pos in (FRAME_BYTES + 5, len(blob) // 2, len(blob) - 3):
        bad = bytearray(blob)
        bad[pos] ^= 0x40
        with pytest.raises(ArtifactError):
            load_artifact(bytes(bad))


def test_tampered_checksum_is_rejected(blob):
    bad = bytearray(blob)
    bad[FRAME_BYTES - 1] ^= 1  # last byte of the stored sha256
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(bytes(bad))


def test_wrong_magic_version_and_pickles_are_rejected(blob):
    with pytest.raises(ArtifactError, match="not a golf artifact"):
        load_artifact(b"XXXX" + blob[4:])
    with pytest.raises(ArtifactError, match="version 9"):
        load_artifact(blob[:4] + bytes([9]) + blob[5:])
    with pytest.raises(ArtifactError, match="not a golf artifact"):
        load_artifact(pickle.dumps({"w": torch.zeros(3)}) + bytes(FRAME_BYTES))
    assert blob.startswith(MAGIC)


def _rewrite_header(blob: bytes, edit) -> bytes:
    """A body with an edited header (as a forger with a valid checksum would make it)."""
    body = unframe(blob)
    (n,) = struct.unpack_from("<I", body)
    header = json.loads(body[4:4 + n])
    edit(header)
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + body[4 + n:]


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["tensors"][0].update(shape=[999, 32]), "need"),
    (lambda h: h["tensors"][0].update(codes=[10**9, h["tensors"][0]["codes"][1]]), "past the payload end"),
    (lambda h: h["tensors"][0].update(bits=6), "inconsistent code range"),
    (lambda h: h["tensors"][0].update(dtype="object"), "unsupported dtype"),
    (lambda h: h["tensors"][0].update(enc="pickle"), "unknown encoding"),
    (lambda h: h.update(payload_bytes=h["payload_bytes"] + 1), "payload is"),
    (lambda h: h["tensors"].append(dict(h["tensors"][0])), "appears twice"),
    (lambda h: h.update(version=2), "unsupported"),
])
def test_inconsistent_headers_are_rejected(blob, edit, message):
    with pytest.raises(ArtifactError, match=message):
        check_body(_rewrite_header(blob, edit))


def test_garbage_header_is_rejected():
    with pytest.raises(ArtifactError, match="not valid JSON"):
        check_body(struct.pack("<I", 3) + b"\xff{x")
    with pytest.raises(ArtifactError, match="runs past the body"):
        check_body(struct.pack("<I", 100) + b"{}")


def test_a_composed_dictconfig_exports_like_the_dataclass(state_dict):
    node = OmegaConf.merge(OmegaConf.structured(QuantConfig), compose_config(["quant=pr295"]).quant)
    node.passthrough_max_numel, node.prune.select = 256, "ndim=2 & numel>256"
    assert export_state_dict(state_dict, node, roles_by_name(state_dict))[0] == export_state_dict(state_dict, load_preset("pr295"), roles_by_name(state_dict))[0]
