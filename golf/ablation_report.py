"""The ablation table of a sweep made by ``hydra/sweeper=ablation`` (read by ``python -m golf.report``).

The sweeper writes ``ablation.json`` into the sweep directory: the recipe's techniques and, for every
point, the techniques it switches off, its roles (``full``, ``drop:<label>``, ``path:<k>:<label>``,
``base``) and its run directories. From the runs' ``summary.json``:

* **leave-one-out table**, one row per technique (or group of techniques that are only removable
  together), sorted by effect: Δval_bpb of the recipe without it minus the full recipe, mean ± std over
  seeds (paired by seed: each seed's drop run minus the same seed's full run), the p-value of the
  two-sided paired t-test of those differences (the test of the Δ shown: a seed's shared data order and
  initialisation cancel); where the seeds do not pair up, the difference of means and the unpaired
  two-sided Welch t-test, named in the ``test`` column. Then Δ artifact bytes and Δ ms/step (differences
  of means), and whether the point is over the byte budget (its estimate before running, or an artifact
  that did not fit). A positive Δ means the technique helps.
* **path table** (with ``hydra.sweeper.base``): the base recipe, then one technique added per step, with
  val_bpb and the change from the previous step.
* ``--plots DIR``: ``ablation.png``, a bar per technique with the seed std as error bars.
"""

from __future__ import annotations

import json
import math
import statistics
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "ablation.json"


@dataclass
class Point:
    name: str
    off: list[str]
    roles: list[str]
    runs: list[dict]  # summaries (completed or not), each with "run_dir"
    over_budget: bool = False

    def ok(self) -> list[dict]:
        return [s for s in self.runs if s.get("status") == "completed" and _finite(s.get("val_bpb"))]

    def failed(self) -> list[dict]:
        return [s for s in self.runs if s not in self.ok()]

    def values(self, key: str) -> list[float]:
        return [float(s[key]) for s in self.ok() if _finite(s.get(key))]

    def by_seed(self) -> dict:
        return {s.get("seed"): float(s["val_bpb"]) for s in self.ok()}

    @property
    def over(self) -> bool:
        return self.over_budget or any(s.get("artifact_fits") is False for s in self.runs)


@dataclass
class Row:
    label: str
    n: int
    delta: float
    std: float
    p: float
    d_bytes: float | None
    d_ms: float | None
    over: bool
    failed: int
    val_bpb: float = math.nan
    test: str = ""  # the test behind p: "paired t" (by seed) or "Welch" (unpaired)
    note: str = ""
    extra: dict = field(default_factory=dict)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def _welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p-value; NaN with fewer than 2 runs on a side or no variance at all."""
    if len(a) < 2 or len(b) < 2 or (statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0):
        return math.nan
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _paired_p(differences: list[float]) -> float:
    """Two-sided paired t-test p-value (the differences' mean against 0, n - 1 degrees of freedom); NaN
    with fewer than 2 pairs or differences that do not vary."""
    if len(differences) < 2 or statistics.pvariance(differences) == 0:
        return math.nan
    from scipy import stats

    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def _diff(a: list[float], b: list[float]) -> float | None:
    return _mean(a) - _mean(b) if a and b else None


def load(sweep_dir: Path) -> tuple[dict, list[Point]]:
    """The manifest and its points with their runs' summaries."""
    manifest = json.loads((sweep_dir / MANIFEST).read_text())
    points = []
    for entry in manifest["points"]:
        runs, over = [], False
        for run in entry["runs"]:
            run_dir = sweep_dir / run["run_dir"]
            try:
                summary = json.loads((run_dir / "summary.json").read_text())
            except (OSError, ValueError):
                summary = {"status": "missing"}
            runs.append({**summary, "run_dir": str(run_dir)})
            over = over or bool(run.get("over_budget"))
        points.append(Point(entry["name"], entry["off"], entry["roles"], runs, over))
    return manifest, points


def compare(point: Point, ref: Point, label: str, note: str = "") -> Row:
    """``point`` against ``ref``: Δval_bpb mean ± std and its p (paired by seed, else unpaired Welch),
    Δ bytes, Δ ms/step."""
    a, b = point.by_seed(), ref.by_seed()
    paired = [a[s] - b[s] for s in a if s in b]
    if paired and len(paired) == len(a):
        delta, std = _mean(paired), statistics.stdev(paired) if len(paired) > 1 else math.nan
        p, test = _paired_p(paired), "paired t"
    else:
        delta, std = _mean(list(a.values())) - _mean(list(b.values())), math.nan
        p, test = _welch_p(point.values("val_bpb"), ref.values("val_bpb")), "Welch"
    return Row(label, len(a), delta, std, p, _diff(point.values("artifact_bytes"), ref.values("artifact_bytes")),
               _diff(point.values("ms_per_step"), ref.values("ms_per_step")), point.over, len(point.failed()),
               val_bpb=_mean(point.values("val_bpb")), test=test, note=note)


def leave_one_out(manifest: dict, points: list[Point]) -> tuple[Point | None, list[Row]]:
    """The full recipe and one row per removed technique (group), largest Δval_bpb first."""
    full = next((p for p in points if "full" in p.roles), None)
    if full is None:
        return None, []
    rows = []
    for p in points:
        for role in p.roles:
            if role.startswith("drop:"):
                label = role.split(":", 1)[1]
                rows.append(compare(p, full, label, manifest.get("groups", {}).get(label, "")))
    rows.sort(key=lambda r: -r.delta if _finite(r.delta) else math.inf)
    return full, rows


def path(manifest: dict, points: list[Point]) -> list[Row]:
    """The base recipe, then the target's settings with the base's techniques, then one added per step."""
    steps = sorted(((int(r.split(":")[1]), r.split(":", 2)[2], p) for p in points for r in p.roles
                    if r.startswith("path:")), key=lambda s: s[0])
    base = next((p for p in points if "base" in p.roles), None)
    rows, prev = [], base
    if base is not None:
        rows.append(Row(f"base ({manifest.get('base')})", len(base.ok()), math.nan, math.nan, math.nan, None,
                        None, base.over, len(base.failed()), val_bpb=_mean(base.values("val_bpb"))))
    for k, added, p in steps:
        label = "target's settings, base's techniques" if added == "start" else f"+{added}"
        row = compare(p, prev, f"{k}: {label}") if prev is not None else Row(
            f"{k}: {label}", len(p.ok()), math.nan, math.nan, math.nan, None, None, p.over, len(p.failed()),
            val_bpb=_mean(p.values("val_bpb")))
        rows.append(row)
        prev = p
    return rows


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None or not _finite(x) else format(x, fmt)


def render(rows: list[Row], title: str, first: str) -> str:
    lines = [title, f"| {first} | seeds | val_bpb | Δval_bpb | ± std | p | test | Δ artifact B | Δ ms/step | "
                    "over budget |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fail = f" ({r.failed} failed)" if r.failed else ""
        lines.append(f"| {r.label} | {r.n}{fail} | {_num(r.val_bpb, '.5f')} | {_num(r.delta, '+.5f')} | "
                     f"{_num(r.std, '.5f')} | {_num(r.p, '.3g')} | {r.test or '-'} | {_num(r.d_bytes, '+,.0f')} | "
                     f"{_num(r.d_ms, '+.2f')} | {'yes' if r.over else ''} |")
    return "\n".join(lines)


def plot(rows: list[Row], out: Path, title: str) -> Path:
    """Horizontal bars of Δval_bpb per technique with the seed std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if _finite(r.delta)][::-1]  # largest effect on top
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.5))
    ys = range(len(shown))
    ax.barh(list(ys), [r.delta for r in shown], xerr=[r.std if _finite(r.std) else 0.0 for r in shown],
            color=["tab:blue" if r.delta > 0 else "tab:red" for r in shown],
            hatch=["//" if r.over else "" for r in shown], capsize=3)
    ax.set_yticks(list(ys), [r.label for r in shown])
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("Δ val_bpb when removed (> 0: the technique helps); hatched: over budget")
    ax.set_title(textwrap.shorten(title, 160), fontsize=8, wrap=True)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def ablation_report(sweep_dir: Path, plots: Path | None = None) -> str:
    """The text report of one ablation sweep (and ``ablation.png`` under ``plots``); "" if it is none."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / MANIFEST).exists():
        return ""
    manifest, points = load(sweep_dir)
    target = " ".join(manifest.get("target", []))
    full, rows = leave_one_out(manifest, points)
    parts = [f"ablation of {target or 'the recipe'} ({sweep_dir})"]
    if full is not None:
        bpb = full.values("val_bpb")
        std = f" ± {statistics.stdev(bpb):.5f}" if len(bpb) > 1 else ""
        parts.append(f"full recipe: val_bpb {_num(_mean(bpb), '.5f')}{std} over {len(bpb)} seed(s)"
                     + (f", {len(full.failed())} failed" if full.failed() else ""))
    if rows:
        parts.append(render(rows, "leave-one-out (Δ = without the technique − full recipe):", "technique"))
    for label, why in manifest.get("groups", {}).items():
        parts.append(f"grouped {label}: {why}")
    for why in manifest.get("skipped", {}).values():
        parts.append(f"not ablated: {why}")
    steps = path(manifest, points)
    if steps:
        parts.append(render(steps, f"path from {manifest.get('base')} (Δ = step − previous step):", "step"))
    if plots is not None and rows:
        out = plot(rows, Path(plots) / "ablation.png", f"ablation of {target}")
        parts.append(f"wrote {out}")
    return "\n\n".join(parts)


def ablation_sweeps(roots: list[Path]) -> list[Path]:
    """Sweep directories with an ablation manifest at or below ``roots``."""
    found = []
    for root in roots:
        root = Path(root)
        candidates = [root] if (root / MANIFEST).exists() else sorted(p.parent for p in root.rglob(MANIFEST))
        found += [c for c in candidates if c not in found]
    return found


def report(roots: list[Path], plots: Path | None = None) -> tuple[list[Path], bool]:
    """Print the ablation report of every ablation sweep below ``roots`` (plots of several sweeps go to
    ``plots/<sweep name>/``); returns the sweeps found and whether any of their runs failed."""
    sweeps = ablation_sweeps(roots)
    failed = False
    for sweep in sweeps:
        out = None if plots is None else (Path(plots) if len(sweeps) == 1 else Path(plots) / sweep.name)
        print(ablation_report(sweep, out))
        print()
        failed = failed or any(p.failed() for p in load(sweep)[1])
    return sweeps, failed
