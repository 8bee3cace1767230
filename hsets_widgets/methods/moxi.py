"""MoXI (Sumiyasu, Kawamoto and Kera, CVPR 2024): patches inserted greedily, interactions included.

The image is cut into a grid of patches. Starting from the baseline, each step inserts the
patch that raises the explained score most *given the patches already inserted*, so a patch
that matters only together with earlier ones is chosen with them (the self-context Shapley
value plus its interactions). The order gives a rank map (earlier patches higher) and an
insertion curve; the patches inserted until the curve first reaches the photo's own score are
the explanation's *set*.

A full greedy pass costs ``N (N + 1) / 2`` forward passes for ``N`` patches (5,050 for the
H-Sets authors' 10 x 10 grid, 19,306 for MoXI's 14 x 14). ``max_steps`` bounds it: after that
many greedy steps the remaining patches are ordered by their gains at the last step (one
batch already computed). ``max_steps=None`` is the full method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from ..hsets.integrated_gradients import make_baseline
from ..model.scores import ScoreFn, resolve_target
from ..plumbing.common import single_image
from ..plumbing.progress import CancelToken, ProgressFn
from .masking import coalition_scores


def grid_labels(shape_hw: tuple, grid: int) -> np.ndarray:
    """``(H, W)`` labels of a ``grid`` x ``grid`` patch grid (row-major, 0-based)."""
    h, w = shape_hw
    if not isinstance(grid, int) or not 1 <= grid <= min(h, w):
        raise ValueError(f"grid must be a whole number from 1 to {min(h, w)}, got {grid!r}")
    rows = np.minimum(np.arange(h) * grid // h, grid - 1)
    cols = np.minimum(np.arange(w) * grid // w, grid - 1)
    return rows[:, None] * grid + cols[None, :]


@dataclass(frozen=True)
class MoxiResult:
    """MoXI's insertion of one image.

    Attributes
    ----------
    labels : ndarray (H, W)
        The patch of every pixel.
    order : ndarray of int
        Patches in the order they were inserted.
    curve : ndarray
        The score with no patch, then after each insertion (``len(order) + 1`` values).
    greedy_steps : int
        How many steps were chosen greedily (the rest by their gains at the last one).
    full_score : float
        The score of the photo itself.
    target : int
    n_forward : int
    """

    labels: np.ndarray
    order: np.ndarray
    curve: np.ndarray
    greedy_steps: int
    full_score: float
    target: int
    n_forward: int

    def heatmap(self) -> np.ndarray:
        """The rank map: the first patch inserted gets ``N``, the last ``1``."""
        n = len(self.order)
        rank = np.empty(n)
        rank[self.order] = np.arange(n, 0, -1)
        return rank[self.labels]

    @property
    def set_size(self) -> int:
        """Patches inserted until the curve first reaches the photo's score (else its maximum)."""
        reached = np.flatnonzero(self.curve[1:] >= self.full_score)
        return int(reached[0] + 1 if len(reached) else np.argmax(self.curve[1:]) + 1)

    def set_patches(self) -> np.ndarray:
        """The explanation's set: the first :attr:`set_size` patches inserted."""
        return self.order[:self.set_size]

    def set_pixels(self) -> np.ndarray:
        """Flat pixel indices of the set's patches."""
        return np.flatnonzero(np.isin(self.labels.ravel(), self.set_patches()))


def moxi(x, classifier, target: Optional[int] = None, *, grid: int = 10, max_steps: Optional[int] = 25,
         score: str = "log_odds", baseline: Union[str, torch.Tensor] = "model-zero", batch_size: int = 32,
         progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
         seed: int = 0) -> MoxiResult:
    """MoXI's greedy insertion of ``grid`` x ``grid`` patches of ``x`` (``(3, H, W)`` in [0, 1]).

    Parameters
    ----------
    grid : int
        Patches per side (the H-Sets authors' 10; MoXI's paper 14).
    max_steps : int or None
        Greedy steps before the rest are ordered by their last gains; None: all (the full
        method, ``N (N + 1) / 2`` forward passes).
    score : {"log_odds", "logit", "probability", "log_probability"}
        MoXI's ``log(p / (1 - p))`` by default; the H-Sets authors used ``log_probability``.
    baseline : str or Tensor
        What a patch not yet inserted shows (``"model-zero"``: zero in normalised space).
    seed : int
        Unused (deterministic); accepted so every method takes one.
    """
    x = single_image(x)
    target, _ = resolve_target(x, classifier, target)
    labels = grid_labels(tuple(x.shape[-2:]), grid)
    n = grid * grid
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be a whole number >= 1 or None, got {max_steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    steps = n if max_steps is None else min(int(max_steps), n)
    b = make_baseline(x, baseline, classifier)
    f = ScoreFn(classifier, int(target), score)
    ends = coalition_scores(f, x, b, labels, np.stack([np.zeros(n, bool), np.ones(n, bool)]), batch_size)
    inserted = np.zeros(n, dtype=bool)
    order, curve, used = [], [ends[0]], 2
    gains = np.zeros(0)
    for t in range(steps):
        left = np.flatnonzero(~inserted)
        trial = np.repeat(inserted[None], len(left), axis=0)
        trial[np.arange(len(left)), left] = True
        scores = coalition_scores(f, x, b, labels, trial, batch_size, _stage(progress, t, steps), cancel, "MoXI")
        used += len(left)
        best = int(np.argmax(scores))
        order.append(int(left[best]))
        curve.append(float(scores[best]))
        inserted[left[best]] = True
        gains = np.delete(scores, best)
    rest = np.flatnonzero(~inserted)
    if len(rest):
        rest = rest[np.argsort(-gains, kind="stable")]
        trial = np.repeat(inserted[None], len(rest), axis=0)
        for k, p in enumerate(rest):
            trial[k:, p] = True
        curve += coalition_scores(f, x, b, labels, trial, batch_size).tolist()
        used += len(rest)
        order += rest.tolist()
    return MoxiResult(labels, np.asarray(order), np.asarray(curve), steps, float(ends[1]), int(target), used)


def _stage(progress, step: int, steps: int):
    """Progress of one greedy step as a share of all of them (steps shrink, so this is a bound)."""
    if progress is None:
        return None

    def sub(stage, done, total):
        progress("MoXI", step * total + done, steps * total)
    return sub
