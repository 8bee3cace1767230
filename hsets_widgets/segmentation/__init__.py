"""Segmenters: SAM-class models, superpixels, user functions; all behind one interface."""
from .base import (FunctionSegmenter, PrecomputedSegmenter, Segmentation, SegmentationError,
                   Segmenter, as_segmentation)
from .superpixel import SuperpixelSegmenter
from .registry import get_segmenter

__all__ = ["Segmentation", "SegmentationError", "Segmenter", "FunctionSegmenter",
           "PrecomputedSegmenter", "SuperpixelSegmenter", "as_segmentation", "get_segmenter"]
