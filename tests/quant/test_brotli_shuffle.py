"""Byte shuffle (spec §5.5), the Brotli codec and the bit-exact artifact round trip of quant=pr1493."""

from __future__ import annotations

import pickle
import struct
import zlib

import pytest
import torch

from golf.kernel.artifact import byte_shuffle, byte_unshuffle, frame_body, quantize_state_dict
from golf.kernel.quantize import QuantizedTensor, dequantize
from golf.quant import ArtifactError, export_state_dict, load_artifact
from golf.quant.config import Compressor, QuantConfig
from golf.quant.routing import route_state_dict, uses_gptq
from golf.quant.validate_artifact import FRAME, FRAME_BYTES, MAGIC, SHUFFLED, VERSION, unframe
from tests.helpers import roles_by_name
from tests.quant.conftest import load_preset, named_state_dict


def test_shuffle_layout_matches_the_spec():
    data = bytes(range(7))  # offsets 0..6: evens 0,2,4,6 (⌈7/2⌉ = 4) then odds 1,3,5
    assert byte_shuffle(data, 2) == b"BSHF\x02" + bytes([0, 2, 4, 6]) + bytes([1, 3, 5])
    assert byte_shuffle(bytes(range(6)), 4) == b"BSHF\x04" + bytes([0, 4, 1, 5, 2, 3])


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 1000, 1001])
def test_shuffle_round_trips(stride, n):
    data = torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(n)).to(torch.uint8).numpy().tobytes()
    assert byte_unshuffle(byte_shuffle(data, stride)) == data


def frame(body: bytes, compressor: Compressor, level: int, shuffle: int | None = None) -> bytes:
    return frame_body(body, QuantConfig(compressor=compressor, level=level, byte_shuffle=shuffle))


def test_unframe_refuses_a_shuffled_stream_without_its_header():
    for stream in (b"XXXX\x02abc", b"BSHF\x00abc"):  # no magic; stride 0
        packed = zlib.compress(stream)
        blob = FRAME.pack(MAGIC, VERSION, SHUFFLED, len(packed), len(stream) - 5, bytes(32)) + packed
        with pytest.raises(ArtifactError, match="BSHF"):
            unframe(blob)


def _hessians(sd: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """A random correlated Hessian for every tensor the preset routes to GPTQ."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, route in route_state_dict(sd, cfg, roles_by_name(sd)).items():
        if uses_gptq(route):
            cols = sd[name].shape[1]
            x = torch.randn(256, 4, generator=g) @ torch.randn(4, cols, generator=g) + torch.randn(256, cols, generator=g)
            out[name] = x.T @ x
    return out


def test_pr1493_artifact_round_trips_bit_exactly(monkeypatch):
    cfg = load_preset("pr1493")
    sd = named_state_dict()
    sd["bigram.embed.weight"] = sd["bigram.embed.weight"][:8]  # an embedding table: not calibratable, kept small
    hessians = _hessians(sd, cfg)
    assert "tok_emb.weight" in hessians and "blocks.0.mlp.fc.weight" in hessians
    routes = route_state_dict(sd, cfg, roles_by_name(sd))
    stored = quantize_state_dict(sd, cfg, {n: r.scheme_name for n, r in routes.items()}, hessians)
    assert routes["blocks.0.attn.c_q.weight"].scheme_name == "int6_gptq"
    assert routes["tok_emb.weight"].scheme_name == "int8_emb_gptq"
    assert routes["blocks.0.attn_scale"].scheme_name == "fp16"  # small control tensors: fp16 (spec §5.4)
    expected = {n: dequantize(d, dt) if isinstance(d, QuantizedTensor) else d.to(dt) for n, (_, dt, d) in stored.items()}
    blob, report = export_state_dict(sd, cfg, roles_by_name(sd), hessians)
    assert blob[5] == 3 | SHUFFLED  # brotli, byte-shuffled
    # loading is plain data: no unpickling anywhere
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickling while loading an artifact"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load while loading an artifact"))
    loaded = load_artifact(blob)
    assert loaded.keys() == sd.keys()
    for name, t in expected.items():
        assert loaded[name].dtype == sd[name].dtype and torch.equal(loaded[name], t), name
    totals = report.to_dict()["totals"]
    assert totals["compressor"] == "brotli" and totals["level"] == 11 and totals["byte_shuffle"] == 2
    assert totals["entropy_bound_bytes"] > 0 and "int6_gptq" in report.summary()


def test_export_without_a_needed_hessian_is_refused():
    cfg = load_preset("pr1493")
    sd = named_state_dict()
    with pytest.raises(ValueError, match="no calibration Hessian"):
        export_state_dict(sd, cfg, roles_by_name(sd), {})


def test_corrupted_brotli_body_is_an_artifact_error():
    body = bytes(range(256)) * 64
    blob = frame(body, Compressor.brotli, 11, shuffle=2)
    assert unframe(blob) == body
    broken = bytearray(blob)
    broken[FRAME_BYTES + len(blob[FRAME_BYTES:]) // 2] ^= 0xFF
    with pytest.raises(ArtifactError):
        unframe(bytes(broken))
    # garbage that brotli rejects outright, and a valid stream of the wrong length
    garbage = blob[:FRAME_BYTES] + b"\xff" * (len(blob) - FRAME_BYTES)
    with pytest.raises(ArtifactError, match="brotli"):
        unframe(garbage)
    longer = bytearray(frame(body + b"x", Compressor.brotli, 5))
    longer[14:22] = struct.pack("<Q", len(body))  # the frame's body length field says one byte less
    with pytest.raises(ArtifactError, match="decodes to more"):
        unframe(bytes(longer))


def test_brotli_without_shuffle_round_trips():
    body = b"golf" * 1000
    blob = frame(body, Compressor.brotli, 4)
    assert blob[5] == 3 and unframe(blob) == body
