"""Settings written as text, one grammar for every place that reads them.

``hsets explore --set nu=64``, ``hsets explain --set row_blur=0`` and the method specs of
``hsets evaluate`` (``hsets:paper,nu=500``) all read ``key=value`` pairs with
:func:`parse_assignments`; values are read by :func:`parse_value`.
"""
from __future__ import annotations

from typing import Iterable


def parse_value(text: str):
    """``"8"`` -> 8, ``"0.5"`` -> 0.5, ``"true"``/``"false"`` -> bool, ``"none"``/``"null"`` ->
    None; anything else stays a string (quotes around it are removed).
    """
    text = text.strip()
    for cast in (int, float):
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
