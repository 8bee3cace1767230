"""The one shape every attribution method has, and the one result type it returns.

A method is called as ``fn(x, classifier, target, *, progress=None, cancel=None, **options)``:
``x`` one image ``(3, H, W)`` in [0, 1], ``target`` the class explained (an int: the caller
resolves the prediction once, so every method explains the same class), ``progress(stage, done,
total)`` and ``cancel`` followed by its long stages, ``options`` its declared settings. It returns
a :class:`MapWithSets`: the map and, for a method that builds sets (H-Sets, Archipelago, MoXI,
Integrated Hessians), its sets as :class:`PixelSet`; the metrics and the interaction test read
nothing else. A plain user function ``f(x, classifier, target) -> map`` is brought to this shape
once by :meth:`Method.from_function`, so no caller ever asks a function what it accepts.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from ..hsets.seeds import feature_pixels
from ..model.models import model_device, model_dtype
from ..plumbing.common import squeeze_batch, to_numpy
from ..plumbing.progress import CancelToken, ProgressFn


class AttributionShapeError(ValueError):
    """An attribution map whose shape does not fit the image it explains."""


@dataclass(frozen=True)
class PixelSet:
    """A set of pixels as the interaction test takes it: from H-Sets or any other method.

    Attributes
    ----------
    pixels : ndarray of int
        Flat pixel indices ``y * W + x``.
    seed_yx : tuple
        The pixel the set grew from (its controls start there).
    value : float
        The method's score of the set (not used by the test; kept to report it).
    """

    pixels: np.ndarray
    seed_yx: tuple
    value: float = float("nan")


@dataclass(frozen=True)
class MapWithSets:
    """What every method returns: its map, and the pixel sets it was painted from.

    Attributes
    ----------
    map : ndarray (H, W) or (3, H, W)
    sets : tuple of PixelSet
        Empty for a method that makes no sets.
    labels : ndarray (H, W), optional
        The segments the sets' controls stay in.
    attribution : ndarray, optional
        IG of the image (for the interaction test's ``top-ig`` control).
    """

    map: np.ndarray
    sets: tuple = ()
    labels: Optional[np.ndarray] = None
    attribution: Optional[np.ndarray] = None


def centre_pixel(pixels: np.ndarray, width: int) -> tuple:
    """``(y, x)`` of the pixel of ``pixels`` (flat indices) nearest their centroid: where the
    interaction test starts a set's controls when the method names no seed.
    """
    yx = np.stack([pixels // width, pixels % width], 1).astype(np.float64)
    k = int(np.argmin(((yx - yx.mean(0)) ** 2).sum(1)))
    return int(yx[k, 0]), int(yx[k, 1])


def pixel_set(pixels, width: int, value: float, seed_yx=None) -> PixelSet:
    """A :class:`PixelSet` of flat ``pixels``, seeded at ``seed_yx`` or else at its centre pixel."""
    pixels = np.asarray(pixels, np.int64)
    return PixelSet(pixels, centre_pixel(pixels, width) if seed_yx is None else tuple(seed_yx), float(value))


def pixel_sets(sets, shape: tuple, features: str = "pixel") -> tuple:
    """H-Sets ``sets`` (members in feature space) as :class:`PixelSet` of ``shape`` ``(C, H, W)``."""
    return tuple(PixelSet(np.asarray(feature_pixels(s.members, shape, features), np.int64),
                          tuple(int(v) for v in s.seed_yx), float(s.value)) for s in sets)


def check_map(a, shape: tuple, name: str = "method") -> np.ndarray:
    """Validate a map for an image of spatial size ``shape`` and return it as float64.

    Accepts ``(H, W)``, ``(1, H, W)``, ``(3, H, W)`` (and a leading batch axis of one);
    raises :class:`AttributionShapeError` naming the method and both shapes otherwise.
    """
    if isinstance(a, torch.Tensor):
        a = to_numpy(a)
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise AttributionShapeError(f"{name} returned a {type(a).__name__}, not an array of "
                                    f"numbers ({err})") from err
    h, w = shape
    got = arr.shape
    arr = squeeze_batch(arr)
    ok = (arr.ndim == 2 and arr.shape == (h, w)) or (arr.ndim == 3 and arr.shape[1:] == (h, w)
                                                     and arr.shape[0] in (1, 3))
    if not ok:
        raise AttributionShapeError(
            f"{name} returned an attribution map of shape {got}, but the image is {h}x{w}: "
            f"expected ({h}, {w}) or (3, {h}, {w})")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} returned a map with {int((~np.isfinite(arr)).sum())} NaN or "
                         "infinite values")
    return arr


def check_call_order(call: str, target, name: str, value, example: str) -> None:
    """The input, the model and the target come first, ``name`` (the method, the region) by
    keyword: the order before this one (``name`` third) gets a one-line TypeError naming the call.
    """
    if (target is not None and not isinstance(target, (int, np.integer))) or value is None:
        got = f"got a {type(target).__name__} as the target" if target is not None else f"no {name} given"
        raise TypeError(f"the third argument of {call} is the target class and the {name} goes by name ({got}): "
                        f"{call}(x, classifier, target, {name}={example})")


def predicted_class(x: torch.Tensor, classifier) -> int:
    """Argmax of ``classifier`` on one image ``(3, H, W)``."""
    with torch.no_grad():
        logits = classifier(x.unsqueeze(0).to(model_device(classifier), model_dtype(classifier)))
    return int(logits[0].argmax())


#: ``fn(x, classifier, target, *, progress=None, cancel=None, **options) -> MapWithSets or map``
MethodFn = Callable[..., object]


@dataclass
class Method:
    """A named attribution method, its options bound: ``method(x, classifier, target)``.

    Attributes
    ----------
    name : str
        Used as the column/row label in results.
    fn : callable
        Follows the protocol of this module (the built-ins and registered methods do;
        :meth:`from_function` adapts a plain function).
    options : dict
        Keyword arguments passed to ``fn``.
    """

    name: str
    fn: MethodFn
    options: dict = field(default_factory=dict)

    @classmethod
    def from_function(cls, fn, name: Optional[str] = None) -> Method:
        """A plain function ``fn(x, classifier, target) -> map`` as a method: it is told the
        target and gets no progress (a cancel request is honoured before it starts, as for every
        method).
        """
        name = name or getattr(fn, "__name__", "custom")
        try:
            inspect.signature(fn).bind(None, None, None)
        except TypeError:
            raise TypeError(f"method function {name}{inspect.signature(fn)} must take (x, classifier, "
                            "target): add the target parameter (the class explained)") from None
        except ValueError:      # a builtin without a signature: trust it
            pass

        def plain(x, classifier, target, *, progress=None, cancel=None):
            return fn(x, classifier, target)

        plain.__name__ = plain.__qualname__ = name
        plain.__wrapped__ = fn
        return cls(name, plain)

    def __call__(self, x: torch.Tensor, classifier, target: Optional[int] = None,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> MapWithSets:
        """The method's :class:`MapWithSets` for ``x`` and ``target`` (default: the prediction),
        its map checked against the image's size.
        """
        if cancel is not None:
            cancel.check()
        target = predicted_class(x, classifier) if target is None else int(target)
        out = self.fn(x, classifier, target, progress=progress, cancel=cancel, **self.options)
        where = f"method {self.name!r}"
        if isinstance(out, MapWithSets):
            return MapWithSets(check_map(out.map, tuple(x.shape[-2:]), where), tuple(out.sets), out.labels,
                               out.attribution)
        return MapWithSets(check_map(out, tuple(x.shape[-2:]), where))
