"""Seeds: the pixel (or channel-pixel) each interaction set grows from.

One seed per segment: the highest-attributed feature inside the segment's region of the
label map. Segments are ranked by their attribution mass (sum of positive attribution,
default) or by their single highest feature (the authors' order: walk all features by
descending attribution and take the first one in a segment not used yet).

Or seeds at the **peaks** of the attribution smoothed over the image (:func:`select_peaks`):
the paper fixes the seed inside a SAM mask but notes that it may be chosen anywhere; peaks
of the smoothed attribution put several seeds where the attribution is dense (a large
object gets several sets) and none on a segment that carries little of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEED_ORDERS = ("mass", "max", "size")
SEEDINGS = ("segments", "peaks")


@dataclass
class Seed:
    """A seed feature and where it came from.

    Attributes
    ----------
    index : int
        Feature index (pixel ``y * W + x``, or channel-pixel ``c * H * W + y * W + x``).
    yx : tuple of int
        Its pixel position.
    segment : int
        Label of the segment it was chosen in (0 for a user-chosen seed outside masks).
    attribution : float
        Attribution of the seed feature (used by the ``seed-fraction`` threshold).
    """

    index: int
    yx: tuple
    segment: int
    attribution: float


def feature_pixels(indices, shape, features: str = "pixel") -> np.ndarray:
    """Flat pixel index ``y * W + x`` of each feature index for an image of ``shape``
    ``(3, H, W)`` (a channel-pixel feature maps to its pixel): the one feature-to-pixel map.
    """
    _, h, w = shape
    idx = np.asarray(indices, dtype=np.int64)
    return idx % (h * w) if features == "channel" else idx


def feature_yx(indices, shape, features: str = "pixel") -> tuple:
    """Row and column arrays of feature ``indices`` (see :func:`feature_pixels`)."""
    pix = feature_pixels(indices, shape, features)
    return pix // shape[2], pix % shape[2]


def feature_to_yx(index: int, shape, features: str = "pixel") -> tuple:
    """Pixel position ``(y, x)`` of one feature index (see :func:`feature_yx`)."""
    y, x = feature_yx([index], shape, features)
    return (int(y[0]), int(x[0]))


def feature_attribution(attribution: np.ndarray, features: str) -> np.ndarray:
    """Flatten a ``(3, H, W)`` attribution to per-feature values (pixel: channels summed)."""
    a = np.asarray(attribution, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"attribution must be (3, H, W), got {a.shape}")
    return a.sum(0).ravel() if features == "pixel" else a.ravel()


def select_seeds(attribution: np.ndarray, labels: np.ndarray, k: int = 5, features: str = "pixel",
                 order: str = "mass", use_abs: bool = False) -> list:
    """Choose up to ``k`` seeds, one per segment of ``labels``.

    Parameters
    ----------
    attribution : ndarray (3, H, W)
        IG or plain-gradient attribution.
    labels : ndarray (H, W) of int
        Label map (0 = uncovered; uncovered pixels never hold a seed).
    k : int
        Number of seeds (fewer if there are fewer segments).
    features : {"pixel", "channel"}
    order : {"mass", "max", "size"}
        How segments are ranked: positive attribution mass, highest single feature (the
        authors' order), or area (largest first).
    use_abs : bool
        Rank features by ``|attribution|`` instead of signed value.
    """
    if order not in SEED_ORDERS:
        raise ValueError(f"unknown seed order {order!r}; use one of {', '.join(SEED_ORDERS)}")
    c, h, w = np.shape(attribution)
    if labels.shape != (h, w):
        raise ValueError(f"label map {labels.shape} does not match attribution {(h, w)}")
    vals = feature_attribution(attribution, features)
    key = np.abs(vals) if use_abs else vals
    pix_label = labels.ravel()
    feat_label = np.tile(pix_label, c) if features == "channel" else pix_label
    segs = [s for s in np.unique(pix_label) if s != 0]
    cands = []
    for s in segs:
        idx = np.flatnonzero(feat_label == s)
        best = idx[np.argmax(key[idx])]
        if order == "mass":
            rank = float(np.clip(key[idx], 0, None).sum())
        elif order == "max":
            rank = float(key[best])
        else:
            rank = float((pix_label == s).sum())
        cands.append((rank, int(s), int(best)))
    cands.sort(key=lambda t: (-t[0], t[1]))
    return [Seed(b, feature_to_yx(b, (c, h, w), features), s, float(vals[b])) for _, s, b in cands[:k]]


def seed_at(y: int, x: int, attribution: np.ndarray, labels: np.ndarray | None = None,
            features: str = "pixel", channel: int | None = None) -> Seed:
    """A user-chosen seed at pixel ``(y, x)`` (for channel features, the strongest channel
    there unless ``channel`` is given).
    """
    c, h, w = np.shape(attribution)
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"seed pixel ({y}, {x}) is outside the {h}x{w} image")
    vals = feature_attribution(attribution, features)
    if features == "pixel":
        idx = y * w + x
    else:
        ch = int(np.argmax(np.asarray(attribution)[:, y, x])) if channel is None else int(channel)
        idx = ch * h * w + y * w + x
    seg = int(labels[y, x]) if labels is not None else 0
    return Seed(int(idx), (int(y), int(x)), seg, float(vals[idx]))


def _peaks(positive: np.ndarray, k, sigma: float, spacing: int) -> list:
    """``(y, x)`` of the highest local maxima of ``positive`` smoothed over ``sigma`` pixels,
    at least ``spacing`` apart, strongest first (at most ``k``).
    """
    from scipy.ndimage import gaussian_filter, maximum_filter

    smooth = gaussian_filter(positive, sigma) if sigma else positive
    peak = (smooth == maximum_filter(smooth, size=2 * int(spacing) + 1, mode="constant")) & (smooth > 0)
    ys, xs = np.nonzero(peak)
    chosen = []
    for i in np.lexsort((xs, ys, -smooth[ys, xs])):  # plateaus: keep the first, drop those within spacing
        y, x = int(ys[i]), int(xs[i])
        if all(max(abs(y - q), abs(x - r)) > spacing for q, r in chosen):
            chosen.append((y, x))
        if k is not None and len(chosen) >= k:
            break
    return chosen


def select_peaks(attribution: np.ndarray, k: int | None = 10, sigma: float = 8.0, spacing: int = 16,
                 labels: np.ndarray | None = None, features: str = "pixel") -> list:
    """Seeds at the ``k`` highest local maxima of the smoothed positive attribution.

    Parameters
    ----------
    attribution : ndarray (3, H, W)
        IG or plain-gradient attribution (summed over channels for the map).
    k : int or None
        Number of seeds (None: every peak).
    sigma : float
        Gaussian smoothing of the pixel map, in pixels.
    spacing : int
        Peaks closer than this (Chebyshev distance, pixels) to a higher one are dropped.
    labels : ndarray (H, W), optional
        Label map: each seed records its segment (0 where uncovered or without a map).
    features : {"pixel", "channel"}
        For channel features the seed is the pixel's strongest channel.

    Each seed is the highest-attributed feature within ``sigma`` pixels of its peak (a
    real attributed pixel, not the centre of a blur). Seeds come strongest peak first; a
    map that is zero or negative everywhere gives no seed.
    """
    a = np.asarray(attribution, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"attribution must be (3, H, W), got {a.shape}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"peak smoothing sigma must be a number >= 0, got {sigma!r}")
    if isinstance(spacing, bool) or not isinstance(spacing, (int, np.integer)) or spacing < 1:
        raise ValueError(f"peak spacing must be a whole number of pixels >= 1, got {spacing!r}")
    c, h, w = a.shape
    chosen = _peaks(np.clip(a.sum(0), 0, None), k, sigma, spacing)
    seeds = []
    r = int(np.ceil(sigma))
    per_pixel = a.sum(0) if features == "pixel" else a.max(0)
    for y, x in chosen:
        y0, y1, x0, x1 = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
        dy, dx = np.unravel_index(int(np.argmax(per_pixel[y0:y1, x0:x1])), (y1 - y0, x1 - x0))
        y, x = y0 + int(dy), x0 + int(dx)
        if features == "pixel":
            idx = y * w + x
            val = float(a[:, y, x].sum())
        else:
            ch = int(np.argmax(a[:, y, x]))
            idx = ch * h * w + y * w + x
            val = float(a[ch, y, x])
        seg = int(labels[y, x]) if labels is not None else 0
        seeds.append(Seed(int(idx), (y, x), seg, val))
    return seeds
