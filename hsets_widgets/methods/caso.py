"""CASO and CAFO (Singla, Wallace, Feng and Feizi, ICML 2019): saliency from a second-order
(CASO) or first-order (CAFO) model of the loss.

The perturbation that most raises the second-order Taylor model of the loss (cross-entropy of
the explained class) under an L1/L2 penalty::

    delta* = argmax  g' delta + 1/2 delta' H delta - l1 |delta|_1 - l2/2 |delta|^2

with ``g`` and ``H`` the gradient and input Hessian of the loss at the photo. When ``H`` has a
positive eigenvalue the objective is not concave; its largest eigenvalue (power iteration on
Hessian-vector products) is added to ``l2`` so it is. The maximiser is found by proximal
gradient ascent (the L1 term by soft thresholding) with a backtracking line search, so the
objective never decreases. CAFO drops ``H``. The saliency is ``|delta*|`` summed over colour
channels. Every step is a Hessian-vector product, on any device.

Defaults are the authors' public ones (``l1 = 0``, ``l2 = 20``, 10 iterations, step 3e-2,
10 power iterations).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..hsets.curvature import CurvatureSpec, curvature
from ..hsets.hessian import affine_batch_norm, hvp_batch
from ..hsets.integrated_gradients import batch_gradients
from ..model.scores import ScoreFn, resolve_target
from ..plumbing.common import single_image, to_numpy
from ..plumbing.progress import CancelToken, ProgressFn, report


class _Loss:
    """Cross-entropy of one class: ``-log p_target``, batched ``(B, C, H, W) -> (B,)``."""

    def __init__(self, classifier, target: int):
        self.score = ScoreFn(classifier, target, "log_probability")

    def __call__(self, z):
        return -self.score(z)


@dataclass(frozen=True)
class CasoResult:
    """CASO's (or CAFO's) perturbation of one image.

    Attributes
    ----------
    delta : ndarray (C, H, W)
    objective : ndarray
        The objective after each iteration (the first value at ``delta = 0``); never decreasing.
        Shorter than ``n_iter + 1`` when no step could raise it any more.
    top_eigenvalue : float
        Of the loss Hessian (0 for CAFO).
    second_order : bool
        CASO (True) or CAFO.
    target : int
    n_hvp : int
        Hessian-vector products used.
    """

    delta: np.ndarray
    objective: np.ndarray
    top_eigenvalue: float
    second_order: bool
    target: int
    n_hvp: int

    def heatmap(self) -> np.ndarray:
        """``|delta*|`` summed over channels, ``(H, W)``."""
        return np.abs(self.delta).sum(0)


def _power(op, shape, n_iter: int, seed: int) -> float:
    """The largest-magnitude eigenvalue of the symmetric operator ``op`` (power iteration)."""
    v = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v /= v.norm()
    lam = 0.0
    for _ in range(n_iter):
        w = op(v)
        lam = float((v * w).sum())
        norm = w.norm()
        if norm == 0:
            return 0.0
        v = w / norm
    return lam


def top_eigenvalue(hvp, shape, n_iter: int = 10, seed: int = 0) -> float:
    """The largest (most positive) eigenvalue of the symmetric operator ``hvp``.

    Power iteration finds the largest in magnitude; when that one is negative, a second run on
    the shifted operator ``H - lam I`` (all eigenvalues >= 0 there) finds the top one.
    """
    lam = _power(hvp, shape, n_iter, seed)
    if lam >= 0:
        return lam
    return _power(lambda v: hvp(v) - lam * v, shape, n_iter, seed) + lam


def caso(x, classifier, target: Optional[int] = None, *, second_order: bool = True, l1: float = 0.0,
         l2: float = 20.0, n_iter: int = 10, step: float = 3e-2, power_iterations: int = 10,
         curvature_spec: Optional[CurvatureSpec] = None, progress: Optional[ProgressFn] = None,
         cancel: Optional[CancelToken] = None, seed: int = 0) -> CasoResult:
    """CASO (``second_order=True``) or CAFO of ``x`` (``(3, H, W)`` in [0, 1]) for ``target``.

    Parameters
    ----------
    l1, l2 : float
        The penalties (the authors' defaults: 0 and 20).
    n_iter, step : int, float
        Proximal-gradient iterations and the initial step (halved until the objective rises).
    power_iterations : int
        For the Hessian's top eigenvalue (twice as many Hessian-vector products when the
        largest-magnitude eigenvalue is negative).
    curvature_spec : CurvatureSpec, optional
        Smooth the ReLU-family activations for ``H`` (default: none, the plain Hessian, which
        for a ReLU network is the softmax's curvature pulled back through the network).
    seed : int
        Seeds the power iteration's start vector.
    """
    for name, v in (("l1", l1), ("l2", l2), ("step", step)):
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if step == 0:
        raise ValueError("step must be > 0")
    for name, v in (("n_iter", n_iter), ("power_iterations", power_iterations)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
    x = single_image(x)
    target, _ = resolve_target(x, classifier, target)
    loss = _Loss(classifier, int(target))
    x = x.detach()
    g = batch_gradients(x.unsqueeze(0), loss)[0].double()
    spec = curvature_spec or CurvatureSpec("none")
    used = [0]

    def hvp(v):
        if not second_order:
            return torch.zeros_like(v)
        used[0] += 1
        with curvature(spec), affine_batch_norm():
            return hvp_batch(x, loss, v.to(x.dtype).unsqueeze(0))[0].double()

    lam = max(top_eigenvalue(hvp, tuple(x.shape), power_iterations, seed), 0.0) if second_order else 0.0
    l2_eff = float(l2) + lam

    def smooth(delta, h_delta):
        return float((g * delta).sum() + 0.5 * (delta * h_delta).sum() - 0.5 * l2_eff * (delta ** 2).sum())

    def objective(delta, h_delta):
        return smooth(delta, h_delta) - float(l1) * float(delta.abs().sum())

    delta = torch.zeros_like(g)
    h_delta = torch.zeros_like(g)
    values = [objective(delta, h_delta)]
    for k in range(n_iter):
        report(progress, "CASO" if second_order else "CAFO", k, n_iter, cancel)
        ascent = g + h_delta - l2_eff * delta
        t = float(step)
        while True:
            moved = delta + t * ascent
            trial = moved.sign() * (moved.abs() - t * float(l1)).clamp_min(0.0)   # the L1 prox
            h_trial = hvp(trial)
            value = objective(trial, h_trial)
            if value >= values[-1] or t < step / 1024:
                break
            t /= 2
        if value < values[-1]:       # no step raises the objective: delta is the maximiser
            break
        delta, h_delta = trial, h_trial
        values.append(value)
    report(progress, "CASO" if second_order else "CAFO", n_iter, n_iter, cancel)
    return CasoResult(to_numpy(delta, np.float32), np.asarray(values), lam, bool(second_order), int(target),
                      used[0])
