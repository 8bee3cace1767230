"""ROAD curves inline: H-Sets against Integrated Gradients (and any other method) for the current image.

Pixels are ranked by each map and removed most-relevant first (MoRF: a faithful map makes
the class probability fall fast) or least-relevant first (LeRF: it should stay high); the
holes are filled by noisy linear imputation (:mod:`hsets_widgets.metrics.road`). The
plot shows the probability of the explained class against the fraction removed, and the
canvas the imputed image at the chosen fraction. A third map can join from any registered
method (Archipelago, MoXI, CASO...), computed once per image in the background.
"""
from __future__ import annotations

import bqplot as bq
import ipywidgets as W
import numpy as np
from ipycanvas import Canvas
from traitlets import Bool, observe

from ..methods.registry import METHODS
from ..metrics.insertion import insertion_deletion
from ..metrics.road import (
    ROAD_ORDERS,
    classify_batches,
    imputation_rng,
    noisy_linear_impute,
    relevance_order,
    removal_mask,
    resolve_percentages,
    road,
)
from ..plumbing.common import to_numpy
from . import render
from .common import LERF_WORDS, MORF_WORDS, ROAD_GRID, as_state, draw_batch, esc, fmt, legend, title
from .runner import BackgroundRunner, Job

METHOD_COLORS = {"hsets": "#d32f2f", "ig": "#1976d2"}
METHOD_NAMES = {"hsets": "H-Sets", "ig": "IG"}
#: the colour of the third map, whichever method it comes from
OTHER_COLOR = "#2e7d32"
#: the tint of the removed pixels on the imputed image
REMOVED_RGBA = (255, 0, 200, 110)


def method_name(method: str) -> str:
    """How the view names a method's map."""
    return METHOD_NAMES.get(method, method)


STALE_NOTE = ("<div class='hsets-road-stale' style='color:#e65100'>The explanation shown has changed "
              "since these curves were computed: {what}</div>")


def _lines(scales, labels=None, **style) -> bq.Lines:
    """H-Sets, IG and an optional third method's curves, in their colours (data set when computed)."""
    return bq.Lines(x=[0.0], y=[[0.0], [0.0]], scales=scales, labels=labels or [],
                    colors=[METHOD_COLORS["hsets"], METHOD_COLORS["ig"], OTHER_COLOR], **style)


def _figure(marks, x_scale, x_label: str, y_scale, title_text: str, height: str) -> bq.Figure:
    """A probability-against-fraction plot of the ROAD view."""
    return bq.Figure(
        marks=marks,
        axes=[bq.Axis(scale=x_scale, label=x_label, tick_format=".0%"),
              bq.Axis(scale=y_scale, orientation="vertical", label="probability of the class",
                      tick_format=".2f")],
        title=title_text, fig_margin={"top": 40, "bottom": 45, "left": 60, "right": 15},
        layout=W.Layout(width="520px", height=height))


class RoadView(W.VBox):
    """MoRF/LeRF ROAD curves of the H-Sets heatmap and of IG, and the imputed images.

    ``stale`` is True while the curves on screen belong to an explanation no longer shown
    (the view then says so under them, and recomputes them when ``follow`` is ticked).
    """

    stale = Bool(False, help="the curves shown were computed for another explanation")

    def __init__(self, state, percentages=ROAD_GRID, display_size: int = 224, seed: int = 0,
                 **settings):
        self.state = as_state(state, **settings)
        st = self.state
        self.percentages = resolve_percentages(percentages)
        self.seed = seed
        _, h, w = st.shape
        self.scale = render.display_scale(h, w, display_size)
        self.results = {}          # method -> ROADResult
        self.curves = {}           # method -> InsertionDeletionResult (same ranking as ROAD)
        self.maps = {}             # method -> (H, W) map used
        self.imputed = None        # last imputed image (H, W, 3) in [0, 1]
        self.removed = None        # its removed pixels, (H, W) bool
        self._report = ("<i>Press “Compute ROAD curves” (uses the kept sets, or the current set "
                        "if none are kept).</i>")
        self._build_controls()
        self._build_plots()
        self.canvas = Canvas(width=w * self.scale, height=h * self.scale)
        self.canvas.layout.width = f"{w * self.scale}px"
        self.canvas.layout.height = f"{h * self.scale}px"
        self.canvas.add_class("hsets-road-canvas")
        self.canvas.on_client_ready(lambda *_: self._draw_imputed())
        self.image_label = W.HTML()
        self.info = W.HTML(self._report)
        self.info.add_class("hsets-road-info")
        super().__init__([
            title("ROAD (remove and debias)",
                  "Remove the most (MoRF) or least (LeRF) relevant pixels by each map, fill them "
                  "by noisy linear imputation, and ask the classifier again."),
            W.HBox([self.button, self.other]), self.follow,
            W.HBox([W.VBox([self.figure, legend([
                        (METHOD_COLORS["hsets"], "line", "H-Sets MoRF"),
                        (METHOD_COLORS["hsets"], "dashed", "H-Sets LeRF"),
                        (METHOD_COLORS["ig"], "line", "IG MoRF"),
                        (METHOD_COLORS["ig"], "dashed", "IG LeRF"),
                        (OTHER_COLOR, "line", "the method under 'and'"),
                        ("#757575", "dashed", "fraction shown on the right")])]),
                    W.VBox([self.method, self.order, self.fraction, self.mark, self.canvas,
                            self.image_label])]),
            self.curve_figure, self.info])
        self.add_class("hsets-road-view")
        self.follow_runner = BackgroundRunner(st.lock, synchronous=st.runner.synchronous)
        self.follow.observe(lambda ch: self._show_info(), names="value")
        st.observe(lambda ch: self._shown_changed(), names=["revision", "sets"])

    def _build_controls(self) -> None:
        self.button = W.Button(description="Compute ROAD curves", button_style="primary",
                               icon="line-chart", layout=W.Layout(width="200px"))
        self.button.add_class("hsets-road-run")
        self.button.on_click(lambda b: self.compute())
        self.follow = W.Checkbox(value=True, description="follow the explanation shown", indent=False)
        self.follow.add_class("hsets-road-follow")
        self.other = W.Dropdown(options=[("nothing else", "")] + [(m, m) for m in METHODS if m not in METHOD_NAMES],
                                value="", description="and", layout=W.Layout(width="260px"),
                                tooltip="a third map to score beside H-Sets and IG (computed once per image)")
        self.other.add_class("hsets-road-other")
        self.other.observe(lambda ch: self._other_changed(), names="value")
        self.method = W.ToggleButtons(options=[("H-Sets", "hsets"), ("IG", "ig")], value="hsets",
                                      description="map", style={"button_width": "70px"})
        self.order = W.ToggleButtons(options=[("MoRF", "morf"), ("LeRF", "lerf")], value="morf",
                                     description="order", style={"button_width": "70px"})
        self.fraction = W.SelectionSlider(options=[(f"{p:.0%}", float(p)) for p in self.percentages],
                                          value=float(self.percentages[len(self.percentages) // 2]),
                                          description="removed", continuous_update=False)
        self.fraction.add_class("hsets-road-fraction")
        self.mark = W.Checkbox(value=True, description="mark removed pixels", indent=False)
        self.mark.add_class("hsets-road-mark")
        self.mark.observe(lambda ch: self._draw_imputed(), names="value")
        for wdg in (self.method, self.order, self.fraction):
            wdg.style.description_width = "60px"
            wdg.observe(lambda ch: self.show_imputed(), names="value")

    def _build_plots(self) -> None:
        self.x_scale = bq.LinearScale(min=0.0, max=1.0)
        self.y_scale = bq.LinearScale(min=0.0, max=1.0)
        sc = {"x": self.x_scale, "y": self.y_scale}
        self.morf = _lines(sc, ["H-Sets MoRF", "IG MoRF"], stroke_width=2.5, marker="circle", marker_size=24)
        self.lerf = _lines(sc, ["H-Sets LeRF", "IG LeRF"], stroke_width=2.5, line_style="dashed",
                           marker="square", marker_size=24)
        self.cursor = bq.Lines(x=[0.5, 0.5], y=[0.0, 1.0], scales=sc, colors=["#757575"],
                               line_style="dotted", stroke_width=1)
        self.figure = _figure([self.morf, self.lerf, self.cursor], self.x_scale, "fraction of pixels removed",
                              self.y_scale, "ROAD: MoRF should fall fast, LeRF stay high", "320px")
        self.figure.add_class("hsets-road-plot")
        sc2 = {"x": bq.LinearScale(min=0.0, max=1.0), "y": bq.LinearScale(min=0.0, max=1.0)}
        self.insertion = _lines(sc2, stroke_width=2)
        self.deletion = _lines(sc2, stroke_width=2, line_style="dashed")
        self.curve_figure = _figure([self.insertion, self.deletion], sc2["x"],
                                    "fraction of pixels inserted / deleted", sc2["y"],
                                    "Insertion (solid) and deletion (dashed)", "280px")
        self.curve_figure.add_class("hsets-insertion-plot")

    def _shown_changed(self) -> None:
        """Mark the curves stale when they belong to an explanation no longer shown (and let
        them catch up in the background when following).
        """
        if not self.results or "hsets" not in self.maps:
            return
        try:
            same = np.array_equal(self.current_maps()["hsets"], self.maps["hsets"])
        except ValueError:
            same = False
        self.stale = not same
        if not same and self.follow.value:
            self.compute(follow=True)          # the curves catch up in the background

    def _other_changed(self) -> None:
        """A third map was chosen or dropped: the curves on screen no longer match the choice."""
        if not self.results:
            return
        if self.follow.value:
            self.compute(follow=True)
        else:
            self.stale = True

    @observe("stale")
    def _show_info(self, change=None) -> None:
        """Write the report, and the stale note under it while :attr:`stale`."""
        what = ("updating them..." if self.follow.value else "press “Compute ROAD curves” to update them.")
        self.info.value = self._report + (STALE_NOTE.format(what=what) if self.stale else "")

    def _say(self, report: str) -> None:
        self._report = report
        self._show_info()

    # ---- maps --------------------------------------------------------------------------
    def current_maps(self) -> dict:
        """``{"hsets": (H, W) heatmap, "ig": (3, H, W) IG}``: the explanation shown (kept sets
        and the current set) and IG, for the current image (the third map is added in
        :meth:`compute`, which may have to compute it).
        """
        st = self.state
        sets = st.shown_sets()
        if not sets:
            raise ValueError("no H-Sets map yet: click a pixel or run the automatic sets first")
        ig = to_numpy(st.explainer.attribution().attribution)
        return {"hsets": st.explainer.heatmap(sets), "ig": ig}

    def compute(self, follow: bool = False):
        """Compute the ROAD curves of both maps in the background (returns the job).

        ``follow``: an automatic update after the shown explanation changed; it runs on the
        view's own low-priority worker (superseded by the next change) instead of the main
        one, so it never delays growth.
        """
        st = self.state
        ex = st.explainer
        try:
            with st.lock:
                maps = self.current_maps() if st.ready else None
        except ValueError as err:
            self._say(f"<span style='color:#c62828'>{esc(err)}</span>")
            return None

        other = self.other.value

        def work(progress, cancel):
            m = maps
            if m is None:
                st.ensure_ready(progress, cancel)
                with st.lock:
                    m = self.current_maps()
            if other:
                progress(f"the {other} map", 0, 1)
                m = {**m, other: st.method_map(other, progress, cancel).map}
            out = {}
            curves = {}
            for k, (name, amap) in enumerate(m.items()):
                progress(f"ROAD of {method_name(name)}", k, len(m))
                cancel.check()
                out[name] = road(ex.x.detach(), ex.classifier, amap, self.percentages, seed=self.seed)
                cancel.check()
                curves[name] = insertion_deletion(ex.x.detach(), ex.classifier, amap, self.percentages,
                                                  seed=self.seed)
            progress("ROAD", len(m), len(m))
            return m, out, curves

        def apply(result):
            self.maps, self.results, self.curves = result
            self.stale = False
            self.method.options = [(method_name(m), m) for m in self.maps]
            self._update_plot()

        if follow:
            return self.follow_runner.submit(Job("road", "ROAD curves (following)", work, apply))

        return st.submit("road", f"ROAD curves ({', '.join(method_name(m) for m in ['hsets', 'ig', other] if m)})",
                         work, apply)

    def _update_plot(self):
        p = self.percentages
        with self.figure.hold_sync():
            for mark, order in ((self.morf, "morf"), (self.lerf, "lerf")):
                ys = [self.results[m].curves[order].probability for m in self.results]
                mark.x, mark.y = p, np.vstack(ys)
                mark.labels = [f"{method_name(m)} {order.upper()} (AOPC "
                               f"{fmt(self.results[m].curves[order].aopc('probability'))})"
                               for m in self.results]
            top = max(float(np.max(self.morf.y)), float(np.max(self.lerf.y)), 1e-3)
            self.y_scale.max = min(1.0, top * 1.1) if top < 0.9 else 1.0
            self.x_scale.min, self.x_scale.max = 0.0, 1.0
        if self.curves:
            with self.curve_figure.hold_sync():
                for mark, kind in ((self.insertion, "insertion"), (self.deletion, "deletion")):
                    c = [self.curves[m].curves[kind] for m in self.curves]
                    mark.x, mark.y = c[0].fractions, np.vstack([v.probability for v in c])
        r = self.results["hsets"]
        td = "style='padding:2px 12px;border-bottom:1px solid #ddd;text-align:right'"
        rows = "".join(
            f"<tr><td {td.replace('right', 'left')}>{esc(method_name(m))}</td>"
            + "".join(f"<td {td} class='hsets-road-{o}'>{fmt(self.results[m].curves[o].aopc('probability'))}</td>"
                      for o in ROAD_ORDERS)
            + "".join(f"<td {td}>{self.curves[m].curves[k].auc('probability'):.3f}</td>"
                      for k in ("insertion", "deletion") if self.curves)
            + "</tr>" for m in self.results)
        self._say(
            f"Class '{esc(self.state.explainer.class_name)}', probability on the original image "
            f"{r.original_probability:.3f}. AOPC: the mean drop of that probability over the removal "
            f"fractions {', '.join(f'{p:.0%}' for p in self.percentages)} (the readout's and the "
            f"sweep's grid and convention):<table class='hsets-road-table' style='font-size:12px;"
            f"border-collapse:collapse'><tr><th {td}></th><th {td}>{MORF_WORDS}</th><th {td}>{LERF_WORDS}"
            f"</th>" + (f"<th {td}>insertion AUC (higher)</th><th {td}>deletion AUC (lower)</th>"
                               if self.curves else "") + f"</tr>{rows}</table>")
        self.show_imputed()

    # ---- imputed image -----------------------------------------------------------------
    def show_imputed(self):
        """Impute the image at the chosen fraction, order and map (background job)."""
        if not self.maps:
            return None
        st = self.state
        ex = st.explainer
        method, order, frac = self.method.value, self.order.value, float(self.fraction.value)
        amap = self.maps[method]
        with self.figure.hold_sync():
            self.cursor.x = [frac, frac]
            self.cursor.y = [0.0, float(self.y_scale.max or 1.0)]

        def work(progress, cancel):
            _, h, w = st.shape
            ranking = relevance_order(amap, seed=self.seed, shape=(h, w))
            mask = removal_mask(ranking, frac, (h, w), order)
            img = noisy_linear_impute(to_numpy(ex.x), mask, rng=imputation_rng(self.seed, order, frac))
            import torch

            probs = classify_batches(torch.from_numpy(img[None].astype(np.float32)), ex.classifier)[0]
            return img, mask, probs

        def apply(result):
            img, mask, probs = result
            self.imputed = np.clip(np.transpose(img, (1, 2, 0)), 0, 1)
            self.removed = np.asarray(mask, bool)
            p = float(probs[ex.target])
            top = int(probs.argmax())
            self.image_label.value = (
                f"<div style='font-size:12px'>{esc(method_name(method))} {order.upper()}, "
                f"{frac:.0%} removed ({int(mask.sum())} pixels): p('{esc(ex.class_name)}') = "
                f"<b>{p:.3f}</b>; top class '{esc(ex.classifier.class_name(top))}'</div>")
            self._draw_imputed()

        return st.submit("road-image", "Imputing the ROAD image", work, apply)

    def _draw_imputed(self):
        with self.state.lock, draw_batch():
            self.canvas.clear()
            if self.imputed is not None:
                self.canvas.put_image_data(render.upscale(self.imputed_rgba(), self.scale), 0, 0)

    def imputed_rgba(self) -> np.ndarray:
        """The imputed image as drawn: with "mark removed pixels" ticked, the removed pixels are
        tinted magenta (imputation makes them look like the photo at a glance).
        """
        rgba = render.photo_rgba(self.imputed)
        if self.mark.value and self.removed is not None:
            tint = np.zeros_like(rgba)
            tint[self.removed] = REMOVED_RGBA
            rgba = render.compose_rgba([rgba, tint])
        return rgba
