"""The optimizer set, the schedules, the averager and QAT as a recipe's submission runs them: the kernel
specialised to the recipe (config reads folded into literals, unused variants and methods dropped,
minified) gives bit for bit what the kernel gives under the lab's config, for every seed recipe."""

from __future__ import annotations

import copy
import shutil
from types import SimpleNamespace

import pytest
import python_minifier
import torch

from golf.config.validate import load_config
from golf.model import build_model
from golf.optim.groups import groups_table
from golf.quant.qat import qat_table
from golf.specialise import KERNEL_DIR, Node, plain, specialise
from tests.helpers import compose_config, demo_data_for

# A training loop over the family's kernel API, put beside the kernel's modules so that the generator
# specialises it with them (it names every method a loop calls, so none is dropped).
DRIVER = '''
from typing import TYPE_CHECKING

from golf.kernel.averaging import build_averager
from golf.kernel.optim import build_optimizer, lr_multiplier
from golf.kernel.qat import apply_qat

if TYPE_CHECKING:
    from golf.config.schema import GolfConfig


def family_run(model, cfg: GolfConfig, tables, tokens, clocks, iterations, cap):
    qat = apply_qat(model, cfg.quant, tables["qat"])
    opt = build_optimizer(model, cfg.optimizer, tables["groups"])
    averager = build_averager(cfg.averaging, model)
    averager.start(model)
    model.train()
    out = {"lr": [], "loss": [], "qat": []}
    for step, clock in enumerate(clocks):
        lr_mul = lr_multiplier(cfg.optimizer.schedule, step, clock, iterations, cap)
        qat.update(step, clock, lr_mul, cap)
        loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        opt.step(step, lr_mul)
        opt.zero_grad(set_to_none=True)
        averager.update(model, step + 1, lr_mul)
        out["lr"].append(lr_mul)
        out["loss"].append(loss.item())
        out["qat"].append(qat.active)
    out["export"], out["source"] = averager.final_state_dict(model)
    qat.remove(model)
    out["model"] = model.state_dict()
    return out
'''
TINY_ARCH = ["arch.model_dim=64", "arch.num_heads=4", "arch.num_kv_heads=2", "logger=none"]
CLOCK = [0.0, 5.0, 8.0, 9.5]  # the training clock at each step, cap 10 s: warmdowns, SWA and late QAT act


def script_config(value):
    """A config as the generated script holds it: plain namespaces and strings."""
    if isinstance(value, Node):
        return SimpleNamespace(**{k: script_config(v) for k, v in value.items()})
    if isinstance(value, dict):
        return {k: script_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [script_config(v) for v in value]
    return value


def load(source: str, name: str) -> dict:
    space: dict = {}
    exec(compile(source, name, "exec"), space)
    return space


# pr1493 (MuonEq-R, the fraction warmdown, EMA) and pr295 (SWA, QAT from step 0 with two schemes) in the
# fast tier; the other seeds (wd after the update, late QAT, frozen and doubled-lr groups) in the slow one
SEEDS = ["pr1493", "pr295", *(pytest.param(e, marks=pytest.mark.slow)
                              for e in ("baseline", "pr1573", "pr187", "pr344", "pr507"))]


@pytest.mark.parametrize("experiment", SEEDS)
def test_specialised_family_runs_as_the_kernel(experiment, tmp_path):
    arch = compose_config([f"experiment={experiment}"]).arch.name
    cfg = load_config(compose_config([f"experiment={experiment}", *TINY_ARCH, demo_data_for(arch)]))
    if cfg.averaging.swa is not None:
        cfg.averaging.swa.every = 1  # a snapshot at every step of the warmdown
    if cfg.quant.qat is not None:
        cfg.quant.qat.min_numel = 0
    kernel = tmp_path / "kernel"
    shutil.copytree(KERNEL_DIR, kernel, ignore=shutil.ignore_patterns("__pycache__"))
    (kernel / "zz_driver.py").write_text(DRIVER)
    program = specialise(cfg, {"family_run"}, root=kernel)
    assert ("muon_row_normalize" in program) == cfg.optimizer.muon.row_normalize
    assert ("qat_weight" in program) == (cfg.quant.qat is not None)
    assert ("_foreach_mul_(avg" in program) == (cfg.averaging.ema is not None)
    # minified as the submission is (golf.submission.minify), the entry's name kept to call it here
    script = load(python_minifier.minify(
        program, remove_annotations=True, remove_literal_statements=True, rename_locals=True,
        rename_globals=True, hoist_literals=False, preserve_globals=["family_run"]), f"<{experiment}>")
    lab = load(DRIVER, "<driver>")

    torch.manual_seed(0)
    model = build_model(cfg.arch)
    tables = {"groups": groups_table(model, cfg.optimizer), "qat": qat_table(model, cfg.quant)}
    tokens = torch.randint(0, 1024, (2, 33), generator=torch.Generator().manual_seed(0))
    args = (tables, tokens, CLOCK, 20, 10.0)
    want = lab["family_run"](copy.deepcopy(model), cfg, *args)
    got = script["family_run"](copy.deepcopy(model), script_config(plain(cfg)), *args)
    assert len(set(want["lr"])) > 1  # the schedule moved
    assert (got["lr"], got["loss"], got["qat"], got["source"]) == (want["lr"], want["loss"], want["qat"],
                                                                   want["source"])
    for key in ("export", "model"):
        assert got[key].keys() == want[key].keys()
        for name, t in want[key].items():
            assert torch.equal(got[key][name], t), (key, name)
