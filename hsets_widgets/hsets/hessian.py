"""Rows of the input Hessian, batched, chunked and cached.

A Hessian row ``H[j, :]`` is a Hessian-vector product with a one-hot tangent ``e_j``.
Many rows are computed in one pass. The default method, ``forward-over-reverse``, maps
``jvp(grad(f))`` over a batch of tangents with ``torch.func.vmap``: the image's own forward
and backward pass (the primal) runs once per pass and only the tangent arithmetic is
batched, faster per row on a CPU than the alternative (bench/RESULTS.md), ``stacked``, which stacks
``B`` copies of the image in a batch, each with its own tangent (because the score of the
batch is the *sum* of per-image scores, the ``b``-th image's gradient only depends on the
``b``-th copy). ``double-backward`` differentiates a retained gradient graph of the stacked
batch instead; it is the slowest on depthwise convolutions and kept as a cross-check.

Features
--------
``pixel``
    One feature per pixel (``H * W``): the tangent moves the three channels of a pixel
    together and the row is summed over channels, i.e. the Hessian of
    ``z -> f(x + z 1_c)`` with ``z`` in ``R^{H W}``. Symmetric.
``channel``
    One feature per channel-pixel (``3 * H * W``, index ``c * H * W + y * W + x``), as the
    authors' code does.
"""
from __future__ import annotations

import copy
import time
import warnings
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vmap
from torch.overrides import TorchFunctionMode

from ..model.forward import twin
from ..model.scores import ScoreFn
from ..plumbing.memory import fit_batch, fits, memory_room, peak_rise, release_freed_memory
from ..plumbing.progress import CancelToken, ProgressFn, report
from .curvature import CurvatureSpec, curvature

FEATURES = ("pixel", "channel")
HESSIAN_METHODS = ("forward-over-reverse", "stacked", "double-backward")


class ZeroHessianWarning(UserWarning):
    """A Hessian row came out exactly zero: the network is piecewise linear here."""


class RowNotCached(LookupError):
    """A row was asked of a cache-only view (:meth:`HessianRows.cached_only`) and is not cached."""

    def __init__(self, index: int):
        super().__init__(f"Hessian row {index} is not computed yet")
        self.index = int(index)


class _CachedOnly:
    """Rows of a :class:`HessianRows` that are already cached; any other raises RowNotCached."""

    def __init__(self, rows):
        self._rows = rows
        self.shape = rows.shape

    def __contains__(self, index: int) -> bool:
        return index in self._rows

    def row(self, index: int) -> torch.Tensor:
        if int(index) not in self._rows:
            raise RowNotCached(index)
        return self._rows.row(index)


def n_features(shape, features: str) -> int:
    """Number of features of an image of ``shape`` ``(3, H, W)``."""
    c, h, w = shape
    if features == "pixel":
        return h * w
    if features == "channel":
        return c * h * w
    raise ValueError(f"unknown features {features!r}; use 'pixel' or 'channel'")


def tangents(indices, shape, features: str, dtype=torch.float32, device=None) -> torch.Tensor:
    """One-hot tangents ``(len(indices), 3, H, W)`` for the given feature indices."""
    c, h, w = shape
    idx = torch.as_tensor(list(indices), dtype=torch.long, device=device)
    v = torch.zeros((len(idx), c * h * w), dtype=dtype, device=device)
    rows = torch.arange(len(idx), device=device)
    if features == "pixel":
        for ch in range(c):
            v[rows, ch * h * w + idx] = 1.0
    else:
        v[rows, idx] = 1.0
    return v.view(len(idx), c, h, w)


def _reduce(hv: torch.Tensor, features: str) -> torch.Tensor:
    """``(B, 3, H, W)`` Hessian-vector products -> ``(B, n_features)`` rows."""
    if features == "pixel":
        return hv.sum(1).flatten(1)
    return hv.flatten(1)


class affine_batch_norm(TorchFunctionMode):
    """Context manager: eval-mode ``F.batch_norm`` computed as one multiply-add.

    In eval mode batch norm is the per-channel affine map ``x * s + t`` with
    ``s = weight / sqrt(running_var + eps)`` and ``t = bias - running_mean * s``; written as
    one ``addcmul`` its forward-mode and backward rules are a single elementwise op each,
    where the native op's take several. Same values to float rounding, faster Hessian passes
    (bench/RESULTS.md). Training-mode calls (batch statistics) are left alone.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.batch_norm:
            return func(*args, **kwargs)
        names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
        a = {**{"weight": None, "bias": None, "training": False, "eps": 1e-5}, **dict(zip(names, args)), **kwargs}
        x, mean, var = a["input"], a["running_mean"], a["running_var"]
        if a["training"] or mean is None or var is None:
            return func(*args, **kwargs)
        scale = torch.rsqrt(var + a["eps"])
        if a["weight"] is not None:
            scale = scale * a["weight"]
        shift = -mean * scale if a["bias"] is None else a["bias"] - mean * scale
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return torch.addcmul(shift.view(shape), x, scale.view(shape))


def _load_jvp_decompositions() -> None:
    """Load torch's forward-mode decompositions once, without the FutureWarning
    ("`torch.jit.script` is deprecated") that torch 2.14 prints when it loads them itself on
    the first jvp: it concerns torch's internals, not anything a user can change.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        import torch._decomp.decompositions_for_jvp  # noqa: F401


def hvp_batch(x: torch.Tensor, f, v: torch.Tensor, method: str = "forward-over-reverse",
              with_gradient: bool = False):
    """Hessian-vector products ``H v_b`` of ``f`` at ``x`` for each tangent ``v_b``.

    ``f`` maps ``(B, 3, H, W)`` to ``(B,)``; ``x`` is ``(3, H, W)``; ``v`` is ``(B, 3, H, W)``.
    ``with_gradient`` (forward-over-reverse only): ``(gradient at x, products)``, the gradient
    coming free with the products (Integrated Hessians needs both at each path point).
    """
    if method == "forward-over-reverse":
        _load_jvp_decompositions()
        x1 = x.detach().unsqueeze(0)

        def score(z):
            return f(z).sum()

        def one(t):
            g, hv = jvp(grad(score), (x1,), (t.unsqueeze(0),))
            return g[0], hv[0]

        grads, products = (r.detach() for r in vmap(one)(v))
        return (grads[0], products) if with_gradient else products
    if with_gradient:
        raise ValueError(f"with_gradient needs method='forward-over-reverse', not {method!r}")
    xs = x.detach().unsqueeze(0).expand_as(v).contiguous()
    if method == "stacked":
        def total(z):
            return f(z).sum()

        _, hv = jvp(grad(total), (xs,), (v,))
        return hv.detach()
    if method == "double-backward":
        with torch.enable_grad():
            xs.requires_grad_(True)
            (g,) = torch.autograd.grad(f(xs).sum(), xs, create_graph=True)
            (hv,) = torch.autograd.grad((g * v).sum(), xs)
        return hv.detach()
    raise ValueError(f"unknown method {method!r}; use one of {', '.join(HESSIAN_METHODS)}")


def hessian_rows(x: torch.Tensor, f, indices: Iterable[int], features: str = "pixel",
                 spec: Optional[CurvatureSpec] = None, batch_size: int = 8,
                 method: str = "forward-over-reverse") -> torch.Tensor:
    """Hessian rows of ``f`` at ``x`` for feature ``indices``, ``(n, n_features)``: a
    :class:`HessianRows` cache used once (same passes, same checks, nothing kept).
    """
    return HessianRows(x, f, features, spec, batch_size, method, zero_warning=False).rows(indices)


#: most rows per CPU pass by default: a default explanation asks for rows a few at a time and
#: larger passes only cost memory there (bench/RESULTS.md, "rows per pass")
CPU_MAX_BATCH = 8
#: memory of one more row in a pass, in units of the score's saved activations, and of the
#: pass's fixed part (the image's own graph, gradients, workspace); bounds fitted to the
#: per-model memory table of bench/RESULTS.md
PER_ROW_FACTOR, FIXED_FACTOR = 2.5, 4.0
#: share of the room a measured forward-over-reverse pass may take (a measurement of this model,
#: not a bound fitted across models, so more of the room than :func:`fit_batch`'s half)
MEASURED_SHARE = 0.9


def available_memory(budget=None) -> Optional[int]:
    """Bytes this process may still allocate, or None: the smallest of the container's room
    (cgroup limit), ``MemAvailable`` and ``budget`` (see :mod:`hsets_widgets.plumbing.memory`).
    """
    return memory_room(budget).bytes


def saved_activation_bytes(x: torch.Tensor, f, spec: Optional[CurvatureSpec] = None) -> int:
    """Bytes autograd saves for one backward pass of ``f`` at the image ``x`` (one forward)."""
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    z = x.detach().unsqueeze(0).requires_grad_(True)
    with curvature(spec or CurvatureSpec("softplus")), torch.enable_grad(), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        f(z).sum()
    return total


def cpu_batch_size(x: torch.Tensor, f, spec: Optional[CurvatureSpec] = None,
                   available: Optional[int] = None, most: int = CPU_MAX_BATCH,
                   activations: Optional[int] = None) -> int:
    """Rows per CPU pass that fit in half the available memory, at most ``most``.

    ``available`` defaults to :func:`available_memory` (inside a container, its limit: the
    host's ``MemAvailable`` would overshoot it). Memory per row is estimated from the score's
    saved activations (:func:`saved_activation_bytes`, one forward pass, unless given as
    ``activations``) with factors measured on two architectures; without a memory reading the
    maximum is used.
    """
    available = available_memory() if available is None else available
    if available is None:
        return most
    act = saved_activation_bytes(x, f, spec) if activations is None else activations
    return fit_batch(PER_ROW_FACTOR * act, FIXED_FACTOR * act, most, available)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class HessianRows:
    """Lazily computed, cached Hessian rows of one score at one image.

    Parameters
    ----------
    f : callable
        Score function ``(B, 3, H, W) -> (B,)`` (e.g. :class:`~hsets_widgets.model.scores.ScoreFn`).
    x : Tensor (3, H, W)
        The image, on the device where rows are computed.
    features : {"pixel", "channel"}
    curvature : CurvatureSpec
    batch_size : int or "auto"
        Rows per pass. ``"auto"`` picks, on CPU, up to ``max_batch`` as fit in half the available memory
        (:func:`cpu_batch_size`; the container's limit or ``memory_budget`` when tighter). Where
        fewer fit, the first row's pass is measured (:func:`~hsets_widgets.plumbing.memory.peak_rise`)
        and the rows per pass follow the measurement in :data:`MEASURED_SHARE` of the room; where
        not even the measured row fits, one double-backward row per pass, which needs less
        memory. On CUDA, as many as fit in about half
        of the free memory (measured with one probe pass), at most 64. A CUDA
        out-of-memory error halves the chunk and retries.
    method : {"forward-over-reverse", "stacked", "double-backward"}
        How a pass computes its rows (see the module docs); results agree to float
        rounding.
    dtype : torch.dtype, optional
        Compute in this dtype (e.g. ``torch.float64`` for reference checks). The model is
        copied for a dtype other than its own; the user's model is never changed.
    zero_warning : bool
        Warn (once) when a computed row is exactly zero.
    memory_budget : int or str, optional
        Most resident memory this process should reach (``1.5G``); None reads
        ``$HSETS_MEMORY_BUDGET``. Bounds the automatic CPU batch size.
    max_batch : int
        Most rows per CPU pass with ``batch_size="auto"`` (:data:`CPU_MAX_BATCH` by default; the
        interaction mode, which asks for rows many at a time, gains from 16: bench/RESULTS.md).

    Notes
    -----
    Rows are stored on the CPU in float32 (float64 when ``dtype`` is float64): a pixel row
    of a 224x224 image is 200 kB, so 2,000 rows take 400 MB.
    Freed pass memory is not handed back between passes (the next pass reuses it; growth asks
    for rows a few at a time, and giving it back after each call faulted 72 million pages in
    one interaction-mode explanation): call :func:`hsets_widgets.plumbing.memory.release_freed_memory`
    when done, as :meth:`hsets_widgets.hsets.explain.Explainer.grow_many` does.
    """

    def __init__(self, x: torch.Tensor, f, features: str = "pixel",
                 curvature: Optional[CurvatureSpec] = None, batch_size="auto",
                 method: str = "forward-over-reverse", dtype: Optional[torch.dtype] = None,
                 zero_warning: bool = True, memory_budget=None, max_batch: int = CPU_MAX_BATCH):
        if features not in FEATURES:
            raise ValueError(f"unknown features {features!r}; use 'pixel' or 'channel'")
        if method not in HESSIAN_METHODS:
            raise ValueError(f"unknown method {method!r}; use one of {', '.join(HESSIAN_METHODS)}")
        self.features = features
        self.spec = curvature or CurvatureSpec("softplus")
        self.method = self._method_asked = method
        self.zero_warning = zero_warning
        self.f = f
        if dtype is not None and dtype != x.dtype:
            self.f = _CastScore(f, dtype)
            x = x.to(dtype)
        self.x = x.detach()
        classifier = getattr(self.f, "classifier", None)
        if classifier is not None:
            # made here, outside the passes' curvature context, where it cannot be traced
            twin(classifier, self.x.unsqueeze(0))
        self.shape = tuple(self.x.shape)
        self.n_features = n_features(self.shape, features)
        self.store_dtype = torch.float64 if self.x.dtype == torch.float64 else torch.float32
        self._cache: dict = {}
        self._batch_size = batch_size
        self._auto = batch_size == "auto"
        self.max_batch = int(max_batch)
        self._probe = None            # (room, saved activations, estimated batch) until a first row is measured
        self.memory_budget = memory_budget
        self.n_computed = 0
        self.n_passes = 0
        self.seconds = 0.0
        self._warned_zero = False

    # ---- cache -------------------------------------------------------------------------
    def __contains__(self, index: int) -> bool:
        return int(index) in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def cached(self) -> list:
        """Indices of the rows computed so far."""
        return list(self._cache)

    def clear(self) -> None:
        """Forget every cached row."""
        self._cache.clear()

    def cached_only(self):
        """A view with the same ``row()`` that never computes: a row not cached yet raises
        :class:`RowNotCached`. Growing over it answers from the cache in milliseconds or
        says which row is missing.
        """
        return _CachedOnly(self)

    # ---- computing ---------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Rows per pass (sized from available memory on first use when ``"auto"``)."""
        if self._batch_size == "auto":
            self._batch_size = self._auto_batch_size()
        return int(self._batch_size)

    def set_max_batch(self, most: int) -> None:
        """Allow up to ``most`` rows per CPU pass from now on (sized again where the batch size
        is ``"auto"``; cached rows stay).
        """
        if int(most) != self.max_batch:
            self.max_batch = int(most)
            if self._auto:        # the method asked for, too: a lean fallback is decided again
                self._batch_size, self._probe, self.method = "auto", None, self._method_asked

    def _auto_batch_size(self) -> int:
        if self.x.device.type != "cuda":
            available = available_memory(self.memory_budget)
            if available is None:
                return self.max_batch
            act = saved_activation_bytes(self.x, self.f, self.spec)
            estimate = cpu_batch_size(self.x, self.f, self.spec, available, self.max_batch, act)
            if estimate == self.max_batch or self.method != "forward-over-reverse":
                return estimate
            # tight memory: the bounds are fitted across models and overshoot most; where even
            # their bound of one row stays under the limit or budget itself, measure that row
            room = memory_room(self.memory_budget)
            if room.bytes and available and (FIXED_FACTOR + PER_ROW_FACTOR) * act <= available + room.reserve:
                self._probe = (min(room.bytes, available), act, estimate)
                return 1
            if not fits(PER_ROW_FACTOR * act, FIXED_FACTOR * act, available):
                # not even one row fits by the bound: one double-backward row a pass (a retained
                # gradient graph of one image copy, no vmap workspace), the same rows to float
                # rounding in the least memory (bench/RESULTS.md, "speed-measured-rows")
                self.method = "double-backward"
                return 1
            return estimate
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(self.x.device)
        base = torch.cuda.memory_allocated(self.x.device)
        self._compute([0])
        per_row = max(torch.cuda.max_memory_allocated(self.x.device) - base, 1)
        free, _ = torch.cuda.mem_get_info(self.x.device)
        return int(max(1, min(64, (0.5 * free) // per_row)))

    def _measured_first_pass(self, chunk: list) -> None:
        """One forward-over-reverse row whose memory is measured: where it took at most
        :data:`MEASURED_SHARE` of the room the method stays, with as many rows per pass as the
        fitted bounds, scaled to the measurement, allow in that share; otherwise one
        double-backward row per pass, as without a measurement. (The rows kept, 200 kB each at
        224 px, grow into the room's :data:`~hsets_widgets.plumbing.memory.HEADROOM`.)
        """
        room, act, estimate = self._probe
        self._probe = None
        release_freed_memory()          # so the pass's rise is its own, not memory the heap kept
        _, rise = peak_rise(lambda: self._compute(chunk))
        if rise is None or rise > MEASURED_SHARE * room:
            if not fits(PER_ROW_FACTOR * act, FIXED_FACTOR * act, room):
                self.method = "double-backward"
            else:
                self._batch_size = estimate
            return
        scale = rise / ((FIXED_FACTOR + PER_ROW_FACTOR) * act)
        self._batch_size = fit_batch(scale * PER_ROW_FACTOR * act, scale * FIXED_FACTOR * act, self.max_batch,
                                     room, MEASURED_SHARE)

    def _compute(self, chunk: list) -> None:
        t0 = time.perf_counter()
        v = tangents(chunk, self.shape, self.features, self.x.dtype, self.x.device)
        with curvature(self.spec), affine_batch_norm():
            hv = hvp_batch(self.x, self.f, v, self.method)
        rows = _reduce(hv, self.features).to("cpu", self.store_dtype)
        del hv
        if not torch.isfinite(rows).all():
            raise FloatingPointError(f"Hessian rows {chunk[:4]}... contain NaN/inf; the score may "
                                     "overflow (use score='logit' or float64)")
        for i, r in zip(chunk, rows):
            self._cache[int(i)] = r
        self.n_computed += len(chunk)
        self.n_passes += 1
        self.seconds += time.perf_counter() - t0
        if self.zero_warning and not self._warned_zero:
            zero = (rows == 0).all(dim=1)
            if bool(zero.any()):
                self._warned_zero = True
                warnings.warn(
                    f"Hessian row(s) {[chunk[i] for i in np.flatnonzero(zero.numpy())][:5]} are exactly "
                    f"zero with curvature '{self.spec.describe()}': the network is piecewise linear "
                    "(ReLU/ReLU6/max-pool) here, so its input Hessian vanishes. Use "
                    "curvature='softplus' (beta=10) or curvature='surrogate' to get interactions.",
                    ZeroHessianWarning, stacklevel=3)

    def compute(self, indices: Iterable[int], progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, stage: str = "Hessian rows") -> int:
        """Compute (and cache) the rows of ``indices`` not cached yet; return how many."""
        todo = []
        seen = set()
        for i in indices:
            i = int(i)
            if not 0 <= i < self.n_features:
                raise IndexError(f"feature {i} out of range (0..{self.n_features - 1})")
            if i not in self._cache and i not in seen:
                todo.append(i)
                seen.add(i)
        done = 0
        while done < len(todo):
            report(progress, stage, done, len(todo), cancel)
            bs = self.batch_size
            chunk = todo[done:done + bs]
            try:
                if self._probe is not None:
                    self._measured_first_pass(chunk)
                else:
                    self._compute(chunk)
            except RuntimeError as err:
                if not _is_oom(err) or bs == 1:
                    raise
                torch.cuda.empty_cache()
                self._batch_size = max(1, bs // 2)
                warnings.warn(f"out of memory at {bs} Hessian rows per pass; retrying with "
                              f"{self._batch_size}", RuntimeWarning, stacklevel=2)
                continue
            done += len(chunk)
        report(progress, stage, len(todo), len(todo), cancel)
        return len(todo)

    def row(self, index: int) -> torch.Tensor:
        """Row ``index`` (computed if needed), ``(n_features,)`` on the CPU."""
        index = int(index)
        if index not in self._cache:
            self.compute([index])
        return self._cache[index]

    def rows(self, indices: Iterable[int], **kw) -> torch.Tensor:
        """Rows of ``indices`` stacked, ``(n, n_features)``."""
        indices = [int(i) for i in indices]
        self.compute(indices, **kw)
        if not indices:
            return torch.zeros((0, self.n_features), dtype=self.store_dtype)
        return torch.stack([self._cache[i] for i in indices])

    def pixel_image(self, index: int) -> np.ndarray:
        """Row ``index`` as an image: ``(H, W)`` for pixel features, ``(3, H, W)`` for channel."""
        c, h, w = self.shape
        r = self.row(index).numpy()
        return r.reshape(h, w) if self.features == "pixel" else r.reshape(c, h, w)


class _CastScore:
    """A score function evaluated with a dtype-cast copy of the classifier."""

    def __init__(self, f, dtype):

        if not isinstance(f, ScoreFn):
            raise TypeError("dtype casting needs a ScoreFn; cast your function yourself")
        clf = copy.copy(f.classifier)
        clf.module = copy.deepcopy(f.classifier.module).to(dtype)
        if isinstance(clf.normalize, torch.nn.Module):
            clf.normalize = copy.deepcopy(clf.normalize).to(dtype)
        self.inner = ScoreFn(clf, f.target, f.kind)

    def __call__(self, x):
        return self.inner(x)
