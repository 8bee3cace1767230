"""Attribution methods compared with H-Sets, computed the same way from the same model.

A *method* is a name or any function ``fn(x, classifier) -> map`` where ``x`` is one image
``(3, H, W)`` in [0, 1] and the map is ``(H, W)`` or ``(3, H, W)`` (array or tensor). A
function that also accepts ``target=`` receives the class being explained (the prediction
on the original image), so every method explains the same class.

Built-in names
--------------
``gradient``
    Plain input gradient of the target logit, ``(3, H, W)``.
``smoothgrad``
    Mean gradient over ``n_samples = 25`` copies of the image with Gaussian noise of
    standard deviation ``sigma = 0.15`` (in [0, 1] image units, i.e. 15% of the range),
    drawn from a generator seeded with ``seed``.
``random``
    Uniform noise ``(H, W)`` from a generator seeded with ``seed``: the floor any method
    should beat.
``ig``
    Integrated Gradients of the target logit from a black baseline with the ``default``
    preset's path rule (64 adaptive steps;
    :func:`hsets_widgets.integrated_gradients.integrated_gradients`).
``hsets`` / ``hsets:<preset>``
    The H-Sets heatmap (:func:`hsets_widgets.explain.explain`) with the named preset
    (``default``, ``interactions``, ``paper``, ``authors-code``); ``hsets`` is ``hsets:default``.

Options can be given after the name as ``key=value`` pairs separated by commas:
``"smoothgrad:n_samples=50,sigma=0.2"``, ``"ig:n_steps=64,baseline=grey"``,
``"hsets:paper,nu=500"`` (for ``hsets`` a bare first word is the preset).

Every built-in method declares its options with their checks (``MethodKind.options``, one
schema): :func:`get_method` refuses an unknown option or a bad value in one line, before any
model is loaded or any image explained (``hsets evaluate`` and ``hsets explain --compare`` check
them with the other settings); the ``hsets`` options are the H-Sets settings, checked by
:mod:`~hsets_widgets.presets`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..common import Registry, quiet_auto_segmenter, squeeze_batch, to_numpy
from ..integrated_gradients import path_batch_sizes, score_gradients
from ..models import model_device, model_dtype
from ..options import parse_assignments
from ..progress import CancelToken, ProgressFn
from ..scores import ScoreFn
from .interactions import PixelSet, pixel_sets
from .sparsity import AttributionShapeError

MethodFn = Callable[..., Union[np.ndarray, torch.Tensor, "MapWithSets"]]



def predicted_class(x: torch.Tensor, classifier) -> int:
    """Argmax of ``classifier`` on one image ``(3, H, W)``."""
    with torch.no_grad():
        logits = classifier(x.unsqueeze(0).to(model_device(classifier), model_dtype(classifier)))
    return int(logits[0].argmax())


def gradient(x: torch.Tensor, classifier, target: Optional[int] = None) -> torch.Tensor:
    """Plain gradient of the ``target`` logit (default: predicted class), ``(3, H, W)``."""
    target = predicted_class(x, classifier) if target is None else int(target)
    return score_gradients(x.unsqueeze(0), classifier, target)[0]


def smoothgrad(x: torch.Tensor, classifier, target: Optional[int] = None, n_samples: int = 25,
               sigma: float = 0.15, seed: int = 0, batch_size: Union[int, str] = "auto") -> torch.Tensor:
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
        room, as IG's path points (:func:`~hsets_widgets.integrated_gradients.path_batch_sizes`).
    """
    target = predicted_class(x, classifier) if target is None else int(target)
    if batch_size == "auto":
        batch_size = path_batch_sizes(x.to(model_device(classifier), model_dtype(classifier)),
                                      ScoreFn(classifier, target, "logit"))[0]
    gen = torch.Generator().manual_seed(int(seed))
    base = x.detach().cpu().float()
    total = torch.zeros_like(base, dtype=torch.float64)
    done = 0
    while done < n_samples:
        b = min(batch_size, n_samples - done)
        noise = torch.randn((b,) + tuple(base.shape), generator=gen) * sigma
        g = score_gradients(base.unsqueeze(0) + noise, classifier, target)
        total += g.double().sum(0).cpu()
        done += b
    return (total / n_samples).float()


def random_map(x: torch.Tensor, classifier=None, target: Optional[int] = None, seed: int = 0) -> np.ndarray:
    """Uniform random pixel map ``(H, W)`` from a generator seeded with ``seed``."""
    return np.random.default_rng(seed).random(tuple(x.shape[-2:]))


def integrated_gradients_map(x: torch.Tensor, classifier, target: Optional[int] = None,
                             baseline="zeros", n_steps: int = 64, rule: str = "adaptive",
                             internal_batch_size: Union[int, str] = "auto",
                             progress: Optional[ProgressFn] = None,
                             cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """Integrated Gradients of the target logit, ``(3, H, W)``; path points per pass as fit in
    the memory room (``"auto"``, as the explainer's IG) unless a number is given.
    """
    from hsets_widgets.integrated_gradients import integrated_gradients

    res = integrated_gradients(x.to(model_device(classifier)), classifier, target=target,
                               baseline=baseline, n_steps=n_steps, rule=rule, score="logit",
                               internal_batch_size=internal_batch_size, progress=progress, cancel=cancel)
    return res.attribution


@dataclass(frozen=True)
class MapWithSets:
    """A method's map together with the pixel sets it was painted from.

    What a set-producing method (H-Sets, and any registered one) returns, so that
    :func:`~hsets_widgets.evaluation.interactions.set_tests` can test its sets; :func:`attribute`
    keeps only the map.

    Attributes
    ----------
    map : ndarray (H, W)
    sets : tuple of PixelSet
    labels : ndarray (H, W)
        The segments the sets' controls stay in.
    attribution : ndarray, optional
        IG of the image (for the ``top-ig`` control).
    """

    map: np.ndarray
    sets: tuple
    labels: np.ndarray
    attribution: Optional[np.ndarray] = None


def hsets_map(x: torch.Tensor, classifier, target: Optional[int] = None, preset: str = "default",
              segmenter="auto", seed: int = 0, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None, **overrides) -> MapWithSets:
    """The H-Sets heatmap ``(H, W)`` for the ``target`` class, with its sets."""
    from hsets_widgets.explain import explain

    with quiet_auto_segmenter():
        ex = explain(x.detach().cpu(), classifier, preset=preset, segmenter=segmenter,
                     target=target, device=model_device(classifier), progress=progress, cancel=cancel,
                     seed=seed, **overrides)
    return MapWithSets(np.asarray(ex.heatmap, dtype=np.float64), pixel_sets(ex.sets, tuple(x.shape), ex.features),
                       np.asarray(ex.labels), np.asarray(ex.ig))


def centre_pixel(pixels: np.ndarray, width: int) -> tuple:
    """``(y, x)`` of the pixel of ``pixels`` (flat indices) nearest their centroid: where the
    interaction test starts a set's controls when the method names no seed.
    """
    yx = np.stack([pixels // width, pixels % width], 1).astype(np.float64)
    k = int(np.argmin(((yx - yx.mean(0)) ** 2).sum(1)))
    return int(yx[k, 0]), int(yx[k, 1])


def _pixel_set(pixels, width: int, value: float, seed_yx=None) -> PixelSet:
    pixels = np.asarray(pixels, np.int64)
    return PixelSet(pixels, centre_pixel(pixels, width) if seed_yx is None else seed_yx, float(value))


def archipelago_map(x: torch.Tensor, classifier, target: Optional[int] = None, segmenter="quickshift",
                    top_k: int = 15, paint: str = "sets", top: int = 5, baseline="model-zero",
                    batch_size: int = 32, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None) -> MapWithSets:
    """Archipelago (:mod:`hsets_widgets.archipelago`): its map and the sets it paints."""
    from hsets_widgets.archipelago import archipelago

    r = archipelago(x, classifier, target, segmenter=segmenter, baseline=baseline, top_k=top_k,
                    batch_size=batch_size, progress=progress, cancel=cancel)
    width = x.shape[-1]
    items = [(s, v) for s, v in r.explanation() if len(s) > 1 and v > 0][:top]
    return MapWithSets(r.heatmap(paint, top), tuple(_pixel_set(r.set_pixels(s), width, v) for s, v in items),
                       r.labels)


def moxi_map(x: torch.Tensor, classifier, target: Optional[int] = None, grid: int = 10,
             max_steps: Optional[int] = 25, score: str = "log_odds", baseline="model-zero",
             batch_size: int = 32, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None) -> MapWithSets:
    """MoXI (:mod:`hsets_widgets.moxi`): the rank map and its one set (the patches inserted
    until the photo's score is reached), seeded at the first patch.
    """
    from hsets_widgets.moxi import moxi

    r = moxi(x, classifier, target, grid=grid, max_steps=max_steps, score=score, baseline=baseline,
             batch_size=batch_size, progress=progress, cancel=cancel)
    first = np.flatnonzero(r.labels.ravel() == r.order[0])
    pixels = r.set_pixels()
    return MapWithSets(r.heatmap(), (_pixel_set(pixels, x.shape[-1], r.curve[r.set_size] - r.curve[0],
                                                centre_pixel(first, x.shape[-1])),), r.labels)


def ih_map(x: torch.Tensor, classifier, target: Optional[int] = None, segmenter="slic", n_steps: int = 8,
           top_k: int = 5, baseline="zeros", progress: Optional[ProgressFn] = None,
           cancel: Optional[CancelToken] = None) -> MapWithSets:
    """Integrated Hessians between segments (:mod:`hsets_widgets.integrated_hessians`): each
    segment painted with its summed |interaction| with the others; sets from the ``top_k``
    strongest pairs merged where they overlap, valued by their summed interactions.
    """
    from hsets_widgets.archipelago import merge_pairs, superpixels
    from hsets_widgets.integrated_hessians import integrated_hessians
    from hsets_widgets.masking import segment_index

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
    return MapWithSets(np.abs(off).sum(1)[index], tuple(_pixel_set(p, width, v) for p, v in zip(pix, values)),
                       labels)


def caso_map(x: torch.Tensor, classifier, target: Optional[int] = None, l1: float = 0.0, l2: float = 20.0,
             n_iter: int = 10, step: float = 3e-2, power_iterations: int = 10, seed: int = 0,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> np.ndarray:
    """CASO (:mod:`hsets_widgets.caso`): ``|delta*|`` of the second-order model of the loss."""
    from hsets_widgets.caso import caso

    return caso(x, classifier, target, l1=l1, l2=l2, n_iter=n_iter, step=step, power_iterations=power_iterations,
                seed=seed, progress=progress, cancel=cancel).heatmap()


def cafo_map(x: torch.Tensor, classifier, target: Optional[int] = None, l1: float = 0.0, l2: float = 20.0,
             n_iter: int = 10, step: float = 3e-2, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None) -> np.ndarray:
    """CAFO: CASO without the Hessian term."""
    from hsets_widgets.caso import caso

    return caso(x, classifier, target, second_order=False, l1=l1, l2=l2, n_iter=n_iter, step=step,
                progress=progress, cancel=cancel).heatmap()


@dataclass
class Method:
    """A named attribution method: ``method(x, classifier, target) -> map``.

    Attributes
    ----------
    name : str
        Used as the column/row label in results.
    fn : callable
        ``fn(x, classifier)`` or ``fn(x, classifier, target=...)``.
    options : dict
        Extra keyword arguments passed to ``fn``.
    """

    name: str
    fn: MethodFn
    options: dict = field(default_factory=dict)

    def __call__(self, x: torch.Tensor, classifier, target: Optional[int] = None,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None):
        """The ``(3, H, W)`` attribution map of ``x`` for ``target`` (default: the prediction).

        ``progress`` and ``cancel`` reach the method when it takes them (every built-in long
        method does); a method that does not is checked for ``cancel`` before it starts.
        """
        kwargs = dict(self.options)
        if _accepts(self.fn, "target"):
            kwargs["target"] = target
        for name, value in (("progress", progress), ("cancel", cancel)):
            if value is not None and _accepts(self.fn, name):
                kwargs[name] = value
        if cancel is not None and not _accepts(self.fn, "cancel"):
            cancel.check()
        return self.fn(x, classifier, **kwargs)


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def parse_method_spec(spec: str) -> tuple:
    """``"hsets:paper,nu=500"`` -> ``("hsets", {"preset": "paper", "nu": 500})``."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    options = {}
    for i, part in enumerate(p.strip() for p in rest.split(",") if p.strip()):
        if "=" in part:
            options.update(parse_assignments([part], f"method {spec!r}"))
        elif i == 0 and name == "hsets":
            options["preset"] = part
        else:
            raise ValueError(f"cannot read option {part!r} of method {spec!r}; write key=value")
    return name, options


#: an option's check: ``check(value)`` is None for a valid value, else what a valid one is
OptionCheck = Callable[[object], Optional[str]]


def _is_whole(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and bool(np.isfinite(v))


def whole_option(lo: int = 1) -> OptionCheck:
    """A whole number ``>= lo``."""
    return lambda v: None if _is_whole(v) and v >= lo else f"a whole number >= {lo}"


def real_option(lo: float = 0.0, open_low: bool = False) -> OptionCheck:
    """A finite number ``>= lo`` (``> lo`` when ``open_low``)."""
    def check(v):
        ok = _is_real(v) and (v > lo if open_low else v >= lo)
        return None if ok else f"a finite number {'>' if open_low else '>='} {lo:g}"
    return check


def choice_option(*choices) -> OptionCheck:
    """One of ``choices``."""
    return lambda v: None if isinstance(v, str) and v in choices else f"one of {', '.join(choices)}"


def or_none(check: OptionCheck) -> OptionCheck:
    """``check``'s values, or None."""
    return lambda v: None if v is None else (check(v) and f"{check(v)} or none")


def auto_or(check: OptionCheck) -> OptionCheck:
    """``check``'s values, or ``"auto"``."""
    return lambda v: None if v == "auto" else (check(v) and f"'auto' or {check(v)}")


def baseline_option(v) -> Optional[str]:
    """An IG baseline: a registered name (zeros, grey, blur...) or a number in [0, 1]."""
    from hsets_widgets.integrated_gradients import BASELINE_FNS

    if (isinstance(v, str) and v in BASELINE_FNS) or (_is_real(v) and 0 <= v <= 1):
        return None
    return f"one of {', '.join(BASELINE_FNS)} or a number in [0, 1]"


def segmenter_option(v) -> Optional[str]:
    """A registered segmenter's name."""
    from hsets_widgets.segmentation import SEGMENTERS

    return None if isinstance(v, str) and v in SEGMENTERS else f"one of {', '.join(SEGMENTERS)}"


def _score_option(v) -> Optional[str]:
    from hsets_widgets.scores import SCORE_KINDS

    return choice_option(*SCORE_KINDS)(v)


def _rule_option(v) -> Optional[str]:
    from hsets_widgets.integrated_gradients import RULES

    return choice_option(*RULES)(v)


def _paint_option(v) -> Optional[str]:
    from hsets_widgets.archipelago import PAINTS

    return choice_option(*PAINTS)(v)


SEED_OPTION = whole_option(0)


@dataclass(frozen=True)
class MethodKind:
    """An attribution method the toolkit knows by name.

    Attributes
    ----------
    name : str
        What ``--methods`` and :func:`get_method` accept.
    fn : callable
        ``fn(x, classifier, target=..., **options) -> map``.
    seeded : bool
        Whether it draws random numbers: it then takes ``seed=`` (the run's seed unless the
        spec sets one).
    description : str
    options : dict, optional
        Its options, name -> check (``check(value)`` is None for a valid value, else what a
        valid one is); :func:`get_method` refuses any other name or a value its check refuses.
        None (a method registered without them): the names ``fn`` accepts, values unchecked.
    """

    name: str
    fn: MethodFn
    seeded: bool
    description: str
    options: Optional[dict] = None

    def option_names(self) -> Optional[list]:
        """The options a spec of this method may set (None: any, for a method registered
        without declared options whose function takes ``**kwargs``).
        """
        if self.options is not None:
            return list(self.options)
        try:
            params = list(inspect.signature(self.fn).parameters.values())[2:]
        except (TypeError, ValueError):
            return None
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in ("target", "progress", "cancel")]

    def check_options(self, spec: str, options: dict) -> None:
        """ValueError (one line, naming the method, the option and what it needs) unless every
        option of ``options`` is known and valid.
        """
        if self.name == "hsets" and self.fn is hsets_map:
            return _check_hsets_options(spec, options)
        known = self.option_names()
        for key, value in options.items():
            if known is not None and key not in known:
                raise ValueError(f"method {spec!r} has no option {key!r}; "
                                 + (f"its options are {', '.join(known)}" if known else "it takes no options"))
            check = (self.options or {}).get(key)
            why = check(value) if check is not None else None
            if why:
                raise ValueError(f"method {spec!r}: {key}={value!r} is not valid; {key} must be {why}")
        return None


def _check_hsets_options(spec: str, options: dict) -> None:
    """The ``hsets`` options: the preset, the segmenter, the seed and any H-Sets setting."""
    from hsets_widgets.presets import PRESETS, get_config

    rest = dict(options)
    preset = rest.pop("preset", "default")
    if preset not in PRESETS:
        raise ValueError(f"unknown H-Sets preset {preset!r} in {spec!r}; use one of {', '.join(PRESETS)}")
    for key, check in (("segmenter", segmenter_option), ("seed", SEED_OPTION)):
        if key in rest:
            why = check(rest.pop(key))
            if why:
                raise ValueError(f"method {spec!r}: {key}={options[key]!r} is not valid; {key} must be {why}")
    try:
        get_config(preset, **rest)
    except (TypeError, ValueError) as err:
        raise ValueError(f"method {spec!r}: {' '.join(str(err).split())}") from None


#: every attribution method by name (:func:`register_method` adds one)
METHODS = Registry(MethodKind, "attribution method")
register_method = METHODS.register

_BATCH = whole_option(1)
_AUTO_BATCH = auto_or(whole_option(1))

for _kind in (MethodKind("hsets", hsets_map, True, "the H-Sets heatmap (hsets:<preset>)"),
              MethodKind("ig", integrated_gradients_map, False, "Integrated Gradients",
                         {"baseline": baseline_option, "n_steps": whole_option(1), "rule": _rule_option,
                          "internal_batch_size": _AUTO_BATCH}),
              MethodKind("gradient", gradient, False, "plain input gradient", {}),
              MethodKind("smoothgrad", smoothgrad, True, "SmoothGrad",
                         {"n_samples": whole_option(1), "sigma": real_option(0), "seed": SEED_OPTION,
                          "batch_size": _AUTO_BATCH}),
              MethodKind("random", random_map, True, "uniform random map", {"seed": SEED_OPTION}),
              MethodKind("archipelago", archipelago_map, False, "Archipelago (Tsang et al. 2020), sets",
                         {"segmenter": segmenter_option, "top_k": whole_option(1), "paint": _paint_option,
                          "top": whole_option(1), "baseline": baseline_option, "batch_size": _BATCH}),
              MethodKind("moxi", moxi_map, False, "MoXI greedy patch insertion (Sumiyasu et al. 2024), one set",
                         {"grid": whole_option(1), "max_steps": or_none(whole_option(1)), "score": _score_option,
                          "baseline": baseline_option, "batch_size": _BATCH}),
              MethodKind("ih", ih_map, False, "Integrated Hessians between segments (Janizek et al. 2021), sets",
                         {"segmenter": segmenter_option, "n_steps": whole_option(1), "top_k": whole_option(1),
                          "baseline": baseline_option}),
              MethodKind("caso", caso_map, True, "CASO, second-order loss model (Singla et al. 2019)",
                         {"l1": real_option(0), "l2": real_option(0), "n_iter": whole_option(1),
                          "step": real_option(0, open_low=True), "power_iterations": whole_option(1),
                          "seed": SEED_OPTION}),
              MethodKind("cafo", cafo_map, False, "CAFO, CASO without the Hessian",
                         {"l1": real_option(0), "l2": real_option(0), "n_iter": whole_option(1),
                          "step": real_option(0, open_low=True)})):
    register_method(_kind)

#: the built-in names (``METHODS`` also holds any registered later)
BUILTIN_METHODS = tuple(METHODS)


def get_method(method: Union[str, MethodFn, Method], seed: int = 0) -> Method:
    """A :class:`Method` from a name (see the module docstring), a function or a Method.

    ``seed`` is passed to the seeded built-ins (``smoothgrad``, ``random``, ``hsets``)
    unless the spec sets it. The spec's options are checked here (:meth:`MethodKind.check_options`):
    an unknown option or a bad value is a one-line ValueError before any work.
    """
    if isinstance(method, Method):
        return method
    if callable(method) and not isinstance(method, str):
        return Method(getattr(method, "__name__", "custom"), method)
    if not isinstance(method, str):
        raise TypeError(f"a method is a name or a function, not {type(method).__name__}")
    name, options = parse_method_spec(method)
    if name not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; use one of "
                         f"{', '.join(METHODS)} (or hsets:<preset>) or pass a function")
    kind = METHODS[name]
    kind.check_options(method.strip(), options)
    if kind.seeded:
        options.setdefault("seed", seed)
    return Method(method.strip(), kind.fn, options)


def method_identity(m: Method) -> tuple:
    """What makes two methods compute the same map: the function and its options (defaults
    filled in), whatever the spelling (``random`` and ``RANDOM``, ``hsets`` and ``hsets:default``).
    """
    import json

    options = dict(m.options)
    if m.fn is hsets_map:
        options.setdefault("preset", "default")
    return (getattr(m.fn, "__qualname__", repr(m.fn)), getattr(m.fn, "__module__", ""),
            json.dumps(options, sort_keys=True, default=repr))


def get_methods(methods, seed: int = 0, where: str = "methods") -> tuple:
    """Each of ``methods`` through :func:`get_method`; ValueError for an empty list or one that
    names a method twice (``random,RANDOM``, ``ig,ig``: two identical columns), in one line
    naming ``where`` (the option).
    """
    if isinstance(methods, (str, Method)) or callable(methods):
        methods = [methods]
    out = tuple(get_method(m, seed=seed) for m in methods)
    if not out:
        raise ValueError(f"{where} names no method; give at least one, e.g. {','.join(BUILTIN_METHODS[:3])}")
    seen = {}
    for m in out:
        key = method_identity(m)
        if key in seen:
            same = f"'{m.name}' and '{seen[key]}' are" if m.name != seen[key] else f"'{m.name}' is"
            raise ValueError(f"{where}: {same} the same method listed twice; list each method once")
        seen[key] = m.name
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: methods listed twice: {names}")
    return out


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


def attribute(x: torch.Tensor, classifier, method: Union[str, MethodFn, Method],
              target: Optional[int] = None, seed: int = 0, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None) -> np.ndarray:
    """Compute and validate the map of ``method`` for image ``x`` (``(3, H, W)``).

    Returns a float64 array ``(H, W)`` or ``(C, H, W)``. ``progress(stage, done, total)`` and
    ``cancel`` follow the method's long stages.
    """
    return attribute_sets(x, classifier, method, target, seed, progress, cancel).map


def attribute_sets(x: torch.Tensor, classifier, method: Union[str, MethodFn, Method],
                   target: Optional[int] = None, seed: int = 0, progress: Optional[ProgressFn] = None,
                   cancel: Optional[CancelToken] = None) -> MapWithSets:
    """As :func:`attribute`, with the method's sets when it makes any (else ``sets=()``)."""
    m = get_method(method, seed=seed)
    out = m(x, classifier, target, progress, cancel)
    if isinstance(out, MapWithSets):
        return MapWithSets(check_map(out.map, tuple(x.shape[-2:]), f"method {m.name!r}"), tuple(out.sets),
                           out.labels, out.attribution)
    return MapWithSets(check_map(out, tuple(x.shape[-2:]), f"method {m.name!r}"), (), None)
