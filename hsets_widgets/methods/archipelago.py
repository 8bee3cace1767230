"""Archipelago (Tsang, Rambhatla and Liu, NeurIPS 2020): interaction sets by pairwise tests.

**ArchDetect** scores every pair of features ``i, j`` by how far the model is from additive in
them, in two contexts: with everything else at the baseline (``f(x*_ij + x'_rest) - f(x*_i +
x'_rest) - f(x*_j + x'_rest) + f(x')``) and with everything else at the input (the same with
input and baseline swapped). The strength ``w_ij`` is the mean of the two squares. The
``top_k`` strongest pairs are merged where they overlap into sets (islands), and
**ArchAttribute** values a set ``I`` by inserting it into the baseline: ``f(x*_I + x'_rest) -
f(x')``. Features no set holds keep their main effect ``f(x*_i + x'_rest) - f(x')``.

On images the features are superpixels (Quickshift with kernel 3, max_dist 300, ratio 0.2, as
the authors used; any toolkit segmenter can replace it) and the baseline is the image whose
normalised version is zero (``"model-zero"``). Every test is a forward pass: ``2 (1 + n + n(n -
1) / 2)`` for ``n`` superpixels (about 4,000 for 63), batched. The H-Sets authors' heatmap
paints the top 5 positive sets of more than one superpixel, each on its superpixels with its
value (``paint="sets"``); ``paint="all"`` paints every set and main effect.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..hsets.integrated_gradients import make_baseline
from ..model.scores import ScoreFn, resolve_target
from ..plumbing.common import single_image, to_numpy
from ..plumbing.progress import CancelToken, ProgressFn
from ..segmentation import get_segmenter
from .masking import coalition_scores, segment_index

#: how the map is painted: the top positive multi-segment sets (the H-Sets authors'), or everything
PAINTS = ("sets", "all")


@dataclass(frozen=True)
class ArchDetection:
    """ArchDetect's numbers for ``n`` features.

    Attributes
    ----------
    strengths : ndarray (n, n)
        ``w_ij``, symmetric, zero on the diagonal.
    main_effects : ndarray (n,)
        ``f(x*_i + x'_rest) - f(x')``.
    f_input, f_baseline : float
        ``f(x*)`` and ``f(x')``.
    n_forward : int
        Function evaluations used.
    """

    strengths: np.ndarray
    main_effects: np.ndarray
    f_input: float
    f_baseline: float
    n_forward: int

    def ranked_pairs(self) -> list:
        """Every pair ``(i, j)``, ``i < j``, strongest first (ties in index order)."""
        i, j = np.triu_indices(len(self.main_effects), 1)
        order = np.argsort(-self.strengths[i, j], kind="stable")
        return [(int(i[k]), int(j[k])) for k in order]


def arch_detect(value: Callable[[np.ndarray], np.ndarray], n: int,
                weights: Sequence[float] = (0.5, 0.5)) -> ArchDetection:
    """ArchDetect over ``n`` features of a set function ``value``.

    ``value(coalitions)`` takes a ``(m, n)`` boolean array (True: the feature at its input
    value, False: at its baseline) and returns the ``m`` scores. ``weights`` are those of the
    baseline and the input context.
    """
    if n < 2:
        raise ValueError(f"ArchDetect needs at least 2 features, got {n}")
    pairs = list(combinations(range(n), 2))
    eye = np.eye(n, dtype=bool)
    both = np.zeros((len(pairs), n), dtype=bool)
    rows = np.arange(len(pairs))
    both[rows, [p[0] for p in pairs]] = True
    both[rows, [p[1] for p in pairs]] = True
    coalitions = np.concatenate([np.zeros((1, n), bool), np.ones((1, n), bool), eye, ~eye, both, ~both])
    v = np.asarray(value(coalitions), dtype=np.float64)
    f_b, f_x = v[0], v[1]
    single, all_but = v[2:2 + n], v[2 + n:2 + 2 * n]
    pair, all_but_pair = v[2 + 2 * n:2 + 2 * n + len(pairs)], v[2 + 2 * n + len(pairs):]
    i, j = np.asarray(pairs).T
    in_baseline = pair - single[i] - single[j] + f_b
    in_input = all_but_pair - all_but[i] - all_but[j] + f_x
    w = np.zeros((n, n))
    w[i, j] = weights[0] * in_baseline ** 2 + weights[1] * in_input ** 2
    return ArchDetection(w + w.T, single - f_b, float(f_x), float(f_b), len(coalitions))


def merge_pairs(pairs: Sequence[tuple]) -> list:
    """Merge overlapping pairs into disjoint sets (sorted tuples), in order of each set's first pair."""
    parent: dict = {}

    def root(a):
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict = {}
    for a, b in pairs:
        groups.setdefault(root(a), set()).update((a, b))
    first = {root(a): k for k, (a, _) in reversed(list(enumerate(pairs)))}
    return [tuple(sorted(groups[r])) for r in sorted(groups, key=first.get)]


def arch_attribute(value: Callable[[np.ndarray], np.ndarray], n: int, sets: Sequence[tuple],
                   f_baseline: Optional[float] = None) -> np.ndarray:
    """ArchAttribute of each set: ``value`` with the set at its input, the rest at the baseline,
    minus ``value`` of the baseline (evaluated here unless ``f_baseline`` is given).
    """
    rows = np.zeros((len(sets) + (f_baseline is None), n), dtype=bool)
    for k, s in enumerate(sets):
        rows[k, list(s)] = True
    v = np.asarray(value(rows), dtype=np.float64)
    base = v[-1] if f_baseline is None else f_baseline
    return v[:len(sets)] - base


@dataclass(frozen=True)
class ArchipelagoResult:
    """Archipelago's explanation of one image.

    Attributes
    ----------
    labels : ndarray (H, W)
        The superpixels.
    detection : ArchDetection
        Over the superpixels in increasing label order.
    sets : tuple of tuple of int
        The merged interaction sets (superpixel positions), strongest first.
    set_values : ndarray
        ArchAttribute of each set.
    target : int
    n_forward : int
        Forward passes of the whole explanation.
    """

    labels: np.ndarray
    detection: ArchDetection
    sets: tuple
    set_values: np.ndarray
    target: int
    n_forward: int

    def explanation(self) -> list:
        """``[(superpixel positions, value)]``: the sets and, for every superpixel in none, its
        main effect, by decreasing value.
        """
        inside = {i for s in self.sets for i in s}
        items = list(zip(self.sets, self.set_values.tolist()))
        items += [((i,), float(m)) for i, m in enumerate(self.detection.main_effects) if i not in inside]
        return sorted(items, key=lambda kv: -kv[1])

    def set_pixels(self, segments: Sequence[int]) -> np.ndarray:
        """Flat pixel indices of the superpixels ``segments``."""
        _, index = segment_index(self.labels)
        return np.flatnonzero(np.isin(index.ravel(), list(segments)))

    def heatmap(self, paint: str = "sets", top: int = 5) -> np.ndarray:
        """The ``(H, W)`` map: ``paint="sets"``, the ``top`` positive sets of more than one
        superpixel, each painted on its superpixels with its value (the H-Sets authors' way);
        ``"all"``, every set and main effect.
        """
        if paint not in PAINTS:
            raise ValueError(f"unknown paint {paint!r}; use one of {', '.join(PAINTS)}")
        items = self.explanation()
        if paint == "sets":
            items = [(s, v) for s, v in items if len(s) > 1 and v > 0][:top]
        _, index = segment_index(self.labels)
        value = np.zeros(int(index.max()) + 1)
        for s, v in items:
            value[list(s)] = v
        return value[index]


def archipelago(x, classifier, target: Optional[int] = None, *, segmenter="quickshift",
                baseline: Union[str, torch.Tensor] = "model-zero", top_k: int = 15, score: str = "logit",
                batch_size: int = 32, progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, seed: int = 0) -> ArchipelagoResult:
    """Archipelago's interaction sets of image ``x`` (``(3, H, W)`` in [0, 1]) for ``target``.

    Parameters
    ----------
    segmenter : str, segmenter or ndarray (H, W)
        The superpixels: a toolkit segmenter name (``"quickshift"``, Archipelago's, by
        default), a segmenter, or a label map.
    baseline : str or Tensor
        As :func:`~hsets_widgets.hsets.integrated_gradients.make_baseline`; ``"model-zero"`` is the
        authors' zero in normalised space.
    top_k : int
        Strongest pairs merged into sets (the authors' image demo: 15).
    score : {"logit", "probability", "log_probability"}
    batch_size : int
        Images per forward pass.
    seed : int
        Unused (the method is deterministic); accepted so every method takes one.
    """
    x = single_image(x)
    target, _ = resolve_target(x, classifier, target)
    for name, v in (("top_k", top_k), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
    labels = superpixels(x, segmenter)
    n = len(np.unique(labels))
    if n < 2:
        raise ValueError(f"Archipelago needs at least 2 superpixels, the segmenter gave {n}; pass another "
                         "segmenter= (e.g. 'quickshift' or 'slic') or a label map")
    b = make_baseline(x, baseline, classifier)
    f = ScoreFn(classifier, int(target), score)
    used = [0]

    def value(coalitions):
        used[0] += len(coalitions)
        return coalition_scores(f, x, b, labels, coalitions, batch_size, progress, cancel, "Archipelago")

    det = arch_detect(value, n)
    sets = merge_pairs(det.ranked_pairs()[:top_k])
    values = arch_attribute(value, n, sets, det.f_baseline)
    return ArchipelagoResult(labels, det, tuple(sets), values, int(target), used[0])


#: more superpixels than a named segmenter gives a photo (quickshift: about 60 at 224 px); a
#: flat image gets 128 from quickshift, and ArchDetect's passes grow with the square
MAX_SUPERPIXELS = 100


def superpixels(x: torch.Tensor, segmenter="quickshift") -> np.ndarray:
    """The ``(H, W)`` label map of ``segmenter`` (a name, a segmenter or a label map) on ``x``.

    A named segmenter that splits the image into more than :data:`MAX_SUPERPIXELS` regions (a
    flat or nearly flat image under quickshift) is replaced by SLIC, with a warning; a segmenter
    object or a label map is used as given.
    """
    if isinstance(segmenter, np.ndarray):
        if segmenter.shape != tuple(x.shape[-2:]):
            raise ValueError(f"labels have shape {segmenter.shape}, the image {tuple(x.shape[-2:])}")
        return segmenter

    seg = get_segmenter(segmenter) if isinstance(segmenter, str) else segmenter
    image = to_numpy(x.permute(1, 2, 0), None)
    labels = np.asarray(seg(image).labels)
    n = len(np.unique(labels))
    if isinstance(segmenter, str) and segmenter != "slic" and n > MAX_SUPERPIXELS:
        warnings.warn(f"{segmenter} split the image into {n} superpixels (a flat image?); Archipelago "
                      f"uses SLIC's instead (ArchDetect's passes grow with the square)", RuntimeWarning,
                      stacklevel=3)
        labels = np.asarray(get_segmenter("slic")(image).labels)
    return labels
