"""Rows 30 and 31 of the faults table (launch/README.md): an artifact whose compressed stream declares a huge body is
refused from the declared sizes before anything is inflated (memory stays bounded by the artifact + one
model), and an artifact of another architecture is one ArtifactError naming the first tensor that does
not fit, with both shapes — in ``golf.evaluate`` as one line, no traceback."""

from __future__ import annotations

import resource
import struct
import time
import zlib

import pytest
import torch
import zstandard
from omegaconf import OmegaConf

from golf.config.validate import load_config
from golf.model import build_model
from golf.quant import ArtifactError, export_state_dict, load_artifact
from golf.quant.validate_artifact import FRAME, MAGIC, VERSION, body_bound, body_limit, check_fits, unframe
from tests.faults.lib import golf_cmd, last_line
from tests.faults.test_artifact_faults import zlib_bomb
from tests.helpers import TINY, compose_config

ZLIB, ZSTD = 0, 1


def framed(codec_id: int, stream: bytes, declared: int) -> bytes:
    """A golf frame around ``stream`` that declares a body of ``declared`` bytes (checksum of nothing)."""
    return FRAME.pack(MAGIC, VERSION, codec_id, len(stream), declared, bytes(32)) + stream


def zstd_declaring(size: int, blocks: int = 15) -> bytes:
    """A zstd frame whose header declares ``size`` bytes of content, followed by ``blocks`` RLE blocks
    of 100,000 zero bytes each (single segment, 8-byte content size: 13 + 4·blocks bytes)."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", size)
    rle = [struct.pack("<I", 1 << 1 | 100_000 << 3 | (i == blocks - 1))[:3] + b"\x00" for i in range(blocks)]
    return header + b"".join(rle)


def zstd_frame_of(data: bytes, declared: int) -> bytes:
    """A real zstd frame of ``data`` whose 4-byte content-size field is rewritten to ``declared``."""
    frame = zstandard.ZstdCompressor(level=1).compress(data)
    assert frame[4] >> 6 == 2  # a 4-byte content size right after the header byte (+ window byte)
    at = 6 if not frame[4] & 0x20 else 5
    assert struct.unpack_from("<I", frame, at)[0] == len(data)
    return frame[:at] + struct.pack("<I", declared) + frame[at + 4:]


def refused_fast(blob: bytes, match: str, **kw) -> None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ArtifactError, match=match):
        unframe(blob, **kw)
    assert time.perf_counter() - t0 < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50_000  # kB: nothing was inflated


def test_a_zlib_body_declared_at_one_gib_is_refused_before_inflating():
    bomb = zlib_bomb(1024)  # 1 GiB of zeros in ~1 MB
    refused_fast(framed(ZLIB, bomb, 1 << 30), f"declares a body of {1 << 30} bytes, more than the "
                 f"{64 * len(bomb) + (64 << 20)} bytes that {len(bomb)} compressed bytes")


def test_zstd_frames_declaring_3_gib_or_2_to_the_40_are_refused_before_inflating():
    tiny = zstd_declaring(2**40)
    assert len(tiny) == 73
    refused_fast(framed(ZSTD, tiny, 2**40), f"declares a body of {2**40} bytes")
    three = zstd_frame_of(bytes(1 << 20), 3 << 30)
    refused_fast(framed(ZSTD, three, 3 << 30), f"declares a body of {3 << 30} bytes")
    # the golf frame declaring a plausible size does not help: the zstd frame's own size must agree
    refused_fast(framed(ZSTD, three, 1 << 20), f"the zstd frame declares {3 << 30} bytes, the artifact frame {1 << 20}")
    refused_fast(framed(ZSTD, tiny, 1 << 20), f"the zstd frame declares {2**40} bytes")


def test_the_limit_is_a_multiple_of_the_compressed_size_or_one_model():
    """Memory is bounded by the limit + one model: a model larger than the limit raises it to its own size."""
    with torch.device("meta"):
        model = build_model(load_config(compose_config([*TINY, "arch.model_dim=1024", "arch.num_layers=9"])).arch)
    state = model.state_dict()
    bound = body_bound(state)
    params = sum(t.numel() for t in state.values())
    assert 4 * params < bound < 4 * params + 2048 * len(state)  # fp32 for every tensor, plus header room
    assert body_limit(1000) == 64 * 1000 + (64 << 20) < bound == body_limit(1000, bound)
    assert body_limit(10 << 20, bound) == 64 * (10 << 20) + (64 << 20)
    refused_fast(framed(ZLIB, zlib_bomb(1024), 1 << 30), f"more than the {body_limit(len(zlib_bomb(1024)))} bytes",
                 model_bound=body_bound(build_model(load_config(compose_config(TINY)).arch).state_dict()))


def test_a_real_stream_that_declares_less_than_it_holds_stops_there():
    data = zlib.compress(bytes(10 << 20))
    with pytest.raises(ArtifactError, match="more than the 1000 bytes the frame declares"):
        unframe(framed(ZLIB, data, 1000))


def _tiny_artifact(overrides: list[str], edit=None) -> tuple[bytes, dict]:
    cfg = load_config(compose_config([*TINY, *overrides]))
    torch.manual_seed(0)
    model = build_model(cfg.arch)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if edit is not None:
        state = edit(state)
    return export_state_dict(state, cfg.quant, model.param_roles)[0], model.state_dict()


def test_an_artifact_of_another_width_names_the_first_tensor_and_both_shapes():
    blob, _ = _tiny_artifact(["arch.model_dim=96", "arch.num_heads=2"])
    _, expect = _tiny_artifact([])
    first = next(iter(expect))  # the model's first tensor: skip_weights [1, 32]
    assert list(expect[first].shape) == [1, 32]
    with pytest.raises(ArtifactError) as err:
        load_artifact(blob, expect=expect)
    assert str(err.value) == (f"tensor {first!r} is [1, 96] in the artifact, [1, 32] in the model: "
                              "it was written for another architecture")


def test_an_artifact_lacking_a_tensor_names_it():
    blob, expect = _tiny_artifact([], edit=lambda s: {k: v for k, v in s.items() if k != "blocks.1.mlp.proj.weight"})
    with pytest.raises(ArtifactError, match=r"the artifact has no tensor 'blocks\.1\.mlp\.proj\.weight' \(the model's "
                                            r"is \[\d+, \d+\]\)"):
        load_artifact(blob, expect=expect)
    with pytest.raises(ArtifactError, match=r"the artifact's tensor 'bogus' \[3\] is not in the model"):
        check_fits({"a": [2], "bogus": [3]}, {"a": torch.zeros(2)})


@pytest.mark.slow
def test_golf_evaluate_refuses_a_bomb_and_a_wrong_width_in_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(compose_config(TINY), run / "config.yaml")
    for i, (blob, start) in enumerate([
            (framed(ZSTD, zstd_declaring(2**40), 2**40), f"artifact declares a body of {2**40} bytes"),
            (framed(ZLIB, zlib_bomb(1024), 1 << 30), f"artifact declares a body of {1 << 30} bytes"),
            (_tiny_artifact(["arch.model_dim=96", "arch.num_heads=2"])[0],
             "tensor 'skip_weights' is [1, 96] in the artifact, [1, 32] in the model")]):
        (run / "model.golf").write_bytes(blob)
        out = golf_cmd(f"run={run}", f"hydra.run.dir={run / 'eval' / str(i)}", module="golf.evaluate", cwd=tmp_path)
        assert out.returncode == 1, out.stderr
        line = last_line(out.stderr)
        assert line.startswith(f"golf.evaluate: ArtifactError: {start}"), line
        assert "Traceback" not in out.stderr
