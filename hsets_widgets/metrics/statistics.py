"""Paired comparisons of two methods over the same images, with bootstrap intervals.

Faithfulness metrics vary far more between images than between methods, so methods are
compared image by image: the difference ``a_i - b_i`` on each image, its mean, and a
percentile-bootstrap interval of that mean (images resampled with replacement, seeded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over the images both have, with its bootstrap interval.

    Attributes
    ----------
    mean : float
    low, high : float
        Percentile-bootstrap interval at ``level``.
    n : int
        Number of paired images.
    level : float
    wins : int
        Images where ``a > b``.
    """

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95
    wins: int = 0

    @property
    def excludes_zero(self) -> bool:
        """The interval lies entirely above or below 0."""
        return bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n,
                "level": self.level, "wins": self.wins, "excludes_zero": self.excludes_zero}

    def format(self, digits: int = 3) -> str:
        """``+mean [low, high]`` with ``digits`` decimals."""
        f = f"{{:+.{digits}f}}"
        return f"{f.format(self.mean)} [{f.format(self.low)}, {f.format(self.high)}]"


def bootstrap_mean(values: Sequence[float], n_boot: int = 10_000, level: float = 0.95,
                   seed: int = 0) -> tuple:
    """``(mean, low, high)``: the mean of ``values`` and its percentile-bootstrap interval."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(int(n_boot), v.size))].mean(1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(v.mean()), float(lo), float(hi)


def paired_difference(a: Sequence[float], b: Sequence[float], n_boot: int = 10_000,
                      level: float = 0.95, seed: int = 0) -> PairedDifference:
    """Paired difference ``a - b`` (same images, same order); pairs with a NaN are dropped."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same images: got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    mean, lo, hi = bootstrap_mean(d, n_boot, level, seed)
    return PairedDifference(mean, lo, hi, int(d.size), level, int((d > 0).sum()))
