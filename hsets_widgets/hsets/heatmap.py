"""Painting interaction sets into a pixel heatmap, and colouring maps for display."""
from __future__ import annotations

import numpy as np

from .seeds import feature_pixels

COMBINES = ("sum", "max")
PAINTS = ("pixels", "mask")
MEMBER_WEIGHTS = ("flat", "banzhaf", "join", "shares")


def set_pixel_mask(members, shape, features: str = "pixel") -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels touched by a set's ``members``."""
    _, h, w = shape
    m = np.zeros(h * w, bool)
    m[feature_pixels(members, shape, features)] = True
    return m.reshape(h, w)


def member_weights(n: int, kind: str = "flat", values=None) -> np.ndarray:
    """Relative weights of a set's ``n`` members (mean 1) for painting.

    ``flat``: every member 1 (the set's value everywhere). ``banzhaf``: members ranked by
    ``values`` (their Banzhaf values in the set's game), weights spread evenly from 0.5
    (weakest) to 1.5 (strongest). ``join``: ranked by the order they joined (the seed and its
    strongest interactions first), from 1.5 down to 0.5. Ranks keep the set's mean at its
    value and make the weights independent of the game's scale. ``shares``: ``values`` are
    the members' shares of the set's value (they add up to it): weight ``n * share / sum``,
    so each member is painted with its own share times ``n``.
    """
    if kind not in MEMBER_WEIGHTS:
        raise ValueError(f"unknown member weights {kind!r}; use one of {', '.join(MEMBER_WEIGHTS)}")
    if kind == "flat" or n <= 1:
        return np.ones(n)
    if kind == "join":
        rank = np.arange(n)[::-1]
    elif kind == "shares":
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(f"shares need one value per member ({n}), got shape {v.shape}")
        total = v.sum()
        return n * v / total if total > 0 else np.ones(n)
    else:
        b = np.asarray(values, dtype=np.float64)
        if b.shape != (n,):
            raise ValueError(f"banzhaf weights need one value per member ({n}), got shape {b.shape}")
        rank = np.empty(n)
        rank[np.lexsort((np.arange(n), b))] = np.arange(n)
    return 0.5 + rank / (n - 1)


def paint(regions, values, shape_hw, combine: str = "sum") -> np.ndarray:
    """Paint ``regions`` with ``values`` into one ``(H, W)`` map.

    Each region is a boolean ``(H, W)`` mask painted with its scalar value, or a pair
    ``(flat_pixel_indices, per_pixel_values)``. ``combine="sum"`` adds overlapping values
    (the authors' choice); ``"max"`` keeps the value of largest magnitude.
    """
    if combine not in COMBINES:
        raise ValueError(f"unknown combine {combine!r}; use 'sum' or 'max'")
    out = np.zeros(shape_hw, dtype=np.float64)
    flat = out.reshape(-1)
    for reg, v in zip(regions, values):
        if isinstance(reg, tuple):
            idx, v = np.asarray(reg[0], np.int64), np.asarray(reg[1], np.float64)
        else:
            idx = np.flatnonzero(np.asarray(reg, bool))
        if combine == "sum":
            np.add.at(flat, idx, v)
        else:
            cur = flat[idx]
            flat[idx] = np.where(np.abs(v) > np.abs(cur), v, cur)
    return out


def paint_sets(sets, shape, labels=None, features: str = "pixel", *, paint_on: str = "pixels",
               mask_limit: float = 1.0, weights: str = "flat", signed: bool = False,
               combine: str = "sum") -> np.ndarray:
    """The ``(H, W)`` heatmap of interaction ``sets`` (each with ``members``, ``value``,
    ``signed_score``, ``segment`` and, for ranked weights, ``banzhaf`` / ``shares``).

    A set is painted on its seed's segment (``labels == segment``) when ``paint_on="mask"`` and
    that segment covers at most ``mask_limit`` of the image, else on its own pixels, with its
    value (times the sign of its IDG when ``signed``) times its members' weights
    (:func:`member_weights`, mean 1). With channel-pixel ``features`` a pixel reached through
    several channels keeps its strongest weight. ``combine`` is that of :func:`paint`.
    """
    if paint_on not in PAINTS:
        raise ValueError(f"unknown paint {paint_on!r}; use one of {', '.join(PAINTS)}")
    if paint_on == "mask" and labels is None:
        raise ValueError("paint='mask' needs the segment labels of the image")
    _, h, w = shape
    regions, values = [], []
    for s in sets:
        value = s.value * (-1.0 if signed and s.signed_score < 0 else 1.0)
        if paint_on == "mask" and s.segment > 0:
            seg = labels == s.segment
            if seg.mean() <= mask_limit:
                regions.append(seg)
                values.append(value)
                continue
        estimates = {"banzhaf": s.banzhaf, "shares": s.shares}.get(weights)
        wts = member_weights(len(s.members), weights, estimates)
        pix = feature_pixels(s.members, shape, features)
        if features == "channel":
            best = np.full(h * w, -np.inf)
            np.maximum.at(best, pix, wts)
            pix = np.flatnonzero(np.isfinite(best))
            wts = best[pix]
        regions.append((pix, value * wts))
        values.append(value)
    return paint(regions, values, (h, w), combine)


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
