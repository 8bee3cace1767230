"""What an evaluation folder says: per-method means of every metric, mean curves as plots,
and a Markdown table.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..metrics.insertion import KINDS as CURVE_KINDS
from ..plumbing.files import atomic_path
from .store import SCALAR_METRICS


def _mean_std(values) -> dict:
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))],
                   dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def summarize(records: Sequence[dict], methods: Sequence[str], orders: Sequence[str]) -> dict:
    """Mean +- std of every metric and mean curves per method over image ``records``."""
    out = {}
    for name in methods:
        recs = [r["methods"][name] for r in records if name in r.get("methods", {})]
        entry = {k: _mean_std([m.get(k) for m in recs]) for k in SCALAR_METRICS}
        curves = {}
        for order in orders:
            cs = [m[order] for m in recs if order in m]
            if not cs:
                continue
            acc = np.asarray([c["accuracy"] for c in cs])
            prob = np.asarray([c["probability"] for c in cs])
            curves[order] = {"percentages": cs[0]["percentages"],
                             "accuracy_mean": acc.mean(0).tolist(), "accuracy_std": acc.std(0).tolist(),
                             "probability_mean": prob.mean(0).tolist(),
                             "probability_std": prob.std(0).tolist(), "n": len(cs)}
            if all("label_accuracy" in c for c in cs):
                curves[order]["label_accuracy_mean"] = np.asarray(
                    [c["label_accuracy"] for c in cs]).mean(0).tolist()
        for kind in CURVE_KINDS:
            cs = [m[kind] for m in recs if kind in m]
            if cs:
                prob = np.asarray([c["probability"] for c in cs])
                acc = np.asarray([c["accuracy"] for c in cs])
                curves[kind] = {"percentages": cs[0]["fractions"],
                                "probability_mean": prob.mean(0).tolist(),
                                "probability_std": prob.std(0).tolist(),
                                "accuracy_mean": acc.mean(0).tolist(), "accuracy_std": acc.std(0).tolist(),
                                "n": len(cs)}
        entry["curves"] = curves
        out[name] = entry
    return out


def plot_curves(summary: dict, order: str, path: Path, title: str = "") -> Optional[Path]:
    """Mean ROAD curves (accuracy, probability) of every method for one order, as PNG (written
    atomically).
    """
    plt = pyplot()
    methods = [m for m, e in summary.items() if order in e.get("curves", {})]
    if not methods:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in methods:
        c = summary[name]["curves"][order]
        x = 100 * np.asarray(c["percentages"])
        for ax, key in zip(axes, ("accuracy", "probability")):
            mean = np.asarray(c[f"{key}_mean"])
            se = np.asarray(c[f"{key}_std"]) / math.sqrt(max(c["n"], 1))
            ax.plot(x, mean, marker="o", ms=3, label=f"{name} (n={c['n']})")
            ax.fill_between(x, mean - se, mean + se, alpha=0.15)
    axes[0].set_ylabel("accuracy (argmax = original prediction)")
    axes[1].set_ylabel("probability of the original class")
    xlabel = {"insertion": "% pixels inserted into the blurred image (most relevant first)",
              "deletion": "% pixels set to black (most relevant first)"}.get(
        order, f"% pixels removed ({order.upper()}, noisy linear imputation)")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    what = order.capitalize() if order in CURVE_KINDS else f"ROAD {order.upper()}"
    fig.suptitle(title or f"{what}: mean over images (band: +-1 standard error)")
    fig.tight_layout()
    return save_png(fig, path, dpi=120)


def pyplot():
    """``matplotlib.pyplot``, on the Agg backend unless one was chosen already."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path, dpi: int) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (:func:`hsets_widgets.plumbing.files.atomic_path`),
    then close it. Returns ``path``.
    """
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
    return path


def format_table(metrics: dict, keys: Sequence[str] = ("sparsity", "support_fraction", "morf_aopc",
                                                       "lerf_aopc", "insertion_auc", "deletion_auc")) -> str:
    """A Markdown table of mean +- std per method."""
    head = "| method | " + " | ".join(keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for name, e in metrics["methods"].items():
        cells = []
        for k in keys:
            s = e.get(k, {})
            cells.append("-" if s.get("mean") is None else f"{s['mean']:.4f} +- {s['std']:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
