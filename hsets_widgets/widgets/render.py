"""Pictures of the Explorer's layers as RGBA arrays, shared by the canvases and PNG export.

Every function returns ``(H, W, 4)`` uint8 RGBA at image resolution (or at ``scale`` times
it), so the same pixels are sent to an ipycanvas layer (RGBA is sent losslessly as PNG;
RGB would go as JPEG) and composed with PIL by :func:`compose` for ``save_png``.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from ..hsets.heatmap import colorize, set_pixel_mask
from ..hsets.seeds import feature_yx
from .common import esc, fmt

#: layer colours (RGBA), also used for the canvas strokes and the legend
SET_RGBA = (0, 229, 255, 200)        # members of the current set: cyan
ADDED_RGBA = (255, 140, 0, 235)      # members added by the step being shown: orange
ROW_RGBA = (255, 255, 255, 255)      # the pixel whose row was expanded: white outline
SEED_RGBA = (255, 30, 60, 255)       # the current seed: red ring
PENDING_RGBA = (255, 255, 255, 200)  # a clicked pixel still growing: white ring
AUTO_RGBA = (255, 221, 0, 255)       # automatic seeds: yellow
BOUNDARY_RGBA = (255, 255, 255, 150)  # segment boundaries
PASS_RGBA = (40, 220, 90, 255)       # features that pass the threshold: green
KEPT_EDGE_RGBA = (255, 255, 255, 230)  # outline of each kept set over the heatmap: white
#: fraction of inferno's dark end a non-negative heatmap skips (it vanished on dark photos)
HEAT_FLOOR = 0.35


def css(rgba: Sequence[int]) -> str:
    """``rgba(r, g, b, a)`` CSS colour of an RGBA tuple."""
    r, g, b, a = rgba
    return f"rgba({r}, {g}, {b}, {a / 255:.3f})"


def display_scale(h: int, w: int, target: int = 448) -> int:
    """Integer zoom that brings the longer side close to ``target`` screen pixels."""
    return max(1, int(round(target / max(h, w))))


def upscale(rgba: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour zoom by an integer factor (pixels stay crisp squares)."""
    if scale == 1:
        return rgba
    return np.repeat(np.repeat(rgba, scale, axis=0), scale, axis=1)


def fit(rgba: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour zoom of ``rgba`` so its longer side is ``size`` pixels (any factor,
    up or down): small crops fill their thumbnail instead of a corner of it.
    """
    from PIL import Image

    h, w = rgba.shape[:2]
    f = size / max(h, w)
    out = Image.fromarray(np.ascontiguousarray(rgba)).resize((max(1, round(w * f)), max(1, round(h * f))),
                                                            Image.Resampling.NEAREST)
    return np.asarray(out)


def photo_rgba(image: np.ndarray, dim: float = 1.0, grey: bool = False) -> np.ndarray:
    """The ``(H, W, 3)`` [0, 1] photo as opaque RGBA (optionally dimmed or greyscale)."""
    img = np.asarray(image, dtype=np.float64)
    if grey:
        img = np.repeat((img @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=2)
    rgb = np.clip(img * dim, 0, 1)
    out = np.empty(img.shape[:2] + (4,), np.uint8)
    out[..., :3] = (rgb * 255 + 0.5).astype(np.uint8)
    out[..., 3] = 255
    return out


def boundaries_rgba(labels: np.ndarray, rgba=BOUNDARY_RGBA, scale: int = 1) -> np.ndarray:
    """Segment boundaries of a label map, transparent elsewhere, at ``scale`` times its size
    (boundaries are found after zooming, so lines stay one screen pixel wide).
    """
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    if scale > 1:
        labels = np.repeat(np.repeat(labels, scale, axis=0), scale, axis=1)
    edge = find_boundaries(labels, mode="inner")
    out = np.zeros(labels.shape + (4,), np.uint8)
    out[edge] = rgba
    return out


def heat_rgba(heat: np.ndarray, alpha: float = 0.9, vmax: Optional[float] = None) -> tuple:
    """Colour a heatmap for display: ``(rgba, cmap, vmin, vmax)``.

    Non-negative maps (set values) use ``inferno``; signed maps ``bwr`` centred on zero.
    Zero pixels are transparent; opacity grows with the magnitude.
    """
    heat = np.asarray(heat, dtype=np.float64)
    h, w = heat.shape
    out = np.zeros((h, w, 4), np.uint8)
    mag = np.abs(heat)
    top = float(mag.max()) if heat.size else 0.0
    if top <= 0:
        return out, "inferno", 0.0, 0.0
    vmax = float(vmax or top)
    if heat.min() >= 0:
        cmap, vmin = "inferno", 0.0
        # colorize(symmetric=False) rescales by the data's own range: pin the ends instead;
        # the dark end of inferno is skipped so small values stay visible on a dark photo
        rgba = _fixed_colormap(np.clip(heat / vmax, 0, 1) * (1 - HEAT_FLOOR) + HEAT_FLOOR, cmap)
    else:
        cmap, vmin = "bwr", -vmax
        rgba = colorize(heat, cmap, symmetric=True, vmax=vmax)
    out[..., :3] = rgba[..., :3]
    t = np.clip(mag / vmax, 0, 1)
    # a signed map is white near zero: opaque there it would wash the photo out, so its
    # opacity follows the magnitude alone
    floor = 0.0 if cmap == "bwr" else 0.6
    out[..., 3] = np.where(mag > 0, (255 * alpha * (floor + (1 - floor) * np.sqrt(t))).astype(np.uint8), 0)
    return out, cmap, vmin, vmax


def _fixed_colormap(t: np.ndarray, cmap: str) -> np.ndarray:
    import matplotlib

    rgba = matplotlib.colormaps[cmap](np.clip(t, 0, 1))
    return (rgba * 255 + 0.5).astype(np.uint8)


def signed_rgba(values: np.ndarray, vmax: Optional[float] = None, alpha: float = 0.9) -> tuple:
    """A signed map (a Hessian row) in ``bwr`` with opacity by magnitude: ``(rgba, vmax)``.

    ``vmax`` defaults to the 99.5th percentile of ``|values|`` so one huge entry (the
    diagonal) does not wash the rest out.
    """
    v = np.asarray(values, dtype=np.float64)
    mag = np.abs(v)
    if vmax is None:
        nz = mag[mag > 0]
        vmax = float(np.percentile(nz, 99.5)) if nz.size else 1.0
    vmax = vmax or 1.0
    rgba = colorize(np.clip(v, -vmax, vmax), "bwr", symmetric=True, vmax=vmax)
    t = np.clip(mag / vmax, 0, 1)
    rgba[..., 3] = (255 * alpha * np.sqrt(t)).astype(np.uint8)
    return rgba, vmax


def edge_mask(mask: np.ndarray) -> np.ndarray:
    """The pixels of a boolean ``(H, W)`` mask that touch a pixel outside it (4-neighbours)."""
    m = np.asarray(mask, bool)
    inner = m.copy()
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def kept_edges_rgba(shape, sets, features: str = "pixel") -> np.ndarray:
    """White outlines of the kept ``sets``, ``(H, W, 4)``, drawn over the heatmap so every kept
    set reads on any photo.
    """
    _, h, w = shape
    out = np.zeros((h, w, 4), np.uint8)
    for s in sets:
        out[edge_mask(members_mask(s.members, shape, features))] = KEPT_EDGE_RGBA
    return out


def members_mask(members, shape, features: str = "pixel") -> np.ndarray:
    """``(H, W)`` pixel mask of feature indices (``shape`` is ``(3, H, W)``)."""
    return set_pixel_mask(np.asarray(members, dtype=np.int64), shape, features)


def set_rgba(shape, members, added=(), row: Optional[int] = None, features: str = "pixel",
             outline: bool = False) -> np.ndarray:
    """The current set (cyan; ``outline``: only its edge, so a kept set's heatmap under it
    shows), the pixels the shown step added (orange) and the expanded row's pixel (white),
    transparent elsewhere, ``(H, W, 4)``.
    """
    _, h, w = shape
    out = np.zeros((h, w, 4), np.uint8)
    if len(members):
        m = members_mask(members, shape, features)
        out[edge_mask(m) if outline else m] = SET_RGBA
    if len(added):
        out[members_mask(added, shape, features)] = ADDED_RGBA
    if row is not None:
        y, x = feature_yx([row], shape, features)
        out[y[0], x[0]] = ROW_RGBA
    return out


def seed_radius(scale: int, auto: bool = False) -> float:
    """Ring radius (screen pixels) of a seed marker at a given zoom."""
    return max(4.0, 0.6 * scale) if auto else max(6.0, 0.9 * scale + 2)


def rings(size_hw: tuple, centers: Iterable[tuple], rgba, radius: float, width: int = 2,
          labels: Optional[Sequence[str]] = None) -> np.ndarray:
    """Circles (and optional text labels) on a transparent RGBA array of ``size_hw`` pixels.

    ``centers`` are ``(y, x)`` in the array's own pixel units.
    """
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (size_hw[1], size_hw[0]), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    for k, (cy, cx) in enumerate(centers):
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        d.ellipse([b - 1 if i < 2 else b + 1 for i, b in enumerate(box)], outline=(0, 0, 0, 200),
                  width=width + 2)
        d.ellipse(box, outline=tuple(rgba), width=width)
        if labels is not None:
            d.text((cx + radius + 2, cy - radius - 2), labels[k], fill=tuple(rgba),
                   stroke_width=2, stroke_fill=(0, 0, 0, 255))
    return np.asarray(im)


def compose(layers: Sequence[np.ndarray]) -> np.ndarray:
    """Alpha-composite RGBA layers (first at the bottom) into one opaque RGB image."""
    from PIL import Image

    base = Image.new("RGBA", (layers[0].shape[1], layers[0].shape[0]), (0, 0, 0, 255))
    for layer in layers:
        base = Image.alpha_composite(base, Image.fromarray(np.ascontiguousarray(layer), "RGBA"))
    return np.asarray(base.convert("RGB"))


def compose_rgba(layers: Sequence[np.ndarray]) -> np.ndarray:
    """Alpha-composite RGBA layers (first at the bottom) into one RGBA layer (transparent
    where none of them paints).
    """
    from PIL import Image

    base = Image.new("RGBA", (layers[0].shape[1], layers[0].shape[0]), (0, 0, 0, 0))
    for layer in layers:
        base = Image.alpha_composite(base, Image.fromarray(np.ascontiguousarray(layer), "RGBA"))
    return np.asarray(base)


def colorbar_css(cmap: str, n: int = 8) -> str:
    """A CSS ``linear-gradient`` of a matplotlib colormap as the views use it (for HTML
    legends; ``inferno`` starts at :data:`HEAT_FLOOR`, as :func:`heat_rgba` paints it).
    """
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    lo = HEAT_FLOOR if cmap == "inferno" else 0.0
    stops = ", ".join(css(tuple(int(c * 255 + 0.5) for c in cm(lo + (1 - lo) * i / (n - 1))[:3]) + (255,))
                      for i in range(n))
    return f"linear-gradient(to right, {stops})"


#: how a dense signed map (IG, gradients) is read at a glance: its magnitude, smoothed over a
#: few pixels (single pixels flicker between signs), clipped at this percentile so one extreme
#: pixel does not wash the rest out
MAGNITUDE_SIGMA = 2.0
MAGNITUDE_CLIP = 99.0


def magnitude_map(amap: np.ndarray, sigma: float = MAGNITUDE_SIGMA, clip: float = MAGNITUDE_CLIP) -> tuple:
    """``(t, vmax)``: ``|amap|`` (channels summed first) Gaussian-smoothed by ``sigma`` pixels
    (at 224 px; scaled with the map's side) and divided by its ``clip`` percentile, in [0, 1];
    ``vmax`` is that percentile, in the map's units, for the colour bar.
    """
    from scipy.ndimage import gaussian_filter

    a = np.asarray(amap, np.float64)
    a = np.abs(a.sum(0) if a.ndim == 3 else a)
    s = sigma * max(a.shape) / 224.0
    if s > 0.3:
        a = gaussian_filter(a, s)
    vmax = float(np.percentile(a, clip)) if a.size else 0.0
    if vmax <= 0:
        return np.zeros_like(a), 0.0
    return np.clip(a / vmax, 0, 1), vmax


def magnitude_rgba(t: np.ndarray, alpha: float = 0.9, cmap: str = "inferno") -> np.ndarray:
    """``t`` in [0, 1] as ``cmap`` colours whose opacity grows with ``t`` (weak values let the
    photo show through, so a dense map does not cover it).
    """
    rgba = _fixed_colormap(np.clip(t, 0, 1) * (1 - HEAT_FLOOR) + HEAT_FLOOR, cmap)
    rgba[..., 3] = (255 * alpha * np.clip(t, 0, 1)).astype(np.uint8)
    return rgba


def method_layer(amap: np.ndarray, alpha: float = 0.9) -> tuple:
    """Another method's map as the views draw it: ``(rgba, cmap, vmax, words)``.

    A sparse map (under half the pixels nonzero: H-Sets, Archipelago's top sets) is painted as
    it is. A dense map (IG, gradients, CASO) is shown as people read IG: its magnitude,
    smoothed for display and clipped at its 99th percentile (:func:`magnitude_map`), as
    compare.png shows IG's strength; its raw signed pixels are too scattered to see over a photo.
    ``words`` says which, for the label beside the colour bar.
    """
    a = np.asarray(amap, np.float64)
    a = a.sum(0) if a.ndim == 3 else a
    if (a != 0).mean() < 0.5:
        rgba, cmap, _, vmax = heat_rgba(a, alpha=alpha)
        return rgba, cmap, vmax, "the map as computed" + (" (signed: red raises the class, blue lowers it)"
                                                          if cmap == "bwr" else "")
    t, vmax = magnitude_map(a)
    return (magnitude_rgba(t, alpha), "inferno", vmax,
            f"magnitude |map| (either sign), smoothed over {MAGNITUDE_SIGMA:g} px for display, "
            f"clipped at its {MAGNITUDE_CLIP:g}th percentile")


def colorbar_html(cmap: str, lo: float, hi: float, words: str) -> str:
    """A small colour bar from ``lo`` to ``hi`` with ``words`` saying what it shows."""
    return (f"<div class='hsets-colorbar' style='font-size:12px'>{fmt(lo)} <span style='display:inline-block;"
            f"width:120px;height:10px;background:{colorbar_css(cmap)};vertical-align:middle'></span> "
            f"{fmt(hi)}<br><span style='color:#555'>{esc(words)}</span></div>")
