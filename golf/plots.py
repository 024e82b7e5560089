"""The figures of ``golf.report --plots DIR`` (matplotlib, headless Agg backend), one function per figure.

Every figure function takes the report's groups (display label -> runs, in table order), a path and
the legend's title (the config keys the labels are values of), and writes one PNG of a fixed size (``figsize`` x ``DPI``, no tight cropping, so sizes are predictable).
:data:`FIGURES` maps file names to functions; another report module adds its figure there.

* ``loss_curves.png``: train loss and periodic val_bpb against step and against training seconds,
  one colour per group, each seed a thin line.
* ``bpb_vs_bytes.png``: round-trip val_bpb against artifact bytes, one point per run, group means
  marked, the artifact limit (16,000,000 bytes unless the runs say otherwise) drawn.
* ``quant_gap.png``: pre-quant against round-trip val_bpb per group (means as bars, seeds as dots).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

DPI = 100
LIMIT_BYTES = 16_000_000


def _colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def loss_curves(groups: dict[str, list], path: Path, legend_title: str | None = None) -> Path:
    """Train loss and val_bpb against step and against training seconds (2 x 2 panels)."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharey="row")
    panels = [(0, "train", "train_loss", "train loss"), (1, "val", "val_bpb", "val_bpb (periodic)")]
    for (label, runs), colour in zip(groups.items(), _colours(len(groups))):
        for i, run in enumerate(runs):
            curves = run.curves()
            for row, event, key, _ in panels:
                points = [p for p in curves.get(event, []) if p.get(key) is not None]
                if not points:
                    continue
                ys = [p[key] for p in points]
                axes[row][0].plot([p["step"] for p in points], ys, color=colour, lw=0.9, alpha=0.8,
                                  label=label if i == 0 else None)
                if all(p.get("train_time_s") is not None for p in points):
                    axes[row][1].plot([p["train_time_s"] for p in points], ys, color=colour, lw=0.9, alpha=0.8)
    for row, _, _, name in panels:
        axes[row][0].set_ylabel(name)
        axes[row][0].set_xlabel("step")
        axes[row][1].set_xlabel("training seconds")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper right", title=legend_title, title_fontsize=8)
    fig.suptitle("loss curves (one colour per group, one line per seed)")
    fig.tight_layout()
    return _save(fig, path)


def bpb_vs_bytes(groups: dict[str, list], path: Path, legend_title: str | None = None) -> Path:
    """Round-trip val_bpb against artifact bytes: runs as dots, group means as crosses, the limit line."""
    fig, ax = plt.subplots(figsize=(8, 6))
    limits = set()
    for (label, runs), colour in zip(groups.items(), _colours(len(groups))):
        done = [r for r in runs if r.ok and isinstance(r.summary.get("artifact_bytes"), (int, float))]
        if not done:
            continue
        xs = [r.summary["artifact_bytes"] for r in done]
        ys = [r.summary["val_bpb"] for r in done]
        limits.update(r.summary.get("artifact_limit", LIMIT_BYTES) for r in done)
        ax.scatter(xs, ys, color=colour, s=18, alpha=0.7)
        ax.scatter([statistics.fmean(xs)], [statistics.fmean(ys)], color=colour, marker="X", s=120,
                   edgecolors="black", linewidths=0.8, label=f"{label} (n={len(done)})")
    for limit in sorted(limits or {LIMIT_BYTES}):
        ax.axvline(limit, color="red", ls="--", lw=1.2, label=f"limit {limit:,} B")
    ax.set_xlabel("artifact bytes (model + code)")
    ax.set_ylabel("val_bpb (round trip)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=legend_title, title_fontsize=8)
    ax.set_title("score against size (crosses: group means)")
    fig.tight_layout()
    return _save(fig, path)


def quant_gap(groups: dict[str, list], path: Path, legend_title: str | None = None) -> Path:
    """Pre-quant and round-trip val_bpb per group: bars are means over seeds, dots are seeds."""
    fig, ax = plt.subplots(figsize=(8, 5))
    labels = list(groups)
    width = 0.38
    for i, label in enumerate(labels):
        done = [r for r in groups[label] if r.ok]
        for offset, key, colour, name in ((-width / 2, "prequant_val_bpb", "tab:blue", "pre-quant"),
                                          (width / 2, "val_bpb", "tab:orange", "round trip")):
            values = [r.summary[key] for r in done if isinstance(r.summary.get(key), (int, float))]
            if not values:
                continue
            ax.bar(i + offset, statistics.fmean(values), width, color=colour, alpha=0.6,
                   label=name if i == 0 else None)
            ax.scatter([i + offset] * len(values), values, color="black", s=10, zorder=3)
        pre = [r.summary.get("prequant_val_bpb") for r in done]
        if done and all(isinstance(v, (int, float)) for v in pre):
            gap = statistics.fmean([r.summary["val_bpb"] - r.summary["prequant_val_bpb"] for r in done])
            top = max(max(pre), max(r.summary["val_bpb"] for r in done))
            ax.annotate(f"+{gap:.4f}" if gap >= 0 else f"{gap:.4f}", (i, top), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(labels)), [label[:28] for label in labels], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("val_bpb")
    if legend_title:
        ax.set_xlabel(legend_title)
    values = [r.summary[k] for runs in groups.values() for r in runs if r.ok
              for k in ("prequant_val_bpb", "val_bpb") if isinstance(r.summary.get(k), (int, float))]
    if values:  # zoom on the values: gaps are small next to the scores
        lo, hi = min(values), max(values)
        pad = max(hi - lo, 1e-3) * 0.5
        ax.set_ylim(lo - pad, hi + pad)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    ax.set_title("quantization gap (round trip - pre-quant, mean over seeds)")
    fig.tight_layout()
    return _save(fig, path)


FIGURES: dict[str, Callable[..., Path]] = {
    "loss_curves.png": loss_curves,
    "bpb_vs_bytes.png": bpb_vs_bytes,
    "quant_gap.png": quant_gap,
}

FIGURE_SIZES = {"loss_curves.png": (1200, 800), "bpb_vs_bytes.png": (800, 600), "quant_gap.png": (800, 500)}


def write_plots(groups: dict[str, list], out_dir: Path, legend_title: str | None = None) -> list[Path]:
    """Every figure of :data:`FIGURES` into ``out_dir``; returns the files written."""
    return [figure(groups, Path(out_dir) / name, legend_title) for name, figure in FIGURES.items()]
