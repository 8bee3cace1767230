"""Another method beside H-Sets: its map side by side, as a layer, its sets on the image.

Any registered method (:data:`~hsets_widgets.methods.registry.METHODS`: IG, gradient,
SmoothGrad, random, Archipelago, MoXI, Integrated Hessians, CASO, CAFO and any registered
later) is computed once per image in the background (:meth:`ExplorerState.show_method`, with
progress and cancel in the status bar). This tab shows the H-Sets explanation on screen and the
method's map side by side on the same photo; the image view's "method layer" shows the same
map over the main image. A set-making method's sets are outlined and named M1, M2... on its
picture and listed; "Test in the Interactions tab" puts the chosen one through the same
interaction test as an H-Sets set.
"""
from __future__ import annotations

import ipywidgets as W
import numpy as np
from ipycanvas import Canvas

from ..methods.registry import METHODS
from . import render
from .common import as_state, draw_batch, esc, fmt, title

#: outline of the method's chosen set (the others are drawn thinner)
CHOSEN_RGBA = (0, 229, 255, 255)
OTHER_RGBA = (255, 255, 255, 200)


def method_options() -> list:
    """``(label, name)`` of every registered method but H-Sets itself, "none" first."""
    return [("none", "")] + [(f"{k.name}: {k.description}", k.name) for k in METHODS.values()
                             if k.name != "hsets"]


class MethodsView(W.VBox):
    """Side by side: the H-Sets explanation on screen and another method's map and sets."""

    def __init__(self, state, display_size: int = 300, **settings):
        self.state = as_state(state, **settings)
        st = self.state
        _, h, w = st.shape
        self.scale = render.display_scale(h, w, display_size)
        self.choice = W.Dropdown(options=method_options(), value=st.method or "", description="method",
                                 layout=W.Layout(width="520px"),
                                 tooltip="computed once per image in the background")
        self.choice.add_class("hsets-method-choice")
        self.choice.observe(lambda ch: st.show_method(ch["new"]), names="value")
        self.left = self._canvas(w, h, "hsets-side-hsets")
        self.right = self._canvas(w, h, "hsets-side-method")
        self.left_label = W.HTML()
        self.right_label = W.HTML()
        self.right_label.add_class("hsets-method-label")
        self.colorbar = W.HTML()
        self.colorbar.add_class("hsets-method-colorbar")
        self.sets = W.Select(options=[], rows=5, layout=W.Layout(width="420px"))
        self.sets.add_class("hsets-method-sets")
        self.sets.observe(lambda ch: self._draw_right(), names="index")
        self.test_button = W.Button(description="Test in the Interactions tab", icon="flask",
                                    layout=W.Layout(width="240px"), disabled=True,
                                    tooltip="put the chosen set through the interaction test")
        self.test_button.add_class("hsets-method-test")
        self.test_button.on_click(lambda b: self.test_chosen())
        st.observe(lambda ch: self.update(), names=["method", "method_result"])
        st.observe(lambda ch: self._draw_left(), names=["revision", "sets", "ready"])
        self.left.on_client_ready(lambda *_: self._draw_left())
        self.right.on_client_ready(lambda *_: self._draw_right())
        super().__init__([
            title("Another method beside H-Sets",
                  "Pick a registered method: its map appears on the right (and as the image's "
                  "'method layer'); a method that makes sets lists them, and any of them can go "
                  "through the Interactions tab."),
            self.choice,
            W.HBox([W.VBox([self.left_label, self.left]),
                    W.VBox([self.right_label, self.right, self.colorbar], layout=W.Layout(margin="0 0 0 12px"))]),
            self.sets, self.test_button])
        self.add_class("hsets-methods-view")
        self.update()

    def _canvas(self, w, h, cls) -> Canvas:
        c = Canvas(width=w * self.scale, height=h * self.scale,
                   layout=W.Layout(width=f"{w * self.scale}px", height=f"{h * self.scale}px"))
        c.add_class(cls)
        return c

    # ---- what is shown ---------------------------------------------------------------------
    def method_sets(self) -> tuple:
        """The shown method's sets (PixelSet), or ``()``."""
        res = self.state.method_result
        return tuple(res.sets) if res is not None else ()

    def update(self) -> None:
        """Follow the chosen method and its result."""
        st = self.state
        if self.choice.value != st.method:
            self.choice.value = st.method
        sets = self.method_sets()
        self.sets.options = [f"M{k + 1}: {len(s.pixels)} px from ({s.seed_yx[0]}, {s.seed_yx[1]}), "
                             f"score {fmt(s.value)}" for k, s in enumerate(sets)] or ["(no sets)"]
        self.sets.disabled = not sets
        if sets:
            self.sets.index = 0
        self.test_button.disabled = not sets
        if not st.method:
            self.right_label.value = "<i>Pick a method to see its map here.</i>"
        elif st.method_result is None:
            self.right_label.value = f"<i>Computing the {esc(st.method)} map (see the status bar)...</i>"
        else:
            what = (f"{len(sets)} set(s), outlined and named M1, M2..." if sets
                    else "a map only (this method makes no sets)")
            self.right_label.value = f"<b>{esc(st.method)}</b>: {what}"
        self._draw_right()

    def test_chosen(self) -> None:
        """Put the chosen set through the Interactions tab."""
        sets = self.method_sets()
        k = self.sets.index
        if sets and k is not None and 0 <= k < len(sets):
            self.state.test_pixel_set(f"{self.state.method} M{k + 1}", sets[k])

    # ---- drawing ---------------------------------------------------------------------------
    def _photo(self) -> np.ndarray:
        return render.photo_rgba(self.state.explainer.image, dim=0.6)

    def _draw_left(self) -> None:
        st = self.state
        with st.lock:
            sets = st.shown_sets() if st.ready else []
            layers = [self._photo()]
            if sets:
                layers.append(render.heat_rgba(st.explainer.heatmap(sets))[0])
                layers.append(render.kept_edges_rgba(st.shape, sets, st.explainer.config.features))
        self.left_label.value = (f"<b>H-Sets</b>: {len(sets)} set(s) shown" if sets
                                 else "<i>H-Sets: no set yet</i>")
        self._put(self.left, render.compose_rgba(layers))

    def _draw_right(self) -> None:
        res = self.state.method_result
        layers = [self._photo()]
        self.colorbar.value = ""
        if res is not None:
            rgba, cmap, vmax, words = render.method_layer(res.map)
            layers.append(rgba)
            lo = -vmax if cmap == "bwr" else 0.0
            self.colorbar.value = render.colorbar_html(cmap, lo, vmax, f"{self.state.method}: {words}")
            _, h, w = self.state.shape
            for k, s in enumerate(res.sets):
                mask = np.zeros(h * w, bool)
                mask[np.asarray(s.pixels, np.int64)] = True
                edge = np.zeros((h, w, 4), np.uint8)
                edge[render.edge_mask(mask.reshape(h, w))] = CHOSEN_RGBA if k == self.sets.index else OTHER_RGBA
                layers.append(edge)
        self._put(self.right, render.compose_rgba(layers))
        if res is not None and res.sets:
            with draw_batch():
                self.right.font = "bold 12px sans-serif"
                for k, s in enumerate(res.sets):
                    y, x = s.seed_yx
                    self.right.stroke_style, self.right.line_width = "rgba(0, 0, 0, 0.85)", 3
                    self.right.stroke_text(f"M{k + 1}", x * self.scale, y * self.scale)
                    self.right.fill_style = "#ffffff"
                    self.right.fill_text(f"M{k + 1}", x * self.scale, y * self.scale)

    def _put(self, canvas, rgba) -> None:
        with self.state.lock, draw_batch():
            canvas.clear()
            canvas.put_image_data(render.upscale(rgba, self.scale), 0, 0)
