"""The Hessian row inspector: the seed's row as a map over the image and as a histogram.

The map shows ``H[seed, j]`` for every pixel ``j`` (blue negative, red positive, channels
summed for channel features) over a grey copy of the photo, with the features that pass
the threshold rule filled green. The histogram (bqplot, log counts) shows the quantity
the rule compares (``|H|``, ``H`` or the min-max normalised row), the passing part in green
and the threshold as a red line; moving ``mu`` only moves the line and the green part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import bqplot as bq
import ipywidgets as W
import numpy as np
from ipycanvas import MultiCanvas

from ..hsets.thresholds import THRESHOLD_RULES, ThresholdRule, candidates, rule_scores
from . import render
from .common import TICKS, as_state, axis_unit, draw_batch, fmt, legend, nice_ticks, title

#: lowest count drawn on the log axis (empty bins sit on it)
FLOOR = 0.8


def step_xy(edges: np.ndarray, counts: np.ndarray) -> tuple:
    """A histogram as the corner points of a step line (empty bins at :data:`FLOOR`)."""
    x = np.repeat(edges, 2)[1:-1]
    y = np.repeat(np.maximum(counts, FLOOR), 2)
    return x, y


def score_label(rule) -> str:
    """Axis label of what ``rule`` compares for each entry of the seed's row."""
    if THRESHOLD_RULES[rule.kind].normalise is not None:
        what = f"{rule.kind}-normalised H[seed, j]"
    else:
        what = "|H[seed, j]|" if rule.sign == "magnitude" else "H[seed, j]"
    if rule.scale == "displacement":
        what += " x |x - b|_j"
    return f"{what}, smoothed ({rule.blur:g} px)" if rule.blur else what


def threshold_position(rule, seed_score: float, passing_scores: np.ndarray):
    """Where the rule's cut lies on the score axis (None when nothing passes a top-k rule)."""
    kind = THRESHOLD_RULES[rule.kind]
    if kind.is_topk:
        return float(passing_scores.min()) if passing_scores.size else None
    return float(kind.cut(rule.mu, seed_score))


def seed_row(state) -> Optional[np.ndarray]:
    """The current seed's Hessian row (float64, every feature), or None before it is cached."""
    seed = state.seed
    if seed is None or seed.index not in state.explainer.rows:
        return None
    return state.explainer.rows.row(seed.index).numpy().astype(np.float64)


def row_map_rgba(state) -> tuple:
    """``(rgba, vmax)``: the seed's row as an ``(H, W)`` signed map (:func:`render.signed_rgba`)
    with the seed's own pixel zeroed, since the diagonal would dominate the colours.
    """
    shown = state.seed_row_image().copy()
    y, x = state.seed.yx
    shown[y, x] = 0.0
    return render.signed_rgba(shown)


@dataclass
class RowHistogram:
    """What a threshold rule makes of a seed's row: what passes and its histogram.

    Attributes
    ----------
    scores : ndarray
        What the rule compares, for every feature.
    label : str
        Axis label of ``scores`` (:func:`score_label`).
    passing : ndarray of int
        The features that pass (they join the set unless already in it).
    threshold : float or None
        Where the cut lies on the score axis (:func:`threshold_position`).
    edges : ndarray
        ``bins + 1`` bin edges over the scores of every feature but the seed.
    counts, passing_counts : ndarray
        Features (all but the seed, and those passing) per bin.
    """

    scores: np.ndarray
    label: str
    passing: np.ndarray
    threshold: Optional[float]
    edges: np.ndarray
    counts: np.ndarray
    passing_counts: np.ndarray


def row_histogram(explainer, seed, row: np.ndarray, rule: ThresholdRule, bins: int = 48) -> RowHistogram:
    """The features of ``seed``'s Hessian ``row`` that pass ``rule`` and the histogram of the
    quantity the rule compares (the row inspector and the exported figure both show it).
    """
    disp = explainer.displacement() if rule.scale == "displacement" else None
    scores = rule_scores(row, rule, explainer.shape, disp)
    passing = candidates(row, rule, seed.attribution, exclude=seed.index, shape=explainer.shape,
                         displacement=disp)
    others = np.delete(scores, seed.index)
    lo, hi = float(others.min()), float(others.max())
    if hi <= lo:
        hi = lo + 1e-12
    edges = np.linspace(lo, hi, bins + 1)
    cut = threshold_position(rule, seed.attribution, scores[passing])
    if cut is not None and lo < cut < hi:
        # the cut is a bin edge: no bin holds features on both sides of it, so a passing bar
        # never reaches left of the threshold line
        edges = np.unique(np.append(edges, cut))
    return RowHistogram(scores, score_label(rule), passing, cut, edges,
                        np.histogram(others, edges)[0].astype(float),
                        np.histogram(scores[passing], edges)[0].astype(float))


class RowInspector(W.VBox):
    """Map and histogram of the current seed's Hessian row, with the threshold."""

    def __init__(self, state, display_size: int = 448, bins: int = 48, **settings):
        self.state = as_state(state, **settings)
        _, h, w = self.state.shape
        self.bins = bins
        self.scale = render.display_scale(h, w, display_size)
        self.canvas = MultiCanvas(3, width=w * self.scale, height=h * self.scale)
        self.canvas.add_class("hsets-row-canvas")
        self.canvas.layout.width = f"{w * self.scale}px"
        self.canvas.layout.height = f"{h * self.scale}px"
        self.canvas.on_client_ready(self.redraw)

        self.x_scale = bq.LinearScale()
        self.x_factor = 1.0         # histogram x values are multiplied by it (see axis_unit)
        self.y_scale = bq.LogScale(min=FLOOR)
        # histograms as filled step lines: bqplot Bars need an ordinal x and break on log y
        self.bars_all = bq.Lines(x=[0.0, 1.0], y=[FLOOR, FLOOR], scales={"x": self.x_scale, "y": self.y_scale},
                                 colors=["#9e9e9e"], fill="bottom", fill_colors=["#bdbdbd"],
                                 fill_opacities=[0.9], stroke_width=1)
        self.bars_pass = bq.Lines(x=[0.0, 1.0], y=[FLOOR, FLOOR], scales={"x": self.x_scale, "y": self.y_scale},
                                  colors=[render.css(render.PASS_RGBA)], fill="bottom",
                                  fill_colors=[render.css(render.PASS_RGBA)], fill_opacities=[0.9],
                                  stroke_width=1)
        self.cut = bq.Lines(x=[0.0, 0.0], y=[FLOOR, 1.0], scales={"x": self.x_scale, "y": self.y_scale},
                            colors=["#e53935"], stroke_width=2.5)
        self.x_axis = bq.Axis(scale=self.x_scale, label="|H[seed, j]|", tick_format=TICKS,
                              num_ticks=4)
        self.y_axis = bq.Axis(scale=self.y_scale, orientation="vertical", label="features (log)",
                              tick_format="d")
        self.figure = bq.Figure(marks=[self.bars_all, self.bars_pass, self.cut],
                                axes=[self.x_axis, self.y_axis],
                                title="Histogram of the seed's row",
                                fig_margin={"top": 40, "bottom": 45, "left": 55, "right": 40},
                                layout=W.Layout(width="520px", height="300px"))
        self.figure.add_class("hsets-row-histogram")
        self.info = W.HTML()
        self.info.add_class("hsets-row-info")
        self.colorbar = W.HTML()
        self._row = None        # (seed index, row, map, vmax)
        self._shown = None      # (seed index, rule) last drawn: skip identical updates
        self._photo_drawn = False
        self.passing = np.zeros(0, np.int64)
        self.threshold = None

        st = self.state
        st.observe(lambda ch: self.update(), names=["revision", "seed", "mu", "threshold", "sign"])
        super().__init__([
            title("Hessian row of the seed",
                  "H[seed, j]: how pixel j changes the seed's effect on the class score. Rows "
                  "propose candidates; those passing the threshold join the set."),
            W.HBox([W.VBox([self.canvas, self.colorbar]),
                    W.VBox([self.figure, legend([("#bdbdbd", "box", "all features"),
                                                 (render.css(render.PASS_RGBA), "box", "pass (join the set)"),
                                                 ("#e53935", "line", "threshold set by mu")])])]),
            self.info])
        self.add_class("hsets-row-inspector")
        self.update()

    # ---- data --------------------------------------------------------------------------
    def _load_row(self):
        st = self.state
        seed = st.seed
        if seed is None or seed.index not in st.explainer.rows:
            self._row = None
            return None
        if self._row is None or self._row[0] != seed.index:
            self._shown = None
            self._row = (seed.index, seed_row(st), *row_map_rgba(st))
        return self._row

    def update(self) -> None:
        """Recompute what passes and redraw (the row map only when the seed changed)."""
        st = self.state
        with st.lock:
            had = self._row[0] if self._row is not None else None
            loaded = self._load_row()
            if loaded is None:
                self.passing = np.zeros(0, np.int64)
                self.threshold = None
                self.info.value = ("<i>Click a pixel (or wait for the first set): its Hessian row "
                                   "appears here once computed.</i>")
                self._shown = None
                self._draw(row_changed=had is not None or not self._photo_drawn)
                return
            _, row, _, vmax = loaded
            seed = st.seed
            try:
                rule = st.threshold_rule
            except ValueError as err:
                self.info.value = f"<span style='color:#c62828'>{err}</span>"
                return
            if self._shown == (seed.index, rule):
                return
            self._shown = (seed.index, rule)
            row_changed = had != seed.index
            hist = row_histogram(st.explainer, seed, row, rule, self.bins)
            self.passing, self.threshold = hist.passing, hist.threshold
            self._plot_histogram(hist, seed)
            n = row.size - 1
            self.info.value = (
                f"Seed <b>{tuple(seed.yx)}</b> (IG {fmt(seed.attribution)}): <b>{len(self.passing)}</b> "
                f"of {n} features pass <i>{rule.describe()}</i>"
                + (f", threshold at {fmt(self.threshold)}" if self.threshold is not None else "")
                + ". Passing features join the set unless already in it (or the size cap nu is hit).")
            self.colorbar.value = (
                f"<div style='font-size:11px'>H[seed, j]: {fmt(-vmax)} "
                f"<span style='display:inline-block;width:110px;height:9px;"
                f"background:{render.colorbar_css('bwr')};vertical-align:middle'></span> {fmt(vmax)}"
                f" · <span style='color:{render.css(render.PASS_RGBA)}'>■</span> pass</div>")
            self._draw(row_changed=row_changed)

    def _plot_histogram(self, hist, seed) -> None:
        """The row's histogram, its passing part and the threshold line, on plain tick numbers."""
        edges = hist.edges
        lo, hi = float(edges[0]), float(edges[-1])
        top = max(float(hist.counts.max()), 1.0)
        # plain tick numbers: a power of ten goes into the axis label
        self.x_factor, unit = axis_unit([lo, hi])
        f = self.x_factor
        with self.figure.hold_sync():
            self.bars_all.x, self.bars_all.y = step_xy(edges * f, hist.counts)
            # only the span of bins that hold passing features: an empty bin drawn at the
            # floor would run a green line left of the threshold
            nz = np.flatnonzero(hist.passing_counts)
            a, b = (nz[0], nz[-1] + 1) if nz.size else (0, 1)
            self.bars_pass.x, self.bars_pass.y = step_xy(edges[a:b + 1] * f, hist.passing_counts[a:b])
            t = self.threshold if self.threshold is not None else lo
            self.cut.x, self.cut.y = [t * f, t * f], [FLOOR, top * 1.5]
            self.x_axis.label = hist.label + unit
            pad = 0.02 * (hi - lo)
            # a magnitude axis starts at 0 at the lowest, never at a negative number
            self.x_scale.min = (max(lo - pad, 0.0) if lo >= 0 else lo - pad) * f
            self.x_scale.max = (hi + pad) * f
            self.x_axis.tick_values = nice_ticks(self.x_scale.min, self.x_scale.max, 4)
            self.y_scale.max = top * 1.5
            self.y_axis.tick_values = [v for v in (1, 10, 100, 1000, 10000, 100000) if v <= top * 1.5]
            self.figure.title = f"Row of seed {tuple(seed.yx)}"

    # ---- drawing -----------------------------------------------------------------------
    def redraw(self, *_):
        """Draw every layer (called when a front end becomes ready)."""
        with self.state.lock:
            self._photo_drawn = False
            self._draw(row_changed=True)

    def _draw(self, row_changed: bool = True) -> None:
        st = self.state
        s = self.scale
        with draw_batch():
            if not self._photo_drawn:
                self.canvas[0].clear()
                self.canvas[0].put_image_data(
                    render.upscale(render.photo_rgba(st.explainer.image, dim=0.6, grey=True), s), 0, 0)
                self._photo_drawn = True
            if row_changed:
                self.canvas[1].clear()
                if self._row is not None:
                    self.canvas[1].put_image_data(render.upscale(self._row[2], s), 0, 0)
            top = self.canvas[2]
            top.clear()
            if self._row is None:
                return
            shape, feats = st.shape, st.explainer.config.features
            if self.passing.size:
                ys, xs = render.feature_yx(self.passing, shape, feats)
                top.fill_style = render.css(render.PASS_RGBA[:3] + (200,))
                top.fill_rects(xs * s, ys * s, s, s)
            y, x = st.seed.yx
            top.stroke_style = render.css(render.SEED_RGBA)
            top.line_width = 2
            top.stroke_circle((x + 0.5) * s, (y + 0.5) * s, render.seed_radius(s))
