"""Figures of an explanation as PNG files: the heatmap over the photo, and H-Sets beside IG
(and beside any other method's map).

Both are drawn with matplotlib (no display needed) at a size a person can read: the photo
is upscaled to at least 512 pixels, shown in grey at full brightness so the colours of the
map stand out without hiding it, the map's scale is given by a colour bar, and every seed
is marked with the number of its set. Pixels outside every set are left uncoloured.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..plumbing.files import atomic_path

#: smallest side, in pixels, of each image panel in the written PNGs
MIN_PANEL_PX = 512


def _grey(image: np.ndarray, brightness: float = 0.9) -> np.ndarray:
    g = np.asarray(image, np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(brightness * g, 0, 1)


def _panel(ax, image, values, cmap, label, symmetric=False, seeds=(), clip_percentile=None):
    """Photo in grey, ``values`` on top (transparent where zero), colour bar, seed marks."""
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize, TwoSlopeNorm

    ax.imshow(_grey(image), cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
    v = np.asarray(values, np.float64)
    shown = np.ma.masked_where(v == 0, v)
    finite = np.abs(v[v != 0])
    vmax = float(np.percentile(finite, clip_percentile)) if finite.size and clip_percentile else \
        (float(finite.max()) if finite.size else 1.0)
    vmax = vmax or 1.0
    if symmetric:
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    else:
        lo = float(v[v != 0].min()) if finite.size else 0.0
        norm = Normalize(vmin=min(0.0, lo), vmax=vmax)
    im = ax.imshow(shown, cmap=cmap, norm=norm, alpha=0.75, interpolation="nearest")
    for k, (y, x) in enumerate(seeds):
        ax.plot(x, y, marker="o", ms=9, mfc="none", mec="white", mew=2.0)
        ax.plot(x, y, marker="o", ms=9, mfc="none", mec="black", mew=0.8)
        ax.annotate(str(k + 1), (x, y), xytext=(6, -6), textcoords="offset points", color="white",
                    fontsize=9, fontweight="bold",
                    path_effects=[pe.withStroke(linewidth=2.5, foreground="black")])
    ax.set_axis_off()
    bar = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=9)
    bar.ax.tick_params(labelsize=8)
    return im


def _save(fig, path: Path, dpi: int) -> Path:
    """Write ``fig`` atomically (a temporary file in the same folder, then a rename)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", pad_inches=0.15)
    finally:
        plt.close(fig)
    return path


def _figure(n_panels: int, h: int, w: int, per_row: int = 4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    dpi = 100
    scale = max(1.0, MIN_PANEL_PX / min(h, w))
    panel_in = (w * scale / dpi, h * scale / dpi)
    cols = min(n_panels, per_row)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_in[0] * cols * 1.22, panel_in[1] * 1.12 * rows),
                             squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.97, top=0.92 if rows == 1 else 0.95, bottom=0.02, wspace=0.12,
                        hspace=0.15)
    for ax in axes.ravel()[n_panels:]:
        ax.set_axis_off()
    return fig, axes.ravel()[:n_panels], dpi


def value_label(explanation) -> str:
    """The colour-bar label for the kind of set value the explanation holds."""
    kinds = {s.value_kind for s in explanation.sets}
    if kinds == {"sample-sum"}:
        return "set value (sum of the authors' score over the drawn subsets)"
    return "set value: mean |IDG| over subsets"


def heatmap_figure(explanation, path, title: Optional[str] = None) -> Path:
    """Write the H-Sets heatmap over the photo, with a colour bar and numbered seeds."""
    h, w = explanation.heatmap.shape
    fig, axes, dpi = _figure(1, h, w)
    ax = axes[0]
    _panel(ax, explanation.image, explanation.heatmap, "inferno", value_label(explanation),
           seeds=[s.seed_yx for s in explanation.sets])
    ax.set_title(title or f"H-Sets: {explanation.class_name} (p = {explanation.probability:.2f}), "
                          f"{len(explanation.sets)} sets", fontsize=11)
    return _save(fig, path, dpi)


def compare_figure(explanation, path, ig: Optional[np.ndarray] = None, others: Optional[dict] = None) -> Path:
    """Write the photo, the H-Sets heatmap and Integrated Gradients side by side, then any
    ``others``.

    ``ig`` is the ``(3, H, W)`` or ``(H, W)`` IG map (default: the explanation's seed
    attribution, which is IG unless the settings chose the plain gradient). IG is shown
    signed (red raises the class score, blue lowers it), clipped at its 99th percentile.
    ``others`` maps a method's name to its map (an array) or to what
    :func:`~hsets_widgets.methods.registry.attribute_sets` returned (a map with sets): a
    signed map is drawn like IG, an unsigned one like the H-Sets heatmap, and a method's sets
    are counted in its title. Panels wrap four to a row.
    """
    import matplotlib.pyplot as plt  # noqa: F401 - backend chosen in _figure

    h, w = explanation.heatmap.shape
    a = np.asarray(explanation.ig if ig is None else ig, np.float64)
    a = a.sum(0) if a.ndim == 3 else a
    which = explanation.settings.get("seed_attribution", "ig")
    others = dict(others or {})
    fig, axes, dpi = _figure(3 + len(others), h, w)
    axes[0].imshow(np.clip(explanation.image, 0, 1), interpolation="bilinear")
    axes[0].set_axis_off()
    axes[0].set_title(f"{explanation.class_name} (p = {explanation.probability:.2f})", fontsize=11)
    _panel(axes[1], explanation.image, explanation.heatmap, "inferno", value_label(explanation),
           seeds=[s.seed_yx for s in explanation.sets])
    axes[1].set_title(f"H-Sets ({len(explanation.sets)} sets, "
                      f"{100 * float((explanation.heatmap != 0).mean()):.1f}% of the pixels)", fontsize=11)
    _panel(axes[2], explanation.image, a, "RdBu_r", "IG per pixel (channels summed)", symmetric=True,
           clip_percentile=99)
    axes[2].set_title("Integrated Gradients" if which == "ig" else "input gradient", fontsize=11)
    for ax, (name, made) in zip(axes[3:], others.items()):
        other_panel(ax, explanation.image, name, made)
    return _save(fig, path, dpi)


def other_panel(ax, image: np.ndarray, name: str, made) -> None:
    """One method's map over the photo: signed maps diverging around zero, clipped at their
    99th percentile like IG; unsigned maps like the H-Sets heatmap; sets marked at their seeds.
    """
    m = np.asarray(getattr(made, "map", made), np.float64)
    m = m.sum(0) if m.ndim == 3 else m
    sets = tuple(getattr(made, "sets", ()) or ())
    signed = bool((m < 0).any() and (m > 0).any())
    _panel(ax, image, m, "RdBu_r" if signed else "inferno", f"{name} map" + (" (signed)" if signed else ""),
           symmetric=signed, clip_percentile=99 if signed else None,
           seeds=[s.seed_yx for s in sets if getattr(s, "seed_yx", None) is not None])
    what = f"{len(sets)} set{'s' if len(sets) != 1 else ''}, " if sets else ""
    ax.set_title(f"{name} ({what}{100 * float((m != 0).mean()):.1f}% of the pixels)", fontsize=11)
