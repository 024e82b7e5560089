"""#1855's export stages on a full-size state dict: seconds per stage, and bytes per group of the per-group
container for brotli, lrzip and lrzip after the similarity sort.

    python bench/bench_pergroup.py                        # #1493's model, quant=pr1855
    python bench/bench_pergroup.py --json out.json --override arch.num_layers=2

Weights are the trained-like random draws of ``bench_export.py`` (Student-t rows with varying scales);
GPTQ is replaced by round to nearest under the same clips (no Hessians exist here). Stages: quantize,
LQER (top-N selection, SVDs, packing), serialize (golf's body), then one compressed body (brotli-11 of
the whole body, the record's ``COMPRESSOR=brotli``; and #1493's byte shuffle + brotli) against the
per-group container. Per group: its transposed codes with brotli-11 and with lrzip, and, sorted, the
sort's seconds, lrzip's bytes and the brotli bytes of its row orders. Then the whole container as
``quant.pergroup`` configures it, written and loaded (the kernel's load and the lab's strict one).
On random rows the sort finds little to exploit; a trained model's rows are what it is for.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import brotli
import numpy as np
import torch
from bench_export import preset_vocabulary, trained_like_state_dict
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from golf.config.store import register_schemas
from golf.kernel.artifact import byte_shuffle, quantize_state_dict, serialize
from golf.kernel.lqer import add_lqer
from golf.kernel.pergroup import group_pack, header_of, load_groups, pack_groups, sort_rows
from golf.model import build_model
from golf.quant import load_artifact
from golf.quant.config import QuantConfig
from golf.quant.routing import pergroup_table, schemes_table

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def timed(f, *a):
    t = time.perf_counter()
    out = f(*a)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="pr1493")
    ap.add_argument("--quant", default="pr1855")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override")
    ap.add_argument("--std", type=float, default=0.3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    register_schemas()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"arch={args.arch}", f"quant={args.quant}", "logger=none",
                                          *preset_vocabulary(args.arch), *args.override])
    q: QuantConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(QuantConfig), cfg.quant))
    q.schemes = {k: replace(s, gptq=None) for k, s in q.schemes.items()}  # round to nearest: no Hessians here
    with torch.device("meta"):
        model = build_model(cfg.arch)
    state = trained_like_state_dict({k: (v.shape, v.dtype) for k, v in model.state_dict().items()}, args.std)
    roles = model.param_roles
    table = schemes_table(state, q, roles)
    groups = pergroup_table(state, q, roles)
    out: dict = {"arch": args.arch, "quant": args.quant, "params": sum(t.numel() for t in state.values()),
                 "lrzip_threads": q.pergroup.lrzip_threads, "seconds": {}, "bytes": {}, "groups": []}
    sec, byt = out["seconds"], out["bytes"]

    st, sec["quantize"] = timed(quantize_state_dict, state, replace(q, lqer=None), table)
    if q.lqer is not None:
        _, sec["lqer"] = timed(add_lqer, state, st, q.lqer)
    body, sec["serialize"] = timed(serialize, st, q)
    byt["body"] = len(body)
    z, sec["brotli_body"] = timed(lambda b: brotli.compress(b, quality=11), body)
    byt["brotli_body"] = len(z)
    z, sec["shuffle_brotli_body"] = timed(lambda b: brotli.compress(byte_shuffle(b, 2), quality=11), body)
    byt["shuffle_brotli_body"] = len(z)
    print(f"{out['params']:,} parameters; body {len(body):,} B; brotli-11 {byt['brotli_body']:,} B "
          f"({sec['brotli_body']:.1f} s); shuffle+brotli {byt['shuffle_brotli_body']:,} B")

    es, base = header_of(body)
    ix = {e["name"]: e for e in es}
    print(f"{'group':<42}{'raw':>11}{'brotli':>11}{'lrzip':>11}{'sort s':>8}{'lrzip+sort':>12}{'orders':>9}{'lrzip s':>9}")
    for g, gc in enumerate(q.pergroup.groups):
        mats = [np.frombuffer(body, np.int8, ix[n]["codes"][1], base + ix[n]["codes"][0]).reshape(ix[n]["shape"])
                for n in groups if groups[n] == g]
        raw = b"".join(a.T.tobytes() for a in mats)
        row = {"select": gc.select, "matrices": len(mats), "raw": len(raw)}
        row["brotli"] = len(brotli.compress(raw, quality=11))
        z, row["lrzip_s"] = timed(group_pack, raw, replace(gc, codec="lrzip"), q.pergroup)
        row["lrzip"] = len(z)
        orders, row["sort_s"] = timed(lambda ms: [sort_rows(a) for a in ms], mats)
        z, row["lrzip_sorted_s"] = timed(group_pack, b"".join(a[o].T.tobytes() for a, o in zip(mats, orders)),
                                         replace(gc, codec="lrzip"), q.pergroup)
        row["lrzip_sorted"] = len(z)
        row["orders_brotli"] = len(brotli.compress(b"".join(o.astype("<u2").tobytes() for o in orders), quality=11))
        out["groups"].append(row)
        print(f"{gc.select[:41]:<42}{row['raw']:>11,}{row['brotli']:>11,}{row['lrzip']:>11,}{row['sort_s']:>8.1f}"
              f"{row['lrzip_sorted']:>12,}{row['orders_brotli']:>9,}{row['lrzip_s']:>9.1f}")

    blob, sec["pack_groups"] = timed(pack_groups, body, q, groups)
    byt["pergroup_container"] = len(blob)
    _, sec["load_groups"] = timed(load_groups, blob, q)
    _, sec["strict_load"] = timed(load_artifact, blob, state)
    print(f"container as configured: {len(blob):,} B; pack {sec['pack_groups']:.1f} s, kernel load "
          f"{sec['load_groups']:.1f} s, strict load {sec['strict_load']:.1f} s")
    print("seconds:", {k: round(v, 2) for k, v in sec.items()})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
