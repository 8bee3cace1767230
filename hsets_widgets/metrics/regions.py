"""What one region of the image contributes: its share of each map, and what removing it does.

The Explorer's brush reads a rectangle a user drags over the photo; this module answers for any
boolean region ``(H, W)``: the region's share of each map's positive mass (IG, the H-Sets
heatmap, another method's map), beside its share of the area (what a map spread evenly would
give it), and the model's answer when the region is removed the way ROAD removes pixels (noisy
linear imputation from the pixels around it, one forward pass). A map is faithful to the model
where a region it credits heavily also costs the class much probability when removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import torch

from ..methods.protocol import check_call_order
from ..plumbing.common import single_image, to_numpy
from .road import classify_batches, imputation_rng, noisy_linear_impute
from .sparsity import pixel_map


@dataclass(frozen=True)
class RegionEffect:
    """What a region contributes (see the module docstring).

    Attributes
    ----------
    area : float
        The region's share of the image's pixels.
    shares : dict
        ``{map name: the region's share of that map's positive mass}`` (NaN for a map with none).
    target : int
        The class whose probability is read.
    before, after : float
        Its probability on the photo, and with the region removed (imputed).
    """

    area: float
    shares: dict = field(default_factory=dict)
    target: int = 0
    before: float = float("nan")
    after: float = float("nan")

    @property
    def drop(self) -> float:
        """``before - after``: how much probability removing the region costs the class."""
        return self.before - self.after


def rectangle(shape: tuple, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    """The boolean region ``(H, W)`` of the rectangle with corners ``(y0, x0)`` and ``(y1, x1)``
    (either order, both included, clipped to the image).
    """
    h, w = shape
    (ya, yb), (xa, xb) = sorted((int(y0), int(y1))), sorted((int(x0), int(x1)))
    region = np.zeros((h, w), dtype=bool)
    region[max(ya, 0):min(yb, h - 1) + 1, max(xa, 0):min(xb, w - 1) + 1] = True
    return region


def positive_share(amap, region: np.ndarray) -> float:
    """The share of ``amap``'s positive mass (channels summed) that lies in ``region``; NaN when
    the map has no positive mass.
    """
    pm = np.clip(pixel_map(amap), 0.0, None)
    total = float(pm.sum())
    return float(pm[region].sum()) / total if total > 0 else float("nan")


def region_effect(x: torch.Tensor, classifier, target: Optional[int] = None, *, region: Optional[np.ndarray] = None,
                  maps: Optional[Mapping] = None, noise: float = 0.01, seed: int = 0) -> RegionEffect:
    """What ``region`` (``(H, W)`` bool) of the image ``x`` ``(3, H, W)`` contributes to class
    ``target``.

    Parameters
    ----------
    target : int, optional
        The class read (default: the predicted class).
    region : ndarray (H, W) of bool
    maps : mapping of name -> map, optional
        Maps (``(H, W)`` or ``(3, H, W)``) whose positive mass in the region is reported.
    noise, seed :
        The imputation's noise and its seed, as ROAD's (:func:`noisy_linear_impute`).
    """
    check_call_order("region_effect", target, "region", region, "mask")
    x = single_image(x)
    region = np.asarray(region, dtype=bool)
    if region.shape != tuple(x.shape[1:]):
        raise ValueError(f"the region is {region.shape} but the image is {tuple(x.shape[1:])}: "
                         "give one boolean per pixel")
    if not region.any():
        raise ValueError("the region is empty: select at least one pixel")
    if region.all():
        raise ValueError("the region is the whole image: nothing is left to impute it from")
    shares = {name: positive_share(m, region) for name, m in (maps or {}).items()}
    rng = imputation_rng(seed, "morf", float(region.mean()))
    imputed = torch.from_numpy(noisy_linear_impute(to_numpy(x), region, noise=noise, rng=rng)).float()
    probs = classify_batches(torch.stack([x.detach().cpu().float(), imputed]), classifier, 2)
    t = int(probs[0].argmax()) if target is None else int(target)
    return RegionEffect(float(region.mean()), shares, t, float(probs[0, t]), float(probs[1, t]))
