"""Pick a segmenter by name (``"auto"``, ``"slic"``, ``"felzenszwalb"``, ...) or wrap a callable."""
from __future__ import annotations

import warnings

import numpy as np

from .base import FunctionSegmenter, PrecomputedSegmenter, SegmentationError
from .superpixel import SuperpixelSegmenter


def get_segmenter(spec="auto", **kwargs):
    """Return a segmenter for ``spec``.

    ``spec`` may be a name (``"auto"``, ``"slic"``, ``"felzenszwalb"``), a callable
    ``image -> labels | masks | Segmentation``, or a precomputed label map / mask stack.
    ``"auto"`` picks the best segmenter available and says which and why.
    """
    if isinstance(spec, np.ndarray):
        return PrecomputedSegmenter(spec)
    if callable(spec) and not isinstance(spec, str):
        if hasattr(spec, "__call__") and hasattr(spec, "name"):
            return spec
        return FunctionSegmenter(spec)
    if spec in ("slic", "felzenszwalb"):
        return SuperpixelSegmenter(spec, **kwargs)
    if spec == "auto":
        warnings.warn("segmenter='auto': no SAM-class segmenter is available in this build; "
                      "using SLIC superpixels", stacklevel=2)
        return SuperpixelSegmenter("slic", **kwargs)
    raise SegmentationError(f"unknown segmenter {spec!r}; use 'auto', 'slic', 'felzenszwalb', a "
                            "function or a label map")
