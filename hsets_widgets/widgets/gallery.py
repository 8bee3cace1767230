"""The gallery: a whole ``hsets evaluate`` run in one notebook widget.

``Gallery("eval/")`` shows the run's photos as a grid with a chosen method's stored map over
each (thumbnails drawn lazily, a page at a time, on a background worker), sortable and
filterable by every number the run recorded; a bqplot scatter of any two numbers whose brush
selects photos in the grid; the per-method summary with 95% intervals; with
``compare="eval2/"`` two runs paired photo by photo. Clicking a photo opens the Explorer on it
with the run's model and settings and the stored maps as its method layers; "Back to the
gallery" returns to the same sort, filter and selection. While a run is still writing, the
records it appends appear (``results.jsonl``'s size is looked at every 2 s by a ``Play``
widget in the page, so no kernel thread outlives the widget).

Everything it reads comes from :mod:`hsets_widgets.runs.records`, which never writes
into the folder; this module only draws and routes clicks.
"""
from __future__ import annotations

import io
import math
import time
from typing import Optional

import ipywidgets as W
import numpy as np
from traitlets import Bool, Enum, Float, HasTraits, Int, List, Unicode

from ..methods.protocol import MapWithSets
from ..methods.registry import METHODS, parse_method_spec
from ..model.models import load_classifier
from ..runs.records import PairedRuns, open_run, sort_order, within
from . import render
from .common import esc, fmt, title
from .explorer import Explorer
from .runner import BackgroundRunner, Job

#: thumbnails per page (the grid keeps this many tiles and refills them)
PAGE = 24
THUMB = 112
#: the summary's metrics, in the words the table uses (higher/lower = more faithful)
SUMMARY_METRICS = {"morf_aopc": "MoRF AOPC (higher better)", "lerf_aopc": "LeRF AOPC (lower better)",
                   "insertion_auc": "insertion AUC (higher better)", "deletion_auc": "deletion AUC (lower better)",
                   "sparsity": "sparsity", "support_fraction": "support", "interaction_share": "interaction share"}
SHOW = ("all", "done", "failed", "correct", "wrong")
#: milliseconds between two looks at results.jsonl while following a run
POLL_MS = 2000
#: seconds the thumbnail worker waits before drawing (a burst of clicks supersedes it first)
DRAW_DELAY = 0.1


class GalleryState(HasTraits):
    """What the gallery's views share: the run, the sort, the filter, the selection, the axes.

    Attributes (traits)
    -------------------
    sort_by, descending : the column the grid is sorted by
    filter_by, low, high : a range filter on one column (None bounds are open)
    show : "all", "done", "failed", "correct" or "wrong" photos
    selection : keys of the photos picked (the scatter's brush, or :meth:`select`)
    only_selected : show only the selection in the grid
    method : the method whose stored map is drawn over each photo ("" for the photo alone)
    x, y : the scatter's columns
    page : the grid's page
    version : bumped when new records arrived
    opened : the key of the photo open in the Explorer ("" for the grid)
    """

    sort_by = Unicode("")
    descending = Bool(True)
    filter_by = Unicode("")
    low = Float(None, allow_none=True)
    high = Float(None, allow_none=True)
    show = Enum(SHOW, default_value="all")
    selection = List(Unicode())
    only_selected = Bool(False)
    method = Unicode("")
    x = Unicode("")
    y = Unicode("")
    page = Int(0)
    version = Int(0)
    opened = Unicode("")

    def __init__(self, run, **kw):
        self.run = run
        self.paired = isinstance(run, PairedRuns)
        cols = run.numbers()
        methods = run.methods
        first = methods[0] if methods else ""
        pick = (lambda *names: next((n for n in names if n in cols), cols[0] if cols else ""))
        pre = "B - A: " if self.paired else ""
        kw.setdefault("sort_by", pick(f"{pre}{first} morf_aopc", f"{pre}{first} sparsity"))
        kw.setdefault("method", "hsets" if "hsets" in methods else first)
        second = methods[1] if len(methods) > 1 else first
        if self.paired:
            kw.setdefault("x", pick(f"A: {first} morf_aopc"))
            kw.setdefault("y", pick(f"B: {first} morf_aopc"))
        else:
            kw.setdefault("x", pick(f"{first} morf_aopc"))
            kw.setdefault("y", pick(f"{second} morf_aopc", f"{first} sparsity"))
        super().__init__(**kw)

    @property
    def keys(self) -> list:
        """Every photo the columns describe, in their order."""
        return self.run.keys

    def shown(self) -> list:
        """The keys the grid shows, filtered and sorted."""
        keys = self.keys
        if not keys:
            return []
        cols = self.run.columns()
        recs = self.run.records
        keep = np.ones(len(keys), bool)
        if self.show != "all":
            ok = np.array([recs[k].ok for k in keys])
            correct = cols.get("A: correct" if self.paired else "correct", np.full(len(keys), math.nan))
            keep &= {"done": ok, "failed": ~ok, "correct": correct == 1, "wrong": correct == 0}[self.show]
        if self.filter_by in cols and (self.low is not None or self.high is not None):
            keep &= within(cols[self.filter_by], self.low, self.high)
        if self.only_selected:
            picked = set(self.selection)
            keep &= np.array([k in picked for k in keys])
        idx = np.flatnonzero(keep)
        if self.sort_by in cols:
            idx = idx[sort_order(cols[self.sort_by][idx], self.descending)]
        return [keys[i] for i in idx]

    def select(self, keys) -> None:
        """Pick ``keys`` (and show only them in the grid; an empty list shows all again)."""
        keys = [str(k) for k in keys]
        # one redraw with all three set, not one per trait: a brush answers after a single
        # pass over the tiles (the views' observers run once the block ends, on the final state)
        with self.hold_trait_notifications():
            self.selection = keys
            self.only_selected = bool(keys)
            self.page = 0

    def poll(self) -> list:
        """Read the records appended since the last look; their keys (the views redraw whenever
        anything was appended, a line still being written included: the notes say so).
        """
        before = self.run.version
        new = self.run.refresh()
        if self.run.version != before:
            self.version += 1
        return new


# ---- thumbnails --------------------------------------------------------------------------
def thumbnail_rgba(photo: Optional[np.ndarray], amap: Optional[np.ndarray], size: int = THUMB) -> np.ndarray:
    """The photo (dimmed) with ``amap`` over it, ``size`` pixels square, as RGBA: a sparse map
    (H-Sets) as the Explorer paints it, a dense one (IG, gradients) as its smoothed magnitude,
    so every method's thumbnail shows where its mass is.
    """
    if photo is None:
        base = np.full((size, size, 4), (220, 220, 220, 255), np.uint8)
    else:
        base = render.fit(render.photo_rgba(photo, dim=0.7), size)
    if amap is None:
        return base
    heat = render.method_layer(amap)[0]
    return render.compose_rgba([base, render.fit(heat, size)])


def png_bytes(rgba: np.ndarray) -> bytes:
    """``rgba`` as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def photo_thumbnails(run, key: str, method: str, size: int = THUMB) -> bytes:
    """The tile of photo ``key``: its map of ``method`` over it (both runs' side by side when
    ``run`` pairs two).
    """
    parts = []
    for r in ((run.a, run.b) if isinstance(run, PairedRuns) else (run,)):
        photo = r.photo(key, 224)       # the run's centre crop (any side: the same square)
        amap = r.maps(key, [method]).get(method) if method else None
        parts.append(thumbnail_rgba(photo, amap, size))
    return png_bytes(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])


def tile_card(rec, number_name: str, value: float, picked: bool, width: int = THUMB) -> str:
    """The text under a thumbnail ``width`` pixels wide: the photo's name, the sorted number and
    the class (or why the photo failed), with an orange bar when the photo is selected.
    """
    bar = "#ff9800" if picked else "transparent"
    # a width of its own: the widget's box is sized by its content and would not wrap the lines
    style = (f"width:{width - 8}px;border-left:4px solid {bar};padding-left:4px;font-size:11px;line-height:1.3;"
             "white-space:normal;overflow-wrap:anywhere")
    name = (f"<div style='white-space:nowrap;overflow:hidden;text-overflow:ellipsis' title='{esc(rec.name)}'>"
            f"<b>{esc(rec.name)}</b></div>")
    if not rec.ok:
        return f"<div style='{style}'>{name}<span style='color:#c62828'>failed: {esc(rec.reason[:60])}</span></div>"
    return (f"<div style='{style}'>{name}{esc(number_name)} = <b>{fmt(value)}</b>"
            f"<br>{esc(rec.target_name[:30])}</div>")


# ---- views -------------------------------------------------------------------------------
class GalleryGrid(W.VBox):
    """A page of thumbnails, each with its name and the sorted number; a click opens the photo."""

    def __init__(self, state: GalleryState, page_size: int = PAGE):
        self.state = state
        self.page_size = page_size
        self.cache: dict = {}                 # (key, method) -> PNG bytes
        self.runner = BackgroundRunner()
        self.tile_keys: list = [None] * page_size
        self.blank = png_bytes(np.full((THUMB, THUMB * (2 if state.paired else 1), 4), 240, np.uint8))
        self.tiles, self.images, self.buttons, self.labels = [], [], [], []
        width = f"{THUMB * (2 if state.paired else 1)}px"
        # a tile is three widgets of which a page change touches two (its card and its picture),
        # one message each: a grid answers in as many messages as it has tiles, then the pictures
        for k in range(page_size):
            img = W.Image(value=self.blank, format="png", layout=W.Layout(width=width))
            lab = W.HTML(layout=W.Layout(width=width))
            lab.add_class("hsets-gallery-number")
            btn = W.Button(description="open", layout=W.Layout(width=width),
                           tooltip="open this photo in the Explorer")
            btn.add_class("hsets-gallery-open")
            btn.on_click(lambda b, k=k: self.open_tile(k))
            tile = W.VBox([img, lab, btn], layout=W.Layout(margin="2px", padding="2px"))
            tile.add_class("hsets-gallery-tile")
            self.images.append(img)
            self.buttons.append(btn)
            self.labels.append(lab)
            self.tiles.append(tile)
        self.prev = W.Button(description="◀ previous", layout=W.Layout(width="110px"))
        self.next = W.Button(description="next ▶", layout=W.Layout(width="110px"))
        self.prev.on_click(lambda b: self.turn(-1))
        self.next.on_click(lambda b: self.turn(+1))
        self.where = W.HTML()
        self.where.add_class("hsets-gallery-where")
        self.box = W.Box(self.tiles, layout=W.Layout(display="flex", flex_flow="row wrap"))
        state.observe(lambda ch: self.update(), names=["sort_by", "descending", "filter_by", "low", "high", "show",
                                                       "selection", "only_selected", "method", "page", "version"])
        super().__init__([W.HBox([self.prev, self.next, self.where]), self.box])
        self.add_class("hsets-gallery-grid")
        self.shown: list = []
        self.update()

    def turn(self, step: int) -> None:
        """Go ``step`` pages on."""
        last = max(0, (len(self.shown) - 1) // self.page_size)
        self.state.page = int(min(max(self.state.page + step, 0), last))

    def open_tile(self, k: int) -> None:
        """Open the photo of tile ``k``."""
        if self.tile_keys[k] is not None:
            self.state.opened = self.tile_keys[k]

    def update(self) -> None:
        """Show the current page of the filtered, sorted photos (thumbnails not yet drawn are
        drawn in the background, the page's first).
        """
        st = self.state
        self.shown = st.shown()
        last = max(0, (len(self.shown) - 1) // self.page_size)
        if st.page > last:
            st.page = last                   # observed: comes back here
            return
        start = st.page * self.page_size
        page = self.shown[start:start + self.page_size]
        col = st.run.columns().get(st.sort_by)
        index = {k: i for i, k in enumerate(st.keys)} if col is not None else {}
        picked = set(st.selection)
        recs = st.run.records
        todo, pictures = [], []
        for k in range(self.page_size):
            key = page[k] if k < len(page) else None
            self.tile_keys[k] = key
            display = "none" if key is None else ""
            if self.tiles[k].layout.display != display:
                self.tiles[k].layout.display = display
            if key is None:
                continue
            self.labels[k].value = tile_card(recs[key], short(st.sort_by),
                                             col[index[key]] if col is not None else math.nan, key in picked,
                                             THUMB * (2 if st.paired else 1))
            png = self.cache.get((key, st.method))
            pictures.append((k, png if png is not None else self.blank))
            if png is None:
                todo.append((k, key))
        n = len(self.shown)
        self.where.value = (f"<span style='font-size:13px'>photos {start + 1 if n else 0}-{start + len(page)} of {n} "
                            f"shown ({len(st.keys)} in the run"
                            + (f", {len(picked)} selected" if picked else "") + ")</span>")
        self.prev.disabled = st.page == 0
        self.next.disabled = st.page >= last
        for k, png in pictures:           # after every text: the grid has answered before they arrive
            self.images[k].value = png
        if todo:
            self.draw_later(todo, st.method)

    def draw_later(self, todo: list, method: str) -> None:
        """Draw ``todo``'s thumbnails on the background worker (a newer page supersedes it)."""
        run = self.state.run

        def work(progress, cancel):
            # start a moment later and yield between tiles: drawing holds the GIL in bursts,
            # and a sort or a brush the user makes meanwhile must not wait behind it
            time.sleep(DRAW_DELAY)
            out = []
            for k, key in todo:
                cancel.check()
                time.sleep(0)
                png = photo_thumbnails(run, key, method)
                self.cache[(key, method)] = png
                out.append((k, key, png))
            return out

        def apply(done):
            for k, key, png in done:
                if self.tile_keys[k] == key and self.state.method == method:
                    self.images[k].value = png

        self.runner.submit(Job("thumbnails", "thumbnails", work, apply))

    def wait(self, timeout: float = 60.0) -> bool:
        """Wait until the page's thumbnails are drawn (scripts and tests)."""
        return self.runner.wait(timeout)

    def close(self) -> None:
        """Stop drawing and end the drawing thread, then close the widgets."""
        self.runner.stop()
        super().close()


def short(column: str) -> str:
    """A column's name without the run prefix, for tight labels."""
    return column.replace("B - A: ", "Δ ").replace("A: ", "").replace("B: ", "")


class GalleryScatter(W.VBox):
    """Any two numbers per photo as a bqplot scatter; the brush selects the photos it covers."""

    def __init__(self, state: GalleryState):
        from bqplot import Axis, Figure, LinearScale, Scatter
        from bqplot.interacts import BrushSelector

        self.state = state
        cols = state.run.numbers()
        self.xs, self.ys = LinearScale(), LinearScale()
        self.mark = Scatter(x=[0.0], y=[0.0], scales={"x": self.xs, "y": self.ys}, default_size=48,
                            colors=["#1976d2"], stroke="white", selected_style={"fill": "#ff9800", "opacity": 1},
                            unselected_style={"opacity": 0.35}, names=[], display_names=False)
        self.brush = BrushSelector(x_scale=self.xs, y_scale=self.ys, marks=[self.mark], color="#ff9800")
        # few, short ticks: AOPC differences are often 1e-4, whose long labels would overlap
        self.xaxis = Axis(scale=self.xs, label="x", tick_format=".2g", num_ticks=4)
        self.yaxis = Axis(scale=self.ys, orientation="vertical", label="y", tick_format=".2g", num_ticks=5)
        self.figure = Figure(marks=[self.mark], axes=[self.xaxis, self.yaxis], interaction=self.brush,
                             layout=W.Layout(width="460px", height="380px"),
                             fig_margin={"top": 16, "bottom": 48, "left": 64, "right": 12})
        self.figure.add_class("hsets-gallery-scatter")
        self.xpick = W.Dropdown(options=cols, value=state.x or None, description="x",
                                layout=W.Layout(width="420px"))
        self.ypick = W.Dropdown(options=cols, value=state.y or None, description="y",
                                layout=W.Layout(width="420px"))
        self.xpick.add_class("hsets-gallery-x")
        self.ypick.add_class("hsets-gallery-y")
        self.xpick.observe(lambda ch: setattr(state, "x", ch["new"] or ""), names="value")
        self.ypick.observe(lambda ch: setattr(state, "y", ch["new"] or ""), names="value")
        self.clear = W.Button(description="clear selection", layout=W.Layout(width="140px"))
        self.clear.add_class("hsets-gallery-clear")
        self.clear.on_click(lambda b: self.clear_selection())
        self.info = W.HTML()
        self.info.add_class("hsets-gallery-brush")
        self.point_keys: list = []
        self.mark.observe(lambda ch: self._brushed(ch["new"]), names="selected")
        state.observe(lambda ch: self.update(), names=["x", "y", "version"])
        state.observe(lambda ch: self._show_selection(), names=["selection"])
        super().__init__([title("Two numbers per photo", "Drag a rectangle to select the photos inside it in "
                                "the grid; 'clear selection' shows every photo again."),
                          self.xpick, self.ypick, self.figure, W.HBox([self.clear, self.info])])
        self.update()

    def update(self) -> None:
        """Plot the photos that have both numbers."""
        st = self.state
        cols = st.run.columns()
        opts = list(cols)
        if list(self.xpick.options) != opts:
            self.xpick.options, self.ypick.options = opts, opts
            self.xpick.value, self.ypick.value = st.x or None, st.y or None
        if st.x not in cols or st.y not in cols:
            return
        x, y = cols[st.x], cols[st.y]
        ok = np.isfinite(x) & np.isfinite(y)
        keys = st.keys
        self.point_keys = [keys[i] for i in np.flatnonzero(ok)]
        with self.mark.hold_sync():
            self.mark.x, self.mark.y = x[ok], y[ok]
        self.xaxis.label, self.yaxis.label = st.x, st.y
        self._show_selection()

    def clear_selection(self) -> None:
        """Select nothing and take the brush's rectangle off the plot (a rectangle left there
        would be moved, not redrawn, by the next drag).
        """
        self.state.select([])
        # bqplot's front end moves its brush to the model's rectangle: none takes it away
        self.brush.selected_x = None
        self.brush.selected_y = None

    def _brushed(self, idx) -> None:
        keys = [self.point_keys[i] for i in (idx if idx is not None else []) if 0 <= i < len(self.point_keys)]
        if set(keys) != set(self.state.selection):
            self.state.select(keys)

    def _show_selection(self) -> None:
        picked = set(self.state.selection)
        idx = [i for i, k in enumerate(self.point_keys) if k in picked]
        if list(self.mark.selected if self.mark.selected is not None else []) != idx:
            self.mark.selected = idx or None
        self.info.value = (f"<span style='font-size:13px'>{len(picked)} photo(s) selected</span>" if picked
                           else "<span style='font-size:13px;color:#555'>no selection</span>")


def summary_html(run) -> str:
    """The per-method means with 95% intervals (or, for two runs, the paired differences)."""
    if isinstance(run, PairedRuns):
        rows = []
        cols = run.columns()
        for m in run.methods:
            for metric, words in SUMMARY_METRICS.items():
                name = f"{m} {metric}"
                if f"B - A: {name}" not in cols or not np.isfinite(cols[f"B - A: {name}"]).any():
                    continue
                d = run.difference(name)
                rows.append(f"<tr><td>{esc(m)}</td><td>{esc(words)}</td><td>{d.format()}</td><td>{d.n}</td>"
                            f"<td>{d.wins}</td></tr>")
        head = "<tr><th>method</th><th>metric</th><th>B - A [95% interval]</th><th>photos</th><th>B > A</th></tr>"
        return ("<table class='hsets-gallery-summary' style='font-size:12px;border-spacing:8px 1px'>"
                + head + "".join(rows) + "</table><div style='font-size:11px;color:#555'>paired by photo; "
                "percentile bootstrap over photos</div>")
    summ = run.summary(tuple(SUMMARY_METRICS))
    metrics = [m for m in SUMMARY_METRICS if any(m in row for row in summ.values())]
    head = "<tr><th>method</th>" + "".join(f"<th>{esc(SUMMARY_METRICS[m])}</th>" for m in metrics) + "</tr>"
    body = ""
    sources = set()
    for method, row in summ.items():
        cells = []
        for m in metrics:
            e = row.get(m)
            if e is None:
                cells.append("<td>-</td>")
                continue
            sources.add(e["source"])
            cells.append(f"<td>{fmt(e['mean'])} [{fmt(e['low'])}, {fmt(e['high'])}] <span style='color:#777'>"
                         f"n={e['n']}</span></td>")
        body += f"<tr><td><b>{esc(method)}</b></td>{''.join(cells)}</tr>"
    how = {"metrics.json": "from metrics.json: mean, 95% normal interval from its std and n",
           "records": "from the records (metrics.json not current): mean, 95% bootstrap interval over photos"}
    return ("<table class='hsets-gallery-summary' style='font-size:12px;border-spacing:8px 1px'>" + head + body
            + "</table><div style='font-size:11px;color:#555'>" + "; ".join(how[s] for s in sorted(sources))
            + "</div>")


def notes_html(notes: list) -> str:
    """What the folder lacks, as a yellow note (empty when nothing is missing)."""
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return ("<div class='hsets-gallery-notes' style='font-size:12px;background:#fff8e1;border-left:3px solid "
            f"#ffb300;padding:3px 8px;margin:3px 0'><b>Not everything in this folder could be used:</b>"
            f"<ul style='margin:2px 0'>{items}</ul></div>")


def static_table_html(run, state: Optional[GalleryState] = None, limit: int = 20) -> str:
    """The gallery as plain HTML (what GitHub, nbviewer and a page without the widget manager
    show): the notes, the summary and the first ``limit`` photos in the gallery's order.
    """
    keys = state.shown() if state is not None else run.keys
    cols = run.columns()
    show = [c for c in cols
            if c.endswith(("morf_aopc", "lerf_aopc", "sparsity")) or c in ("probability", "correct")][:8]
    head = "<tr><th>photo</th><th>class</th>" + "".join(f"<th>{esc(c)}</th>" for c in show) + "</tr>"
    index = {k: i for i, k in enumerate(run.keys)}
    rows = ""
    for key in keys[:limit]:
        r = run.records[key]
        cells = "".join(f"<td>{fmt(cols[c][index[key]])}</td>" for c in show)
        what = r.target_name if r.ok else "failed: " + r.reason
        rows += f"<tr><td>{esc(r.name)}</td><td>{esc(what)}</td>{cells}</tr>"
    more = f"<div style='font-size:11px'>... {len(keys) - limit} more photos</div>" if len(keys) > limit else ""
    return (f"<div class='hsets-gallery-static'><b>H-Sets gallery</b> of {esc(describe(run))}"
            + notes_html(run.notes) + summary_html(run)
            + "<table style='font-size:12px'>" + head + rows + "</table>" + more + "</div>")


def describe(run) -> str:
    """The folder(s) shown, in words."""
    if isinstance(run, PairedRuns):
        return f"{run.a.folder} (A) against {run.b.folder} (B): {len(run.keys)} photos in both"
    return f"{run.folder}: {sum(r.ok for r in run.records.values())} photos done, {len(run.records)} records"


class Gallery(W.VBox):
    """A whole ``hsets evaluate`` run: grid, sort and filter, scatter with brushing, summary,
    and the Explorer on any photo (see the module docstring).

    Parameters
    ----------
    folder : path or RunRecords
        The run's ``--out`` folder.
    compare : path or RunRecords, optional
        A second run over the same photos (another model, another preset): photos are paired
        and every number gets an ``A:``, ``B:`` and ``B - A:`` column.
    model : str, nn.Module or Classifier, optional
        The classifier the Explorer opens photos with (default: the run's model, by the name
        in its ``config.json``).
    follow : bool
        Look for new records every 2 s while the page is open (a run still writing).
    explorer_settings : dict, optional
        Further arguments of the Explorer (``segmenter="slic"``, ``display_size=...``).
    """

    def __init__(self, folder, compare=None, *, model=None, follow: bool = True,
                 explorer_settings: Optional[dict] = None, page_size: int = PAGE):
        self.run = open_run(folder, compare)
        self.model = model
        self.explorer_settings = dict(explorer_settings or {})
        self.state = GalleryState(self.run)
        self.explorer = None
        self.layers: dict = {}              # the open Explorer's method layers: name -> stored spec
        st = self.state
        self.notes = W.HTML(notes_html(self.run.notes))
        self.notes.add_class("hsets-gallery-notes-box")
        self._build_controls(follow)
        self.grid = GalleryGrid(st, page_size)
        self.scatter = GalleryScatter(st)
        self.summary = W.HTML(summary_html(self.run))
        self.summary.add_class("hsets-gallery-summary-box")
        self.header = W.HTML()
        self.back = W.Button(description="Back to the gallery", icon="arrow-left", layout=W.Layout(width="200px"))
        self.back.add_class("hsets-gallery-back")
        self.back.on_click(lambda b: self.close_photo())
        self.open_error = W.HTML()
        self.open_error.add_class("hsets-gallery-open-error")
        st.observe(lambda ch: self._opened(ch["new"]), names="opened")
        st.observe(lambda ch: self._refresh_views(), names="version")
        controls = W.VBox([W.HBox([self.sort, self.order]), W.HBox([self.filter_by, self.low, self.high,
                                                                    self.filter_error]),
                           W.HBox([self.show, self.method, self.follow, self.ticker])])
        self.main = W.VBox([self.header, self.notes, self.open_error, controls,
                            W.HBox([self.grid, W.VBox([self.scatter, title("Per method"), self.summary],
                                                      layout=W.Layout(margin="0 0 0 12px"))],
                                   layout=W.Layout(flex_flow="row wrap"))])
        super().__init__([self.main])
        self.add_class("hsets-gallery")
        self._header()

    def _build_controls(self, follow: bool) -> None:
        """Sort, filter, which photos, which map, and following the run; each writes the state."""
        st = self.state
        cols = self.run.numbers()
        self.sort = W.Dropdown(options=cols, value=st.sort_by or None, description="sort by",
                               layout=W.Layout(width="380px"))
        self.sort.add_class("hsets-gallery-sort")
        self.order = W.ToggleButtons(options=[("high first", True), ("low first", False)], value=st.descending,
                                     style={"button_width": "80px"})
        self.order.add_class("hsets-gallery-order")
        self.show = W.Dropdown(options=SHOW, value=st.show, description="photos", layout=W.Layout(width="180px"))
        self.filter_by = W.Dropdown(options=[""] + cols, value=st.filter_by, description="filter",
                                    layout=W.Layout(width="380px"))
        self.filter_by.add_class("hsets-gallery-filter")
        self.low = W.Text(placeholder="from", layout=W.Layout(width="90px"))
        self.high = W.Text(placeholder="to", layout=W.Layout(width="90px"))
        self.low.add_class("hsets-gallery-low")
        self.high.add_class("hsets-gallery-high")
        self.filter_error = W.HTML()
        methods = self.run.methods
        self.method = W.Dropdown(options=[("photo only", "")] + [(m, m) for m in methods], value=st.method,
                                 description="map", layout=W.Layout(width="260px"))
        self.method.add_class("hsets-gallery-method")
        self.follow = W.Checkbox(value=follow, description="follow the run (new records every 2 s)", indent=False)
        self.ticker = W.Play(interval=POLL_MS, max=10 ** 9, repeat=True, show_repeat=False, playing=follow,
                             layout=W.Layout(display="none"))
        self.ticker.observe(lambda ch: self.poll(), names="value")
        self.follow.observe(lambda ch: setattr(self.ticker, "playing", ch["new"]), names="value")
        for w, trait in ((self.sort, "sort_by"), (self.order, "descending"), (self.show, "show"),
                         (self.filter_by, "filter_by"), (self.method, "method")):
            w.observe(lambda ch, t=trait: setattr(st, t, ch["new"] if ch["new"] is not None else ""), names="value")
        self.low.observe(lambda ch: self._bound("low", ch["new"]), names="value")
        self.high.observe(lambda ch: self._bound("high", ch["new"]), names="value")

    # ---- state -----------------------------------------------------------------------------
    def _bound(self, which: str, text: str) -> None:
        text = (text or "").strip()
        try:
            value = float(text) if text else None
        except ValueError:
            self.filter_error.value = (f"<span style='color:#c62828;font-size:12px'>'{esc(text)}' is not a number; "
                                       "type one such as 0.2, or leave it empty</span>")
            return
        self.filter_error.value = ""
        setattr(self.state, which, value)

    def _header(self) -> None:
        self.header.value = ("<div style='font-size:20px;font-weight:700'>H-Sets gallery</div>"
                             f"<div style='font-size:13px'>{esc(describe(self.run))}. Click 'open' under a "
                             "photo to see it in the Explorer.</div>")

    def _refresh_views(self) -> None:
        self.notes.value = notes_html(self.run.notes)
        cols = self.run.numbers()
        for w in (self.sort, self.filter_by):
            opts = cols if w is self.sort else [""] + cols
            if list(w.options) != opts:
                keep = w.value
                w.options = opts
                w.value = keep if keep in opts else None if w is self.sort else ""
        self.summary.value = summary_html(self.run)
        self._header()

    def poll(self) -> list:
        """Look for records the run appended since the last look (the page does this every 2 s
        while ``follow`` is ticked); the new keys.
        """
        return self.state.poll()

    def select(self, keys) -> None:
        """Select photos by key (as the scatter's brush does)."""
        self.state.select(keys)

    # ---- one photo in the Explorer ------------------------------------------------------------
    def open_photo(self, key: str):
        """Open the Explorer on photo ``key`` (what a click on its name does); returns it."""
        self.state.opened = key
        return self.explorer

    def _opened(self, key: str) -> None:
        if not key:
            self.children = [self.main]
            return
        try:
            self.explorer = self.make_explorer(key)
        except Exception as err:  # noqa: BLE001 - said in the gallery, which stays
            self.open_error.value = (f"<div style='color:#b71c1c;background:#ffebee;padding:3px 6px;font-size:13px'>"
                                     f"⚠ {esc(err)}</div>")
            self.state.opened = ""
            return
        self.open_error.value = ""
        rec = self.run.records[key]
        layers = ", ".join(n if n == spec else f"{n} ({spec})" for n, spec in self.layers.items()) or "none"
        where = W.HTML(f"<span style='font-size:13px'>{esc(rec.name)} from {esc(describe(self.run))}; the "
                       f"run's stored maps are the Explorer's method layers (Other methods tab): "
                       f"{esc(layers)}</span>")
        self.children = [W.HBox([self.back, where]), self.explorer]

    def close_photo(self) -> None:
        """Back to the grid (its sort, filter and selection as they were)."""
        if self.explorer is not None:
            self.explorer.state.cancel()
        self.state.opened = ""

    def run_model(self):
        """The classifier photos are opened with: ``model``, else the run's, by name."""
        if self.model is None:
            run = self.run.a if isinstance(self.run, PairedRuns) else self.run
            name = (run.config or {}).get("model")
            if not name:
                raise ValueError(f"{run.folder}/config.json names no model; pass one: Gallery(folder, model=...)")
            try:
                self.model = load_classifier(name)
            except Exception as err:  # noqa: BLE001 - one line naming the fix
                raise ValueError(f"the run's model {name!r} cannot be loaded by name ({type(err).__name__}); pass "
                                 "it: Gallery(folder, model=...)") from err
        return self.model

    def make_explorer(self, key: str):
        """The Explorer on photo ``key`` with the run's model, its H-Sets settings and target,
        and the stored maps and sets as method layers (nothing stored is computed again).
        """
        run = self.run.a if isinstance(self.run, PairedRuns) else self.run
        rec = run.records[key]
        if not rec.ok:
            raise ValueError(f"{rec.name} failed in this run ({rec.reason}); there is nothing stored to open")
        settings = {}
        for spec in rec.methods:
            name, options = parse_method_spec(spec)
            if name == "hsets":
                settings = {"preset": options.pop("preset", "default"), **options}
                break
        ex = Explorer(rec.path, self.run_model(), target=rec.target, **{**settings, **self.explorer_settings})
        # the Explorer's layers are keyed by registered name: a stored "ig:n_steps=16" becomes its
        # "ig" layer (a plain "ig" stored beside it wins); H-Sets is the Explorer's own, live
        self.layers = {}
        stored_sets = run.sets(key)
        for spec, amap in sorted(run.maps(key).items(), key=lambda kv: ":" in kv[0]):
            name, _ = parse_method_spec(spec)
            if name in METHODS and name != "hsets" and name not in self.layers:
                self.layers[name] = spec
                ex.state.provide_method(name, MapWithSets(amap, stored_sets.get(spec, ())))
        first = next(iter(self.layers), "")
        if first:
            ex.state.show_method(first)
        return ex

    # ---- static views ---------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        return static_table_html(self.run, self.state)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        # the widget for live front ends, and a static table for GitHub, nbviewer and a page
        # without the widget manager (saved into the notebook with the widget's output)
        return {"text/plain": f"<Gallery {describe(self.run)}>",
                "text/html": static_table_html(self.run, self.state),
                "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                             "model_id": self.model_id}}

    def close(self) -> None:
        """Stop the thumbnail worker and the run's polling, then close every widget."""
        for part in ("ticker", "grid"):       # a gallery that failed half-built has fewer parts
            if hasattr(self, part):
                getattr(self, part).close()
        if getattr(self, "explorer", None) is not None:
            self.explorer.state.cancel()
        super().close()
