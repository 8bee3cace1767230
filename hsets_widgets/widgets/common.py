"""Small helpers shared by the Explorer widgets."""
from __future__ import annotations

import html
import threading
from contextlib import contextmanager

import ipywidgets as W
import numpy as np

from ..hsets.explain import Explainer
from .state import ExplorerState

#: the one ROAD grid of the Explorer: the readout, the ROAD tab and the sweep all score on these
#: removal fractions (coarse, so one readout stays within a few seconds), so their numbers agree
ROAD_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)

#: the one metric convention, in the words every panel uses
MORF_WORDS = "MoRF AOPC (higher = more faithful)"
LERF_WORDS = "LeRF AOPC (lower = more faithful)"

#: ipycanvas sends draw commands through one global manager; two threads drawing at once
#: would interleave their "switch canvas" commands, so every batch holds this lock.
_DRAW_LOCK = threading.RLock()


@contextmanager
def draw_batch():
    """Send the draw commands issued inside as one message (like ``ipycanvas.hold_canvas``,
    but thread-safe and restoring the manager even if drawing raises).
    """
    from ipycanvas.canvas import _CANVAS_MANAGER as mgr

    with _DRAW_LOCK:
        was = mgr._caching
        mgr._caching = True
        try:
            yield
        finally:
            if not was:
                try:
                    mgr.flush()
                finally:
                    mgr._caching = False
                    mgr._commands_cache = []
                    mgr._buffers_cache = []


def as_state(obj, **settings) -> ExplorerState:
    """An :class:`ExplorerState` from a state, an Explainer or an image (+ model, settings)."""
    if isinstance(obj, ExplorerState):
        if settings:
            raise TypeError(f"settings {sorted(settings)} cannot be applied to an existing state")
        return obj

    if isinstance(obj, Explainer):
        background = settings.pop("background", True)
        if settings:
            raise TypeError(f"settings {sorted(settings)} cannot be applied to an existing Explainer")
        return ExplorerState(obj, background=background)
    return ExplorerState.from_image(obj, **settings)


#: the words the panels use, explained where they appear (tooltips) and in the glossary
GLOSSARY = {
    "interaction set": "pixels that act together on the class score: grown from a seed pixel by "
                       "following the Hessian of the score",
    "seed": "the pixel a set grows from; automatic seeds (A1, A2...) are the best pixel of the "
            "best segments",
    "|H|": "the magnitude of a Hessian entry H[i, j]: how much pixel j changes pixel i's effect on "
           "the class score",
    "mu": "how strict the growth rule is (for the top-k rule: how many new members each row adds)",
    "nu": "the largest size a set may reach",
    "IG": "Integrated Gradients: each pixel's share of the class score, along a path from a "
          "black image",
    "IDG": "Integrated Directional Gradients: the value v(I) of a set, from IG along the set's "
           "direction, averaged over subsets",
    "ROAD": "remove and debias: pixels are removed in the order a map ranks them and filled by "
            "noisy linear imputation before the classifier looks again",
    "MoRF": "most relevant first: remove the map's top pixels first; a faithful map makes the class "
            "probability fall fast",
    "LeRF": "least relevant first: remove the map's bottom pixels first; a faithful map keeps the "
            "probability up",
    "AOPC": "area over the perturbation curve: the mean drop of the class probability over the "
            "removal fractions (MoRF: higher = more faithful; LeRF: lower = more faithful)",
    "sparsity": "how concentrated a map is (Gini index of its values; 1: a few pixels hold everything)",
    "random": "a uniformly random map: any explanation should beat it",
}


def glossary_html() -> str:
    """The glossary as a collapsed HTML block."""
    rows = "".join(f"<dt style='font-weight:600'>{html.escape(k)}</dt><dd style='margin:0 0 4px 16px'>"
                   f"{html.escape(v)}</dd>" for k, v in GLOSSARY.items())
    return ("<details class='hsets-glossary' style='font-size:12px'><summary style='cursor:pointer'>"
            f"What the words mean</summary><dl style='margin:4px 0'>{rows}</dl></details>")


def term(word: str, shown=None) -> str:
    """``word`` (or ``shown``) with its glossary entry as a tooltip."""
    tip = GLOSSARY.get(word, "")
    text = html.escape(shown or word)
    return f"<abbr title='{html.escape(tip)}' style='text-decoration:underline dotted'>{text}</abbr>" if tip else text


def set_name(state, k: int) -> str:
    """The one name of kept set ``k`` everywhere (list, image, hover): ``#k`` (1-based), with
    the automatic seed's name when it grew from one (``#2 = A1``).
    """
    s = state.sets[k]
    auto = next((j for j, a in enumerate(state.auto_seeds) if tuple(a.yx) == tuple(s.seed_yx)), None)
    return f"#{k + 1}" + (f" = A{auto + 1}" if auto is not None else "")


def title(text: str, help_text: str = "") -> W.HTML:
    """A panel heading with a one-line explanation under it."""
    sub = (f"<div style='color:#555;font-size:12px;line-height:1.3'>{help_text}</div>"
           if help_text else "")
    return W.HTML(f"<div style='font-weight:600;font-size:14px;margin-top:4px'>"
                  f"{html.escape(text)}</div>{sub}")


def fmt(v, digits: int = 3) -> str:
    """Compact number for labels (``1.23e-04``, ``0.512``)."""
    if v is None:
        return "–"
    v = float(v)
    if v != v:
        return "nan"
    if v == 0:
        return "0"
    if 1e-2 <= abs(v) < 1e4:
        return f"{v:.{digits}g}"
    return f"{v:.{max(digits - 1, 1)}e}"


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")

#: plot tick format: plain numbers (the unit carries any power of ten, see :func:`axis_unit`)
TICKS = ".3~g"


def axis_unit(values) -> tuple:
    """``(factor, suffix)`` so that ``values * factor`` read as plain numbers on an axis and
    ``suffix`` (`` (×10⁻³)``) goes into its label: no raw exponents on ticks.
    """
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return 1.0, ""
    e = int(np.floor(np.log10(v.max())))
    if -2 <= e < 4:
        return 1.0, ""
    k = e
    return 10.0 ** -k, f" (×10{str(k).translate(_SUPERSCRIPT)})"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list:
    """About ``n`` round tick values (1, 2, 2.5 or 5 times a power of ten apart) within ``[lo, hi]``."""
    lo, hi = float(lo), float(hi)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10.0 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = np.ceil(lo / step) * step
    return [float(round(t, 12)) for t in np.arange(start, hi + step * 1e-9, step)]


def esc(text) -> str:
    """``text`` escaped for HTML."""
    return html.escape(str(text))


def legend(items) -> W.HTML:
    """An HTML legend under a plot: ``items`` are ``(css colour, style, label)`` with style
    ``"line"``, ``"dashed"``, ``"box"`` or ``"band"`` (bqplot's own legend covers the data).
    """
    parts = []
    for colour, style, label in items:
        if style == "box" or style == "band":
            sw = (f"display:inline-block;width:14px;height:10px;background:{colour};"
                  f"opacity:{0.6 if style == 'band' else 1}")
        else:
            sw = (f"display:inline-block;width:22px;height:0;border-top:3px "
                  f"{'dashed' if style == 'dashed' else 'solid'} {colour}")
        parts.append(f"<span style='white-space:nowrap;margin-right:14px'><span style='{sw};"
                     f"vertical-align:middle;margin-right:4px'></span>{label}</span>")
    return W.HTML("<div style='font-size:12px;line-height:1.6'>" + "".join(parts) + "</div>")
