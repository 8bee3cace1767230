"""IDG subset sampling: how the value v(I) of the current set is estimated.

``v(I)`` averages ``|IDG(T)|`` over the subsets ``T`` of the set (see
:mod:`hsets_widgets.hsets.idg`). This panel asks the engine for the subsets it scores
(``Explainer.value``: the configured sampler, score and random stream), shows a few of them
on a zoom of the set, and plots the running estimate with its standard error as the samples
accumulate, next to the engine's value.
"""
from __future__ import annotations

import time

import bqplot as bq
import ipywidgets as W
import numpy as np
from ipycanvas import Canvas
from traitlets import Bool, observe

from ..hsets.idg import running_estimate
from . import render
from .common import TICKS, as_state, axis_unit, draw_batch, fmt, legend, nice_ticks, title


def draw_subsets(explainer, members, n_samples: int) -> tuple:
    """``(subsets, d, weights)``: the subsets :meth:`Explainer.value` scores for ``members``
    with ``n_samples`` draws (same sampler, score and random stream), their ``|IDG|`` and
    their weights in the value, in the order they are shown.

    Stratified draws come size by size; they are shown in a seeded random order (weights
    carried along) so the running estimate does not climb through the sizes.
    """
    v = explainer.value(members, n_samples)
    order = np.arange(len(v.samples))
    if len(order) and not np.allclose(v.weights, v.weights[0]):
        order = np.random.default_rng(explainer.value_seed(members)).permutation(len(order))
    return v.subsets[order], v.samples[order], v.weights[order]


class SubsetSampling(W.VBox):
    """Draw subsets of the current set; plot the running estimate of v(I) ± standard error.

    ``stale`` is True once the set changed after subsets were drawn (the panel then asks for
    a new draw).
    """

    stale = Bool(False, help="the subsets shown were drawn from an earlier set")

    def __init__(self, state, n_show: int = 4, thumb_size: int = 160, animate: bool = True,
                 **settings):
        self.state = as_state(state, **settings)
        st = self.state
        c = st.explainer.config
        self.thumb_size = thumb_size
        self.n_samples = W.IntSlider(value=min(c.n_samples, 5000), min=10, max=5000, step=10,
                                     description="subsets", continuous_update=False,
                                     layout=W.Layout(width="320px"))
        self.n_samples.add_class("hsets-n-subsets")
        self.animate = W.Checkbox(value=animate, description="animate", indent=False,
                                  layout=W.Layout(width="90px"))
        self.button = W.Button(description="Draw subsets", button_style="primary",
                               icon="random", tooltip="sample subsets of the current set")
        self.button.add_class("hsets-draw-subsets")
        self.button.on_click(lambda b: self.sample())
        self.thumbs = [Canvas(width=thumb_size, height=thumb_size) for _ in range(n_show)]
        self.thumb_labels = [W.HTML(layout=W.Layout(width=f"{thumb_size + 8}px")) for _ in range(n_show)]
        for cv in self.thumbs:
            cv.layout.width = cv.layout.height = f"{thumb_size}px"
            cv.on_client_ready(lambda *_: self._draw_thumbs())
        self._thumb_rgba = [None] * n_show

        self._build_plot()
        self.info = W.HTML("<i>Press “Draw subsets” to sample subsets of the current set.</i>")
        self.info.add_class("hsets-idg-info")
        self.subsets = None
        self.samples = None
        self.members = None
        st.observe(lambda ch: self._set_changed(), names=["revision"])
        super().__init__([
            title("IDG subset sampling",
                  "The value of a set is the mean |IDG| over its subsets. Random subsets (the "
                  "engine's sampler: each member kept with probability ½, or drawn size by size "
                  "when stratified) estimate it; a few are shown (cyan: in the "
                  "subset, grey: left out)."),
            W.HBox([self.n_samples, self.animate, self.button]),
            W.HBox([W.VBox([cv, lab]) for cv, lab in zip(self.thumbs, self.thumb_labels)]),
            self.figure,
            legend([("#1565c0", "line", "running mean of |IDG| over the subsets drawn"),
                    ("#bbdefb", "band", "± one standard error"),
                    ("#e53935", "dashed", "the engine's v(I) (its own draws)")]),
            self.info])
        self.add_class("hsets-subset-sampling")

    def _build_plot(self) -> None:
        self.x_scale = bq.LinearScale(min=1.0, allow_padding=False)
        self.y_scale = bq.LinearScale()
        sc = {"x": self.x_scale, "y": self.y_scale}
        self.band = bq.Lines(x=[0.0], y=[[0.0], [0.0]], scales=sc, fill="between",
                             colors=["#90caf9", "#90caf9"], fill_colors=["#bbdefb"], fill_opacities=[0.6],
                             stroke_width=0.5)
        self.mean_line = bq.Lines(x=[0.0], y=[0.0], scales=sc, colors=["#1565c0"], stroke_width=2)
        # hidden until there is a value to mark (no line at 0 on an empty chart)
        self.reference = bq.Lines(x=[0.0, 1.0], y=[0.0, 0.0], scales=sc, colors=["#e53935"], visible=False,
                                  line_style="dashed", stroke_width=1.5)
        self.y_factor = 1.0          # plotted values are v(I) times this (see axis_unit)
        self.x_axis = bq.Axis(scale=self.x_scale, label="subsets drawn", tick_format="d")
        self.y_axis = bq.Axis(scale=self.y_scale, orientation="vertical", label="estimate of v(I)",
                              tick_format=TICKS, label_offset="50px")
        self.figure = bq.Figure(
            marks=[self.band, self.mean_line, self.reference],
            axes=[self.x_axis, self.y_axis],
            title="Running estimate of v(I)",
            fig_margin={"top": 40, "bottom": 45, "left": 70, "right": 20},
            layout=W.Layout(width="520px", height="300px"))
        self.figure.add_class("hsets-idg-plot")

    def _set_changed(self):
        if self.members is not None:
            self.stale = True

    @observe("stale")
    def _stale_changed(self, change) -> None:
        if change["new"]:
            self.info.value = "<i>The set changed: press “Draw subsets” to sample the new set.</i>"

    def _say(self, text: str) -> None:
        """Write the panel's message (what is shown is now current)."""
        self.stale = False
        self.info.value = text

    # ---- sampling ----------------------------------------------------------------------
    def sample(self, n_samples=None, animate=None):
        """Draw subsets of the current set in the background (returns the job, or None)."""
        st = self.state
        if st.grown is None:
            self._say("<span style='color:#c62828'>No set yet: click a pixel first.</span>")
            return None
        ex = st.explainer
        members = np.asarray(st.grown.members)
        n = int(self.n_samples.value if n_samples is None else n_samples)
        if n < 1:
            self._say(f"<span style='color:#c62828'>Draw at least 1 subset (got {n}).</span>")
            return None
        animate = self.animate.value if animate is None else animate
        reference = st.value

        def work(progress, cancel):
            subsets, d, w = draw_subsets(ex, members, n)
            equal = np.allclose(w, w[0])
            mean, se = running_estimate(d, None if equal else w)
            chunks = 25 if animate else 1
            ends = np.unique(np.linspace(n / chunks, n, chunks).round().astype(int).clip(1, n))
            with st.lock:
                self._make_thumbs(members, subsets, d)
            for k, m in enumerate(ends):
                cancel.check()
                with st.lock:
                    self._show(members, subsets, d, mean, se, int(m), reference)
                progress("subsets", int(m), n)
                if animate and k < len(ends) - 1:
                    time.sleep(0.06)
            return subsets, d

        def apply(result):
            self.subsets, self.samples = result
            self.members = members

        return st.submit("sampling", f"Sampling {n} subsets", work, apply)

    def _show(self, members, subsets, d, mean, se, m, reference):
        x = np.arange(1, m + 1, dtype=float)
        lo = np.nan_to_num(mean[:m] - se[:m], nan=mean[0])
        hi = np.nan_to_num(mean[:m] + se[:m], nan=mean[0])
        ref = reference.value if reference is not None and reference.kind == "mean" else None
        vals = np.concatenate([lo, hi] + ([[ref]] if ref is not None else []))
        f, unit = axis_unit(vals)       # plain tick numbers; a power of ten goes into the label
        self.y_factor = f
        with self.figure.hold_sync():
            self.band.x, self.band.y = x, np.vstack([lo, hi]) * f
            self.mean_line.x, self.mean_line.y = x, mean[:m] * f
            self.reference.visible = ref is not None
            if ref is not None:
                self.reference.x, self.reference.y = [1.0, float(len(d))], [ref * f, ref * f]
            self.x_scale.max = float(len(d))
            self.x_axis.tick_values = [t for t in nice_ticks(0, len(d), 5) if t >= 1] or [1]
            pad = 0.05 * (vals.max() - vals.min() or abs(vals.max()) or 1.0)
            self.y_scale.min, self.y_scale.max = float(vals.min() - pad) * f, float(vals.max() + pad) * f
            self.y_axis.tick_values = nice_ticks(self.y_scale.min, self.y_scale.max, 5)
            self.y_axis.label = "estimate of v(I)" + unit
        exact = (" (the engine used every subset: exact)" if reference is not None and reference.exact
                 else "")
        self._say(
            f"After <b>{m}</b> of {len(d)} subsets of the {len(members)}-feature set: estimate "
            f"<b>{fmt(mean[m - 1])}</b> ± {fmt(se[m - 1])}."
            + (f" Engine's v(I) = {fmt(reference.value)} ± {fmt(reference.stderr)} from "
               f"{reference.n_samples} subsets{exact}." if reference is not None else ""))

    def _make_thumbs(self, members, subsets, d):
        st = self.state
        shape, feats = st.shape, st.explainer.config.features
        _, h, w = shape
        ys, xs = render.feature_yx(members, shape, feats)
        y0, y1 = max(int(ys.min()) - 2, 0), min(int(ys.max()) + 3, h)
        x0, x1 = max(int(xs.min()) - 2, 0), min(int(xs.max()) + 3, w)
        photo = render.photo_rgba(st.explainer.image, dim=0.7)[y0:y1, x0:x1]
        for k in range(len(self.thumbs)):
            if k >= len(subsets):
                self._thumb_rgba[k] = None
                self.thumb_labels[k].value = ""
                continue
            keep = subsets[k]
            lay = render.set_rgba(shape, members[~keep], [], None, feats)
            lay[lay[..., 3] > 0] = (120, 120, 120, 200)
            lay2 = render.set_rgba(shape, members[keep], [], None, feats)
            lay2[lay2[..., 3] > 0] = render.SET_RGBA[:3] + (255,)
            img = render.compose([photo, lay[y0:y1, x0:x1], lay2[y0:y1, x0:x1]])
            rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
            self._thumb_rgba[k] = render.fit(rgba, self.thumb_size)     # fills the thumbnail
            self.thumb_labels[k].value = (f"<div style='font-size:11px'>subset {k + 1}: "
                                          f"{int(keep.sum())} of {len(members)}<br>|IDG| = "
                                          f"{fmt(d[k])}</div>")
        self._draw_thumbs()

    def _draw_thumbs(self):
        with self.state.lock, draw_batch():
            for cv, rgba in zip(self.thumbs, self._thumb_rgba):
                cv.clear()
                if rgba is not None:
                    cv.put_image_data(rgba[:self.thumb_size, :self.thumb_size], 0, 0)
