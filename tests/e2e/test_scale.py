"""``scale=cpu`` shrinks any recipe while keeping its structure; every architecture trains through export
and round-trip eval at that scale; the README's commands run as written."""

from __future__ import annotations

import json
import math
import re
import shlex

import pytest

from golf.config.validate import eval_seq_len, load_config
from golf.train import run
from tests.helpers import CONF_DIR, compose_config, demo_data_for, group_options

README = CONF_DIR.parent / "README.md"


def test_scale_cpu_keeps_the_structure_of_a_recipe():
    full = load_config(compose_config(["experiment=pr507", "data=demo"]))
    cpu = load_config(compose_config(["experiment=pr507", "data=demo", "scale=cpu"]))
    assert cpu.arch.num_layers == full.arch.num_layers == 11
    assert cpu.arch.name == full.arch.name and cpu.run_name == full.run_name
    assert (cpu.arch.attention, cpu.arch.input, cpu.arch.skips) == (full.arch.attention, full.arch.input, full.arch.skips)
    assert cpu.optimizer.rules == full.optimizer.rules and cpu.quant == full.quant
    assert cpu.averaging == full.averaging and cpu.eval.kind == full.eval.kind == "sliding"
    assert cpu.arch.model_dim == 128 and cpu.train.batch_tokens == 8192 and cpu.train.seq_len == 256
    assert eval_seq_len(cpu) == 256 and cpu.device == "cpu" and cpu.train.max_wallclock_s is None


def test_demo_is_the_baseline_at_cpu_scale_and_keeps_its_name():
    demo = load_config(compose_config(["experiment=demo"]))
    assert demo.arch.name == "baseline" and demo.arch.num_layers == 4 and demo.data.name == "demo"
    assert demo.run_name.startswith("baseline-int8-")


@pytest.mark.slow
@pytest.mark.parametrize("arch", group_options("arch"))
def test_every_arch_trains_at_cpu_scale_through_export(tmp_path, arch):
    cfg = load_config(compose_config([f"arch={arch}", "scale=cpu", demo_data_for(arch), "logger=none", "train.iterations=3",
                                      "train.val_every=0", "eval.max_tokens=2048"]))
    cfg.run_dir = str(tmp_path)
    summary = run(cfg, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"
    assert math.isfinite(summary["val_bpb"]) and summary["model_bytes"] > 0


def readme_train_commands() -> list[list[str]]:
    """The ``python -m golf.train`` commands of the README's first code block (comments removed)."""
    block = re.search(r"```\n(.*?)```", README.read_text(), re.S).group(1)
    return [shlex.split(line.split("#")[0])[3:] for line in block.splitlines() if "python -m golf.train" in line]


def test_the_readme_shows_a_cpu_command():
    assert ["arch=unet11", "quant=int5mix", "data=demo", "scale=cpu"] in readme_train_commands()


@pytest.mark.parametrize("argv", [a for a in readme_train_commands() if "scale=cpu" not in a and "-m" not in a],
                         ids=" ".join)
def test_readme_full_scale_commands_validate_and_dry_run(argv, tmp_path):
    """Full-scale commands as written, on the demo data (FineWeb may be absent), up to the dry run."""
    cfg = load_config(compose_config([*argv, "data=demo", "dry_run=true"]))
    assert run(cfg, tmp_path / "dry")["model_params"] > 0


@pytest.mark.slow
def test_readme_cpu_command_runs_to_a_score(tmp_path):
    (argv,) = [a for a in readme_train_commands() if "scale=cpu" in a]
    # the command as written, cut to 20 of its 200 steps (11 layers at cpu scale: ~3 s a step on 2 cores)
    cfg = load_config(compose_config([*argv, "logger=none", "train.iterations=20", "train.val_every=0"]))
    cfg.run_dir = str(tmp_path)
    summary = run(cfg, tmp_path)
    assert math.isfinite(summary["val_bpb"]) and summary["steps"] == 20
