"""Painting interaction sets into a pixel heatmap, and colouring maps for display."""
from __future__ import annotations

import numpy as np

COMBINES = ("sum", "max")
PAINTS = ("pixels", "mask")


def set_pixel_mask(members, shape, features: str = "pixel") -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels touched by a set's ``members``."""
    _, h, w = shape
    m = np.zeros(h * w, bool)
    idx = np.asarray(members, dtype=np.int64)
    m[idx % (h * w) if features == "channel" else idx] = True
    return m.reshape(h, w)


def paint(regions, values, shape_hw, combine: str = "sum") -> np.ndarray:
    """Paint boolean ``regions`` (each ``(H, W)``) with ``values`` into one ``(H, W)`` map.

    ``combine="sum"`` adds overlapping values (the authors' choice); ``"max"`` keeps the
    value of largest magnitude.
    """
    if combine not in COMBINES:
        raise ValueError(f"unknown combine {combine!r}; use 'sum' or 'max'")
    out = np.zeros(shape_hw, dtype=np.float64)
    for reg, v in zip(regions, values):
        reg = np.asarray(reg, bool)
        if combine == "sum":
            out[reg] += v
        else:
            cur = out[reg]
            out[reg] = np.where(np.abs(v) > np.abs(cur), v, cur)
    return out


def colorize(values: np.ndarray, cmap: str = "bwr", symmetric: bool = True, vmax=None) -> np.ndarray:
    """Map an ``(H, W)`` array to ``(H, W, 4)`` uint8 RGBA with a matplotlib colormap."""
    import matplotlib

    v = np.asarray(values, dtype=np.float64)
    if vmax is None:
        vmax = float(np.nanmax(np.abs(v))) if v.size else 1.0
    vmax = vmax or 1.0
    if symmetric:
        t = (v / vmax + 1.0) / 2.0
    else:
        vmin = float(np.nanmin(v))
        t = (v - vmin) / (float(np.nanmax(v)) - vmin or 1.0)
    rgba = matplotlib.colormaps[cmap](np.clip(t, 0, 1))
    return (rgba * 255 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.6, cmap: str = "inferno") -> np.ndarray:
    """Blend a non-negative ``(H, W)`` heatmap over an ``(H, W, 3)`` [0,1] image -> uint8 RGB.

    Where the map is zero the photo shows through, dimmed.
    """
    h = np.abs(np.asarray(heat, dtype=np.float64))
    m = h.max()
    t = h / m if m > 0 else h
    col = colorize(t, cmap, symmetric=False, vmax=1.0)[..., :3] / 255.0 if m > 0 else np.zeros(image.shape)
    a = (alpha * (t > 0))[..., None] * (0.35 + 0.65 * t[..., None])
    base = 0.55 * np.asarray(image, dtype=np.float64)
    out = base * (1 - a) + col * a
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
