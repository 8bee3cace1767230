"""The image view: the photo with its layers; click a pixel to seed a set, hover to read it.

Layers of the :class:`ipycanvas.MultiCanvas`, bottom to top: ``photo``, ``segments``
(segment boundaries), ``heatmap`` (the kept sets painted with their values), ``set`` (the
current set after the animation step: cyan members, orange pixels the step added, a white
square on the pixel whose row was expanded) and ``seeds`` (red ring: the seed; yellow
numbered rings: automatic seeds; white ring: a clicked pixel still growing) and ``region``
(the rectangle last dragged with "read a region" on, whose contribution the line under the
image reports: :func:`~hsets_widgets.metrics.regions.region_effect`). Each layer has a check
box. The image is zoomed by an integer factor (crisp pixels) and every layer is
redrawn whenever a front end connects (``on_client_ready``), so a reloaded page or a Voila
app is never blank.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import ipywidgets as W
import numpy as np
from ipycanvas import MultiCanvas

from ..hsets.seeds import feature_pixels
from ..metrics.regions import rectangle, region_effect
from ..plumbing.common import to_numpy
from ..plumbing.files import atomic_path
from . import render
from .common import as_state, draw_batch, esc, fmt, set_name, title

LAYERS = ("photo", "segments", "method", "heatmap", "set", "seeds", "region")
#: brightness of the photo when "dim photo" is ticked
DIM = 0.7
#: zoom factors offered (the image scrolls inside its box when zoomed: that is the pan)
ZOOMS = (1, 2, 4)
LAYER_LABELS = {"photo": "photo", "segments": "segments", "method": "method layer", "heatmap": "H-Sets heatmap",
                "set": "current set", "seeds": "seeds", "region": "read region"}
REGION_RGBA = (255, 255, 255, 255)


class ImageView(W.VBox):
    """Photo, segments, heatmap, current set and seeds, with click-to-seed and hover.

    Parameters
    ----------
    state : ExplorerState, Explainer or image
        What to show (an image builds its own state; ``**settings`` go to it).
    display_size : int
        Approximate on-screen size of the longer side, in CSS pixels.
    layers : sequence of str, optional
        Layers shown at start (default all but ``heatmap`` until sets are kept).
    """

    def __init__(self, state, display_size: int = 448, layers=None, **settings):
        self.state = as_state(state, **settings)
        _, h, w = self.state.shape
        self.base_scale = self.scale = render.display_scale(h, w, display_size)
        self._build_canvas(h, w)
        self._build_controls(layers)
        self.region = None      # (y0, x0, y1, x1) of the rectangle shown, once dragged
        self.region_result = None
        self._drag = None       # the corner a drag started from
        self.hover_yx = None
        self.n_draws = 0
        self._ig = None         # (H, W) IG map for the hover read-out, once computed
        self._set_key = None
        self._listen()
        super().__init__([
            title("Image", "Click any pixel to grow its interaction set; hover to read its "
                           "Integrated Gradients and Hessian-row value."),
            self.window,
            W.HBox(list(self.toggles.values()) + [self.dim], layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.zoom, self.opacity, self.brush], layout=W.Layout(flex_flow="row wrap")),
            self.readout, self.region_text, self.legend])
        self.add_class("hsets-image-view")
        self._update_legend()

    def _build_canvas(self, h: int, w: int) -> None:
        self.canvas = MultiCanvas(len(LAYERS), width=w * self.scale, height=h * self.scale)
        self.canvas.add_class("hsets-image-canvas")
        self.canvas.layout.width = f"{w * self.scale}px"
        self.canvas.layout.height = f"{h * self.scale}px"
        # a window of the base size: a zoomed image scrolls inside it (pan)
        self.window = W.Box([self.canvas], layout=W.Layout(
            overflow="auto", max_width=f"{w * self.scale + 18}px", max_height=f"{h * self.scale + 18}px"))
        self.window.add_class("hsets-image-window")

    def _build_controls(self, layers) -> None:
        self.zoom = W.ToggleButtons(options=[(f"{z}×", z) for z in ZOOMS], value=1, description="zoom",
                                    style={"button_width": "42px", "description_width": "40px"},
                                    tooltip="zoom in; scroll the image to pan")
        self.zoom.add_class("hsets-zoom")
        self.zoom.observe(lambda ch: self.set_zoom(ch["new"]), names="value")
        self.opacity = W.FloatSlider(value=0.9, min=0.1, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False, layout=W.Layout(width="280px"),
                                     tooltip="opacity of the H-Sets heatmap and the method layer")
        self.opacity.add_class("hsets-opacity")
        self.opacity.observe(lambda ch: self._changed(("heatmap", "method")), names="value")
        shown = set(LAYERS if layers is None else layers)
        self.toggles = {}
        for name in LAYERS:
            cb = W.Checkbox(value=name in shown, description=LAYER_LABELS[name], indent=False,
                            layout=W.Layout(width="auto", margin="0 10px 0 0"))
            cb.add_class(f"hsets-layer-{name}")
            cb.observe(lambda ch, name=name: self.draw_layer(name), names="value")
            self.toggles[name] = cb
        self.dim = W.Checkbox(value=True, description="dim photo", indent=False,
                              layout=W.Layout(width="auto", margin="0 10px 0 0"),
                              tooltip="darken the photo so the overlays stand out")
        self.dim.add_class("hsets-dim-photo")
        self.dim.observe(lambda ch: self.draw_layer("photo"), names="value")
        self.readout = W.HTML(self._readout_text(None))
        self.readout.add_class("hsets-hover")
        self.brush = W.ToggleButton(value=False, description="read a region",
                                    tooltip="on: drag a rectangle over the image to read its share of each "
                                            "map and what removing it does to the class (off: a click seeds a set)")
        self.brush.add_class("hsets-brush")
        self.region_text = W.HTML()
        self.region_text.add_class("hsets-region")
        self.legend = W.HTML()
        self.legend.add_class("hsets-image-legend")

    def _listen(self) -> None:
        self.canvas.on_client_ready(self.redraw)
        self.canvas.on_mouse_down(self._on_mouse_down)
        self.canvas.on_mouse_move(self._on_mouse_move)
        self.canvas.on_mouse_up(self._on_mouse_up)
        self.canvas.on_mouse_out(lambda x, y: self._set_hover(None))
        st = self.state
        st.observe(lambda ch: self._set_changed(), names=["revision", "step"])
        st.observe(lambda ch: self._changed(("seeds",)),
                   names=["seed", "pending_seed_yx", "auto_seeds"])
        st.observe(lambda ch: self._changed(("heatmap", "seeds", "set")), names=["sets"])
        st.observe(lambda ch: self._changed(("segments",)), names=["ready"])
        st.observe(lambda ch: self._changed(("method",)), names=["method_result"])

    # ---- events ------------------------------------------------------------------------
    def to_pixel(self, x: float, y: float) -> tuple:
        """Canvas coordinates -> image pixel ``(row, col)``."""
        _, h, w = self.state.shape
        return (min(max(int(y // self.scale), 0), h - 1), min(max(int(x // self.scale), 0), w - 1))

    def _on_mouse_down(self, x, y):
        row, col = self.to_pixel(x, y)
        if self.brush.value:
            self._drag = (row, col)
            self.region = (row, col, row, col)
            self.draw_layer("region")
            return
        self.state.select_seed(row, col)

    def _on_mouse_move(self, x, y):
        yx = self.to_pixel(x, y)
        self._set_hover(yx)
        if self._drag is not None:
            self.region = self._drag + yx
            self.draw_layer("region")

    def _on_mouse_up(self, x, y):
        if self._drag is None:
            return
        self.region = self._drag + self.to_pixel(x, y)
        self._drag = None
        self.draw_layer("region")
        self.read_region(*self.region)

    def read_region(self, y0: int, x0: int, y1: int, x1: int):
        """Report what the rectangle ``(y0, x0)``-``(y1, x1)`` contributes (under the image);
        returns the :class:`~hsets_widgets.metrics.regions.RegionEffect`, or None when it
        cannot be read yet.
        """
        st = self.state
        self.region = (y0, x0, y1, x1)
        if not st.ready:
            self.region_text.value = "<i>The region can be read once IG is computed (see the status bar).</i>"
            return None
        ex = st.explainer
        maps = {"IG": self.ig_map()}
        if st.sets:
            maps["the H-Sets heatmap"] = st.heatmap()
        if st.method_result is not None:
            maps[st.method] = method_map_2d(st.method_result.map)
        try:
            r = region_effect(ex.x.detach(), ex.classifier, ex.target, region=rectangle(st.shape[1:], y0, x0, y1, x1),
                              maps=maps)
        except ValueError as err:
            self.region_text.value = f"<span style='color:#c62828'>{err}</span>"
            return None
        self.region_result = r
        self.region_text.value = region_words(r, (y0, x0, y1, x1), ex.class_name)
        return r

    def _set_hover(self, yx):
        self.hover_yx = yx
        self.readout.value = self._readout_text(yx)

    def ig_map(self) -> Optional[np.ndarray]:
        """Per-pixel Integrated Gradients ``(H, W)`` (None before it is computed)."""
        if self._ig is None and self.state.ready:
            self._ig = to_numpy(self.state.explainer.attribution().attribution).sum(0)
        return self._ig

    def pixel_info(self, y: int, x: int) -> dict:
        """What the hover read-out says about pixel ``(y, x)`` (see :func:`pixel_info`)."""
        return pixel_info(self.state, y, x, self.ig_map())

    def _readout_text(self, yx) -> str:
        st = self.state
        if yx is None:
            return ("<span style='color:#666'>Hover over the image: pixel, Integrated Gradients "
                    "(IG) and H[seed, pixel] appear here.</span>")
        info = self.pixel_info(*yx)
        parts = [f"<b>pixel</b> (y={yx[0]}, x={yx[1]})",
                 f"<b>IG</b> {fmt(info['ig'])}" if info["ig"] is not None else "<b>IG</b> (computing…)"]
        if st.seed is not None:
            parts.append(f"<b>H[seed, pixel]</b> {fmt(info['h'])}" if info["h"] is not None
                         else "<b>H[seed, pixel]</b> (row not computed)")
        if info["segment"] is not None:
            parts.append(f"segment {info['segment']}" if info["segment"] else "no segment")
        if info["in_set"]:
            parts.append("<b style='color:#0097a7'>in the current set</b>")
        for k in info["kept"]:
            parts.append(f"<b>in kept set {set_name(st, k)}</b> (v = {fmt(st.sets[k].value)})")
        return " · ".join(parts)

    def _set_changed(self):
        # a new set changes `revision` and `step` together: draw the set layer once
        key = (self.state.revision, self.state.step)
        if key != self._set_key:
            self._set_key = key
            self._changed(("set",))

    def _changed(self, names):
        for n in names:
            self.draw_layer(n)
        if "heatmap" in names or "segments" in names:
            self._update_legend()
        if self.hover_yx is not None:
            self.readout.value = self._readout_text(self.hover_yx)

    # ---- drawing -----------------------------------------------------------------------
    def redraw(self, *_):
        """Draw every layer (called when a front end becomes ready)."""
        with self.state.lock, draw_batch():
            for name in LAYERS:
                self.draw_layer(name)

    def draw_layer(self, name: str) -> None:
        """Redraw one layer (``photo``, ``heat``, ``set``, ...) of the image canvas."""
        layer = self.canvas[LAYERS.index(name)]
        with self.state.lock, draw_batch():
            layer.clear()
            self.n_draws += 1
            if self.toggles[name].value:
                getattr(self, f"_draw_{name}")(layer)

    def _put(self, layer, rgba: np.ndarray) -> None:
        layer.put_image_data(render.upscale(rgba, self.scale), 0, 0)

    def _draw_photo(self, layer):
        self._put(layer, render.photo_rgba(self.state.explainer.image, dim=DIM if self.dim.value else 1.0))

    def _draw_region(self, layer):
        if self.region is None:
            return
        y0, x0, y1, x1 = self.region
        s = self.scale
        (ya, yb), (xa, xb) = sorted((y0, y1)), sorted((x0, x1))
        layer.line_width = 3
        layer.stroke_style = "rgba(0, 0, 0, 0.8)"
        layer.stroke_rect(xa * s, ya * s, (xb - xa + 1) * s, (yb - ya + 1) * s)
        layer.line_width = 1.5
        layer.set_line_dash([5, 3])
        layer.stroke_style = render.css(REGION_RGBA)
        layer.stroke_rect(xa * s, ya * s, (xb - xa + 1) * s, (yb - ya + 1) * s)
        layer.set_line_dash([])

    def _draw_segments(self, layer):
        seg = self.state.explainer.cached("segmentation")  # drawn once computed
        if seg is not None:
            layer.put_image_data(render.boundaries_rgba(seg.labels, scale=self.scale), 0, 0)

    def set_zoom(self, zoom: int) -> None:
        """Show the image ``zoom`` times larger (crisp pixels); it scrolls in its window."""
        _, h, w = self.state.shape
        self.scale = self.base_scale * int(zoom)
        with self.state.lock:
            self.canvas.width, self.canvas.height = w * self.scale, h * self.scale
            self.canvas.layout.width = f"{w * self.scale}px"
            self.canvas.layout.height = f"{h * self.scale}px"
        self.redraw()

    def _draw_method(self, layer):
        res = self.state.method_result
        if res is not None:
            rgba, *_ = render.method_layer(res.map, alpha=self.opacity.value)
            self._put(layer, rgba)

    def _draw_heatmap(self, layer):
        st = self.state
        if st.sets:
            rgba, *_ = render.heat_rgba(st.heatmap(), alpha=self.opacity.value)
            edges = render.kept_edges_rgba(st.shape, st.sets, st.explainer.config.features)
            self._put(layer, render.compose_rgba([rgba, edges]))

    def _draw_set(self, layer):
        st = self.state
        if st.grown is None:
            return
        shape, s, feats = st.shape, self.scale, st.explainer.config.features
        members = st.displayed_members()
        info = st.step_info()
        added = info.added if info is not None else []
        if current_is_kept(st) and self.toggles["heatmap"].value:
            # the kept heatmap under it stays visible: only the set's edge is drawn
            edge = render.edge_mask(render.members_mask(members, shape, feats))
            ys, xs = np.nonzero(edge)
            layer.fill_style = render.css(render.SET_RGBA)
            layer.fill_rects(xs * s, ys * s, s, s)
        else:
            self._fill(layer, members, render.SET_RGBA, shape, feats)
        self._fill(layer, added, render.ADDED_RGBA, shape, feats)
        if info is not None:
            y, x = render.feature_yx([info.row], shape, feats)
            layer.stroke_style = render.css(render.ROW_RGBA)
            layer.line_width = max(1.0, s / 4)
            layer.stroke_rect(float(x[0] * s), float(y[0] * s), s, s)

    def _fill(self, layer, indices, rgba, shape, feats):
        if len(indices) == 0:
            return
        ys, xs = render.feature_yx(indices, shape, feats)
        pix = np.unique(ys * shape[2] + xs)
        s = self.scale
        layer.fill_style = render.css(rgba)
        layer.fill_rects((pix % shape[2]) * s, (pix // shape[2]) * s, s, s)

    def _draw_seeds(self, layer):
        st = self.state
        s = self.scale
        ra, r = render.seed_radius(s, auto=True), render.seed_radius(s)
        layer.line_width = 2
        layer.font = "bold 12px sans-serif"
        for k, seed in enumerate(st.auto_seeds):
            cy, cx = (seed.yx[0] + 0.5) * s, (seed.yx[1] + 0.5) * s
            if st.seed is None or tuple(st.seed.yx) != tuple(seed.yx):   # one ring per seed
                _ring(layer, cx, cy, ra, render.css(render.AUTO_RGBA), 1.5, "rgba(0, 0, 0, 0.5)", 3)
            layer.fill_style = render.css(render.AUTO_RGBA)
            layer.fill_text(f"A{k + 1}", cx + ra + 1, cy - ra * 0.5)   # as "Why these seeds" names them
        if st.pending_seed_yx is not None:
            cy, cx = (st.pending_seed_yx[0] + 0.5) * s, (st.pending_seed_yx[1] + 0.5) * s
            layer.stroke_style = render.css(render.PENDING_RGBA)
            layer.set_line_dash([4, 3])
            layer.line_width = 2
            layer.stroke_circle(cx, cy, r)
            layer.set_line_dash([])
        if st.seed is not None:
            cy, cx = (st.seed.yx[0] + 0.5) * s, (st.seed.yx[1] + 0.5) * s
            _ring(layer, cx, cy, r, render.css(render.SEED_RGBA), 3, "rgba(0, 0, 0, 0.8)", 5)
        # kept sets by the names the list gives them (#1, #2...), under their seeds
        layer.font = "bold 12px sans-serif"
        for k, kept in enumerate(st.sets):
            cy, cx = (kept.seed_yx[0] + 0.5) * s, (kept.seed_yx[1] + 0.5) * s
            layer.stroke_style, layer.line_width = "rgba(0, 0, 0, 0.85)", 3
            layer.stroke_text(f"#{k + 1}", cx - ra, cy + ra + 12)
            layer.fill_style = "#ffffff"
            layer.fill_text(f"#{k + 1}", cx - ra, cy + ra + 12)

    def _update_legend(self):
        st = self.state
        sw = "display:inline-block;width:12px;height:12px;vertical-align:middle;margin:0 3px 0 8px"
        items = [f"<span style='{sw};background:{render.css(render.SET_RGBA)}'></span>current set",
                 f"<span style='{sw};background:{render.css(render.ADDED_RGBA)}'></span>added by the "
                 "shown merge step",
                 f"<span style='{sw};border:2px solid {render.css(render.SEED_RGBA)};border-radius:50%'>"
                 "</span>seed",
                 f"<span style='{sw};border:2px solid {render.css(render.AUTO_RGBA)};border-radius:50%'>"
                 "</span>automatic seeds A1, A2... (best first)"]
        heat = ""
        if st.sets:
            h = st.heatmap()
            _, cmap, vmin, vmax = render.heat_rgba(h)
            heat = (f"<div>H-Sets heatmap ({len(st.sets)} kept set(s), value per pixel): "
                    f"{fmt(vmin)} <span style='display:inline-block;width:120px;height:10px;"
                    f"background:{render.colorbar_css(cmap)};vertical-align:middle'></span> "
                    f"{fmt(vmax)}</div>")
        self.legend.value = (f"<div style='font-size:12px'>{''.join(items)}</div>"
                             f"<div style='font-size:12px'>{heat}</div>")

    # ---- export ------------------------------------------------------------------------
    def to_rgb(self, layers=None, scale=None) -> np.ndarray:
        """The view as an ``(H*scale, W*scale, 3)`` uint8 image, composed in Python with PIL
        from the same layers the canvas shows (``layers`` default: the ticked ones).
        """
        if layers is None:
            layers = [n for n in LAYERS if self.toggles[n].value]
        return compose_view(self.state, layers, self.scale if scale is None else int(scale),
                            dim=DIM if self.dim.value else 1.0)

    def save_png(self, path, layers=None, scale=None) -> Path:
        """Write :meth:`to_rgb` to ``path`` as a PNG (atomically); returns the path."""
        return write_image(path, self.to_rgb(layers, scale))


def pixel_info(state, y: int, x: int, ig: Optional[np.ndarray] = None) -> dict:
    """What the image view's hover read-out says about pixel ``(y, x)``: ``{"yx", "ig"
    (from the ``(H, W)`` map ``ig``, if given), "h" (the seed's Hessian row, if computed),
    "in_set" (in the set after the animation step), "segment"}``.
    """
    st = state
    _, h, w = st.shape
    info = {"yx": (int(y), int(x)), "ig": None, "h": None, "in_set": False, "segment": None, "kept": []}
    if not (0 <= y < h and 0 <= x < w):
        return info
    if ig is not None:
        info["ig"] = float(ig[y, x])
    row = st.seed_row_image()
    if row is not None:
        info["h"] = float(row[y, x])
    seg = st.explainer.cached("segmentation")
    if seg is not None:
        info["segment"] = int(seg.labels[y, x])
    members = st.displayed_members()
    if members.size:
        pix = feature_pixels(members, st.shape, st.explainer.config.features)
        info["in_set"] = bool(np.any(pix == y * w + x))
    feats = st.explainer.config.features
    info["kept"] = [k for k, s in enumerate(st.sets)
                    if np.any(feature_pixels(s.members, st.shape, feats) == y * w + x)]
    return info


def region_words(r, box: tuple, class_name: str) -> str:
    """The line under the image for a read region (:meth:`ImageView.read_region`)."""
    y0, x0, y1, x1 = box
    size = f"{abs(y1 - y0) + 1}×{abs(x1 - x0) + 1} px"
    area = f"{100 * r.area:.1f}%"
    shares = ", ".join(f"<b>{100 * v:.1f}%</b> of {esc(name)}'s" for name, v in r.shares.items() if np.isfinite(v))
    parts = [f"<b>Region</b> {size} ({area} of the image)"]
    if shares:
        parts.append(f"holds {shares} positive mass (an even spread would give {area})")
    parts.append(f"removing it (imputed from its surroundings, as ROAD does) takes p({esc(class_name)}) "
                 f"from {fmt(r.before)} to <b>{fmt(r.after)}</b> ({'-' if r.drop >= 0 else '+'}{fmt(abs(r.drop))})")
    return "<div style='font-size:12px'>" + "; ".join(parts) + ".</div>"


def method_map_2d(amap) -> np.ndarray:
    """A method's map as ``(H, W)``: channels summed."""
    a = np.asarray(amap, dtype=np.float64)
    return a.sum(0) if a.ndim == 3 else a


def current_is_kept(state) -> bool:
    """Whether the current set (as fully grown) is one of the kept sets."""
    st = state
    if st.grown is None or st.seed is None:
        return False
    return any(k.seed == st.seed.index and np.array_equal(k.members, st.grown.members) for k in st.sets)


def write_image(path, rgb: np.ndarray) -> Path:
    """Write an image array to ``path`` (format from its extension, as PIL reads it) through
    :func:`hsets_widgets.plumbing.files.atomic_path`, creating its folder; returns the path.
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unknown image file extension {path.suffix!r} in {path}")
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format=fmt)
    return path


def save_png(state, path, layers=LAYERS, scale: int = 2, dim: float = 1.0) -> Path:
    """Write the image view (``layers``, zoomed ``scale`` times, photo brightness ``dim``) to
    ``path`` as PNG.
    """
    return write_image(path, compose_view(state, layers, scale, dim))


def compose_view(state, layers=LAYERS, scale: int = 2, dim: float = 1.0) -> np.ndarray:
    """The image view's ``layers`` composed with PIL, ``(H*scale, W*scale, 3)`` uint8.

    Uses the same colours as the canvas, so ``save_png`` needs no browser; ``dim`` darkens
    the photo (the view's "dim photo" box uses :data:`DIM`).
    """
    st = state
    s = max(1, int(scale))
    shape = st.shape
    feats = st.explainer.config.features
    h, w = shape[1:]
    seg = st.explainer.cached("segmentation")  # only drawn once computed
    out = []
    with st.lock:
        if "photo" in layers:
            out.append(render.upscale(render.photo_rgba(st.explainer.image, dim=dim), s))
        if "segments" in layers and seg is not None:
            out.append(render.boundaries_rgba(seg.labels, scale=s))
        if "method" in layers and st.method_result is not None:
            out.append(render.upscale(render.method_layer(st.method_result.map)[0], s))
        if "heatmap" in layers and st.sets:
            out.append(render.upscale(render.heat_rgba(st.heatmap())[0], s))
            out.append(render.upscale(render.kept_edges_rgba(shape, st.sets, feats), s))
        if "set" in layers and st.grown is not None:
            info = st.step_info()
            out.append(render.upscale(render.set_rgba(
                shape, st.displayed_members(), info.added if info else [],
                info.row if info else None, feats,
                outline="heatmap" in layers and current_is_kept(st)), s))
        if "seeds" in layers:
            ra, r = render.seed_radius(s, auto=True), render.seed_radius(s)
            size = (h * s, w * s)
            if st.auto_seeds:
                out.append(render.rings(size, [((sd.yx[0] + .5) * s, (sd.yx[1] + .5) * s)
                                               for sd in st.auto_seeds], render.AUTO_RGBA, ra,
                                        labels=[f"A{k + 1}" for k in range(len(st.auto_seeds))]))
            if st.seed is not None:
                out.append(render.rings(size, [((st.seed.yx[0] + .5) * s, (st.seed.yx[1] + .5) * s)],
                                        render.SEED_RGBA, r, width=3))
    if not out:
        out.append(np.zeros((h * s, w * s, 4), np.uint8))
    return render.compose(out)


def _ring(layer, cx: float, cy: float, r: float, color: str, width: float, halo: str,
          halo_width: float) -> None:
    """A circle with a dark halo under it, so it reads on light and dark pixels alike."""
    layer.stroke_style, layer.line_width = halo, halo_width
    layer.stroke_circle(cx, cy, r)
    layer.stroke_style, layer.line_width = color, width
    layer.stroke_circle(cx, cy, r)
