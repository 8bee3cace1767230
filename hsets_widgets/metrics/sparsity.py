"""Sparsity of attribution maps: the Gini index, support size, and Gini at matched support.

The Gini index is the one of Chalasani et al. (2020) exactly as Quantus' ``Sparseness``
metric computes it with its defaults (``abs=True``, ``normalise=True`` with
``normalise_by_max``)::

    a = |a| / max|a|          (per map)
    a = sort(a + 1e-7)        (ascending, float64)
    G = sum_i (2 i - n - 1) a_i / (n sum_i a_i),   i = 1..n

A one-hot map scores ``(n - 1) / n`` (about 1), a constant map exactly 0.

Maps are pixel maps ``(H, W)``. Channel maps ``(3, H, W)`` are first reduced to pixels by
summing the signed values over channels (what Quantus users do when they pass
``attribution.sum(axis=1)`` as the ``(B, 1, H, W)`` map it expects); ``channels="abs_sum"``
sums absolute values instead.

Sparsity mostly follows how many pixels are nonzero (a map whose 2,000 of 50,176 pixels are
nonzero and equal scores about 0.96), so :func:`support_size` and
:func:`gini_at_support` (keep the ``s`` largest pixels of every map, zero the rest) put
methods with very different supports on the same support. That value is still close to
``1 - s / n`` for every map; :func:`gini_within_top` (the Gini of the ``s`` kept values
alone) shows how concentrated each method is inside its top ``s`` pixels.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

from ..methods.protocol import AttributionShapeError
from ..plumbing.common import squeeze_batch, to_numpy

MapLike = Union[np.ndarray, torch.Tensor]

#: Constant Quantus adds to every normalised value before sorting.
QUANTUS_EPS = 1e-7

CHANNEL_REDUCTIONS = ("sum", "abs_sum")


def pixel_map(a: MapLike, channels: str = "sum", shape: tuple | None = None) -> np.ndarray:
    """Reduce an attribution map to a float64 pixel map ``(H, W)``.

    Parameters
    ----------
    a : array or Tensor, shape (H, W), (1, H, W) or (C, H, W)
        The attribution. A leading batch axis of one is dropped.
    channels : {"sum", "abs_sum"}
        How ``(C, H, W)`` maps are reduced: signed sum (default) or sum of absolute values.
    shape : tuple (H, W), optional
        Expected spatial size; raises :class:`AttributionShapeError` if it differs.

    Returns
    -------
    ndarray (H, W), float64
    """
    if channels not in CHANNEL_REDUCTIONS:
        raise ValueError(f"unknown channel reduction {channels!r}; use one of {CHANNEL_REDUCTIONS}")
    arr = to_numpy(a)
    original = arr.shape
    arr = squeeze_batch(arr)
    if arr.ndim == 3:
        arr = arr.sum(0) if channels == "sum" else np.abs(arr).sum(0)
    if arr.ndim != 2:
        raise AttributionShapeError(
            f"attribution map has shape {original}; expected a pixel map (H, W) or a channel "
            f"map (C, H, W)" + (f" with (H, W) = {tuple(shape)}" if shape is not None else ""))
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise AttributionShapeError(
            f"attribution map has shape {original} but the image is {tuple(shape)[0]}x"
            f"{tuple(shape)[1]}; expected (H, W) = {tuple(shape)} or (3, H, W)")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"attribution map contains {bad} NaN or infinite values")
    return arr


def gini(a: MapLike, channels: str = "sum") -> float:
    """Gini index of one attribution map, as Quantus ``Sparseness`` computes it.

    Parameters
    ----------
    a : array or Tensor, shape (H, W) or (C, H, W)
        The attribution (signs are dropped: the absolute value is used).
    channels : {"sum", "abs_sum"}
        Reduction of channel maps, see :func:`pixel_map`.

    Returns
    -------
    float
        In ``[0, 1)``: 0 for a constant map, ``(n - 1) / n`` for a one-hot map. An all-zero
        map counts as constant (0), where Quantus would divide by zero.
    """
    v = np.abs(pixel_map(a, channels)).ravel()
    top = v.max() if v.size else 0.0
    v = v / top if top > 0 else np.zeros_like(v)
    v = np.sort(v + QUANTUS_EPS)
    n = v.size
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2.0 * i - n - 1.0) * v) / (n * np.sum(v)))


def support_size(a: MapLike, rtol: float = 0.0, channels: str = "sum") -> int:
    """Number of pixels whose absolute attribution exceeds ``rtol * max|a|``.

    With the default ``rtol = 0`` this counts the nonzero pixels. Dense methods (gradients,
    IG) have floating-point noise everywhere, so their support is the whole image unless
    ``rtol`` is raised (e.g. ``1e-3``).
    """
    v = np.abs(pixel_map(a, channels))
    top = v.max() if v.size else 0.0
    if top == 0:
        return 0
    return int((v > rtol * top).sum())


def keep_top(a: MapLike, s: int, channels: str = "sum") -> np.ndarray:
    """Pixel map with only its ``s`` largest pixels (by absolute value) kept, the rest zero.

    Ties at the cut are broken by position (stable sort), so exactly ``min(s, n)`` pixels
    are kept. Signs of the kept pixels are preserved.
    """
    m = pixel_map(a, channels)
    flat = m.ravel()
    s = int(max(0, min(s, flat.size)))
    out = np.zeros_like(flat)
    if s:
        idx = np.argsort(-np.abs(flat), kind="stable")[:s]
        out[idx] = flat[idx]
    return out.reshape(m.shape)


def gini_at_support(a: MapLike, s: int, channels: str = "sum") -> float:
    """Gini index of ``a`` after keeping only its ``s`` largest pixels (:func:`keep_top`).

    Comparing methods at the same ``s`` (for example the support of the sparsest method on
    that image) removes the part of the Gini index that only counts nonzero pixels and
    leaves how concentrated each method is within its top ``s`` pixels.
    """
    return gini(keep_top(a, s, channels))


def gini_within_top(a: MapLike, s: int, channels: str = "sum") -> float:
    """Gini index of the ``s`` largest absolute values of ``a`` alone (``n = s``).

    :func:`gini_at_support` of a map is close to ``1 - s / n`` whatever the map, because the
    ``n - s`` zeros dominate it; this variant drops the zeros and measures only how unequal
    the kept values are (0 when they are all equal).
    """
    v = np.abs(pixel_map(a, channels)).ravel()
    s = int(max(1, min(s, v.size)))
    top = np.sort(v)[v.size - s:]
    return gini(top.reshape(1, -1))


def matched_support(maps, rtol: float = 0.0, channels: str = "sum") -> int:
    """The smallest support among ``maps`` (at least 1): the ``s`` to compare them at."""
    sizes = [support_size(m, rtol, channels) for m in maps]
    return max(1, min(sizes)) if sizes else 1
