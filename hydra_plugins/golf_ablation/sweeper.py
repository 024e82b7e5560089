"""``hydra/sweeper=ablation``: one command for an ablation table of a recipe.

    python -m golf.train -m hydra/sweeper=ablation experiment=pr507 seed=1,2,3 [hydra/launcher=slurm_8xh100]
    python -m golf.train -m hydra/sweeper=ablation experiment=pr507 seed=1,2 hydra.sweeper.base=baseline

The command line composes the target recipe (its sweep overrides, e.g. ``seed=1,2,3``, are crossed with
every point). The sweeper finds the recipe's techniques in the config schema (:mod:`._techniques`) and
plans (:mod:`._plan`) the full recipe, the recipe with each technique switched off in turn, and with
``hydra.sweeper.base`` the path from the base recipe to the target adding one technique at a time. Before
anything runs, every job is composed, validated and budget-checked with the golf launcher's own checks
(:mod:`hydra_plugins.golf_launcher.checks`); a point whose estimated artifact is over
``quant.limit_bytes`` still runs (with ``quant.over_limit=warn``) and is marked over budget. The jobs go to
the configured launcher (local, Slurm, or any Hydra launcher); the plan is written to ``ablation.json``
in the sweep directory, which ``python -m golf.report <sweep dir>`` reads to print the ablation table.
"""

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.golf_launcher.checks import (
    SweepPoint,
    SweepRefused,
    build_on_meta,
    check_point,
    world_size,
)

from ._plan import Plan, Planner, Point, override

log = logging.getLogger(__name__)

MANIFEST = "ablation.json"  # golf.report recognises an ablation sweep by this file
FORMAT = "golf-ablation/1"
OVER_BUDGET = "quant.over_limit=warn"


def base_overrides(base: str | Sequence[str], target: list[str]) -> list[str]:
    """The base recipe's overrides: the target's, with those the base names replaced. ``base`` is an
    experiment name (``baseline``) or overrides (``"experiment=baseline arch=unet11"`` or a list)."""
    items = [base] if isinstance(base, str) and "=" not in base else base
    items = items.split() if isinstance(items, str) else list(items)
    items = [i if "=" in i else f"experiment={i}" for i in items]
    keys = {i.split("=", 1)[0].lstrip("+~") for i in items}
    return [o for o in target if o.split("=", 1)[0].lstrip("+~") not in keys] + items


class AblationSweeper(Sweeper):
    """Leave-one-out (and base-to-target path) sweeps of the techniques of a composed recipe."""

    def __init__(self, base: Any = None, leave_one_out: bool = True, only: Sequence[str] = (),
                 skip: Sequence[str] = (), order: Sequence[str] = ()) -> None:
        self.base = base
        self.leave_one_out = leave_one_out
        self.only, self.skip, self.order = list(only or []), list(skip or []), list(order or [])
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # -- composing and checking

    def _compose(self, overrides: list[str]) -> dict:
        """The task config the job composes from ``overrides`` (everything but ``hydra``), unresolved."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)

    def _launcher_params(self) -> dict[str, Any]:
        return dict(getattr(self.launcher, "params", None) or {})

    def _check(self, container: dict) -> Any:
        return check_container(container, self._launcher_params())

    def _candidates(self, key: str) -> list[Any]:
        sources = OmegaConf.select(self.config, "hydra.runtime.config_sources", default=[]) or []
        return preset_values([Path(s.path) for s in sources if s.schema == "file"], key)

    # -- the sweep

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.hydra_context is not None and self.launcher is not None
        try:  # a bad plan or point ends the command with one message and status 2, before anything runs
            checked, points, plan, records = self._prepare(arguments)
        except ValueError as err:  # SweepRefused, ConfigError, an unknown technique name
            print(f"golf: {type(err).__name__}: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        write_manifest(sweep_dir, plan, points, records, arguments, self.base)
        if hasattr(self.launcher, "checked"):
            self.launcher.checked = checked
        results = self.launcher.launch([p.overrides for p in checked], initial_job_idx=0)
        for r in results:
            _ = r.return_value  # a failed job raises here, after every job has run
        _print_table(sweep_dir)
        return [results]

    def _prepare(self, arguments: list[str]):
        """Plan the points, cross them with the command line's sweeps and check every job."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        combos = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)[0]
        target = self._compose(combos[0])
        planner = Planner(target, self._check(target), self._check, self._candidates)
        base_combos = [base_overrides(self.base, c) for c in combos] if self.base else None
        base_cfg = self._check(self._compose(base_combos[0])) if base_combos else None
        plan = planner.plan(leave_one_out=self.leave_one_out, only=self.only, skip=self.skip,
                            base_cfg=base_cfg, order=self.order)
        points = list(plan.points)
        if base_combos:
            points.insert(0, Point([], [], roles=["base"], base=True))
        log.info(describe(plan, self.base))
        jobs, owners = [], []
        for point in points:
            for i, combo in enumerate(base_combos if point.base else combos):
                name = override("run_name", f"{point.name}-${{arch.name}}-s${{seed}}")
                jobs.append([*combo, *point.overrides, name])
                owners.append((point, i))
        checked, records = self._check_jobs(jobs, owners)
        return checked, points, plan, records

    def _check_jobs(self, jobs: list[list[str]], owners: list[tuple[Point, int]]):
        """Validate every job; the budget once per recipe (it does not depend on the seed). An estimate
        over the limit gets ``quant.over_limit=warn`` so that the point runs, marked."""
        from golf.quant import BudgetExceededError

        params = self._launcher_params()
        checked, records, problems = [], {}, []
        estimates: dict[int, tuple[int | None, bool]] = {}
        for num, (overrides, (point, i)) in enumerate(zip(jobs, owners)):
            sp = SweepPoint(num, list(overrides))
            first = id(point) not in estimates
            try:
                try:
                    cfg = check_point(self.hydra_context, self.config, sp, params, budget=first)
                except BudgetExceededError:
                    sp = SweepPoint(num, [*overrides, OVER_BUDGET])
                    cfg = check_point(self.hydra_context, self.config, sp, params, budget=first)
                if first:
                    over = sp.estimated_bytes is not None and sp.estimated_bytes > cfg.quant.limit_bytes
                    estimates[id(point)] = (sp.estimated_bytes, over)
                sp.estimated_bytes, over = estimates[id(point)]
                if over and OVER_BUDGET not in sp.overrides:
                    sp.overrides.append(OVER_BUDGET)
            except Exception as err:  # composition, schema, layout: refuse the whole sweep
                problems.append(f"  #{num} {' '.join(overrides)}\n      {type(err).__name__}: {err}")
                continue
            checked.append(sp)
            records.setdefault(id(point), []).append({"num": num, "seed_overrides": i, "run_dir": sp.run_dir,
                                                      "overrides": sp.overrides})
        if problems:
            raise SweepRefused(f"{len(problems)} of {len(jobs)} ablation points were refused; nothing ran:\n"
                               + "\n".join(problems))
        for point in {id(p): p for p, _ in owners}.values():
            est, over = estimates[id(point)]
            for rec in records[id(point)]:
                rec.update(estimated_bytes=est, over_budget=over)
        return checked, records


def check_container(container: dict, launcher_params: dict[str, Any] | None = None) -> Any:
    """Validate a composed task config as its job would and build it on the meta device (routing
    tables checked); returns the :class:`~golf.config.schema.GolfConfig`, raises ConfigError."""
    from golf.config.validate import load_config

    world = world_size(OmegaConf.create(container), launcher_params or {})
    cfg = load_config(container, world_size=world)
    build_on_meta(cfg)
    return cfg


def preset_values(conf_dirs: list[Path], key: str) -> list[Any]:
    """Values of ``key`` in the presets of its config group (``averaging.export`` -> raw, ema, swa)."""
    group, _, rest = key.partition(".")
    values: list[Any] = []
    for conf in conf_dirs:
        for preset in sorted((conf / group).glob("*.yaml")):
            value = OmegaConf.select(OmegaConf.load(preset), rest, default=None)
            if value is not None and not OmegaConf.is_config(value) and value not in values:
                values.append(value)
    return values


def describe(plan: Plan, base: Any) -> str:
    lines = [f"golf ablation: {len(plan.techniques)} techniques: {', '.join(plan.techniques)}"]
    for label, why in plan.groups.items():
        lines.append(f"  grouped {label}: {why}")
    for why in plan.skipped.values():
        lines.append(f"  not ablated: {why}")
    if base is not None:
        lines.append(f"  path from {base} (has {', '.join(plan.base_techniques) or 'none'}): "
                     + " -> ".join(["start", *plan.path]))
    lines.append(f"  {len(plan.points) + (base is not None)} recipes")
    return "\n".join(lines)


def write_manifest(sweep_dir: Path, plan: Plan, points: list[Point], records: dict[int, list[dict]],
                   arguments: list[str], base: Any) -> Path:
    sweep = str(sweep_dir)
    entries = []
    for point in points:
        runs = []
        for rec in records.get(id(point), []):
            run_dir = rec["run_dir"]
            rel = str(Path(run_dir).relative_to(sweep)) if run_dir.startswith(sweep) else run_dir
            runs.append({**rec, "run_dir": rel})
        entries.append({"name": point.name, "off": point.off, "roles": point.roles, "base": point.base,
                        "overrides": point.overrides, "repairs": point.repairs, "runs": runs})
    manifest = {"format": FORMAT, "target": list(arguments), "base": base, "techniques": plan.techniques,
                "groups": plan.groups, "skipped": plan.skipped, "path": plan.path,
                "base_techniques": plan.base_techniques, "points": entries}
    path = sweep_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _print_table(sweep_dir: Path) -> None:
    """The ablation table of the finished sweep (imported only now: it is no part of any run)."""
    from golf.ablation_report import ablation_report

    text = ablation_report(sweep_dir)
    if text:
        log.info("\n" + text)
