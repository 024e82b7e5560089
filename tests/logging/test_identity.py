"""One idea = the configuration without its seed: the hash W&B groups by, and its readable name."""

from __future__ import annotations

from omegaconf import OmegaConf

from golf.config.validate import load_config
from golf.logging.identity import idea_hash, idea_overrides, wandb_identity
from tests.helpers import TINY, compose_config


def config(*extra: str) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(load_config(compose_config([*TINY, *extra]))), resolve=True)


def test_seeds_share_an_idea_and_an_idea_change_does_not():
    base = idea_hash(config("seed=1"))
    assert idea_hash(config("seed=2", "run_dir=/elsewhere", "logger=wandb")) == base
    assert idea_hash(config("seed=1", "arch.model_dim=48")) != base
    assert len(base) == 8


def test_the_hash_survives_the_run_dirs_yaml_round_trip(tmp_path):
    live = config("seed=3")  # enums as objects (what the trainer hands W&B)
    OmegaConf.save(OmegaConf.create(OmegaConf.to_yaml(OmegaConf.structured(load_config(compose_config(
        [*TINY, "seed=3"]))))), tmp_path / "config.yaml")
    recorded = OmegaConf.to_container(OmegaConf.load(tmp_path / "config.yaml"))  # what golf.evaluate reads
    assert idea_hash(recorded) == idea_hash(live)


def test_group_names_show_what_the_sweep_varies():
    c = config("seed=1")
    h = idea_hash(c)
    overrides = ["experiment=demo", "arch.model_dim=32", "seed=1", "logger=wandb", "hydra/launcher=local"]
    assert idea_overrides(overrides) == ["experiment=demo", "arch.model_dim=32"]
    assert wandb_identity(c, overrides, "demo-int8-s1", swept=["arch.model_dim", "seed"]) == (
        f"arch.model_dim=32-{h}", ["experiment=demo", "arch.model_dim=32", f"idea-{h}"])
    assert wandb_identity(c, overrides, "demo-int8-s1")[0] == f"experiment=demo,arch.model_dim=32-{h}"
    assert wandb_identity(c, ["seed=1"], "demo-int8-s1")[0] == f"demo-int8-{h}"
