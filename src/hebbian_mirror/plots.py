"""Evaluation plots: precision-recall curves and the confusion matrix, as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

RECALL_POINTS = np.linspace(0, 1, 101)


def _save_lines(fig, ax, path: Path, legend: str) -> Path:
    """A line chart's common finish: grid, legend, tight layout, written to ``path`` and closed."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=legend)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def pr_curves(report: dict, path: Path, top: int = 12) -> Path:
    """Precision against recall at IoU 0.5, per class (the ``top`` classes with the most instances)."""
    classes = sorted(report["per_class"].items(), key=lambda kv: -kv[1].get("instances", 0))[:top]
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    for name, row in classes:
        curve = np.array(row.get("pr_curve_iou50") or [])
        if curve.size:
            ax.plot(RECALL_POINTS, np.clip(curve, 0, 1), label=f"{name} (AP50 {row['AP50']:.2f})")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"{report.get('model', '')}: precision-recall at IoU 0.5 (AP50 {report['AP50']:.3f})",
    )
    return _save_lines(fig, ax, path, "lower left")


def confusion_matrix(report: dict, path: Path) -> Path:
    """Rows: true class (and background = false positives); columns: predicted class (and background = misses)."""
    cm = report["at_threshold"]["confusion_matrix"]
    labels, matrix = cm["labels"], np.array(cm["matrix"])
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=110)
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(
        xlabel="predicted",
        ylabel="true",
        title=f"confusion at score ≥ {report['at_threshold']['conf']:g}, IoU ≥ {report['at_threshold']['iou']:g}",
    )
    if len(labels) <= 20:
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(
                    j,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v > matrix.max() / 2 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [pr_curves(report, out / "pr_curve.png"), confusion_matrix(report, out / "confusion_matrix.png")]


def learning_curve(history: list[dict], path: Path) -> Path:
    """Validation AP50 per class (and over all) against the run's minutes so far, one point per epoch."""
    minutes = [h.get("minutes", 0.0) for h in history]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.plot(minutes, [h["AP50"] for h in history], "k-o", label="all classes", linewidth=2)
    for name, last in history[-1].get("per_class", {}).items():
        if last.get("AP50") is None:  # a class with no validation boxes (an extended model's base classes)
            continue
        values = [(h.get("per_class", {}).get(name) or {}).get("AP50") for h in history]
        ax.plot(minutes, [np.nan if v is None else v for v in values], "-o", label=name)
    kept = [h.get("retention_AP50") for h in history]
    if any(v is not None for v in kept):  # the base classes on their own dataset (train --retention-data)
        values = [np.nan if v is None else v for v in kept]
        ax.plot(minutes, values, "--s", color="0.45", label="base classes (retention set)")
    ax.set(xlabel="minutes of training and validation", ylabel="validation AP50", ylim=(0, 1.02), title="AP50 by time")
    ax.set_xlim(left=0)
    return _save_lines(fig, ax, path, "best")


def tradeoff(rows: list[dict], path: Path, chosen: float | None = None) -> Path:
    """Validation AP50 of the new classes (overall and per class) against what the base classes keep, one point
    per interpolation α (``train/interpolate.py``'s sweep)."""
    kept = [r["retention"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.plot(kept, [r["AP50"] for r in rows], "k-o", label="new data, all classes", linewidth=2)
    for name in rows[0]["per_class"]:
        ax.plot(kept, [r["per_class"].get(name, np.nan) for r in rows], "-o", alpha=0.7, label=name)
    for r in rows:
        ax.annotate(f"α {r['alpha']:g}", (r["retention"], r["AP50"]), textcoords="offset points", xytext=(4, 6))
    if chosen is not None:
        pick = next(r for r in rows if r["alpha"] == chosen)
        ax.plot([pick["retention"]], [pick["AP50"]], "r*", markersize=16, label=f"chosen: α {chosen:g}")
    ax.set(xlabel="base classes kept (AP50 × the base model's)", ylabel="validation AP50", ylim=(0, 1.02))
    ax.set_title("Interpolated with the base model: what each α keeps")
    return _save_lines(fig, ax, path, "best")
