"""The built-in attribution methods, each in the protocol of :mod:`~hsets_widgets.methods.protocol`:
``fn(x, classifier, target, *, progress=None, cancel=None, **options) -> MapWithSets``.

``gradient``, ``smoothgrad``, ``random`` and ``ig`` make maps only; ``hsets``, ``archipelago``,
``moxi`` and ``ih`` also return the sets they painted, so the interaction test can test them;
``caso`` and ``cafo`` return CASO's ``|delta*|``.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from ..hsets.explain import explain
from ..hsets.integrated_gradients import integrated_gradients, path_batch_sizes, score_gradients
from ..model.models import model_device, model_dtype
from ..model.scores import ScoreFn
from ..plumbing.common import quiet_auto_segmenter
from ..plumbing.progress import CancelToken, ProgressFn
from .archipelago import archipelago, merge_pairs, superpixels
from .caso import caso
from .integrated_hessians import integrated_hessians
from .masking import segment_index
from .moxi import moxi
from .protocol import MapWithSets, centre_pixel, pixel_set, pixel_sets


def gradient(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None) -> MapWithSets:
    """Plain gradient of the ``target`` logit, ``(3, H, W)``."""
    return MapWithSets(score_gradients(x.unsqueeze(0), classifier, target)[0])


def smoothgrad(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
               cancel: Optional[CancelToken] = None, n_samples: int = 25, sigma: float = 0.15, seed: int = 0,
               batch_size: Union[int, str] = "auto") -> MapWithSets:
    """SmoothGrad (Smilkov et al. 2017): mean gradient over noisy copies, ``(3, H, W)``.

    Parameters
    ----------
    n_samples : int
        Number of noisy copies.
    sigma : float
        Noise standard deviation in [0, 1] image units.
    seed : int
        Seed of the noise generator (CPU, so results do not depend on the device).
    batch_size : int or "auto"
        Copies per forward/backward pass; ``"auto"``: as many (up to 16) as fit in the memory
        room, as IG's path points (:func:`~hsets_widgets.hsets.integrated_gradients.path_batch_sizes`).
    """
    if batch_size == "auto":
        batch_size = path_batch_sizes(x.to(model_device(classifier), model_dtype(classifier)),
                                      ScoreFn(classifier, target, "logit"))[0]
    gen = torch.Generator().manual_seed(int(seed))
    base = x.detach().cpu().float()
    total = torch.zeros_like(base, dtype=torch.float64)
    done = 0
    while done < n_samples:
        if cancel is not None:
            cancel.check()
        b = min(batch_size, n_samples - done)
        noise = torch.randn((b,) + tuple(base.shape), generator=gen) * sigma
        g = score_gradients(base.unsqueeze(0) + noise, classifier, target)
        total += g.double().sum(0).cpu()
        done += b
    return MapWithSets((total / n_samples).float())


def random_map(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
               cancel: Optional[CancelToken] = None, seed: int = 0) -> MapWithSets:
    """Uniform random pixel map ``(H, W)`` from a generator seeded with ``seed``: the floor any
    method should beat.
    """
    return MapWithSets(np.random.default_rng(seed).random(tuple(x.shape[-2:])))


def integrated_gradients_map(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
                             cancel: Optional[CancelToken] = None, baseline="zeros", n_steps: int = 64,
                             rule: str = "adaptive", internal_batch_size: Union[int, str] = "auto") -> MapWithSets:
    """Integrated Gradients of the target logit, ``(3, H, W)``; path points per pass as fit in
    the memory room (``"auto"``, as the explainer's IG) unless a number is given.
    """
    res = integrated_gradients(x.to(model_device(classifier)), classifier, target=target,
                               baseline=baseline, n_steps=n_steps, rule=rule, score="logit",
                               internal_batch_size=internal_batch_size, progress=progress, cancel=cancel)
    return MapWithSets(res.attribution)


def hsets_map(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None, preset: str = "default", segmenter="auto", seed: int = 0,
              **overrides) -> MapWithSets:
    """The H-Sets heatmap ``(H, W)`` for the ``target`` class, with its sets."""
    with quiet_auto_segmenter():
        ex = explain(x.detach().cpu(), classifier, target, preset=preset, segmenter=segmenter,
                     device=model_device(classifier), progress=progress, cancel=cancel, seed=seed, **overrides)
    return MapWithSets(np.asarray(ex.heatmap, dtype=np.float64), pixel_sets(ex.sets, tuple(x.shape), ex.features),
                       np.asarray(ex.labels), np.asarray(ex.ig))


def archipelago_map(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None, segmenter="quickshift", top_k: int = 15,
                    paint: str = "sets", top: int = 5, baseline="model-zero", batch_size: int = 32) -> MapWithSets:
    """Archipelago (:mod:`hsets_widgets.methods.archipelago`): its map and the sets it paints
    (those of more than one segment with a positive value, at most ``top``).
    """
    r = archipelago(x, classifier, target, segmenter=segmenter, baseline=baseline, top_k=top_k,
                    batch_size=batch_size, progress=progress, cancel=cancel)
    width = x.shape[-1]
    items = [(s, v) for s, v in r.explanation() if len(s) > 1 and v > 0][:top]
    return MapWithSets(r.heatmap(paint, top), tuple(pixel_set(r.set_pixels(s), width, v) for s, v in items),
                       r.labels)


def moxi_map(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None, grid: int = 10, max_steps: Optional[int] = 25,
             score: str = "log_odds", baseline="model-zero", batch_size: int = 32) -> MapWithSets:
    """MoXI (:mod:`hsets_widgets.methods.moxi`): the rank map and its one set (the patches inserted
    until the photo's score is reached), seeded at the first patch.
    """
    r = moxi(x, classifier, target, grid=grid, max_steps=max_steps, score=score, baseline=baseline,
             batch_size=batch_size, progress=progress, cancel=cancel)
    first = np.flatnonzero(r.labels.ravel() == r.order[0])
    value = r.curve[r.set_size] - r.curve[0]
    return MapWithSets(r.heatmap(), (pixel_set(r.set_pixels(), x.shape[-1], value, centre_pixel(first, x.shape[-1])),),
                       r.labels)


def ih_map(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
           cancel: Optional[CancelToken] = None, segmenter="slic", n_steps: int = 8, top_k: int = 5,
           baseline="zeros") -> MapWithSets:
    """Integrated Hessians between segments (:mod:`hsets_widgets.methods.integrated_hessians`): each
    segment painted with its summed |interaction| with the others; sets from the ``top_k``
    strongest pairs merged where they overlap, valued by their summed interactions.
    """
    labels = superpixels(x, segmenter)
    r = integrated_hessians(x, classifier, target, labels=labels, n_steps=n_steps, baseline=baseline,
                            progress=progress, cancel=cancel)
    off = r.matrix - np.diag(np.diag(r.matrix))
    _, index = segment_index(labels)
    i, j = np.triu_indices(len(off), 1)
    order = np.argsort(-np.abs(off[i, j]), kind="stable")[:top_k]
    sets = merge_pairs([(int(i[k]), int(j[k])) for k in order])
    width = x.shape[-1]
    pix = [np.flatnonzero(np.isin(index.ravel(), s)) for s in sets]
    values = [float(off[np.ix_(s, s)].sum() / 2) for s in sets]
    return MapWithSets(np.abs(off).sum(1)[index], tuple(pixel_set(p, width, v) for p, v in zip(pix, values)), labels)


def caso_map(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None, l1: float = 0.0, l2: float = 20.0, n_iter: int = 10,
             step: float = 3e-2, power_iterations: int = 10, seed: int = 0) -> MapWithSets:
    """CASO (:mod:`hsets_widgets.methods.caso`): ``|delta*|`` of the second-order model of the loss."""
    return MapWithSets(caso(x, classifier, target, l1=l1, l2=l2, n_iter=n_iter, step=step,
                            power_iterations=power_iterations, seed=seed, progress=progress, cancel=cancel).heatmap())


def cafo_map(x: torch.Tensor, classifier, target: int, *, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None, l1: float = 0.0, l2: float = 20.0, n_iter: int = 10,
             step: float = 3e-2) -> MapWithSets:
    """CAFO: CASO without the Hessian term."""
    return MapWithSets(caso(x, classifier, target, second_order=False, l1=l1, l2=l2, n_iter=n_iter, step=step,
                            progress=progress, cancel=cancel).heatmap())
