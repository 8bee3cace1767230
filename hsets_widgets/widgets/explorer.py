"""The Explorer: every view of H-Sets over one shared state, in one notebook widget.

>>> from hsets_widgets.widgets import Explorer          # doctest: +SKIP
>>> ex = Explorer("chelsea")                            # embedded photo, EfficientNet-Lite0
>>> ex                                                  # display it in Jupyter or Voila
>>> ex.save_png("view.png"); ex.save_explanation("cat.npz")
"""
from __future__ import annotations

import html

import ipywidgets as W

from ..hsets.explain import Explainer
from ..hsets.presets import PRESETS
from ..model.images import ImageError, load_image_bytes
from ..segmentation import SEGMENTERS
from .animation import MergeAnimation
from .common import as_state, esc, fmt, glossary_html, set_name, title
from .export import ExportPanel
from .image_view import ImageView
from .interactions_view import InteractionsView
from .methods_view import MethodsView
from .readout import FaithfulnessReadout
from .road_view import RoadView
from .row_inspector import RowInspector
from .sampling import SubsetSampling
from .seeds_view import SeedRanking
from .session import Session
from .state import ExplorerState
from .sweep_view import SweepPanel
from .threshold import ThresholdExplorer


class StatusBar(W.VBox):
    """Status line, progress bar, cancel button and the last error."""

    def __init__(self, state, **settings):
        self.state = as_state(state, **settings)
        self.label = W.HTML()
        self.label.add_class("hsets-status")
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info",
                                   layout=W.Layout(width="220px"))
        self.bar.add_class("hsets-progress")
        self.cancel_button = W.Button(description="Cancel", icon="stop",
                                      layout=W.Layout(width="100px"), disabled=True,
                                      tooltip="stop the running computation (results so far are kept)")
        self.cancel_button.add_class("hsets-cancel")
        self.cancel_button.on_click(lambda b: self.state.cancel())
        self.error = W.HTML()
        self.error.add_class("hsets-error")
        self.state.observe(lambda ch: self.update(), names=["busy", "stage", "progress", "status", "error"])
        super().__init__([W.HBox([self.bar, self.cancel_button, self.label]), self.error])
        self.add_class("hsets-status-bar")
        self.update()

    def update(self):
        """Redraw from the shared state."""
        st = self.state
        self.bar.value = st.progress if st.busy else (1.0 if st.progress >= 1.0 else st.progress)
        self.bar.bar_style = "info" if st.busy else ("success" if not st.error else "danger")
        self.cancel_button.disabled = not st.busy
        self.cancel_button.button_style = "warning" if st.busy else ""
        text = st.stage if st.busy and st.stage else st.status
        busy = "<b style='color:#ef6c00'>working</b> · " if st.busy else "<b style='color:#2e7d32'>ready</b> · "
        self.label.value = f"<span style='font-size:13px'>{busy}{esc(text)}</span>"
        self.error.value = (f"<div style='color:#b71c1c;background:#ffebee;padding:3px 6px;"
                            f"border-radius:3px;font-size:13px'>⚠ {esc(st.error)}</div>" if st.error else "")


class SetsPanel(W.VBox):
    """Keep the current set in the explanation, run the automatic sets, list kept sets."""

    def __init__(self, state, **settings):
        self.state = as_state(state, **settings)
        st = self.state
        self.keep = W.Button(description="Keep this set", icon="plus", button_style="success",
                             tooltip="add the current set to the explanation (heatmap, ROAD, export)")
        self.auto = W.Button(description=f"Explain: {st.explainer.config.n_sets} automatic sets",
                             icon="magic", layout=W.Layout(width="230px"),
                             tooltip="grow one set per best segment with the current settings")
        self.clear = W.Button(description="Clear", icon="trash", layout=W.Layout(width="80px"))
        self.remove = W.Button(description="Remove selected", layout=W.Layout(width="140px"))
        for b, cls in ((self.keep, "keep"), (self.auto, "auto"), (self.clear, "clear"),
                       (self.remove, "remove")):
            b.add_class(f"hsets-sets-{cls}")
        self.list = W.Select(options=[], rows=5, layout=W.Layout(width="400px"))
        self.list.add_class("hsets-sets-list")
        self.keep.on_click(lambda b: st.add_current_set())
        self.auto.on_click(lambda b: st.explain())
        self.clear.on_click(lambda b: st.clear_sets())
        self.remove.on_click(lambda b: self._remove())
        st.observe(lambda ch: self.update(), names=["sets", "auto_seeds"])
        super().__init__([
            title("Interaction sets of the explanation",
                  "Kept sets are painted on the H-Sets heatmap layer and used by ROAD and export."),
            W.HBox([self.keep, self.auto]), self.list, W.HBox([self.remove, self.clear])])
        self.add_class("hsets-sets-panel")
        self.update()

    def _remove(self):
        if self.list.index is not None:
            self.state.remove_set(self.list.index)

    def update(self):
        """Redraw from the shared state."""
        opts = [f"{set_name(self.state, k)} · seed {tuple(s.seed_yx)}: {len(s)} px, v = {fmt(s.value)}"
                for k, s in enumerate(self.state.sets)]
        self.list.rows = min(max(len(opts), 5), 10)     # every kept set in view (up to 10)
        self.list.options = opts or ["(no kept sets yet)"]
        self.list.disabled = not opts
        self.remove.disabled = self.clear.disabled = not opts


class PhotoAndClass(W.VBox):
    """Choose the class to explain (the model's top 5) or load another photo, without a restart."""

    def __init__(self, explorer, k: int = 5):
        self.explorer = explorer
        ex = explorer.state.explainer
        import torch

        with torch.no_grad():       # one forward pass (the engine's Explainer keeps only the target's p)
            probs = ex.classifier(ex.x[None]).softmax(-1).detach().cpu()[0]
        top = torch.topk(probs, min(k, probs.numel()))
        options = [(f"{ex.classifier.class_name(int(i))} (p = {float(p):.2f})", int(i))
                   for p, i in zip(top.values, top.indices)]
        if ex.target not in [v for _, v in options]:
            options.append((f"{ex.class_name} (p = {ex.probability:.2f})", int(ex.target)))
        self.target = W.Dropdown(options=options, value=int(ex.target), description="explain class",
                                 layout=W.Layout(width="420px"), style={"description_width": "100px"},
                                 tooltip="the model's top classes for this photo")
        self.target.add_class("hsets-target")
        self.target.observe(lambda ch: self._target(ch["new"]), names="value")
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Load a photo",
                                   layout=W.Layout(width="160px"))
        self.upload.add_class("hsets-upload")
        self.upload.observe(lambda ch: self._uploaded(ch["new"]), names="value")
        # the named presets; the interaction mode first among the others (what a user comes to try)
        names = ["default", "interactions"] + sorted(set(PRESETS) - {"default", "interactions"})
        current = ex.config.preset if ex.config.preset in PRESETS else None
        self.preset = W.Dropdown(options=[(n, n) for n in names] + ([] if current else [("custom", None)]),
                                 value=current, description="preset", layout=W.Layout(width="260px"),
                                 style={"description_width": "60px"},
                                 tooltip="interactions: a row floor and growth across segments (the "
                                         "interaction mode); rows already computed are reused")
        self.preset.add_class("hsets-preset")
        self.preset.observe(lambda ch: self._preset(ch["new"]), names="value")
        self.message = W.HTML()
        self.message.add_class("hsets-switch-message")
        super().__init__([W.HBox([self.target, self.preset, self.upload]), self.message])
        self.add_class("hsets-photo-and-class")

    def _preset(self, name) -> None:
        if name is None or name == self.explorer.state.explainer.config.preset:
            return
        self._switch(preset=name)

    def _target(self, k) -> None:
        if k == self.explorer.state.explainer.target:
            return
        self._switch(target=int(k))

    def _uploaded(self, value) -> None:
        if not value:
            return

        item = value[0]
        try:                         # the loader of the command line: the same picture as `hsets explain`
            image = load_image_bytes(item["content"], item.get("name", "the file"))
        except ImageError as err:    # a file that is not an image: say so, keep the app
            self.message.value = f"<span style='color:#c62828'>{esc(err)}</span>"
            return
        self._switch(image=image)

    def _switch(self, **kwargs) -> None:
        try:
            self.explorer.switch(**kwargs)
        except Exception as err:  # noqa: BLE001 - shown; the old explanation stays
            self.message.value = f"<span style='color:#c62828'>{esc(type(err).__name__)}: {esc(err)}</span>"


class Explorer(W.VBox):
    """All H-Sets views of one image, composed over one :class:`ExplorerState`.

    Parameters
    ----------
    image : path, PIL image, ndarray, Tensor, Explainer or ExplorerState
        The photo (anything :func:`~hsets_widgets.model.images.load_image` reads; ``"chelsea"``
        is the embedded cat), or an existing Explainer / state to show.
    model : str, nn.Module or Classifier, optional
        Default: the embedded offline EfficientNet-Lite0.
    autostart : bool
        Compute IG, the segmentation and the first set in the background right away.
    display_size : int
        On-screen size of the main image, in CSS pixels.
    background : bool
        Run expensive work in a background thread (default).
    export_folder : str
        Where the Export tab writes files (relative to ``export_root``).
    export_root : path, optional
        The folder the Export tab's writes are confined to (default: the kernel's working
        directory; ``hsets explore`` gives the folder it was started in).
    readout : bool
        Start with the live faithfulness readout on (its checkbox turns it off and on).
    session : path, optional
        A folder that keeps the settings, the seed and the kept sets across page reloads
        (:mod:`~hsets_widgets.widgets.session`; ``hsets explore`` gives one).
    **settings
        ``preset``, ``segmenter``, ``target``, ``device`` and any
        :class:`~hsets_widgets.hsets.presets.HSetsConfig` field (``mu=4``, ``nu=64``...).

    Attributes
    ----------
    state : ExplorerState
    image_view, row_inspector, threshold, readout, animation, sets_panel, seed_ranking, sampling,
    interactions, methods, road,
    sweep, export, status_bar : the component widgets (each usable alone with the same ``state``).
    """

    def __init__(self, image="chelsea", model=None, *, autostart: bool = True,
                 display_size: int = 448, background: bool = True,
                 export_folder: str = "hsets-export", readout: bool = True, session=None, export_root=None,
                 **settings):

        if isinstance(image, ExplorerState):
            state = as_state(image, **settings)
        elif isinstance(image, Explainer):
            state = as_state(image, background=background, **settings)
        else:
            state = ExplorerState.from_image(image, model, background=background, **settings)
        # what building another class's or photo's explainer needs (the same model and settings)
        self._segmenter = settings.get("segmenter", "auto")
        self._display_size, self._readout_on = display_size, readout
        self._export_folder, self._session_folder, self._export_root = export_folder, session, export_root
        self.session = None
        super().__init__([])
        self.add_class("hsets-explorer")
        self._build(state)
        if autostart:
            self.state.prepare()

    def _build(self, st: ExplorerState) -> None:
        """Make every view over ``st`` and show them (again, after a class or photo change)."""
        self.state = st
        ex = st.explainer
        self.status_bar = StatusBar(st)
        self.image_view = ImageView(st, display_size=self._display_size)
        self.threshold = ThresholdExplorer(st)
        self.readout = FaithfulnessReadout(st, enabled=self._readout_on)
        self.animation = MergeAnimation(st)
        self.sets_panel = SetsPanel(st)
        self.seed_ranking = SeedRanking(st)
        self.row_inspector = RowInspector(st)
        self.sampling = SubsetSampling(st)
        self.road = RoadView(st)
        self.sweep = SweepPanel(st)
        self.interactions = InteractionsView(st)
        self.methods = MethodsView(st)
        self.export = ExportPanel(st, image_view=self.image_view, road_view=self.road,
                                  folder=self._export_folder, root=self._export_root)
        self.tabs = W.Tab(children=[self.row_inspector, self.sampling, self.interactions, self.methods, self.road,
                                    self.sweep, self.export],
                          titles=["Hessian row", "IDG subset sampling", "Interactions", "Other methods",
                                  "ROAD curves", "Sweep mu", "Export"])
        # another method's set sent to the Interactions tab: show that tab
        st.observe(lambda ch: self._show_tab(self.interactions) if ch["new"] is not None else None,
                   names=["tested_set"])
        self.tabs.add_class("hsets-tabs")
        self.chooser = PhotoAndClass(self)
        header = W.HTML(
            "<div style='font-size:20px;font-weight:700'>H-Sets Explorer</div>"
            f"<div style='font-size:14px'>{esc(ex.classifier.name)}, explaining class "
            f"<b>{esc(ex.class_name)}</b> (class {ex.target}, p = {ex.probability:.2f}); "
            f"preset <code>{esc(ex.config.preset)}</code>, {esc(ex.config.features)} features, "
            f"{ex.shape[1]}×{ex.shape[2]} px</div>"
            "<div style='font-size:12px;color:#555'>H-Sets explains the prediction with "
            "<i>interaction sets</i>: pixels grown from a seed by following the Hessian of the "
            "class score, valued by Integrated Directional Gradients (IDG). "
            "<b>1</b> click a pixel · <b>2</b> move mu / nu · <b>3</b> play the merge · "
            "<b>4</b> keep sets or run the automatic ones · <b>5</b> tabs below: row, IDG, interactions, "
            "ROAD, export.</div>" + glossary_html())
        header.add_class("hsets-header")
        right = W.VBox([self.threshold, self.readout, self.animation, self.sets_panel, self.seed_ranking],
                       layout=W.Layout(margin="0 0 0 16px", max_width="560px"))
        self.children = [header, self.chooser, self.status_bar,
                         W.HBox([self.image_view, right], layout=W.Layout(flex_flow="row wrap")),
                         self.tabs]
        if self._session_folder is not None:

            self.session = Session(self._session_folder, st)
            self.session.restore()           # settings and seed now, kept sets once ready
            self.image_view.canvas.on_client_ready(lambda *_: self.session.activate())

    def switch(self, image=None, target=None, preset=None) -> None:
        """Explain another class of this photo (``target``) or another photo (``image``, with the
        predicted class unless ``target`` is given), with the same model and settings, or this
        photo and class moved to another named ``preset`` (:meth:`Explainer.with_preset`: IG,
        segments and Hessian rows it leaves valid are reused; ``interactions`` recomputes none of
        them), without a restart: the
        views are rebuilt over a new state and its preparation starts.
        """
        old = self.state
        ex = old.explainer
        if preset is not None:
            if image is not None or target is not None:
                raise ValueError("switch to a preset, or to another photo or class, one at a time")
            self._rebuild(old, ex.with_preset(preset))
            return
        seg = self._segmenter
        done = ex.cached("segmentation")
        if done is not None and isinstance(done.source, str) and done.source in SEGMENTERS:
            seg = self._segmenter = done.source  # the segmenter this photo was cut with
        if image is None:
            image = ex.image
            if done is not None:                 # the same photo: its segments still hold
                seg = done.labels
        self._rebuild(old, Explainer(image, ex.classifier, target, preset=ex.config, segmenter=seg, device=ex.device))

    def _rebuild(self, old: ExplorerState, new) -> None:
        old.cancel()
        st = ExplorerState(new, background=not old.runner.synchronous)
        was_active = self.session is not None and self.session.active
        self._build(st)
        if was_active:
            self.session.activate()          # the page is already showing: save from now on
        st.prepare()

    def _show_tab(self, view) -> None:
        self.tabs.selected_index = list(self.tabs.children).index(view)

    # ---- conveniences ------------------------------------------------------------------
    @property
    def explainer(self):
        """The engine object behind the views."""
        return self.state.explainer

    def select(self, y: int, x: int) -> None:
        """Same as clicking pixel ``(y, x)``."""
        self.state.select_seed(y, x)

    def wait(self, timeout: float = 300.0) -> bool:
        """Block until background work is done (scripts, tests, screenshots)."""
        return self.state.wait(timeout)

    def save_png(self, path, layers=None, scale=None):
        """The image view (ticked layers) as a PNG, composed in Python (no browser)."""
        return self.image_view.save_png(path, layers, scale)

    def save_figure(self, path):
        """A PNG figure of every view (image, Hessian row, histogram, v(I), ROAD)."""
        return self.export.save_figure(path)

    def save_explanation(self, path):
        """The kept sets (or the current set) as an ``Explanation`` file (``.npz``)."""
        return self.export.save_explanation(path)

    def __repr__(self) -> str:  # the widget repr is unreadable; this says what it shows
        st = self.state
        return (f"<Explorer {html.unescape(st.explainer.class_name)!r} seed="
                f"{tuple(st.seed.yx) if st.seed else None} set={len(st.grown) if st.grown else 0} "
                f"kept={len(st.sets)}>")
