"""Attribution methods by name: the registry, their options and their checks.

A *method* is a name (below, or one added with :func:`register_method`), a :class:`Method`, or
a plain function ``fn(x, classifier, target) -> map`` where ``x`` is one image ``(3, H, W)`` in
[0, 1], ``target`` the class explained (the prediction on the original image, so every method
explains the same class) and the map is ``(H, W)`` or ``(3, H, W)`` (array or tensor). Every
one is called through the protocol of :mod:`~hsets_widgets.methods.protocol` and gives a
:class:`~hsets_widgets.methods.protocol.MapWithSets`.

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
    :func:`hsets_widgets.hsets.integrated_gradients.integrated_gradients`).
``hsets`` / ``hsets:<preset>``
    The H-Sets heatmap (:func:`hsets_widgets.hsets.explain.explain`) with the named preset
    (``default``, ``interactions``, ``paper``, ``authors-code``); ``hsets`` is ``hsets:default``.

Options can be given after the name as ``key=value`` pairs separated by commas:
``"smoothgrad:n_samples=50,sigma=0.2"``, ``"ig:n_steps=64,baseline=grey"``,
``"hsets:paper,nu=500"`` (for ``hsets`` a bare first word is the preset).

Every built-in method declares its options with their checks (``MethodKind.options``, one
schema): :func:`get_method` refuses an unknown option or a bad value in one line, before any
model is loaded or any image explained (``hsets evaluate`` and ``hsets explain --compare`` check
them with the other settings); the ``hsets`` options are the H-Sets settings, checked by
:mod:`~hsets_widgets.hsets.presets`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..hsets.integrated_gradients import BASELINE_FNS, RULES
from ..hsets.presets import PRESETS, get_config
from ..model.scores import SCORE_KINDS
from ..plumbing.common import Registry
from ..plumbing.options import parse_assignments
from ..plumbing.progress import CancelToken, ProgressFn
from ..segmentation import SEGMENTERS
from .archipelago import PAINTS
from .builtin import (
    archipelago_map,
    cafo_map,
    caso_map,
    gradient,
    hsets_map,
    ih_map,
    integrated_gradients_map,
    moxi_map,
    random_map,
    smoothgrad,
)
from .protocol import MapWithSets, Method, MethodFn, check_call_order


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
    if (isinstance(v, str) and v in BASELINE_FNS) or (_is_real(v) and 0 <= v <= 1):
        return None
    return f"one of {', '.join(BASELINE_FNS)} or a number in [0, 1]"


def segmenter_option(v) -> Optional[str]:
    """A registered segmenter's name."""
    return None if isinstance(v, str) and v in SEGMENTERS else f"one of {', '.join(SEGMENTERS)}"


def _score_option(v) -> Optional[str]:
    return choice_option(*SCORE_KINDS)(v)


def _rule_option(v) -> Optional[str]:
    return choice_option(*RULES)(v)


def _paint_option(v) -> Optional[str]:
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
        In the method protocol: ``fn(x, classifier, target, *, progress=None, cancel=None,
        **options)`` returning a :class:`~hsets_widgets.methods.protocol.MapWithSets` (or a map).
    seeded : bool
        Whether it draws random numbers: it then takes ``seed=`` (the run's seed unless the
        spec sets one).
    description : str
    options : dict
        Its options, name -> check (``check(value)`` is None for a valid value, else what a
        valid one is); :func:`get_method` refuses any other name or a value its check refuses.
        A seeded method's ``seed`` is an option without being listed.
    """

    name: str
    fn: MethodFn
    seeded: bool
    description: str
    options: dict = field(default_factory=dict)

    def option_checks(self) -> dict:
        """Every option a spec of this method may set, name -> check."""
        return {**({"seed": SEED_OPTION} if self.seeded else {}), **self.options}

    def check_options(self, spec: str, options: dict) -> None:
        """ValueError (one line, naming the method, the option and what it needs) unless every
        option of ``options`` is known and valid.
        """
        if self.name == "hsets" and self.fn is hsets_map:
            return _check_hsets_options(spec, options)
        checks = self.option_checks()
        for key, value in options.items():
            if key not in checks:
                raise ValueError(f"method {spec!r} has no option {key!r}; "
                                 + (f"its options are {', '.join(checks)}" if checks else "it takes no options"))
            why = checks[key](value)
            if why:
                raise ValueError(f"method {spec!r}: {key}={value!r} is not valid; {key} must be {why}")
        return None


def _check_hsets_options(spec: str, options: dict) -> None:
    """The ``hsets`` options: the preset, the segmenter, the seed and any H-Sets setting."""
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
        return Method.from_function(method)
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
    options = dict(m.options)
    if m.fn is hsets_map:
        options.setdefault("preset", "default")
    fn = getattr(m.fn, "__wrapped__", m.fn)     # a plain user function: itself, not its adapter
    return (getattr(fn, "__qualname__", repr(fn)), getattr(fn, "__module__", ""),
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


def _check_call(target, method, call: str) -> None:
    """The input, the model and the target come first and the method by name: a method in the
    target's place (the order before) gets a one-line answer naming the new one.
    """
    if (target is not None and not isinstance(target, (int, np.integer))) or method is None:
        got = f"got {target!r} as the target" if target is not None else "no method given"
        raise TypeError(f"the third argument of {call} is the target class and the method goes by name ({got}): "
                        f"{call}(x, classifier, target, method='ig')")


def attribute(x: torch.Tensor, classifier, target: Optional[int] = None, *,
              method: Union[str, MethodFn, Method, None] = None, seed: int = 0,
              progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> np.ndarray:
    """Compute and validate the map of ``method`` for image ``x`` (``(3, H, W)``) and class
    ``target`` (default: the prediction).

    Returns a float64 array ``(H, W)`` or ``(C, H, W)``. ``progress(stage, done, total)`` and
    ``cancel`` follow the method's long stages.
    """
    check_call_order("attribute", target, "method", method, "'ig'")
    return attribute_sets(x, classifier, target, method=method, seed=seed, progress=progress, cancel=cancel).map


def attribute_sets(x: torch.Tensor, classifier, target: Optional[int] = None, *,
                   method: Union[str, MethodFn, Method, None] = None, seed: int = 0,
                   progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> MapWithSets:
    """As :func:`attribute`, with the method's sets when it makes any (else ``sets=()``)."""
    check_call_order("attribute_sets", target, "method", method, "'ig'")
    return get_method(method, seed=seed)(x, classifier, target, progress, cancel)
