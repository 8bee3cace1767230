"""Settings written as text, one grammar for every place that reads them, and the one check
of every number option.

``hsets explore --set nu=64``, ``hsets explain --set row_blur=0`` and the method specs of
``hsets evaluate`` (``hsets:paper,nu=500``) all read ``key=value`` pairs with
:func:`parse_assignments`; values are read by :func:`parse_value`. A number option of the
command line or of a batch run (``--limit``, ``--noise``, ``--workers`` ...) is a
:class:`Number` in :data:`NUMBERS`: the CLI parses with it and the Python API checks with it,
so both refuse the same values with the same reason. (The H-Sets settings themselves are
checked by :mod:`~hsets_widgets.hsets.presets`.)
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Iterable, Optional


def whole_number(text: str) -> int:
    """``"64"``, ``"1_000"`` and ``"1e9"`` -> int; ValueError for anything not a whole number
    (``"0.5"``, ``"1e-3"``, ``"inf"``).
    """
    text = str(text).strip()
    try:
        return int(text)
    except ValueError:
        pass
    if "e" not in text.lower():                 # "64.0" is written as a real number: keep it so
        raise ValueError(f"not a whole number: {text!r}")
    value = float(text)
    if not (math.isfinite(value) and value.is_integer() and abs(value) < 2 ** 53):
        raise ValueError(f"not a whole number: {text!r}")
    return int(value)


def parse_value(text: str):
    """``"8"`` and ``"1e9"`` -> int, ``"0.5"`` -> 0.5, ``"true"``/``"false"`` -> bool, ``"none"``/``"null"`` ->
    None; anything else stays a string (quotes around it are removed).
    """
    text = text.strip()
    for cast in (whole_number, float):
        try:
            return cast(text)
        except ValueError:
            pass
    words = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in words:
        return words[text.lower()]
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_assignments(items: Iterable[str], where: str = "--set") -> dict:
    """``["nu=64", "order=dfs"]`` -> ``{"nu": 64, "order": "dfs"}``; ``where`` names the
    option in the error for an item without ``=``.
    """
    out = {}
    for item in items:
        key, eq, value = str(item).partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{where} takes KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


@dataclass(frozen=True)
class Number:
    """A number option: its name, whole or real, and its bounds (finite always).

    ``Number(...)(text)`` reads command-line text (an argparse ``type``); ``.check(value)``
    checks a value given in Python. Both raise with the option's name and what it needs.
    """

    name: str
    whole: bool = False
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False

    def needs(self) -> str:
        """What a valid value is, in words."""
        what = "a whole number" if self.whole else "a finite number"
        if self.lo is not None:
            what += f" {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            what += f"{' and' if self.lo is not None else ''} <= {self.hi:g}"
        return what

    def problem(self, value) -> Optional[str]:
        """None if ``value`` is valid, else why not."""
        ok_type = (int,) if self.whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type) or not math.isfinite(value):
            return f"need {self.needs()}, got {value!r}"
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        if low or (self.hi is not None and value > self.hi):
            return f"need {self.needs()}, got {value!r}"
        return None

    def check(self, value):
        """``value`` if valid; ValueError naming the option otherwise."""
        if hasattr(value, "item") and not isinstance(value, (int, float)):
            value = value.item()                # NumPy scalars
        why = self.problem(value)
        if why:
            raise ValueError(f"{self.name} must be {self.needs()}, got {value!r}")
        return value

    def __call__(self, text: str):
        """Read command-line ``text`` (argparse adds the option's name to the error)."""
        try:
            value = whole_number(text) if self.whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"need {self.needs()}, got {text!r}") from None
        why = self.problem(value)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value


def _numbers(*numbers: Number) -> dict:
    return {n.name: n for n in numbers}


#: every number option of the command line and of batch runs, by name
NUMBERS = _numbers(
    Number("limit", whole=True, lo=1), Number("seed", whole=True, lo=0),
    Number("noise", lo=0), Number("batch_size", whole=True, lo=1),
    Number("match_support", lo=0, lo_open=True, hi=1), Number("percentage", lo=0, hi=100),
    Number("workers", whole=True, lo=1), Number("threads_per_worker", whole=True, lo=1),
    Number("gpus_per_worker", lo=0), Number("max_attempts", whole=True, lo=1),
    Number("target", whole=True, lo=0), Number("port", whole=True, lo=1, hi=65535),
    Number("mu"), Number("nu", whole=True), Number("moved_controls", whole=True, lo=0),
)


def whole_arg(text: str) -> int:
    """The argparse ``type`` of a whole-number setting whose range is checked elsewhere (the
    H-Sets settings: :mod:`~hsets_widgets.hsets.presets` names the field); ``1e9`` is whole.
    """
    try:
        return whole_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"need a whole number, got {text!r}") from None



def number(name: str) -> Number:
    """The :class:`Number` rule of option ``name`` (``"limit"``, ``"noise"`` ...)."""
    return NUMBERS[name]
