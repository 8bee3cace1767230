"""Export from Python: the image view as PNG, a figure of every view, the explanation file.

Nothing here asks the browser for pixels (canvases are drawn by the front end and may not
even be displayed): images are composed with PIL from the same layers the canvas shows,
plots are redrawn with matplotlib (Agg) from the data the bqplot marks show.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import ipywidgets as W
import numpy as np

from ..hsets.idg import running_estimate
from ..plumbing.files import OutputError, atomic_path
from . import render
from .common import as_state, axis_unit, esc, fmt, title
from .image_view import DIM, LAYERS, compose_view, save_png
from .road_view import METHOD_COLORS, METHOD_NAMES
from .row_inspector import row_histogram, row_map_rgba, seed_row

__all__ = ["ExportPanel", "save_figure", "save_png"]


def save_figure(state, path, layers=LAYERS, road_results: Optional[dict] = None, dpi: int = 110,
                dim: float = 1.0) -> Path:
    """Write a figure of every view to ``path`` (PNG, or any format matplotlib knows),
    atomically (:func:`hsets_widgets.plumbing.files.atomic_path`).

    Panels: the image view; the seed's Hessian row with the passing features; the row
    histogram with the threshold; the running estimate of v(I); the ROAD curves (when
    ``road_results``, ``{"hsets": ROADResult, "ig": ROADResult}``, is given); a summary.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    st = state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(15, 8.6), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, 3)
    with st.lock:
        _image_panel(axes[0, 0], st, layers, dim)
        _row_panels(axes[0, 1], axes[0, 2], st)
        _value_panel(axes[1, 0], st.value)
        _road_panel(axes[1, 1], road_results)
        _summary_panel(axes[1, 2], st)
    fmt_ = path.suffix[1:].lower() or matplotlib.rcParams["savefig.format"]
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt_)
    return path


def _blank(ax, text: str, axis: bool = False) -> None:
    """A panel with nothing to show yet: ``text`` in its middle (axes hidden unless ``axis``)."""
    ax.text(0.5, 0.5, text, ha="center", va="center")
    if not axis:
        ax.axis("off")


def _image_panel(ax, st, layers, dim: float) -> None:
    ex, seed, grown = st.explainer, st.seed, st.grown
    ax.imshow(compose_view(st, layers, render.display_scale(*st.shape[1:]), dim), interpolation="nearest")
    ttl = f"{ex.classifier.name}: '{ex.class_name}' (p = {ex.probability:.2f})"
    if grown is not None:
        ttl += f"\nset of seed {tuple(seed.yx)}: {len(grown)} features, step {st.step}/{st.n_steps}"
    ax.set_title(ttl, fontsize=10)
    ax.axis("off")


def _row_panels(ax, axh, st) -> None:
    """The seed's row over a grey photo with the passing features, and its histogram."""
    ex, seed = st.explainer, st.seed
    row = seed_row(st)
    if row is None:
        _blank(ax, "no seed row computed yet")
        _blank(axh, "no seed row computed yet", axis=True)
        return
    rgba, vmax = row_map_rgba(st)
    grey = render.photo_rgba(ex.image, dim=0.6, grey=True)
    rule = st.threshold_rule
    hist = row_histogram(ex, seed, row, rule, bins=48)
    passing = hist.passing
    pas = np.zeros(rgba.shape[:2] + (4,), np.uint8)
    pas[render.members_mask(passing, st.shape, ex.config.features)] = render.PASS_RGBA[:3] + (200,)
    ax.imshow(render.compose([grey, rgba, pas]), interpolation="nearest")
    ax.set_title(f"Hessian row of seed {tuple(seed.yx)}\n(blue < 0 < red); green: {len(passing)} pass",
                 fontsize=10)
    ax.axis("off")
    f, unit = axis_unit(hist.edges)       # plain tick numbers, the power of ten in the label
    edges = hist.edges * f
    axh.hist(edges[:-1], bins=edges, weights=hist.counts, color="#9e9e9e", log=True, label="all features")
    if passing.size:
        axh.hist(edges[:-1], bins=edges, weights=hist.passing_counts,
                 color="#{:02x}{:02x}{:02x}".format(*render.PASS_RGBA[:3]), log=True,
                 label="pass (join the set)")
    if hist.threshold is not None:
        axh.axvline(hist.threshold * f, color="#e53935", lw=2, label="threshold")
    axh.set_xlabel(hist.label + unit)
    axh.set_ylabel("features (log)")
    axh.set_title("Histogram of the seed's row", fontsize=10)
    axh.legend(fontsize=8)


def _value_panel(ax, value) -> None:
    """The running estimate of v(I) over the subsets the engine drew."""
    if value is None or len(value.samples) <= 1:
        _blank(ax, "no set value yet")
        return
    mean, se = running_estimate(value.samples)
    f, unit = axis_unit(np.append(mean, value.value))    # plain tick numbers
    mean, se = mean * f, se * f
    x = np.arange(1, len(mean) + 1)
    ax.fill_between(x, np.nan_to_num(mean - se, nan=mean[0]), np.nan_to_num(mean + se, nan=mean[0]),
                    color="#bbdefb", label="± standard error")
    ax.plot(x, mean, color="#1565c0", label="running mean of |IDG|")
    ax.axhline(value.value * f, color="#e53935", ls="--", lw=1, label=f"v(I) = {fmt(value.value)}")
    ax.set_xlabel("subsets drawn")
    ax.set_ylabel("estimate of v(I)" + unit)
    ax.legend(fontsize=8)
    how = "exact (all subsets)" if value.exact else f"{value.n_samples} random subsets"
    ax.set_title(f"IDG value of the set: {how}", fontsize=10)


def _road_panel(ax, road_results: Optional[dict]) -> None:
    """MoRF (solid) and LeRF (dashed) ROAD curves of each map."""
    if not road_results:
        _blank(ax, "ROAD curves not computed")
        return
    for name, res in road_results.items():
        col, lab = METHOD_COLORS.get(name, "k"), METHOD_NAMES.get(name, name)
        for order, ls in (("morf", "-"), ("lerf", "--")):
            c = res.curves[order]
            ax.plot(c.percentages, c.probability, ls, color=col, marker="o", ms=3,
                    label=f"{lab} {order.upper()} (AOPC {fmt(c.aopc('probability'))})")
    ax.set_xlabel("fraction of pixels removed")
    ax.set_ylabel("probability of the class")
    ax.set_title("ROAD: MoRF should fall fast, LeRF stay high\n"
                 "(AOPC: mean drop; MoRF higher, LeRF lower = more faithful)", fontsize=9)
    ax.legend(fontsize=8)


def _summary_panel(ax, st) -> None:
    ex = st.explainer
    ax.axis("off")
    rule = st.threshold_rule.describe() if st.grown is not None else "-"
    lines = [f"model: {ex.classifier.name}", f"class: {ex.class_name} (p = {ex.probability:.3f})",
             f"preset: {ex.config.preset}, features: {ex.config.features}",
             f"rule: {rule}", f"nu: {st.nu}, order: {st.order}",
             f"Hessian rows computed: {st.n_rows}", f"kept sets: {len(st.sets)}"]
    for k, s in enumerate(st.sets[:8]):
        lines.append(f"  {k + 1}. seed {tuple(s.seed_yx)}: {len(s)} px, v = {fmt(s.value)}")
    ax.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=9)


#: files up to this size get a download link in the page (a data: URI, so it works offline
#: and from a server folder the browser cannot reach)
DOWNLOAD_LIMIT = 25 * 2 ** 20


def download_link(path) -> str:
    """An HTML link that downloads the file at ``path`` from the page itself (empty when it is
    larger than :data:`DOWNLOAD_LIMIT`).
    """
    import base64
    import mimetypes

    path = Path(path)
    if not path.is_file() or path.stat().st_size > DOWNLOAD_LIMIT:
        return ""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<a class='hsets-download' download='{esc(path.name)}' href='data:{mime};base64,{data}' "
            f"style='margin-left:8px'>⬇ download {esc(path.name)}</a>")


def confined(root: Path, folder: str) -> Path:
    """``folder`` (relative to ``root``, links resolved) if it lies inside ``root``; else
    :class:`~hsets_widgets.plumbing.files.OutputError`.
    """
    path = (root / Path(folder).expanduser()).resolve()
    if not path.is_relative_to(root):
        raise OutputError(f"{folder} is outside the working folder {root}; the Export panel writes only "
                          "inside it (ExportPanel(..., root=...) chooses another)")
    return path


class ExportPanel(W.VBox):
    """Buttons that write the image view PNG, a figure of every view and the explanation."""

    def __init__(self, state, image_view=None, road_view=None, folder: str = "hsets-export",
                 root=None, **settings):
        self.state = as_state(state, **settings)
        # the panel's folder box is text anyone with the page can type into (a served app
        # without a token): writes stay inside ``root``, the working folder by default
        self.root = Path(root if root is not None else Path.cwd()).resolve()
        self.image_view = image_view
        self.road_view = road_view
        self.folder = W.Text(value=folder, description="folder", layout=W.Layout(width="380px"))
        self.folder.add_class("hsets-export-folder")
        self.png_button = W.Button(description="Save image PNG", icon="image")
        self.fig_button = W.Button(description="Save figure PNG", icon="th")
        self.npz_button = W.Button(description="Save explanation", icon="save",
                                   tooltip="Explanation.save: reload with Explanation.load")
        for b, cls in ((self.png_button, "png"), (self.fig_button, "figure"), (self.npz_button, "npz")):
            b.add_class(f"hsets-export-{cls}")
        self.png_button.on_click(lambda b: self._run(self.save_png))
        self.fig_button.on_click(lambda b: self._run(self.save_figure))
        self.npz_button.on_click(lambda b: self._run(self.save_explanation))
        self.result = W.HTML()
        self.result.add_class("hsets-export-result")
        super().__init__([
            title("Export", "Files are written by the kernel into the folder below (inside the folder "
                            "the app was started from), never over an earlier export, and offered "
                            "for download here."),
            self.folder, W.HBox([self.png_button, self.fig_button, self.npz_button]), self.result])
        self.add_class("hsets-export")

    def _layers(self):
        if self.image_view is None:
            return LAYERS
        return [n for n in LAYERS if self.image_view.toggles[n].value]

    def _dim(self) -> float:
        return DIM if self.image_view is not None and self.image_view.dim.value else 1.0

    def _path(self, name: str) -> Path:
        """A new file in the folder: ``name``, or ``name-2``, ``name-3``... when it exists (an
        export never overwrites an earlier one silently).
        """
        folder = confined(self.root, self.folder.value or ".")
        path = folder / name
        k = 2
        while path.exists() or path.is_symlink():      # a dangling link is taken too
            path = folder / f"{Path(name).stem}-{k}{Path(name).suffix}"
            k += 1
        return path

    def _run(self, fn):
        try:
            path = Path(fn())
            self.result.value = f"Saved <code>{esc(path)}</code> {download_link(path)}"
        except Exception as err:  # noqa: BLE001 - shown in the panel
            self.result.value = f"<span style='color:#c62828'>{esc(type(err).__name__)}: {esc(err)}</span>"

    def save_png(self, path=None, scale=None) -> Path:
        """Save the image view's visible layers as a PNG; returns its path."""
        scale = scale or (self.image_view.scale if self.image_view is not None else 2)
        return save_png(self.state, path or self._path("hsets-view.png"), self._layers(), scale,
                        self._dim())

    def save_figure(self, path=None) -> Path:
        """Save a figure of the view with its ROAD curves; returns its path."""
        road = self.road_view.results if self.road_view is not None and self.road_view.results else None
        return save_figure(self.state, path or self._path("hsets-figure.png"), self._layers(), road,
                           dim=self._dim())

    def save_explanation(self, path=None) -> Path:
        """Save the kept sets as an ``explanation.npz``; returns its path."""
        with self.state.lock:
            expl = self.state.explanation()
        return expl.save(path or self._path("hsets-explanation.npz"))
