"""experiment=pr1855 end to end at CPU scale on the CaseOps demo data: its model and optimizer, then its
export (GPTQ with the #1855 clips, int8 gates, LQER, the per-group container through lrzip), the strictly
read artifact and its round-tripped score. Every matrix above 4,096 elements is quantized so that every
group holds codes at width 128."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import pytest

from golf.config.validate import load_config
from golf.kernel.artifact import frame_body
from golf.kernel.pergroup import pack_groups
from golf.plan import tables
from golf.quant.config import QuantConfig
from golf.quant.export import read_artifact
from golf.quant.validate_artifact import unframe
from golf.train import run
from tests.e2e.test_pr1493 import CPU_SCALE
from tests.helpers import compose_config

pytestmark = pytest.mark.skipif(shutil.which("lrzip") is None, reason="the lrzip binary is not installed")


@pytest.mark.slow
def test_pr1855_export_scores_its_per_group_artifact(tmp_path):
    overrides = [o for o in CPU_SCALE if not o.startswith(("data=", "experiment=", "eval."))]
    # the standard scorer: the phased evaluation has its own end-to-end test (tests/e2e/test_phased_e2e.py)
    cfg = load_config(compose_config(["experiment=pr1855", *overrides, "data=demo_caseops", "eval=standard",
                                      "eval.max_tokens=4096",
                                      "quant.passthrough_max_numel=4096", "quant.calibration.batches=2",
                                      "train.iterations=8", "train.max_wallclock_s=null"]))
    run_dir = tmp_path / "pr1855"
    cfg.run_dir = str(run_dir)
    summary = run(cfg, run_dir)
    assert math.isfinite(summary["val_bpb"])
    on_disk = json.loads((run_dir / "summary.json").read_text())
    # through the loop switch (35% of 8 iterations), on packed rows of the whole batch (one micro-step)
    assert 0 < on_disk["loop_switch_step"] < on_disk["steps"] == 8
    assert on_disk["micro_batch_tokens"] == cfg.train.batch_tokens and cfg.data.packing is not None
    streams = on_disk["model_streams"]
    assert set(streams) == {"rest", *(f"group{i}" for i in range(7))} and all(v > 0 for v in streams.values())
    blob = (run_dir / "model.golf").read_bytes()
    assert blob[4] == 2 and on_disk["model_bytes"] == len(blob) == sum(streams.values()) + 54 + 4 + 8 * 8
    report = json.loads((run_dir / "quant_report.json").read_text())
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows["tok_emb.weight"]["bits"] == 7 and rows["blocks.0.mlp.fc.weight"]["bits"] == 6
    gates = [n for n in rows if n.endswith("attn.attn_gate.weight")]  # the sparse gates: int8 per row
    assert len(gates) == cfg.arch.num_layers and all(rows[n]["bits"] == 8 for n in gates)
    corrected = [n for n, r in rows.items() if r["code_bytes"] > math.prod(r["shape"])]  # LQER factors counted
    assert len(corrected) == 3
    # the same codes in one brotli-11 body (the record's COMPRESSOR=brotli) take more bytes than the groups
    # with lrzip; at this width the sorted groups' row orders (uint16 per row, about 10 kB here) cost more
    # than the sort saves (measured: configured 953,593, unsorted 947,039, one brotli body 953,449 B)
    body = unframe(blob)
    plain = frame_body(body, QuantConfig(compressor="brotli", level=11))
    q = cfg.quant
    unsorted = replace(q, pergroup=replace(q.pergroup, groups=[replace(g, sort=False) for g in q.pergroup.groups]))
    container = pack_groups(body, unsorted, tables(cfg)["pergroup"])
    assert len(container) < len(plain), (len(container), len(plain))
    print(f"per-group container {len(blob):,} B (sorted), {len(container):,} B (unsorted) against one brotli-11 "
          f"body {len(plain):,} B; streams {streams}")
    from golf.model import build_model

    loaded = read_artifact(run_dir / "model.golf", build_model(cfg.arch).state_dict())
    assert set(loaded) == set(build_model(cfg.arch).state_dict())
