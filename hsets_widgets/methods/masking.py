"""Images composed from two others by segments, scored in batches.

The perturbation methods (:mod:`~hsets_widgets.methods.archipelago`, :mod:`~hsets_widgets.methods.moxi`) ask
the model about many images in which each segment shows either the photo or a baseline. A
*coalition* is one such image, written as a boolean row over the segments (True: the photo's
pixels). Images are made batch by batch on the model's device, so thousands of coalitions never
sit in memory at once.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..model.forward import images_per_pass
from ..model.models import model_device, model_dtype
from ..plumbing.common import to_numpy
from ..plumbing.progress import CancelToken, ProgressFn, report


def segment_index(labels: np.ndarray) -> tuple:
    """``(ids, index)``: the distinct labels in increasing order and, per pixel, the position of
    its label among them (so segment ``k`` is ``index == k``).
    """
    ids, index = np.unique(np.asarray(labels), return_inverse=True)
    return ids, index.reshape(np.asarray(labels).shape)


def compose(x: torch.Tensor, baseline: torch.Tensor, index: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` images showing ``x`` on the segments a row of ``keep`` marks and
    ``baseline`` elsewhere.

    ``index`` is the ``(H, W)`` segment position of every pixel (:func:`segment_index`),
    ``keep`` a ``(B, n_segments)`` boolean tensor.
    """
    shown = keep[:, index]                                   # (B, H, W)
    return torch.where(shown.unsqueeze(1), x.unsqueeze(0), baseline.unsqueeze(0))


def coalition_scores(f, x: torch.Tensor, baseline: torch.Tensor, labels: np.ndarray, coalitions,
                     batch_size: int = 32, progress: Optional[ProgressFn] = None,
                     cancel: Optional[CancelToken] = None, stage: str = "forward passes") -> np.ndarray:
    """The score ``f`` of every coalition (rows of ``coalitions``, ``(m, n_segments)`` bool),
    as float64 ``(m,)``.

    ``f`` maps ``(B, C, H, W)`` to ``(B,)`` (e.g. :class:`~hsets_widgets.model.scores.ScoreFn`); ``x``
    and ``baseline`` are ``(C, H, W)``; ``labels`` the ``(H, W)`` segments. At most
    ``batch_size`` images a pass, fewer where the memory room is smaller
    (:func:`~hsets_widgets.model.forward.images_per_pass`).
    """
    coalitions = np.asarray(coalitions, dtype=bool)
    ids, index = segment_index(labels)
    if coalitions.ndim != 2 or coalitions.shape[1] != len(ids):
        raise ValueError(f"coalitions must be (m, {len(ids)}) for {len(ids)} segments, got {coalitions.shape}")
    clf = getattr(f, "classifier", None)
    device = model_device(clf) if clf is not None else x.device
    dtype = model_dtype(clf) if clf is not None else x.dtype
    xs, bs = x.detach().to(device, dtype), baseline.detach().to(device, dtype)
    idx = torch.as_tensor(index, device=device)
    out = np.empty(len(coalitions), dtype=np.float64)
    if clf is not None and len(coalitions) > 1:
        batch_size = images_per_pass(clf, xs, batch_size)
    with torch.no_grad():
        for start in range(0, len(coalitions), batch_size):
            report(progress, stage, start, len(coalitions), cancel)
            keep = torch.as_tensor(coalitions[start:start + batch_size], device=device)
            out[start:start + len(keep)] = to_numpy(f(compose(xs, bs, idx, keep)))
    report(progress, stage, len(coalitions), len(coalitions), cancel)
    return out
