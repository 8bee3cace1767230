"""Integrated Gradients along the straight path from a baseline, with its quadrature rule.

The path-averaged gradient ``G = sum_k w_k grad f(b + alpha_k (x - b))`` is kept in the
result: IG is ``(x - b) * G``, and Integrated Directional Gradients of any feature set reuse
``G`` (see :mod:`hsets_widgets.hsets.idg`), so no path gradient is ever computed twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..model.images import check_image_tensor
from ..model.models import Classifier, model_device, model_dtype
from ..model.scores import ScoreFn, resolve_target
from ..plumbing.memory import fit_batch, memory_room
from ..plumbing.progress import CancelToken, ProgressFn, report
from .curvature import CurvatureSpec
from .hessian import saved_activation_bytes

RULES = ("left", "right", "midpoint", "trapezoid", "gauss-legendre", "inclusive", "adaptive")
#: most path points per forward/backward pass, and per forward-only probe pass of the adaptive rule
MAX_POINTS, MAX_PROBES = 16, 32
#: the same on a CPU, where a larger batch was no faster per image when profiled, only heavier:
#: its activations outgrow the caches
CPU_MAX_POINTS, CPU_MAX_PROBES = 8, 8
#: peak memory of one more path point (forward and backward) and of one more probe point (forward
#: only), in units of the score's saved activations: fitted to peak RSS on EfficientNet-Lite0
#: (4 vs 16 points: +0.98x per point; 8 vs 32 probes: +0.22x per probe; bench/bench_memory.py)
POINT_FACTOR, PROBE_FACTOR = 1.0, 0.25


def path_batch_sizes(x: torch.Tensor, f, budget=None) -> tuple:
    """(path points per forward/backward pass, probe points per forward pass) that fit in half
    the memory room (:func:`~hsets_widgets.plumbing.memory.memory_room`: the container's limit, the
    machine's available memory or ``budget``); the most on CUDA, whose memory is not this room.
    """
    if x.device.type == "cuda":
        return MAX_POINTS, MAX_PROBES
    room = memory_room(budget).bytes
    if room is None:
        return CPU_MAX_POINTS, CPU_MAX_PROBES
    act = saved_activation_bytes(x, f, CurvatureSpec("none"))
    return (fit_batch(POINT_FACTOR * act, 0, CPU_MAX_POINTS, room),
            fit_batch(PROBE_FACTOR * act, 0, CPU_MAX_PROBES, room))


#: the default path, here and in the settings (``HSetsConfig.n_steps`` / ``.rule`` read these):
#: 64 points placed by the adaptive rule (bench/RESULTS.md, "ig-completeness")
DEFAULT_STEPS, DEFAULT_RULE = 64, "adaptive"


def path_points(n_steps: int, rule: str = "midpoint") -> tuple:
    """Nodes ``alpha`` in [0, 1] and weights ``w`` (summing to 1) of a quadrature rule.

    ``inclusive`` is the authors' choice: ``n_steps + 1`` equally spaced points including
    both ends, plain mean (IDG paper equation 7). ``adaptive`` depends on the score along
    the path: see :func:`adaptive_path_points`.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)):
        raise ValueError(f"n_steps must be a whole number, got {n_steps!r}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    n = n_steps
    if rule == "left":
        a, w = np.arange(n) / n, np.full(n, 1.0 / n)
    elif rule == "right":
        a, w = np.arange(1, n + 1) / n, np.full(n, 1.0 / n)
    elif rule == "midpoint":
        a, w = (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)
    elif rule == "trapezoid":
        if n < 2:
            raise ValueError("the trapezoid rule needs n_steps >= 2")
        a = np.linspace(0.0, 1.0, n)
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
    elif rule == "gauss-legendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        a, w = (nodes + 1.0) / 2.0, weights / 2.0
    elif rule == "inclusive":
        a, w = np.linspace(0.0, 1.0, n + 1), np.full(n + 1, 1.0 / (n + 1))
    elif rule == "adaptive":
        raise ValueError("the adaptive rule places its points from the score along the path; "
                         "call adaptive_path_points(f, x, b, n_steps)")
    else:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    return a, w


def adaptive_path_points(x: torch.Tensor, f, b: torch.Tensor, n_steps: int, n_probe: Optional[int] = None,
                         uniform_share: float = 0.25, batch_size: int = 32) -> tuple:
    """Midpoint nodes on a partition of [0, 1] that is fine where the score changes fast.

    Along a straight path from a black baseline the logit of an ImageNet classifier often
    rises within the first few percent of the path, so equally spaced nodes miss most of
    the integral (completeness errors of 100% and more at 32 midpoint steps). Here the
    score is first evaluated (forward passes only) at ``n_probe + 1`` equally spaced
    points; the mass of each probe interval is ``|f(alpha_{k+1}) - f(alpha_k)|``, mixed
    with a uniform share ``uniform_share`` so that flat stretches keep some nodes; the
    ``n_steps`` cells have equal mixed mass, and each cell contributes its midpoint with
    its width as weight. The weights sum to 1 and the nodes depend only on the score along
    the path, so the result is still Integrated Gradients of the same path.

    Returns ``(alphas, weights)`` as NumPy arrays.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps must be a whole number >= 1, got {n_steps!r}")
    n_probe = 4 * int(n_steps) if n_probe is None else int(n_probe)
    if n_probe < 1:
        raise ValueError(f"n_probe must be at least 1, got {n_probe}")
    if not 0.0 < uniform_share <= 1.0:
        raise ValueError(f"uniform_share must be in (0, 1], got {uniform_share}")
    grid = torch.linspace(0.0, 1.0, n_probe + 1, dtype=x.dtype, device=x.device)
    values = []
    with torch.no_grad():
        for start in range(0, n_probe + 1, batch_size):
            a = grid[start:start + batch_size].view(-1, 1, 1, 1)
            values.append(f(b + a * (x - b)).double().cpu())
    fv = torch.cat(values).numpy()
    mass = np.abs(np.diff(fv))
    total = mass.sum()
    density = mass / total * n_probe if total > 0 and np.isfinite(total) else np.ones(n_probe)
    density = (1.0 - uniform_share) * density + uniform_share  # per unit alpha; integrates to 1
    cdf = np.concatenate([[0.0], np.cumsum(density) / n_probe])
    cdf /= cdf[-1]
    t = np.linspace(0.0, 1.0, n_steps + 1)
    k = np.clip(np.searchsorted(cdf, t, side="right") - 1, 0, n_probe - 1)
    edges = (k + (t - cdf[k]) / (cdf[k + 1] - cdf[k])) / n_probe
    edges[0], edges[-1] = 0.0, 1.0
    return (edges[1:] + edges[:-1]) / 2.0, np.diff(edges)


def _blur(x, classifier, blur_sigma):
    from torchvision.transforms.functional import gaussian_blur

    k = int(2 * round(3 * blur_sigma) + 1)
    return gaussian_blur(x.unsqueeze(0), [k, k], [blur_sigma, blur_sigma])[0]


def _model_zero(x, classifier, blur_sigma):
    if classifier is None:
        raise ValueError("baseline='model-zero' needs the classifier")
    # solve normalize(b) = 0 for an affine per-channel normalisation
    zero = classifier.normalize(torch.zeros_like(x).unsqueeze(0))[0]
    one = classifier.normalize(torch.ones_like(x).unsqueeze(0))[0]
    return (-zero / (one - zero)).clamp(0.0, 1.0)


#: every named baseline: ``fn(x, classifier, blur_sigma) -> b``; :func:`register_baseline`
#: adds one (settings validation and ``hsets evaluate`` specs read this table)
BASELINE_FNS: dict = {
    "zeros": lambda x, classifier, blur_sigma: torch.zeros_like(x),
    "grey": lambda x, classifier, blur_sigma: torch.full_like(x, 0.5),
    "mean": lambda x, classifier, blur_sigma: x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone(),
    "blur": _blur,
    "model-zero": _model_zero,
}
#: the built-in baseline names
BASELINES = tuple(BASELINE_FNS)


def register_baseline(name: str, fn: Callable) -> None:
    """Add a named baseline ``fn(x, classifier, blur_sigma) -> b`` (``b`` shaped like ``x``)."""
    if not isinstance(name, str) or not name or not callable(fn):
        raise TypeError("register_baseline takes a non-empty name and a function (x, classifier, blur_sigma)")
    BASELINE_FNS[name] = fn


def make_baseline(x: torch.Tensor, baseline: Union[str, float, torch.Tensor] = "zeros",
                  classifier: Optional[Classifier] = None, blur_sigma: float = 10.0) -> torch.Tensor:
    """The baseline image ``b`` (same shape as ``x``, values in [0, 1]).

    ``zeros`` is black, ``grey`` 0.5 everywhere, ``mean`` the image's per-channel mean,
    ``blur`` a Gaussian blur of the image (``blur_sigma`` pixels), ``model-zero`` the image
    whose normalised version is all zeros (the zero input of the network itself, as the
    authors' code used); names added with :func:`register_baseline` work the same way. A
    number or a tensor is used as given.
    """
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(x.device, x.dtype)
        if b.shape != x.shape:
            raise ValueError(f"baseline has shape {tuple(b.shape)}, image {tuple(x.shape)}")
        return b
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if baseline in BASELINE_FNS:
        b = BASELINE_FNS[baseline](x, classifier, blur_sigma)
        if b.shape != x.shape:
            raise ValueError(f"baseline {baseline!r} returned shape {tuple(b.shape)}, image {tuple(x.shape)}")
        return b
    raise ValueError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINE_FNS)}, "
                     "a number or a tensor")


@dataclass
class IGResult:
    """Integrated Gradients of one image.

    Attributes
    ----------
    attribution : Tensor (3, H, W)
        ``(x - b) * path_gradient``.
    path_gradient : Tensor (3, H, W)
        ``sum_k w_k grad f(b + alpha_k (x - b))``.
    abs_path_gradient : Tensor (3, H, W)
        ``sum_k w_k |grad f(...)|`` (for the authors' absolute-gradient set score).
    baseline : Tensor (3, H, W)
    target : int
    score : str
    f_x, f_b : float
        Score at the image and at the baseline.
    rule : str
    n_steps : int
    point_gradients : Tensor (K, 3, H, W) or None
        The gradient at each of the ``K`` path points (float32, CPU), for set scores that
        integrate something other than the plain gradient (IDG-Vis's ``|grad . a|``).
    weights : ndarray (K,) or None
        The quadrature weight of each path point.
    """

    attribution: torch.Tensor
    path_gradient: torch.Tensor
    abs_path_gradient: torch.Tensor
    baseline: torch.Tensor
    target: int
    score: str
    f_x: float
    f_b: float
    rule: str
    n_steps: int
    point_gradients: Optional[torch.Tensor] = None
    weights: Optional[np.ndarray] = None

    @property
    def completeness_error(self) -> float:
        """``sum(IG) - (f(x) - f(b))``: zero for exact integration."""
        return float(self.attribution.sum()) - (self.f_x - self.f_b)

    @property
    def relative_completeness_error(self) -> float:
        """Completeness error over ``|f(x) - f(b)|``; raise ``n_steps`` if it is large."""
        denom = abs(self.f_x - self.f_b)
        return abs(self.completeness_error) / denom if denom > 0 else float("inf")

    def pixel_map(self) -> torch.Tensor:
        """IG summed over channels, ``(H, W)``."""
        return self.attribution.sum(0)


def path_gradients(x: torch.Tensor, f, b: torch.Tensor, alphas, weights, internal_batch_size: int = 16,
                   progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                   stage: str = "integrated gradients", keep_points: bool = False) -> tuple:
    """Weighted sums of ``grad f`` and ``|grad f|`` over the path points.

    ``f`` maps ``(B, 3, H, W)`` to ``(B,)``; points are evaluated ``internal_batch_size`` at a
    time so memory stays bounded. With ``keep_points`` a third value holds every point's
    gradient, ``(K, 3, H, W)`` float32 on the CPU.
    """
    g_sum = torch.zeros_like(x)
    g_abs = torch.zeros_like(x)
    points = []
    n = len(alphas)
    alphas_t = torch.as_tensor(np.asarray(alphas), dtype=x.dtype, device=x.device)
    weights_t = torch.as_tensor(np.asarray(weights), dtype=x.dtype, device=x.device)
    for start in range(0, n, internal_batch_size):
        report(progress, stage, start, n, cancel)
        a = alphas_t[start:start + internal_batch_size].view(-1, 1, 1, 1)
        w = weights_t[start:start + internal_batch_size].view(-1, 1, 1, 1)
        grads = batch_gradients(b + a * (x - b), f)
        g_sum += (w * grads).sum(0)
        g_abs += (w * grads.abs()).sum(0)
        if keep_points:
            points.append(grads.detach().to("cpu", torch.float32))
    report(progress, stage, n, n, cancel)
    if keep_points:
        return g_sum, g_abs, torch.cat(points)
    return g_sum, g_abs


def integrated_gradients(x: torch.Tensor, classifier: Classifier, target: Optional[int] = None,
                         baseline="zeros", n_steps: int = DEFAULT_STEPS, rule: str = DEFAULT_RULE,
                         score: str = "logit", internal_batch_size: Union[int, str] = "auto",
                         progress: Optional[ProgressFn] = None,
                         cancel: Optional[CancelToken] = None, memory_budget=None) -> IGResult:
    """Integrated Gradients of ``score`` of class ``target`` (default: predicted) for ``x``.

    Parameters
    ----------
    classifier : Classifier
    x : Tensor (3, H, W)
        Image in [0, 1].
    target : int, optional
    baseline : str, float or Tensor
        See :func:`make_baseline`.
    n_steps : int
        Number of path points (``inclusive`` uses ``n_steps + 1``).
    rule : str
        One of :data:`RULES`. ``adaptive`` spends ``4 * n_steps`` extra forward passes to
        place the nodes where the score changes (see :func:`adaptive_path_points`).
    score : {"logit", "probability", "log_probability"}
    internal_batch_size : int or "auto"
        Path points per forward/backward pass. ``"auto"``: up to 16 (and up to 32 forward-only
        probes of the adaptive rule; 8 and 8 on a CPU) as fit in half the memory room
        (:func:`path_batch_sizes`).
    memory_budget : int or str, optional
        Most resident memory this process should reach (``1.5G``); None reads
        ``$HSETS_MEMORY_BUDGET``. Only read with ``internal_batch_size="auto"``.

    Returns
    -------
    IGResult
        With the completeness error ``sum(IG) - (f(x) - f(b))``; raise ``n_steps`` (or use
        ``gauss-legendre``) when it is large.
    """
    x = check_image_tensor(x)
    target, _ = resolve_target(x, classifier, target)
    f = ScoreFn(classifier, target, score)
    b = make_baseline(x, baseline, classifier)
    probes = MAX_PROBES
    if internal_batch_size == "auto":
        internal_batch_size, probes = path_batch_sizes(x, f, memory_budget)
    elif isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, (int, np.integer)) \
            or internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be 'auto' or a whole number >= 1, got {internal_batch_size!r}")
    if rule == "adaptive":
        alphas, weights = adaptive_path_points(x, f, b, n_steps, batch_size=probes)
    else:
        alphas, weights = path_points(n_steps, rule)
    g, g_abs, points = path_gradients(x, f, b, alphas, weights, internal_batch_size, progress, cancel,
                                      keep_points=True)
    with torch.no_grad():
        fx, fb = f(torch.stack([x, b])).tolist()
    return IGResult((x - b) * g, g, g_abs, b, target, score, fx, fb, rule, n_steps, points,
                    np.asarray(weights, dtype=np.float64))


def batch_gradients(images: torch.Tensor, f) -> torch.Tensor:
    """``d f(images).sum() / d images``: the gradient of a per-image score function ``f``
    (``(B, 3, H, W) -> (B,)``) at each image of a batch.
    """
    pts = images.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(f(pts).sum(), pts)
    return g.detach()


def score_gradients(images: torch.Tensor, classifier: Classifier, target: int,
                    score: str = "logit") -> torch.Tensor:
    """Gradient of the ``score`` of class ``target`` with respect to each image of a batch
    ``(B, 3, H, W)``, computed on the classifier's device and dtype (the one gradient helper
    every plain-gradient method uses, as Captum's ``compute_gradients``).
    """
    return batch_gradients(images.to(model_device(classifier), model_dtype(classifier)),
                           ScoreFn(classifier, target, score))


def input_gradient(x: torch.Tensor, classifier: Classifier, target: int, score: str = "logit") -> torch.Tensor:
    """Plain gradient of the score at ``x``, ``(3, H, W)`` (the authors' seed attribution)."""
    return score_gradients(x.unsqueeze(0), classifier, target, score)[0].to(x.dtype)
