"""Curvature options: make a piecewise-linear network twice differentiable, temporarily.

The input Hessian of a ReLU / ReLU6 / max-pool network is zero almost everywhere, so
Hessian rows need a smooth stand-in for the activations. Each option here is a context
manager that intercepts the activation *functions* (``F.relu``, ``torch.relu``,
``F.relu6``, ``F.hardtanh`` and their in-place forms) through a ``TorchFunctionMode``.
``F.hardsigmoid`` and ``F.hardswish`` (MobileNetV3) are rebuilt on the smooth clip. Because
``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardsigmoid`` and ``nn.Hardswish`` call those functions, this catches modules and
functional calls in ``forward`` alike (DenseNet's last ReLU, for example), and nothing in
the user's model is modified or copied: leaving the ``with`` block restores everything.

Every replaced activation is one fused ``autograd.Function`` (the smooth clip
``lo + r(x - lo) - r(x - hi)``, with ``hi = inf`` for ReLU) whose first and second
derivatives are written out, with forward-mode rules and ``vmap`` support, so
``torch.func`` transforms (``jvp(grad(f))`` under ``vmap``) and double backward both work. It
saves only its input, and its derivative pieces are computed once per pass, not once per
Hessian row, which makes rows faster and lighter than composing ``F.softplus`` calls
(bench/RESULTS.md).

Options
-------
``softplus``
    ``relu(x) -> softplus(beta x) / beta``; ``hardtanh(x, lo, hi)`` becomes
    ``lo + sp(x - lo) - sp(x - hi)`` (a smooth clip). Logits move slightly
    (less for larger ``beta``); gradients and Hessians are those of a real smooth network.
``surrogate``
    The authors' choice: the forward value is exactly ``relu(x)``, the derivative is
    replaced by ``s(x) = x / sqrt(x^2 + tau) + [x <= 0]``, whose derivative
    ``tau / (x^2 + tau)^{3/2}`` makes second derivatives nonzero. The gradient is no longer
    the model's gradient.
``none``
    Leave the network as it is (rows of ReLU networks will be zero; a warning says so).

``keep_clip=False`` drops the upper clip of ``relu6`` / ``hardtanh`` (the lower one stays),
so a ReLU6 becomes a (smooth or surrogate) ReLU inside Hessian passes. The authors' code
does this by swapping every ``nn.ReLU6`` module for its ReLU; it changes the network the
Hessian is taken of (logits move), so it is off except in the ``authors-code`` preset.
MobileNetV3's hard activations keep their clip either way.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


@dataclass(frozen=True)
class Ramp:
    """A stand-in ``r(u)`` for ``max(u, 0)`` inside Hessian passes, with ``r'`` and ``r''``
    written out (the fused activations below are built from these three).

    ``parameter`` names the :class:`CurvatureSpec` field passed to each as ``p``; ``label``
    formats the spec for summaries (``label(p)``).
    """

    name: str
    value: Callable
    slope: Callable
    bend: Callable
    parameter: str
    label: Callable[[float], str]


# softplus:  r = softplus(beta u) / beta,      r' = sigmoid(beta u),  r'' = beta s (1 - s)
# surrogate: r = max(u, 0) (exact forward),    r' = u / sqrt(u^2 + tau) + [u <= 0],
#            r'' = tau / (u^2 + tau)^(3/2)     (r' is G' of G(u) = sqrt(u^2 + tau) + min(u, 0))
# (torch's softplus with beta != 1 takes a slow path: softplus(beta u) / beta is faster)
def _softplus_bend(u, p):
    s = torch.sigmoid(p * u)
    return p * s * (1.0 - s)


#: every curvature option with a ramp; :func:`register_ramp` adds one ("none" is always there)
RAMPS: dict = {
    "softplus": Ramp("softplus", lambda u, p: F.softplus(p * u) / p, lambda u, p: torch.sigmoid(p * u),
                     _softplus_bend, "beta", lambda p: f"softplus(beta={p:g}"),
    "surrogate": Ramp("surrogate", lambda u, p: torch.clamp(u, min=0.0),
                      lambda u, p: u * torch.rsqrt(u * u + p) + (u <= 0).to(u.dtype),
                      lambda u, p: p * torch.rsqrt(u * u + p) ** 3, "tau", lambda p: f"surrogate ReLU(tau={p:g}"),
}


def register_ramp(ramp: Ramp) -> Ramp:
    """Add a curvature option (or replace one of the same name); returns it."""
    if not isinstance(ramp, Ramp) or ramp.parameter not in ("beta", "tau"):
        raise TypeError("register_ramp takes a Ramp whose parameter is 'beta' or 'tau'")
    RAMPS[ramp.name] = ramp
    return ramp


#: the built-in curvature options
CURVATURES = (*RAMPS, "none")

_RELU = {F.relu, torch.relu, torch.relu_, F.relu_}
_CLIP = {F.relu6, F.hardtanh, F.hardtanh_}
if hasattr(torch._C._nn, "relu6"):
    _CLIP.add(torch._C._nn.relu6)
# MobileNetV3's hard activations: hardsigmoid(x) = relu6(x + 3) / 6, hardswish(x) = x hardsigmoid(x)
_HARD = {F.hardsigmoid: "sigmoid", F.hardswish: "swish"}


@dataclass
class CurvatureSpec:
    """Which curvature option and its parameter."""

    kind: str = "softplus"
    beta: float = 10.0
    tau: float = 1e-3
    keep_clip: bool = True

    def __post_init__(self):
        if self.kind != "none" and self.kind not in RAMPS:
            raise ValueError(f"unknown curvature {self.kind!r}; use one of {', '.join([*RAMPS, 'none'])}")
        if self.kind != "none" and not self.p > 0:
            name = RAMPS[self.kind].parameter
            raise ValueError(f"{self.kind} {name} must be positive, got {getattr(self, name)}")

    @property
    def p(self) -> float:
        """The ramp's parameter (``beta`` or ``tau``, whichever the option uses)."""
        return float(getattr(self, RAMPS[self.kind].parameter)) if self.kind in RAMPS else 0.0

    def describe(self) -> str:
        """A short human-readable description (for labels and summaries)."""
        if self.kind == "none":
            return "none"
        tail = "" if self.keep_clip else ", ReLU6 clip dropped"
        return f"{RAMPS[self.kind].label(self.p)}{tail})"


def _clip_args(func, args, kwargs):
    if func is F.hardtanh or func is F.hardtanh_:
        lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        return float(lo), float(hi)
    return 0.0, 6.0  # relu6


# ---- the ramp r(u) and its first two derivatives, by option name -------------------------
def _r(u, kind, p):
    return RAMPS[kind].value(u, p)


def _r1(u, kind, p):
    return RAMPS[kind].slope(u, p)


def _r2(u, kind, p):
    return RAMPS[kind].bend(u, p)


def _clip_of(fn, x, lo, hi, kind, p):
    """``fn(x - lo) - fn(x - hi)`` (the second term dropped for ``hi = inf``)."""
    out = fn(x - lo if lo else x, kind, p)
    return out if hi == math.inf else out - fn(x - hi, kind, p)


def _save_input(ctx, inputs, output):
    """``setup_context`` of the elementwise functions below: keep ``x`` and the clip's parameters."""
    x, *ctx.params = inputs
    ctx.save_for_backward(x)
    ctx.save_for_forward(x)


class _RampSlope(torch.autograd.Function):
    """``c'(x)`` of the smooth clip; its own derivative ``c''`` makes second derivatives exact."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, lo, hi, kind, p):
        return _clip_of(_r1, x, lo, hi, kind, p)

    setup_context = staticmethod(_save_input)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _clip_of(_r2, x, *ctx.params), None, None, None, None

    @staticmethod
    def jvp(ctx, dx, *_):
        (x,) = ctx.saved_tensors
        return _clip_of(_r2, x, *ctx.params) * dx


class _SmoothClip(torch.autograd.Function):
    """``c(x) = lo + r(x - lo) - r(x - hi)``: one fused op instead of a dozen recorded ones.

    Only ``x`` is saved; the slope is recomputed from it in backward and jvp, so a Hessian
    pass keeps one tensor per activation instead of every softplus intermediate.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, lo, hi, kind, p):
        out = _clip_of(_r, x, lo, hi, kind, p)
        return out + lo if lo else out

    setup_context = staticmethod(_save_input)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _RampSlope.apply(x, *ctx.params), None, None, None, None

    @staticmethod
    def jvp(ctx, dx, *_):
        (x,) = ctx.saved_tensors
        return _RampSlope.apply(x, *ctx.params) * dx


class _SmoothActivations(TorchFunctionMode):
    def __init__(self, spec: CurvatureSpec):
        super().__init__()
        self.spec = spec
        self.calls = 0
        self._p = spec.p

    def _clip(self, x, lo=0.0, hi=math.inf):
        return _SmoothClip.apply(x, float(lo), float(hi), self.spec.kind, self._p)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU:
            self.calls += 1
            return self._clip(args[0])
        if func in _CLIP:
            self.calls += 1
            lo, hi = _clip_args(func, args, kwargs)
            return self._clip(args[0], lo, hi if self.spec.keep_clip else math.inf)
        if func in _HARD:
            self.calls += 1
            x = args[0]
            gate = (self._clip(x, -3.0, 3.0) + 3.0) / 6.0
            return gate if _HARD[func] == "sigmoid" else x * gate
        return func(*args, **kwargs)


@contextlib.contextmanager
def curvature(kind="softplus", beta: float = 10.0, tau: float = 1e-3, keep_clip: bool = True):
    """Context manager: inside it, ReLU-family activations are smooth (see module docs).

    ``kind`` may be a :class:`CurvatureSpec`. Yields an object whose ``calls`` attribute
    counts the activations replaced (zero means the model has none of the known kinds).

    Examples
    --------
    >>> with curvature("softplus", beta=10) as c:   # doctest: +SKIP
    ...     rows = hessian_rows(...)
    """
    spec = kind if isinstance(kind, CurvatureSpec) else CurvatureSpec(kind, beta, tau, keep_clip)
    if spec.kind == "none":
        yield _SmoothActivations(spec)
        return
    mode = _SmoothActivations(spec)
    with mode:
        yield mode
