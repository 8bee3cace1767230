"""Do a set's pixels act together? An interaction test for any set of pixels.

The set is cut into a few spatial parts (:func:`split_parts`). The *removal game* over the
parts gives each coalition ``T`` of parts the explained score of the image in which the set's
parts outside ``T`` are removed (``context="remove"``: the rest of the photo stays) or in which
everything but the parts in ``T`` is removed (``context="insert"``: the parts are put back into
the removed photo, Archipelago's baseline context). Pixels are replaced by a blurred copy of the
photo (``removal="blur"``, the default), by ROAD's noisy linear imputation (``"road"``) or by the
IG baseline (``"baseline"``). Blur is the default because it passes the planted-interaction check
of bench/bench_interactions.py and ROAD's imputation does not: imputing a removed part from its
kept neighbours makes neighbouring parts interact by itself. Every coalition is scored (``2^k`` forward
passes in batches), so the game's Harsanyi dividends, its pairwise interaction indices and the
share of its variance that no additive model of the parts explains are exact
(:mod:`hsets_widgets.hsets.games`).

The same numbers for *control sets* of the same size from the same seed, chosen without the
Hessian, say whether the set has more interaction than any compact region of its size:
``nearest`` (the pixels of the seed's segment nearest the seed: a disk), ``top-ig`` (the
segment's pixels of largest smoothed ``|IG|``) and ``moved`` (the set's own shape translated
elsewhere in the seed's segment, ``n_moved`` times).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from ..hsets.games import coalition_matrix, moebius, nonadditive_share, pair_interactions
from ..hsets.integrated_gradients import integrated_gradients
from ..hsets.seeds import feature_pixels
from ..methods.protocol import PixelSet
from ..model.forward import images_per_pass
from ..model.forward import logits as forward_logits
from ..model.models import model_device, model_dtype
from ..plumbing.common import to_numpy
from ..plumbing.progress import CancelToken, ProgressFn, report
from .road import noisy_linear_impute

REMOVALS = ("road", "blur", "baseline")
CONTEXTS = ("remove", "insert")
CONTROLS = ("nearest", "top-ig", "moved")
#: moved copies of a set's shape among its controls by default: with the other two, 4 controls,
#: so a p-value of at least 0.2 (bench/RESULTS.md, "interactions-calibration", for 19)
N_MOVED = 2
SCORES = ("logit", "probability")


def split_parts(pixels, shape_hw: tuple, n_parts: int = 8, seed: int = 0) -> list:
    """Cut a set of flat pixel indices into at most ``n_parts`` spatially compact parts.

    k-means on the pixels' coordinates (k-means++ start from generator ``seed``, Lloyd
    iterations until nothing moves). Parts are ordered by their first pixel in ``pixels``, so
    the part holding the seed (the first member) is part 0. A set with fewer pixels than
    ``n_parts`` gets one part per pixel.
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    if pixels.size == 0:
        raise ValueError("cannot split an empty set into parts")
    if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) or not 1 <= n_parts <= 16:
        raise ValueError(f"n_parts must be a whole number from 1 to 16 (2^n_parts coalitions), got {n_parts!r}")
    _, w = shape_hw
    pts = np.stack([pixels // w, pixels % w], 1).astype(np.float64)
    k = min(int(n_parts), len(pixels))
    label = _kmeans(pts, k, np.random.default_rng(seed))
    first = {lab: i for i, lab in reversed(list(enumerate(label)))}
    order = sorted(first, key=first.get)
    return [pixels[label == lab] for lab in order]


def _kmeans(pts: np.ndarray, k: int, rng: np.random.Generator, iters: int = 50) -> np.ndarray:
    centres = [pts[rng.integers(len(pts))]]
    for _ in range(1, k):
        d = np.min([((pts - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(pts[rng.choice(len(pts), p=d / d.sum())] if d.sum() > 0 else pts[rng.integers(len(pts))])
    centres = np.array(centres)
    label = np.zeros(len(pts), np.int64)
    for it in range(iters):
        new = ((pts[:, None, :] - centres[None]) ** 2).sum(2).argmin(1)
        if it and np.array_equal(new, label):
            break
        label = new
        for j in range(k):
            if (label == j).any():
                centres[j] = pts[label == j].mean(0)
    # a part left empty by Lloyd takes the pixel farthest from its centre
    for j in range(k):
        if not (label == j).any():
            far = int(((pts - centres[label]) ** 2).sum(1).argmax())
            label[far] = j
    return label


def remove_pixels(image: np.ndarray, removed: np.ndarray, removal: str = "blur", rng=None,
                  baseline: Optional[np.ndarray] = None, blurred: Optional[np.ndarray] = None) -> np.ndarray:
    """``image`` ``(3, H, W)`` with the ``removed`` ``(H, W)`` pixels replaced as ``removal`` says.

    ``road``: noisy linear imputation from the kept pixels (every pixel removed: the image's
    mean colour); ``blur``: the ``blurred`` copy (default: blurred over 8 pixels); ``baseline``:
    the ``baseline`` image (default: black).
    """
    if removal not in REMOVALS:
        raise ValueError(f"unknown removal {removal!r}; use one of {', '.join(REMOVALS)}")
    removed = np.asarray(removed, bool)
    if not removed.any():
        return image.copy()
    if removal == "road":
        if removed.all():
            return np.broadcast_to(image.mean((1, 2))[:, None, None], image.shape).copy()
        return noisy_linear_impute(image, removed, rng=rng)
    fill = blurred if removal == "blur" else baseline
    if fill is None and removal == "blur":
        from scipy.ndimage import gaussian_filter

        fill = gaussian_filter(image, (0, 8.0, 8.0), mode="nearest")
    elif fill is None:
        fill = np.zeros_like(image)
    return np.where(removed[None], fill, image)


@dataclass
class PartsGame:
    """The removal game over the parts of a set (see the module docstring).

    ``game(coalitions)`` scores the images of the coalitions (rows of a bool matrix over the
    parts) with the classifier, at most ``batch_size`` at a time (fewer where the memory room is
    smaller: :func:`~hsets_widgets.model.forward.images_per_pass`); a coalition's imputation noise comes
    from a generator keyed by ``seed`` and the coalition, so its value never depends on which
    other coalitions were asked for with it.
    """

    image: np.ndarray
    classifier: object
    target: int
    parts: list
    removal: str = "blur"
    context: str = "remove"
    score: str = "logit"
    seed: int = 0
    batch_size: int = 16
    baseline: Optional[np.ndarray] = None
    blur_sigma: float = 8.0
    n_forward: int = 0
    _blurred: Optional[np.ndarray] = field(default=None, repr=False)

    def __post_init__(self):
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown context {self.context!r}; use one of {', '.join(CONTEXTS)}")
        if self.score not in SCORES:
            raise ValueError(f"unknown score {self.score!r}; use one of {', '.join(SCORES)}")
        if self.removal not in REMOVALS:
            raise ValueError(f"unknown removal {self.removal!r}; use one of {', '.join(REMOVALS)}")
        self.image = np.asarray(self.image, dtype=np.float64)
        if self.removal == "baseline" and self.baseline is None:
            self.baseline = np.zeros_like(self.image)
        if self.removal == "blur":
            from scipy.ndimage import gaussian_filter

            self._blurred = gaussian_filter(self.image, (0, self.blur_sigma, self.blur_sigma), mode="nearest")

    @property
    def n_players(self) -> int:
        """The number of parts."""
        return len(self.parts)

    def coalition_image(self, coalition) -> np.ndarray:
        """The ``(3, H, W)`` image of one coalition (a bool vector over the parts)."""
        _, h, w = self.image.shape
        inside = np.zeros(h * w, bool)
        for part, on in zip(self.parts, coalition):
            if on:
                inside[part] = True
        if self.context == "remove":
            removed = np.zeros(h * w, bool)
            for part in self.parts:
                removed[part] = True
            removed &= ~inside
        else:
            removed = ~inside
        code = int(sum(1 << i for i, on in enumerate(coalition) if on))
        rng = np.random.default_rng([int(self.seed), code])
        return remove_pixels(self.image, removed.reshape(h, w), self.removal, rng, self.baseline, self._blurred)

    def __call__(self, coalitions, progress: Optional[ProgressFn] = None,
                 cancel: Optional[CancelToken] = None) -> np.ndarray:
        """The explained score of each coalition's image."""
        coalitions = np.asarray(coalitions, bool)
        out = np.empty(len(coalitions))
        device, dtype = model_device(self.classifier), model_dtype(self.classifier)
        size = self.batch_size
        if len(coalitions) > 1:
            size = images_per_pass(self.classifier, torch.as_tensor(self.image, dtype=dtype, device=device), size)
        for start in range(0, len(coalitions), size):
            report(progress, "coalitions", start, len(coalitions), cancel)
            chunk = coalitions[start:start + size]
            batch = torch.from_numpy(np.stack([self.coalition_image(c) for c in chunk]).astype(np.float32))
            with torch.no_grad():
                logits = forward_logits(self.classifier, batch.to(device=device, dtype=dtype)).double()
            s = logits.softmax(-1) if self.score == "probability" else logits
            out[start:start + len(chunk)] = to_numpy(s[:, self.target])
            self.n_forward += len(chunk)
        report(progress, "coalitions", len(coalitions), len(coalitions), cancel)
        return out


@dataclass(frozen=True)
class GameSummary:
    """Everything the exact analysis of one set's removal game gives.

    Attributes
    ----------
    name : str
        ``"set"`` or the control's name.
    pixels : ndarray
        The set's flat pixel indices.
    parts : tuple of ndarray
        Its parts (flat pixel indices), part 0 holding the seed.
    values : ndarray (2^k,)
        ``v(T)`` for every coalition in bit-mask order (bit ``i``: part ``i`` in).
    dividends : ndarray (2^k,)
        Harsanyi dividends; over the non-empty coalitions they add up to ``v(N) - v(empty)``.
    pairs : ndarray (k, k)
        The pairwise interaction index (``index``) between parts.
    nonadditive : float
        The share of the game's variance no additive model of the parts explains.
    index, context, removal : str
    """

    name: str
    pixels: np.ndarray
    parts: tuple
    values: np.ndarray
    dividends: np.ndarray
    pairs: np.ndarray
    nonadditive: float
    index: str
    context: str
    removal: str

    @property
    def effect(self) -> float:
        """``v(all parts) - v(no part)``: what the whole set does to the score."""
        return float(self.values[-1] - self.values[0])


def analyse_game(game: PartsGame, name: str = "set", index: str = "sii",
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> GameSummary:
    """Score every coalition of ``game`` and summarise it exactly (:class:`GameSummary`)."""
    values = game(coalition_matrix(game.n_players), progress, cancel)
    dividends = moebius(values)
    pixels = np.concatenate(game.parts)
    return GameSummary(name, pixels, tuple(game.parts), values, dividends, pair_interactions(dividends, index),
                       nonadditive_share(values), index, game.context, game.removal)


# ---- control sets: the same size from the same seed, without the Hessian ------------------
def nearest_control(seed_yx, n: int, labels: np.ndarray) -> np.ndarray:
    """The ``n`` pixels nearest ``seed_yx``, those of its segment first (a disk in the segment)."""
    h, w = labels.shape
    yy, xx = np.mgrid[:h, :w]
    d = ((yy - seed_yx[0]) ** 2 + (xx - seed_yx[1]) ** 2).ravel().astype(np.float64)
    outside = labels.ravel() != labels[seed_yx]
    return np.lexsort((np.arange(h * w), d, outside))[:n]


def top_ig_control(seed_yx, n: int, labels: np.ndarray, attribution: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The ``n`` pixels of largest smoothed ``|IG|``, those of the seed's segment first."""
    from scipy.ndimage import gaussian_filter

    a = np.abs(np.asarray(attribution, np.float64))
    a = a.sum(0) if a.ndim == 3 else a
    smooth = gaussian_filter(a, sigma).ravel()
    outside = labels.ravel() != labels[seed_yx]
    return np.lexsort((np.arange(smooth.size), -smooth, outside))[:n]


def moved_controls(pixels, labels: np.ndarray, seed_yx, n_moved: int = N_MOVED, seed: int = 0,
                   max_overlap: float = 0.25, tries: int = 400) -> list:
    """The set's own shape translated ``n_moved`` times to other places, each inside the
    image, overlapping the set by at most ``max_overlap``, and with as many of its pixels in
    the seed's segment as can be found among ``tries`` random offsets.
    """
    h, w = labels.shape
    pixels = np.asarray(pixels, np.int64)
    ys, xs = pixels // w, pixels % w
    own = set(pixels.tolist())
    segment = labels == labels[seed_yx]
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(tries):
        dy = int(rng.integers(-ys.min(), h - ys.max())) if ys.max() - ys.min() < h else 0
        dx = int(rng.integers(-xs.min(), w - xs.max())) if xs.max() - xs.min() < w else 0
        moved = (ys + dy) * w + (xs + dx)
        overlap = len(own.intersection(moved.tolist())) / len(pixels)
        if (dy or dx) and overlap <= max_overlap:
            found.append((float(segment.ravel()[moved].mean()), dy, dx, moved))
    found.sort(key=lambda t: (-t[0], t[1], t[2]))
    out, seen = [], set()
    for _, dy, dx, moved in found:
        if (dy, dx) not in seen:
            seen.add((dy, dx))
            out.append(moved)
        if len(out) == n_moved:
            break
    return out


def control_sets(pixels, seed_yx, labels: np.ndarray, attribution=None, controls: Sequence[str] = CONTROLS,
                 n_moved: int = N_MOVED, seed: int = 0) -> list:
    """``[(name, pixels)]``: the set itself (its seed pixel first) and each of its ``controls``."""
    for c in controls:
        if c not in CONTROLS:
            raise ValueError(f"unknown control {c!r}; use any of {', '.join(CONTROLS)}")
    if "top-ig" in controls and attribution is None:
        raise ValueError("the top-ig control needs the image's attribution (attribution=)")
    pixels = np.unique(np.asarray(pixels, np.int64)) if pixels is not None else None
    if pixels is None or pixels.size == 0:
        raise ValueError("the interaction test needs a non-empty set of pixels")
    seed_yx = (int(seed_yx[0]), int(seed_yx[1]))
    first = seed_yx[0] * labels.shape[1] + seed_yx[1]
    ordered = np.concatenate([[first], pixels[pixels != first]]) if first in pixels else pixels
    sets = [("set", ordered)]
    if "nearest" in controls:
        sets.append(("nearest", nearest_control(seed_yx, len(pixels), labels)))
    if "top-ig" in controls:
        sets.append(("top-ig", top_ig_control(seed_yx, len(pixels), labels, attribution)))
    if "moved" in controls:
        sets += [(f"moved {i + 1}", m) for i, m in enumerate(moved_controls(ordered, labels, seed_yx, n_moved, seed))]
    return sets


@dataclass(frozen=True)
class InteractionTest:
    """The interaction test of one set against its controls.

    Attributes
    ----------
    set : GameSummary
    controls : tuple of GameSummary
    p_value : float
        ``(1 + #controls at least as non-additive as the set) / (1 + #controls)``: the chance
        of a set ranking this high among its controls if the Hessian did not matter.
    n_forward : int
        Forward passes the test took.
    """

    set: GameSummary
    controls: tuple
    p_value: float
    n_forward: int

    @property
    def control_mean(self) -> float:
        """The controls' mean non-additive share."""
        return float(np.mean([c.nonadditive for c in self.controls])) if self.controls else float("nan")

    @property
    def difference(self) -> float:
        """The set's non-additive share minus its controls' mean."""
        return self.set.nonadditive - self.control_mean

    @property
    def above_controls(self) -> bool:
        """Whether the set is more non-additive than every one of its controls."""
        return bool(self.controls) and all(self.set.nonadditive > c.nonadditive for c in self.controls)

    def verdict(self) -> str:
        """One plain line: do these pixels act together, beyond a compact region of their size?"""
        s = self.set
        base = (f"interaction share {s.nonadditive:.2f} (the part of the set's effect no additive "
                f"model of its {len(s.parts)} parts explains) vs {self.control_mean:.2f} for "
                f"{len(self.controls)} Hessian-free regions of the same size")
        if self.above_controls:
            return f"these pixels act together: {base} (p = {self.p_value:.2f})"
        return f"no more interaction than a compact region of the same size: {base} (p = {self.p_value:.2f})"

    def to_dict(self) -> dict:
        """JSON-ready numbers (no pixel lists)."""
        def one(g):
            return {"name": g.name, "n_pixels": int(len(g.pixels)), "n_parts": len(g.parts),
                    "nonadditive": g.nonadditive, "effect": g.effect,
                    "max_pair": float(np.abs(g.pairs).max()) if len(g.parts) > 1 else 0.0}
        return {"set": one(self.set), "controls": [one(c) for c in self.controls], "p_value": self.p_value,
                "difference": self.difference, "context": self.set.context, "removal": self.set.removal,
                "index": self.set.index, "n_forward": self.n_forward, "verdict": self.verdict()}


def check_test_inputs(image: np.ndarray, classifier, target, pixels, seed_yx, labels, seed) -> np.ndarray:
    """The set's ``pixels`` as flat indices, or ValueError naming the input that does not fit
    the image: NumPy would read a negative index (pixel or seed) from the far end of the image,
    and a 0..255 image would be scored saturated.
    """
    h, w = image.shape[1:]
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError(f"the image's values lie in [{np.nanmin(image):.3g}, {np.nanmax(image):.3g}] (or are "
                         "not finite); pass it in [0, 1] (a 0..255 image: divide by 255)")
    n_classes = len(getattr(classifier, "class_names", None) or ()) or None
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 0 or \
            (n_classes is not None and target >= n_classes):
        limit = f" and < {n_classes}" if n_classes else ""
        raise ValueError(f"target must be a class index, a whole number >= 0{limit}; got {target!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    arr = np.asarray(pixels)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise ValueError(f"pixels must be a non-empty list of flat pixel indices (whole numbers), got "
                         f"dtype {arr.dtype} and shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= h * w:
        raise ValueError(f"pixels lie in [{arr.min()}, {arr.max()}], outside the {h} x {w} image's "
                         f"indices 0..{h * w - 1}")
    yx = tuple(seed_yx)
    if len(yx) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in yx) \
            or not (0 <= yx[0] < h and 0 <= yx[1] < w):
        raise ValueError(f"seed_yx {seed_yx!r} lies outside the {h} x {w} image")
    if np.shape(labels) != (h, w):
        raise ValueError(f"labels have shape {np.shape(labels)}, the image needs ({h}, {w})")
    return arr.astype(np.int64)


def interaction_test(x, classifier, target: int, pixels, seed_yx, labels: np.ndarray,
                     attribution: Optional[np.ndarray] = None, *, n_parts: int = 6,
                     removal: str = "blur", context: str = "remove", controls: Sequence[str] = CONTROLS,
                     n_moved: int = N_MOVED, index: str = "sii", score: str = "logit",
                     baseline: Optional[np.ndarray] = None, batch_size: int = 16, seed: int = 0,
                     progress: Optional[ProgressFn] = None,
                     cancel: Optional[CancelToken] = None) -> InteractionTest:
    """The interaction test of the set ``pixels`` (flat pixel indices of ``x``) against its
    controls (see the module docstring).

    Parameters
    ----------
    x : Tensor or ndarray (3, H, W)
        The image in [0, 1].
    classifier, target :
        The model and the class whose score is explained.
    pixels : array of int
        The set's pixels (flat indices ``y * W + x``).
    seed_yx : tuple
        The set's seed pixel (its controls start from it).
    labels : ndarray (H, W)
        Segment labels (controls stay in the seed's segment where they can).
    attribution : ndarray, optional
        IG of the image, ``(3, H, W)`` or ``(H, W)``; needed for the ``top-ig`` control.
    n_parts, removal, context, index, score, baseline, batch_size, seed :
        Parts per set (``2^n_parts`` forward passes per set), how pixels are removed, the
        context, the pairwise index (``"sii"`` or ``"bii"``), the explained score, the fill of
        ``removal="baseline"``, images per forward pass and the seed of the parts, the
        imputation noise and the moved controls.
    controls : sequence of {"nearest", "top-ig", "moved"}
    n_moved : int
        How many moved copies of the set's shape.
    """
    image = to_numpy(x)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected one channels-first image (3, H, W), got shape {image.shape}; "
                         "for an (H, W, 3) array pass image.transpose(2, 0, 1)")
    shape_hw = image.shape[1:]
    pixels = check_test_inputs(image, classifier, target, pixels, seed_yx, labels, seed)
    sets = control_sets(pixels, seed_yx, labels, attribution, controls, n_moved, seed)
    summaries, n_forward = [], 0
    for k, (name, pix) in enumerate(sets):
        parts = split_parts(pix, shape_hw, n_parts, seed)
        game = PartsGame(image, classifier, int(target), parts, removal, context, score, seed, batch_size, baseline)

        def sub(stage, done, total, k=k, name=name):
            report(progress, f"interaction test: {name}", k * total + done, len(sets) * total, cancel)
        summaries.append(analyse_game(game, name, index, sub, cancel))
        n_forward += game.n_forward
    own, others = summaries[0], tuple(summaries[1:])
    p = (1 + sum(c.nonadditive >= own.nonadditive for c in others)) / (1 + len(others))
    return InteractionTest(own, others, float(p), n_forward)


def set_tests(x, classifier, target: int, sets: Sequence[PixelSet], labels: np.ndarray,
              attribution: Optional[np.ndarray] = None, *, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None, seed: int = 0, **options) -> list:
    """:func:`interaction_test` of every set in ``sets`` (one :class:`InteractionTest` each).

    ``options`` go to :func:`interaction_test` (``n_parts``, ``removal``, ...). Without an
    ``attribution``, the ``top-ig`` control's IG is computed here, on the explainer's default
    path (64 adaptive points from a black baseline), so the control is the IG H-Sets seeds from.
    """
    if attribution is None and sets and "top-ig" in options.get("controls", CONTROLS):

        # the model's own dtype: a float32 model refuses the float64 image to_numpy would give
        xt = torch.as_tensor(to_numpy(x)).to(model_dtype(classifier))
        attribution = to_numpy(integrated_gradients(xt, classifier, target=int(target)).attribution, None)
    out = []
    for k, s in enumerate(sets):
        def sub(stage, done, total, k=k):
            report(progress, "interaction test", k * total + done, len(sets) * total, cancel)
        out.append(interaction_test(x, classifier, target, s.pixels, s.seed_yx, labels, attribution,
                                    seed=seed, progress=sub, cancel=cancel, **options))
    return out


def explainer_test(explainer, members, seed_yx, *, progress: Optional[ProgressFn] = None,
                   cancel: Optional[CancelToken] = None, seed: int = 0, **options) -> InteractionTest:
    """:func:`interaction_test` of a set grown by ``explainer`` (``members`` in its feature space),
    with the explainer's image, model, target, segments and IG (computed once and cached there).

    ``options`` go to :func:`interaction_test` (``n_parts``, ``removal``, ...).
    """
    pixels = np.unique(feature_pixels(members, explainer.shape, explainer.config.features))
    return interaction_test(explainer.x.detach().cpu(), explainer.classifier, explainer.target, pixels,
                            tuple(seed_yx), explainer.segment().labels,
                            to_numpy(explainer.attribution().attribution, None),
                            seed=seed, progress=progress, cancel=cancel, **options)


#: the per-map metrics of :func:`interaction_metrics` (``hsets evaluate`` and ``sweep`` columns)
INTERACTION_METRICS = ("interaction_share", "interaction_controls", "interaction_difference",
                       "interaction_above_controls", "interaction_p", "interaction_significant",
                       "interaction_sets")

#: the level below which a set's test p-value counts as significant (``interaction_significant``)
SIGNIFICANCE = 0.05


def interaction_metrics(tests: Sequence[InteractionTest]) -> dict:
    """One map's interaction numbers from the tests of its sets.

    ``interaction_share``: the sets' mean non-additive share; ``interaction_controls``: their
    controls' mean; ``interaction_difference``: the mean of set minus controls;
    ``interaction_above_controls``: the fraction of sets more non-additive than every one of
    their controls; ``interaction_p``: the sets' median p-value; ``interaction_significant``: the
    fraction with p below :data:`SIGNIFICANCE` (never with the default 4 controls, whose p-values
    are at least 0.2: ``n_moved=19`` lets them reach 1/22); ``interaction_sets``: how many sets
    were tested (None values when none was).
    """
    if not tests:
        return {k: (0 if k == "interaction_sets" else None) for k in INTERACTION_METRICS}
    return {"interaction_share": float(np.mean([t.set.nonadditive for t in tests])),
            "interaction_controls": float(np.mean([t.control_mean for t in tests])),
            "interaction_difference": float(np.mean([t.difference for t in tests])),
            "interaction_above_controls": float(np.mean([t.above_controls for t in tests])),
            "interaction_p": float(np.median([t.p_value for t in tests])),
            "interaction_significant": float(np.mean([t.p_value < SIGNIFICANCE for t in tests])),
            "interaction_sets": len(tests)}
