"""Export time and artifact bytes of a full-size state dict, per compressor, against the entropy bound.

    python bench/bench_export.py                          # #507's model (arch=unet11), quant=int5mix
    python bench/bench_export.py --quant pr1573 --arch pr1573
    python bench/bench_export.py --arch baseline --quant int6 --override arch.num_layers=2 --compressors zstd:3

The model is built on the ``meta`` device for its parameter names and shapes; its weights are then
drawn at random with trained-like statistics (per-row scales varying ×0.5–1.5 around ``--std``,
Student-t tails with 5 degrees of freedom), because an initialised model (zero projections, ones
scales) compresses unrealistically well. For each compressor the bench times export and load, and
reports the model bytes next to the order-0 entropy reference of the codes (``QuantReport``), the
bytes with the other packing, and the pre-training estimate of :func:`estimate_artifact_bytes`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from golf.config.store import register_schemas
from golf.model import build_model
from golf.quant import estimate_artifact_bytes, export_state_dict, load_artifact
from golf.quant.config import Compressor, Packing, QuantConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def trained_like_state_dict(shapes: dict[str, tuple[torch.Size, torch.dtype]], std: float,
                            seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights: heavy-tailed rows with varying scales; vectors around 1 (like trained gains)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (shape, dtype) in shapes.items():
        if not dtype.is_floating_point:
            out[name] = torch.zeros(shape, dtype=dtype)
        elif len(shape) == 2:
            chi2 = torch.randn((*shape, 5), generator=g).square().sum(-1) / 5  # [rows, cols]
            t = torch.randn(shape, generator=g) / chi2.sqrt() * (3 / 5) ** 0.5  # unit-variance Student-t(5)
            out[name] = (t * std * (0.5 + torch.rand(shape[0], 1, generator=g))).to(dtype)
        else:
            out[name] = (1 + 0.3 * torch.randn(shape, generator=g)).to(dtype)
    return out


def preset_vocabulary(arch: str) -> list[str]:
    """The override that gives a run the vocabulary the arch preset was written for (in a run the model
    follows the data's tokenizer: ``data=fineweb_sp8192`` for pr1493)."""
    return [f"data.vocab_size={compose(config_name=None, overrides=[f'+arch={arch}']).arch.vocab_size}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="unet11")
    ap.add_argument("--quant", default="int5mix")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override")
    ap.add_argument("--std", type=float, default=0.3, help="typical weight std of the random matrices")
    ap.add_argument("--compressors", default="zlib:9,zstd:22,lzma:9", help="comma list of name:level")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    register_schemas()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"arch={args.arch}", f"quant={args.quant}", "logger=none",
                                          *preset_vocabulary(args.arch), *args.override])
    quant: QuantConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(QuantConfig), cfg.quant))
    with torch.device("meta"):
        model = build_model(cfg.arch)
    shapes = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    state = trained_like_state_dict(shapes, args.std)
    n_params = sum(t.numel() for t in state.values())
    print(f"arch={args.arch} quant={args.quant}: {len(state)} tensors, {n_params:,} parameters, std {args.std}")

    t0 = time.perf_counter()
    estimate = estimate_artifact_bytes({k: tuple(s) for k, (s, _) in shapes.items()}, quant,
                                       roles=model.param_roles, weight_std=args.std)
    estimate_s = time.perf_counter() - t0
    estimate_with = f"{quant.compressor.value}-{quant.level}"

    rows = []
    header = (f"{'compressor':<10}{'packing':>8}{'export s':>10}{'load s':>8}{'model bytes':>13}"
              f"{'entropy ref':>13}{'ratio':>7}{'other packing':>15}")
    print(header)
    for spec in args.compressors.split(","):
        name, level = spec.split(":")
        quant.compressor, quant.level = Compressor[name], int(level)
        t0 = time.perf_counter()
        blob, report = export_state_dict(state, quant, model.param_roles)
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_artifact(blob)
        load_s = time.perf_counter() - t0
        packing = quant.packing
        quant.packing = Packing.bits if packing is Packing.int8 else Packing.int8
        other = export_state_dict(state, quant, model.param_roles)[1].model_bytes
        quant.packing = packing
        totals = report.to_dict()["totals"]
        rows.append(dict(totals, export_s=export_s, load_s=load_s, other_packing_bytes=other))
        print(f"{spec:<10}{packing.value:>8}{export_s:>10.1f}{load_s:>8.1f}{report.model_bytes:>13,}"
              f"{totals['entropy_bound_bytes']:>13,}{totals['ratio_to_entropy_bound']:>7.3f}{other:>15,}")
    print(f"estimate_artifact_bytes (Gaussian stand-ins of std {args.std}, {estimate_with}): {estimate:,} "
          f"in {estimate_s:.1f} s")
    print(report.summary())
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "params": n_params,
                                         "estimate": estimate, "estimate_s": estimate_s, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
