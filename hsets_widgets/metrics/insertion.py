"""Insertion and deletion curves (Petsiuk et al., RISE, BMVC 2018).

The pixels are ranked by the map exactly as ROAD ranks them
(:func:`~hsets_widgets.metrics.road.relevance_order`: channel sum, min-max normalised,
seeded tie-breaker). **Deletion** replaces the top fraction ``p`` of the pixels by a
baseline (black by default) and asks the classifier again; a faithful map makes the
probability of the original class fall fast, so a *lower* area is better. **Insertion**
starts from a blurred copy of the image (Gaussian, ``sigma = 5`` px by default, as RISE) and
puts the top fraction ``p`` of the original pixels back; a faithful map makes the
probability rise fast, so a *higher* area is better.

Unlike ROAD, nothing is imputed: the removed pixels take the baseline's values, whose sharp
edges the classifier may react to whatever was removed. Both views are reported because
each has known biases.

Curves run over ``0, percentages..., 1`` (the unchanged image and the full replacement are
part of every curve) and the area is the trapezoid rule over the fraction in [0, 1].
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from ..hsets.integrated_gradients import make_baseline
from ..plumbing.common import single_image
from .road import (
    CurveResults,
    check_choices,
    classify_batches,
    curve_property,
    curve_scores,
    n_removed,
    reference_probabilities,
    relevance_order,
    resolve_percentages,
)
from .sparsity import MapLike

KINDS = ("insertion", "deletion")


@dataclass
class PerturbationCurve:
    """Scores of one insertion or deletion curve.

    Attributes
    ----------
    kind : {"insertion", "deletion"}
    fractions : ndarray (P,)
        Fraction of the pixels inserted (insertion) or deleted (deletion), from 0 to 1.
    probability : ndarray (P,)
        Softmax probability of the original prediction.
    accuracy : ndarray (P,)
        1.0 where the argmax is still the original prediction.
    """

    kind: str
    fractions: np.ndarray
    probability: np.ndarray
    accuracy: np.ndarray

    def auc(self, score: str = "probability") -> float:
        """Trapezoid area under ``score`` over the fraction (the x axis spans [0, 1])."""
        return float(np.trapezoid(np.asarray(getattr(self, score), np.float64), self.fractions))

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"kind": self.kind, "fractions": [float(v) for v in self.fractions],
                "probability": [float(v) for v in self.probability],
                "accuracy": [float(v) for v in self.accuracy],
                "auc_probability": self.auc("probability"), "auc_accuracy": self.auc("accuracy")}


@dataclass
class InsertionDeletionResult(CurveResults):
    """Insertion and/or deletion curves of one map of one image."""

    target: int
    original_probability: float
    curves: Dict[str, PerturbationCurve] = field(default_factory=dict)
    seconds: float = 0.0

    insertion = curve_property("insertion", "The insertion curve, if computed.")
    deletion = curve_property("deletion", "The deletion curve, if computed.")


def curve_fractions(percentages: Union[str, Sequence[float], None] = "fine") -> np.ndarray:
    """``0``, the given percentages (a name as for ROAD, or fractions) and ``1``, sorted."""
    inner = resolve_percentages(percentages)
    return np.unique(np.concatenate([[0.0], inner, [1.0]]))


def insertion_deletion(x: torch.Tensor, classifier, attribution: MapLike,
                       percentages: Union[str, Sequence[float], None] = "fine",
                       kinds: Sequence[str] = KINDS, deletion_baseline="zeros",
                       insertion_baseline="blur", blur_sigma: float = 5.0, seed: int = 0,
                       tie_break: float = 1e-4, batch_size: int = 16,
                       original_probabilities: Optional[torch.Tensor] = None) -> InsertionDeletionResult:
    """Insertion and deletion curves of one attribution map.

    Parameters
    ----------
    classifier : Classifier or callable
        Maps ``(B, 3, H, W)`` images in [0, 1] to logits.
    x : Tensor (3, H, W)
        The image, in [0, 1].
    attribution : array or Tensor, (H, W) or (3, H, W)
    percentages : str or sequence of float
        Inner points of the curves, as for ROAD (``"fine"``, ``"road"``, ``"quantus"`` or
        fractions); 0 and 1 are always added.
    kinds : sequence of {"insertion", "deletion"}
    deletion_baseline, insertion_baseline : str, float or Tensor
        What removed pixels become (deletion) and what the insertion curve starts from, as
        for :func:`~hsets_widgets.hsets.integrated_gradients.make_baseline` (``"blur"`` uses
        ``blur_sigma``).
    seed, tie_break : as for ROAD's ranking.
    batch_size : int
        Images per forward pass.
    original_probabilities : Tensor (classes,), optional
        Softmax output on ``x`` if already known.
    """
    x = single_image(x)
    check_choices(kinds, KINDS, "curve")
    t0 = time.perf_counter()
    fr = curve_fractions(percentages)
    ranking = relevance_order(attribution, seed=seed, tie_break=tie_break, shape=tuple(x.shape[1:]))
    base = x.detach().cpu().float()
    probs0 = reference_probabilities(base, classifier, original_probabilities)
    target = int(probs0.argmax())
    baselines = {"insertion": insertion_baseline, "deletion": deletion_baseline}
    images = [img for kind in kinds
              for img in perturbed_images(base, ranking, fr, kind, baselines[kind], blur_sigma)]
    probs = classify_batches(torch.stack(images), classifier, batch_size)
    result = InsertionDeletionResult(target, float(probs0[target]))
    for kind, (pred, prob) in zip(kinds, curve_scores(probs, target, len(fr))):
        result.curves[kind] = PerturbationCurve(kind, fr.copy(), prob, (pred == target).astype(np.float64))
    result.seconds = time.perf_counter() - t0
    return result


def perturbed_images(base: torch.Tensor, ranking: np.ndarray, fractions: np.ndarray, kind: str,
                     baseline, blur_sigma: float) -> list:
    """The images of one curve: at each fraction ``f``, the top ``f`` of the ``ranking``'s pixels
    of ``base`` replaced by the ``baseline``'s (deletion), or put back into it (insertion).
    """
    start = make_baseline(base, baseline, blur_sigma=blur_sigma).float()
    src, dst = (base, start) if kind == "deletion" else (start, base)
    n = base.shape[1] * base.shape[2]
    images = []
    for f in fractions:
        img = src.clone().reshape(3, -1)
        k = n_removed(n, f)
        if k:
            idx = torch.from_numpy(ranking[:k])
            img[:, idx] = dst.reshape(3, -1)[:, idx]
        images.append(img.reshape(base.shape))
    return images
