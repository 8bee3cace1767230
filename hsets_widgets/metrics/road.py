"""ROAD: RemOve And Debias (Rong et al., ICML 2022), without retraining.

Pixels are ranked by their attribution, the most relevant (MoRF) or least relevant (LeRF)
fraction ``p`` is removed, the holes are filled by *noisy linear imputation*, and the
classifier is asked again. A faithful map makes the MoRF curve fall fast and the LeRF
curve stay high.

Conventions (the reference code is tleemann/road_evaluation):

* **Ranking**: the map is summed over channels (signed), min-max normalised to [0, 1] and a
  tie-breaker ``tie_break * N(0, 1)`` (default 1e-4, as the reference) from a seeded
  generator is added; pixels are sorted by that value, highest first.
* **Removed pixels**: ``floor(n * p)`` of the ``n = H * W`` pixels: the first ones of the
  ranking (MoRF) or the last ones (LeRF). ``p`` is always the fraction *removed* (the
  reference code's LeRF instead removes the ``1 - p`` least relevant pixels).
* **Imputation**: every removed pixel equals the weighted mean of its 8 neighbours (weight
  1/6 for the 4 direct ones, 1/12 for the diagonals); neighbours outside the image are
  dropped and the mean is taken over the remaining weights (the reference subtracts their
  weights from the pixel's total, which amounts to the same). All removed pixels are solved
  jointly, per channel, as one sparse linear system (scipy.sparse, on CPU). Then
  ``noise * N(0, 1)`` (default 0.01, image in [0, 1] units) is added to the removed pixels
  only; values are not clipped (as the reference).
* **Scores** at each ``p``: ``accuracy`` (1 if the argmax of the imputed image equals the
  prediction on the *original* image, as in Quantus), ``probability`` (softmax probability
  of that original class, the reference's second score) and, when the true label is known,
  ``label_accuracy`` (argmax equals the label, the reference's first score).
* **Area under a curve**: the trapezoid rule over the percentages as given (x in fractions,
  so the default curve spans 0.1 to 0.9 and a constant score of 1 has area 0.8).
  :meth:`ROADCurve.auc` with ``normalized=True`` divides by the span to give a mean height.
* **AOPC** (area over the perturbation curve): the mean over the percentages of
  ``s(x) - s(x with p removed)``, the drop of the score from the original image
  (:meth:`ROADCurve.aopc`; ``s`` is the probability of the original class, or the accuracy,
  which is 1 on the original image). Higher MoRF AOPC is more faithful (removing what the map
  ranks first hurts most); lower LeRF AOPC is more faithful (removing what it ranks last hurts
  least). The mean is over the percentages as listed, so a grid with many small fractions
  weighs the first pixels more: :data:`FINE_PERCENTAGES` adds 1, 2 and 5% to the reference
  grid so that sparse maps, whose order is random beyond their support, are resolved.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Dict, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..model.forward import images_per_pass
from ..model.forward import logits as forward_logits
from ..model.models import model_dtype
from ..plumbing.common import single_image, to_numpy
from .sparsity import MapLike, pixel_map

#: Percentages of the ROAD reference code.
ROAD_PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
#: Quantus' default ``percentages``: 1%, 3%, ..., 99%.
QUANTUS_PERCENTAGES = tuple(round(p / 100.0, 2) for p in range(1, 100, 2))
#: The reference percentages with 1, 2 and 5% in front (resolves maps that cover a few percent).
FINE_PERCENTAGES = (0.01, 0.02, 0.05) + ROAD_PERCENTAGES
#: Named percentage lists accepted wherever percentages are.
PERCENTAGE_SETS = {"road": ROAD_PERCENTAGES, "fine": FINE_PERCENTAGES, "quantus": QUANTUS_PERCENTAGES}
#: the heads of a MoRF curve compared at matched support: the AOPC over the first 5, 10 and 15%
#: removed, where a sparse map still ranks its pixels (beyond its support its order is a random
#: tie); recorded where the run's grid has that percentage (``fine``: 5 and 10; ``quantus``: 5, 15)
HEAD_CUTS = (0.05, 0.10, 0.15)

ROAD_ORDERS = ("morf", "lerf")

#: ``((dy, dx), weight)`` of the 8 neighbours in the linear imputation (weights sum to 1).
NEIGHBOUR_WEIGHTS = tuple(
    ((dy, dx), 1.0 / 6.0 if dy == 0 or dx == 0 else 1.0 / 12.0)
    for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def resolve_percentages(percentages: Union[str, Sequence[float], None] = None) -> np.ndarray:
    """Turn a name (``"road"``, ``"quantus"``) or a list of fractions into a sorted array.

    Fractions must lie in ``[0, 1)``: removing every pixel leaves nothing to impute from.
    """
    if percentages is None:
        percentages = "road"
    if isinstance(percentages, str):
        if percentages not in PERCENTAGE_SETS:
            raise ValueError(f"unknown percentage set {percentages!r}; use one of "
                             f"{', '.join(PERCENTAGE_SETS)} or a list of fractions")
        percentages = PERCENTAGE_SETS[percentages]
    p = np.asarray(list(percentages), dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError("percentages must be a non-empty list of fractions")
    if (p < 0).any() or (p >= 1).any():
        raise ValueError(f"percentages must be fractions in [0, 1) (got {p.tolist()}); "
                         "for 10% pass 0.1")
    return np.unique(p)


def n_removed(n_pixels: int, fraction: float) -> int:
    """``floor(n_pixels * fraction)``, robust to float round-off (``100 * 0.29``)."""
    return int(np.floor(n_pixels * float(fraction) + 1e-9))


def relevance_order(attribution: MapLike, seed: int = 0, tie_break: float = 1e-4,
                    shape: Optional[tuple] = None) -> np.ndarray:
    """Flat pixel indices sorted from most to least relevant.

    Parameters
    ----------
    attribution : array or Tensor, (H, W) or (C, H, W)
        Summed over channels (signed) first.
    seed : int
        Seed of the tie-breaking noise.
    tie_break : float
        Standard deviation of the noise added to the min-max normalised map (1e-4 as the
        reference). With 0, exact ties are still broken at random (secondary sort key).
    shape : tuple (H, W), optional
        Expected size of the map.
    """
    m = pixel_map(attribution, shape=shape).ravel()
    lo, hi = m.min(), m.max()
    m = (m - lo) / (hi - lo + 1e-5)
    rng = np.random.default_rng(seed)
    m = m + tie_break * rng.standard_normal(m.size)
    secondary = rng.permutation(m.size)
    return np.lexsort((secondary, -m))


def removal_mask(order: np.ndarray, fraction: float, shape: tuple, order_kind: str = "morf") -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels removed at ``fraction`` (True = removed)."""
    n = int(np.prod(shape))
    k = n_removed(n, fraction)
    mask = np.zeros(n, dtype=bool)
    if k:
        if order_kind == "morf":
            mask[order[:k]] = True
        elif order_kind == "lerf":
            mask[order[n - k:]] = True
        else:
            raise ValueError(f"unknown order {order_kind!r}; use 'morf' or 'lerf'")
    return mask.reshape(shape)


def imputation_system(image: np.ndarray, removed: np.ndarray):
    """The sparse system ``A v = b`` whose solution fills the removed pixels.

    Row ``r`` (removed pixel ``u_r``) reads ``(sum of in-image neighbour weights) v_r -
    sum over removed in-image neighbours w v = sum over kept in-image neighbours w x``: the
    pixel is the weighted mean of its in-image neighbours. ``A`` is symmetric and diagonally
    dominant, and non-singular whenever at least one pixel is kept.

    Parameters
    ----------
    image : ndarray (C, H, W)
    removed : ndarray of bool (H, W)

    Returns
    -------
    A : scipy.sparse.csc_matrix (N, N)
    b : ndarray (N, C)
    unknown : ndarray (N,)
        Flat indices of the removed pixels, in the order of the unknowns.
    """
    c, h, w = image.shape
    flat_removed = removed.ravel()
    unknown = np.flatnonzero(flat_removed)
    n_unknown = unknown.size
    var_of = np.full(h * w, -1, dtype=np.int64)
    var_of[unknown] = np.arange(n_unknown)
    uy, ux = np.divmod(unknown, w)
    pixels = image.reshape(c, -1)
    diag = np.zeros(n_unknown)
    b = np.zeros((n_unknown, c))
    rows, cols, vals = [], [], []
    for (dy, dx), weight in NEIGHBOUR_WEIGHTS:
        ny, nx = uy + dy, ux + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        r = np.flatnonzero(inside)
        nb = ny[inside] * w + nx[inside]
        diag[r] += weight
        known = ~flat_removed[nb]
        b[r[known]] += weight * pixels[:, nb[known]].T
        rows.append(r[~known])
        cols.append(var_of[nb[~known]])
        vals.append(np.full(int((~known).sum()), -weight))
    rows.append(np.arange(n_unknown))
    cols.append(np.arange(n_unknown))
    vals.append(diag)
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_unknown, n_unknown))
    return A, b, unknown


def noisy_linear_impute(image: Union[np.ndarray, torch.Tensor], removed: np.ndarray,
                        noise: float = 0.01, rng: Union[np.random.Generator, int, None] = 0):
    """Fill the removed pixels of ``image`` by noisy linear imputation.

    Parameters
    ----------
    image : ndarray or Tensor (C, H, W)
        Values in [0, 1].
    removed : ndarray of bool (H, W)
        True where the pixel is removed. At least one pixel must be kept.
    noise : float
        Standard deviation of the Gaussian noise added to the imputed values.
    rng : numpy Generator or int or None
        Source of the noise (an int seeds a new generator).

    Returns
    -------
    Same type as ``image``: a new image, kept pixels unchanged.
    """
    is_tensor = isinstance(image, torch.Tensor)
    arr = to_numpy(image)
    removed = np.asarray(removed, dtype=bool)
    if arr.ndim != 3 or removed.shape != arr.shape[1:]:
        raise ValueError(f"image {arr.shape} and mask {removed.shape} do not fit: need (C, H, W) "
                         "and (H, W)")
    out = arr.copy()
    if removed.any():
        if removed.all():
            raise ValueError("every pixel is removed: nothing to impute from")
        A, b, unknown = imputation_system(arr, removed)
        values = spla.spsolve(A, b)
        values = values.reshape(unknown.size, -1)
        if noise:
            gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            values = values + noise * gen.standard_normal(values.shape)
        flat = out.reshape(arr.shape[0], -1)
        flat[:, unknown] = values.T
    if is_tensor:
        return torch.from_numpy(out).to(device=image.device, dtype=image.dtype)
    return out.astype(np.asarray(image).dtype if np.issubdtype(np.asarray(image).dtype, np.floating)
                      else np.float64)


@dataclass
class ROADCurve:
    """Scores of one removal order at each percentage.

    Attributes
    ----------
    order : {"morf", "lerf"}
    percentages : ndarray (P,)
        Fractions of pixels removed.
    accuracy : ndarray (P,)
        1.0 where the imputed image keeps the original prediction, else 0.0.
    probability : ndarray (P,)
        Softmax probability of the original prediction.
    label_accuracy : ndarray (P,) or None
        1.0 where the argmax equals the true label (when it is known).
    original_probability : float
        Probability of the original class on the unchanged image (the AOPC reference).
    original_label_accuracy : float or None
        1.0 if the prediction on the unchanged image is the true label.
    """

    order: str
    percentages: np.ndarray
    accuracy: np.ndarray
    probability: np.ndarray
    label_accuracy: Optional[np.ndarray] = None
    original_probability: float = float("nan")
    original_label_accuracy: Optional[float] = None

    def aopc(self, score: str = "probability", up_to: Optional[float] = None) -> float:
        """Mean drop of ``score`` from the unchanged image over the percentages (see the
        module docstring); ``score`` is ``probability``, ``accuracy`` or ``label_accuracy``.
        ``up_to`` keeps only the percentages at most that fraction (MoRF over the first 5% removed:
        where a sparse map still ranks pixels, :data:`HEAD_CUTS`).
        """
        y = getattr(self, score)
        if y is None:
            raise ValueError(f"this curve has no {score} (no true label was given)")
        ref = {"probability": self.original_probability, "accuracy": 1.0,
               "label_accuracy": self.original_label_accuracy}.get(score)
        if ref is None:
            raise ValueError(f"unknown score {score!r}; use probability, accuracy or label_accuracy")
        drop = ref - np.asarray(y, dtype=np.float64)
        if up_to is not None:
            keep = np.asarray(self.percentages, dtype=np.float64) <= float(up_to) + 1e-9
            if not keep.any():
                raise ValueError(f"this curve has no percentage at or below {up_to:g} "
                                 f"(its first is {float(self.percentages[0]):g})")
            drop = drop[keep]
        return float(np.mean(drop))

    def auc(self, score: str = "accuracy", normalized: bool = False) -> float:
        """Trapezoid area under ``score`` over the percentages (divided by their span if
        ``normalized``).
        """
        y = np.asarray(getattr(self, score), dtype=np.float64)
        x = np.asarray(self.percentages, dtype=np.float64)
        if x.size < 2:
            return float(y[0]) if normalized and y.size else 0.0
        area = float(np.trapezoid(y, x))
        return area / float(x[-1] - x[0]) if normalized else area

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = {"order": self.order, "percentages": [float(p) for p in self.percentages],
             "accuracy": [float(v) for v in self.accuracy],
             "probability": [float(v) for v in self.probability],
             "auc_accuracy": self.auc("accuracy"), "auc_probability": self.auc("probability"),
             "aopc_probability": self.aopc("probability"), "aopc_accuracy": self.aopc("accuracy"),
             "original_probability": float(self.original_probability)}
        if self.label_accuracy is not None:
            d["label_accuracy"] = [float(v) for v in self.label_accuracy]
            d["auc_label_accuracy"] = self.auc("label_accuracy")
        return d


def check_choices(values: Sequence[str], allowed: Sequence[str], what: str) -> None:
    """Refuse any of ``values`` not in ``allowed``: ``unknown order 'x'; use 'morf' and/or 'lerf'``."""
    for v in values:
        if v not in allowed:
            raise ValueError(f"unknown {what} {v!r}; use " + " and/or ".join(f"'{a}'" for a in allowed))


def curve_property(name: str, doc: str) -> property:
    """A read-only property giving ``self.curves[name]``, or None when it was not computed."""
    return property(lambda self: self.curves.get(name), doc=doc)


class CurveResults:
    """Base of a dataclass that holds its curves by name in ``curves``, besides scalar fields."""

    def to_dict(self) -> dict:
        """JSON-ready form: every scalar field, then ``curves`` (each curve's ``to_dict``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "curves"}
        d["curves"] = {k: c.to_dict() for k, c in self.curves.items()}
        return d


@dataclass
class ROADResult(CurveResults):
    """ROAD curves of one attribution map of one image.

    Attributes
    ----------
    target : int
        The classifier's prediction on the original image.
    original_probability : float
        Its softmax probability.
    label : int or None
        True class, when known.
    curves : dict
        ``{"morf": ROADCurve, "lerf": ROADCurve}`` (the orders asked for).
    impute_seconds, classify_seconds : float
        Wall time spent imputing and re-classifying.
    """

    target: int
    original_probability: float
    label: Optional[int]
    curves: Dict[str, ROADCurve] = field(default_factory=dict)
    impute_seconds: float = 0.0
    classify_seconds: float = 0.0

    morf = curve_property("morf", "The most-relevant-first curve, if computed.")
    lerf = curve_property("lerf", "The least-relevant-first curve, if computed.")


def imputation_rng(seed: int, order: str, fraction: float) -> np.random.Generator:
    """The noise stream of one ROAD step: ``order`` (``"morf"``/``"lerf"``) at ``fraction``
    removed, under the run's ``seed``.

    Keyed by the order's name and the fraction, never by their positions in a request, so
    any view that redraws one imputed image (the Explorer's ROAD tab) gets exactly the image
    :func:`road` scored, whichever orders and percentages it was asked for.
    """
    if order not in ROAD_ORDERS:
        raise ValueError(f"unknown order {order!r}; use 'morf' or 'lerf'")
    return np.random.default_rng([int(seed), ROAD_ORDERS.index(order), int(round(float(fraction) * 1e6))])


@torch.no_grad()
def classify_batches(images: torch.Tensor, classifier, batch_size: int = 16) -> torch.Tensor:
    """Softmax probabilities ``(K, classes)`` (float32, CPU) of a stack of images.

    The images go to the classifier's device (and parameter dtype) at most ``batch_size`` at a
    time, fewer when that many would not fit in the memory room
    (:func:`~hsets_widgets.model.forward.images_per_pass`).
    """
    device = getattr(classifier, "device", torch.device("cpu"))
    dtype = model_dtype(classifier)
    if images.shape[0] > 1:
        batch_size = images_per_pass(classifier, images[0].to(device=device, dtype=dtype), batch_size)
    out = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start:start + batch_size].to(device=device, dtype=dtype)
        with torch.no_grad():
            out.append(forward_logits(classifier, chunk).float().softmax(-1).cpu())
    return torch.cat(out)


def road(x: torch.Tensor, classifier, attribution: MapLike,
         percentages: Union[str, Sequence[float], None] = "road",
         orders: Sequence[str] = ROAD_ORDERS, label: Optional[int] = None, seed: int = 0,
         noise: float = 0.01, tie_break: float = 1e-4, batch_size: int = 16,
         original_probabilities: Optional[torch.Tensor] = None) -> ROADResult:
    """ROAD curves (no retraining) of one attribution map.

    Parameters
    ----------
    classifier : Classifier or callable
        Maps ``(B, 3, H, W)`` images in [0, 1] to logits. May live on a GPU; imputation runs
        on the CPU and the imputed images are moved to the classifier's device.
    x : Tensor (3, H, W)
        The image, in [0, 1].
    attribution : array or Tensor, (H, W) or (3, H, W)
        The map to evaluate (summed over channels for ranking).
    percentages : str or sequence of float
        Fractions removed, or ``"road"`` (reference: .1 .2 .3 .4 .5 .7 .9), ``"fine"``
        (.01 .02 .05 and the reference) or ``"quantus"`` (.01, .03, ..., .99).
    orders : sequence of {"morf", "lerf"}
    label : int, optional
        True class, for ``label_accuracy``.
    seed : int
        Seeds the tie-breaker and the imputation noise (each ``(order, p)`` gets its own
        stream, so results do not depend on which other percentages were asked for).
    noise, tie_break : float
        See the module docstring.
    batch_size : int
        Most imputed images per forward pass (fewer when the memory room is small).
    original_probabilities : Tensor (classes,), optional
        Softmax output on ``x`` if already known (saves one forward pass).

    Returns
    -------
    ROADResult
    """
    x = single_image(x)
    shape = tuple(x.shape[1:])
    p = resolve_percentages(percentages)
    check_choices(orders, ROAD_ORDERS, "order")
    ranking = relevance_order(attribution, seed=seed, tie_break=tie_break, shape=shape)
    probs0 = reference_probabilities(x, classifier, original_probabilities)
    target = int(probs0.argmax())
    t0 = time.perf_counter()
    batch = imputed_images(to_numpy(x), ranking, p, orders, noise, seed)
    t1 = time.perf_counter()
    probs = classify_batches(batch, classifier, batch_size)
    t2 = time.perf_counter()
    result = ROADResult(target, float(probs0[target]), label, {}, t1 - t0, t2 - t1)
    for o, (pred, prob) in zip(orders, curve_scores(probs, target, len(p))):
        result.curves[o] = ROADCurve(
            o, p.copy(), (pred == target).astype(np.float64), prob,
            None if label is None else (pred == int(label)).astype(np.float64),
            float(probs0[target]), None if label is None else float(target == int(label)))
    return result


def reference_probabilities(x: torch.Tensor, classifier,
                            known: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Softmax output ``(classes,)`` (float32, CPU) on the unchanged image ``x`` (3, H, W):
    ``known`` when given, else one forward pass.
    """
    if known is None:
        return classify_batches(x.unsqueeze(0), classifier, 1)[0]
    return known.detach().float().cpu().reshape(-1)


def imputed_images(base: np.ndarray, ranking: np.ndarray, percentages: np.ndarray,
                   orders: Sequence[str], noise: float, seed: int) -> torch.Tensor:
    """``(len(orders) * len(percentages), C, H, W)`` float32: ``base`` with each order's pixels
    removed at each percentage and imputed (order by order, each with its own noise stream).
    """
    shape = base.shape[1:]
    imputed = []
    for o in orders:
        for frac in percentages:
            mask = removal_mask(ranking, frac, shape, o)
            imputed.append(noisy_linear_impute(base, mask, noise=noise, rng=imputation_rng(seed, o, frac)))
    return torch.from_numpy(np.stack(imputed).astype(np.float32))


def curve_scores(probs: torch.Tensor, target: int, n_points: int) -> list:
    """Split the probabilities of consecutive curves of ``n_points`` images each: per curve,
    ``(argmax, probability of target as float64)``.
    """
    pred = probs.argmax(-1).numpy()
    p_target = probs[:, target].numpy().astype(np.float64)
    return [(pred[i:i + n_points], p_target[i:i + n_points]) for i in range(0, len(pred), n_points)]
