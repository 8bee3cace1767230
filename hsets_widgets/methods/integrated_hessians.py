"""Integrated Hessians (Janizek, Sturmfels and Lee, JMLR 2021): IG of IG, one row or one matrix.

The interaction of features ``i`` and ``j`` along the straight path from the baseline ``x'`` to
the photo ``x`` (``d = x - x'``) is::

    G_ij = d_i d_j  int_0^1 int_0^1  a b  H_ij(x' + a b d)  da db            (i != j)
    G_ii = the same  +  d_i int int dF_i(x' + a b d) da db                  (main effect)

Only the product ``s = a b`` enters, and ``s`` has the density ``-ln s`` on ``(0, 1]``, so each
double integral is one integral over ``s`` with weights ``s (-ln s)`` (the Hessian term) and
``-ln s`` (the gradient term), taken here bin by bin exactly. Every row sums to that feature's
IG (completeness, up to the integration error), and the matrix is symmetric.

A row costs one Hessian-vector product and one gradient per path point (``n_steps``); a matrix
over ``k`` segments, ``k n_steps``. ReLU networks have no curvature, so the activations are
smoothed while the Hessian is taken (the toolkit's curvature options; softplus with
``beta = 10``, Integrated Hessians' own choice, by default). Features are pixels (the three
channels of a pixel move together) or segments (a label map).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from ..hsets.curvature import CurvatureSpec, curvature
from ..hsets.hessian import affine_batch_norm, hvp_batch
from ..hsets.integrated_gradients import make_baseline
from ..model.scores import ScoreFn, resolve_target
from ..plumbing.common import single_image, to_numpy
from ..plumbing.progress import CancelToken, ProgressFn, report
from .masking import segment_index


def path_weights(n_steps: int) -> tuple:
    """``(s, w_hessian, w_gradient)``: midpoints of ``n_steps`` equal bins of ``(0, 1]`` and the
    exact integrals of ``s (-ln s)`` and ``-ln s`` over each bin.
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a whole number >= 1, got {n_steps!r}")
    edges = np.linspace(0.0, 1.0, n_steps + 1)

    def prim_h(s):      # an antiderivative of s (-ln s)
        return np.where(s > 0, s ** 2 / 4 - s ** 2 * np.log(np.where(s > 0, s, 1.0)) / 2, 0.0)

    def prim_g(s):      # an antiderivative of -ln s
        return np.where(s > 0, s - s * np.log(np.where(s > 0, s, 1.0)), 0.0)

    mids = (edges[:-1] + edges[1:]) / 2
    return mids, np.diff(prim_h(edges)), np.diff(prim_g(edges))


@dataclass(frozen=True)
class IHResult:
    """Integrated Hessians of one image.

    Attributes
    ----------
    matrix : ndarray
        ``(n, n)`` interactions between the features (segments), or ``(1, H W)`` for one
        pixel's row.
    ig : ndarray
        The features' IG computed from the same path points (rows sum to it).
    labels : ndarray or None
        The segments (``None`` for a pixel row).
    feature : int or None
        The pixel of the row.
    target : int
    n_steps : int
    """

    matrix: np.ndarray
    ig: np.ndarray
    labels: Optional[np.ndarray]
    feature: Optional[int]
    target: int
    n_steps: int

    @property
    def completeness_error(self) -> float:
        """Largest ``|row sum - IG|`` relative to the largest ``|IG|``."""
        rows = self.matrix.sum(1)
        ig = self.ig if self.feature is None else self.ig[[self.feature]]
        return float(np.abs(rows - ig).max() / max(np.abs(self.ig).max(), 1e-12))


def _path_products(f, x: torch.Tensor, b: torch.Tensor, tangents: torch.Tensor, n_steps: int,
                   progress, cancel) -> tuple:
    """For every tangent ``v`` (``(k, C, H, W)``) the path integral of ``H v`` with weight
    ``s (-ln s)``; and the gradient's path integrals with weight ``-ln s`` (the main-effect term)
    and with weight 1 (IG's), ``(k, C, H, W)``, ``(C, H, W)``, ``(C, H, W)``.
    """
    s, wh, wg = path_weights(n_steps)
    d = x - b
    hv = torch.zeros_like(tangents, dtype=torch.float64)
    g = torch.zeros_like(x, dtype=torch.float64)
    g_ig = torch.zeros_like(x, dtype=torch.float64)

    for k, (sk, whk, wgk) in enumerate(zip(s, wh, wg)):
        report(progress, "Integrated Hessians", k, len(s), cancel)
        grads, prods = hvp_batch((b + float(sk) * d).detach(), f, tangents, with_gradient=True)
        hv += whk * prods.double()
        g += wgk * grads.double()
        g_ig += grads.double() / len(s)
    report(progress, "Integrated Hessians", len(s), len(s), cancel)
    return hv, g, g_ig


def integrated_hessians(x, classifier, target: Optional[int] = None, *, labels: Optional[np.ndarray] = None,
                        pixel: Optional[int] = None, baseline: Union[str, torch.Tensor] = "zeros",
                        n_steps: int = 16, score: str = "logit",
                        curvature_spec: Optional[CurvatureSpec] = None,
                        progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                        seed: int = 0) -> IHResult:
    """Integrated Hessians of ``x`` (``(3, H, W)`` in [0, 1]): the matrix between the segments of
    ``labels``, or the row of one ``pixel`` (flat index ``y * W + x``) against every pixel.

    Parameters
    ----------
    labels : ndarray (H, W), optional
        Segments: the result is their ``(k, k)`` interaction matrix.
    pixel : int, optional
        Instead: the ``(1, H W)`` row of this pixel.
    baseline : str or Tensor
        As :func:`~hsets_widgets.hsets.integrated_gradients.make_baseline`.
    n_steps : int
        Path points (one gradient and one Hessian-vector product per feature each).
    curvature_spec : CurvatureSpec
        How ReLU-family activations are smoothed for the Hessian (softplus, beta 10).
    seed : int
        Unused (deterministic); accepted so every method takes one.
    """
    x = single_image(x)
    if (labels is None) == (pixel is None):
        raise ValueError("give either labels= (a segment matrix) or pixel= (one pixel's row)")
    target, _ = resolve_target(x, classifier, target)
    f = ScoreFn(classifier, int(target), score)
    b = make_baseline(x, baseline, classifier)
    x, b = x.detach().to(b.device, b.dtype), b.detach()
    d = x - b
    h, w = x.shape[-2:]
    if labels is not None:
        if np.asarray(labels).shape != (h, w):
            raise ValueError(f"labels have shape {np.asarray(labels).shape}, the image ({h}, {w})")
        _, index = segment_index(labels)
        masks = torch.as_tensor(np.stack([index == k for k in range(int(index.max()) + 1)]), device=x.device)
    else:
        if not 0 <= int(pixel) < h * w:
            raise ValueError(f"pixel {pixel} is outside the {h} x {w} image")
        masks = torch.zeros((1, h, w), dtype=torch.bool, device=x.device)
        masks.view(1, -1)[0, int(pixel)] = True
    tangents = d.unsqueeze(0) * masks.unsqueeze(1)                 # d restricted to each feature
    with curvature(curvature_spec or CurvatureSpec("softplus", beta=10.0)), affine_batch_norm(), \
            torch.enable_grad():
        hv, g, g_ig = _path_products(f, x, b, tangents, n_steps, progress, cancel)
    dd = d.double()
    main = (dd * g).sum(0)                                         # (H, W): the main-effect term per pixel
    ig_pixels = (dd * g_ig).sum(0)                                 # (H, W): IG per pixel, same points
    if labels is not None:
        mm = masks.double()
        matrix = torch.einsum("khw,chw,ichw->ik", mm, dd, hv)      # G_ik = sum over k's pixels of d (H v_i)
        first = torch.einsum("khw,hw->k", mm, main)
        ig = torch.einsum("khw,hw->k", mm, ig_pixels)
    else:
        matrix = (dd * hv[0]).sum(0).reshape(1, -1)
        first = main.reshape(-1)[[int(pixel)]]
        ig = ig_pixels.reshape(-1)
    matrix = matrix.clone()
    # the main-effect (gradient) term sits on the diagonal: the pixel's own place in a row
    if labels is not None:
        matrix += torch.diag(first)
    else:
        matrix[0, int(pixel)] += first[0]
    return IHResult(to_numpy(matrix, None), to_numpy(ig, None), None if labels is None else np.asarray(labels),
                    None if pixel is None else int(pixel), int(target), n_steps)
