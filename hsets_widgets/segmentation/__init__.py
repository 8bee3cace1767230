"""Segmenters: SAM-class models, superpixels, user functions; all behind one interface.

``get_segmenter(spec)(image) -> Segmentation`` with ``image`` an (H, W, 3) float array in
[0, 1] (the classifier's crop) and masks of the same height and width. Heavy modules (torch
models, onnxruntime) load only when a SAM-class segmenter is first used.
"""
from .base import (
    FunctionSegmenter,
    PrecomputedSegmenter,
    Segmentation,
    SegmentationError,
    Segmenter,
    SegmenterBase,
    as_segmentation,
    as_segmenter,
)
from .cache import DEFAULT_CACHE, CachedSegmenter, MaskCache
from .registry import NAMES, SEGMENTERS, SegmenterKind, choose_auto, get_segmenter, register_segmenter
from .superpixel import SuperpixelSegmenter

__all__ = ["Segmentation", "SegmentationError", "Segmenter", "SegmenterBase", "as_segmenter", "FunctionSegmenter",
           "PrecomputedSegmenter", "SuperpixelSegmenter", "MiniSamSegmenter", "SamSegmenter",
           "CachedSegmenter", "MaskCache", "DEFAULT_CACHE", "as_segmentation", "get_segmenter",
           "choose_auto", "NAMES", "SEGMENTERS", "SegmenterKind", "register_segmenter"]


def __getattr__(name):
    # import the model-backed segmenters on first use (they pull in torch / onnxruntime)
    if name == "MiniSamSegmenter":
        from .minisam import MiniSamSegmenter

        return MiniSamSegmenter
    if name == "SamSegmenter":
        from .sam import SamSegmenter

        return SamSegmenter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
