"""The Interactions tab: do the current set's pixels act together?

The current set is cut into parts and put through the interaction test of
:mod:`hsets_widgets.metrics.interactions` on this view's own background worker (progress
and cancel, never in front of growth): the parts drawn on the image with lines between parts
that interact (thicker: stronger), the pairwise interaction matrix, the set's interaction share
against its Hessian-free controls of the same size, and one plain verdict line. Results are
cached per set, so returning to a set is instant.
"""
from __future__ import annotations

import hashlib

import ipywidgets as W
import numpy as np
from ipycanvas import Canvas
from traitlets import Bool

from ..hsets.seeds import feature_pixels
from ..metrics.interactions import explainer_test, interaction_test
from ..plumbing.common import to_numpy
from . import render
from .common import as_state, draw_batch, esc, fmt, title
from .runner import BackgroundRunner, Job

#: part colours (RGB), part 0 (the seed's) first
PART_COLORS = ((228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0),
               (255, 255, 51), (166, 86, 40), (247, 129, 191))


class InteractionsView(W.VBox):
    """The interaction test of the current set, with its parts, pairs and controls.

    ``stale`` is True while the test of the set on screen is running. ``auto`` (a checkbox)
    tests every new set as it appears; otherwise the button starts the test.
    """

    stale = Bool(False, help="the interaction test of the set shown is running")

    def __init__(self, state, n_parts: int = 6, removal: str = "blur", seed: int = 0, display_size: int = 336,
                 first_parts: int = 4, **settings):
        self.state = as_state(state, **settings)
        st = self.state
        self.n_parts, self.removal, self.seed = int(n_parts), removal, int(seed)
        # a coarser test first (2^4 instead of 2^6 images per region), replaced when the full one ends
        self.first_parts = int(first_parts) if 1 < first_parts < n_parts else None
        self.runner = BackgroundRunner(st.lock, on_progress=self._progress, on_finish=self._finished,
                                       synchronous=st.runner.synchronous)
        self.cache: dict = {}
        self.shown = None                  # (key, InteractionTest) on screen
        self.scale = render.display_scale(*st.shape[1:], target=display_size)
        self._build()
        st.observe(lambda ch: self._set_changed(), names=["revision"])
        st.observe(lambda ch: self._tested_changed(), names=["tested_set"])
        self.refresh()

    def _build(self) -> None:
        _, h, w = self.state.shape
        self.run_button = W.Button(description="Test this set", icon="flask", button_style="primary",
                                   tooltip="cut the set into parts, score every combination of parts, "
                                           "compare with regions of the same size chosen without the Hessian")
        self.run_button.add_class("hsets-interactions-run")
        self.run_button.on_click(lambda b: self.refresh(force=True))
        self.auto = W.Checkbox(value=False, description="test each new set", indent=False,
                               layout=W.Layout(width="170px"))
        self.auto.add_class("hsets-interactions-auto")
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="200px"))
        self.cancel_button = W.Button(description="Cancel", icon="stop", disabled=True,
                                      layout=W.Layout(width="90px"))
        self.cancel_button.on_click(lambda b: self.runner.cancel())
        self.verdict = W.HTML()
        self.verdict.add_class("hsets-interactions-verdict")
        self.canvas = Canvas(width=w * self.scale, height=h * self.scale,
                             layout=W.Layout(width=f"{w * self.scale}px", height=f"{h * self.scale}px"))
        self.matrix = W.HTML()
        self.matrix.add_class("hsets-interactions-matrix")
        self.controls = W.HTML()
        self.controls.add_class("hsets-interactions-controls")
        super().__init__([
            title("Interactions: do these pixels act together?",
                  "The set is cut into parts; every combination of parts is scored with the other "
                  "parts removed. The interaction share is the part of that game no sum of "
                  "per-part effects explains; controls are regions of the same size from the "
                  "same seed chosen without the Hessian (a disk, the top |IG| pixels, the same "
                  "shape moved)."),
            W.HBox([self.run_button, self.auto, self.bar, self.cancel_button]), self.verdict,
            W.HBox([self.canvas, W.VBox([self.matrix, self.controls], layout=W.Layout(margin="0 0 0 12px"))])])
        self.add_class("hsets-interactions-view")

    # ---- what is tested ------------------------------------------------------------------
    def current(self):
        """``(key, seed_yx, pixels)`` of the set tested: another method's set put through this
        tab (``state.tested_set``), else the current set; None when there is none.
        """
        st = self.state
        if st.tested_set is not None:
            name, ps = st.tested_set
            pixels = np.unique(np.asarray(ps.pixels, np.int64))
            h = hashlib.sha1(pixels.tobytes())
            h.update(repr((name, tuple(ps.seed_yx), self.n_parts, self.removal, self.seed)).encode())
            return h.hexdigest(), tuple(int(v) for v in ps.seed_yx), pixels
        if st.grown is None or st.seed is None:
            return None
        pixels = np.unique(feature_pixels(st.grown.members, st.shape, st.explainer.config.features))
        h = hashlib.sha1(pixels.tobytes())
        h.update(repr((tuple(st.seed.yx), self.n_parts, self.removal, self.seed)).encode())
        return h.hexdigest(), tuple(st.seed.yx), pixels

    def _set_changed(self) -> None:
        self.runner.cancel(superseded=True)
        if self.state.tested_set is not None:      # a new set of the user's: test that again
            self.state.tested_set = None
            return
        self.refresh(force=self.auto.value)

    def _tested_changed(self) -> None:
        self.runner.cancel(superseded=True)
        self.refresh(force=self.state.tested_set is not None or self.auto.value)

    def subject(self) -> str:
        """What is tested, in words."""
        t = self.state.tested_set
        return f"the {t[0]} set" if t is not None else "the current H-Sets set"

    def refresh(self, force: bool = False) -> None:
        """Show the cached test of the current set, or start it (``force`` or ``auto``)."""
        cur = self.current()
        if cur is None:
            self._say("<i>No set yet: click a pixel or press Explain.</i>")
            return
        key, seed_yx, pixels = cur
        if key in self.cache:
            self._show(key, self.cache[key])
            return
        if not force:
            self._say(f"<i>Press <b>Test this set</b> to test its {len(pixels)} pixels "
                      f"({2 ** min(self.n_parts, len(pixels))} forward passes per region).</i>")
            return
        self.stale = True
        self._say(f"<i>computing the interaction test of {esc(self.subject())}...</i>", keep_stale=True)
        st = self.state
        ex = st.explainer
        members = st.grown.members if st.tested_set is None else None

        def job(n_parts):
            def work(progress, cancel):
                if members is not None:
                    return explainer_test(ex, members, seed_yx, n_parts=n_parts, removal=self.removal,
                                          seed=self.seed, progress=progress, cancel=cancel)
                # another method's set: the same test, with the explainer's image, segments and IG
                return interaction_test(ex.x.detach().cpu(), ex.classifier, ex.target, pixels, seed_yx,
                                        ex.segment().labels, to_numpy(ex.attribution().attribution, None),
                                        n_parts=n_parts, removal=self.removal, seed=self.seed,
                                        progress=progress, cancel=cancel)
            return work

        def first(test):
            cur = self.current()
            if key not in self.cache and cur is not None and cur[0] == key:
                self._show(key, test, first=True)

        def apply(test):
            self.cache[key] = test
            cur = self.current()
            if cur is not None and cur[0] == key:
                self._show(key, test)

        if self.first_parts is not None:
            self.runner.submit(Job("interactions-first", "Interaction test, first look", job(self.first_parts),
                                   first, key=key))
        self.runner.submit(Job("interactions", "Interaction test", job(self.n_parts), apply, key=key))

    def wait(self, timeout: float = 300.0) -> bool:
        """Wait until no test is running (scripts and tests)."""
        return self.runner.wait(timeout)

    # ---- background callbacks -----------------------------------------------------------
    def _progress(self, job, stage, done, total) -> None:
        self.bar.value = done / total if total else 0.0
        self.cancel_button.disabled = False

    def _finished(self, job) -> None:
        self.cancel_button.disabled = True
        self.bar.value = 1.0 if job.outcome == "done" else 0.0
        if job.outcome == "failed":
            self._say(f"<span style='color:#c62828'>Interaction test failed: {esc(type(job.error).__name__)}: "
                      f"{esc(job.error)} (earlier results are kept)</span>")
        elif job.outcome == "cancelled" and not job.superseded:
            self._say("<i>Cancelled: press <b>Test this set</b> to run it again.</i>")

    # ---- display -------------------------------------------------------------------------
    def _say(self, text: str, keep_stale: bool = False) -> None:
        if not keep_stale:
            self.stale = False
        self.verdict.value = f"<div style='font-size:14px'>{text}</div>"

    def _show(self, key, test, first: bool = False) -> None:
        """Show ``test``; ``first``: the coarse first look, while the full test still runs."""
        self.shown = None if first else (key, test)
        colour = "#1b5e20" if test.above_controls else "#6d4c41"
        note = (f"<br><i>First look with {len(test.set.parts)} parts; the test with {self.n_parts} parts is "
                f"running and will replace it.</i>" if first else "")
        who = "" if self.state.tested_set is None else f"<div>Tested: <b>{esc(self.subject())}</b></div>"
        self._say(f"{who}<b style='color:{colour}'>{esc(test.verdict())}</b>{note}", keep_stale=first)
        self.matrix.value = self._matrix_html(test)
        self.controls.value = self._controls_html(test)
        self._draw(test)

    def _matrix_html(self, test) -> str:
        effect = abs(test.set.effect)
        # as a share of the whole set's effect: comparable between sets and free of logit units
        pairs = test.set.pairs / effect * 100 if effect > 0 else test.set.pairs
        k = len(test.set.parts)
        vmax = float(np.abs(pairs).max()) or 1.0
        head = "".join(f"<th style='color:{render.css(PART_COLORS[j % 8] + (255,))}'>{j + 1}</th>" for j in range(k))
        rows = []
        for i in range(k):
            cells = []
            for j in range(k):
                v = pairs[i, j]
                a = min(1.0, abs(v) / vmax)
                bg = f"rgba(211,47,47,{a:.2f})" if v > 0 else f"rgba(25,118,210,{a:.2f})"
                text = "" if i == j else (f"{v:+.0f}%" if effect > 0 else fmt(v, 2))
                cells.append(f"<td style='background:{bg};padding:2px 5px'>{text}</td>")
            rows.append(f"<tr><th>{i + 1}</th>{''.join(cells)}</tr>")
        return (f"<div style='font-size:12px'><b>Pairwise interaction between parts</b> "
                f"({test.set.index.upper()}, in % of the whole set's effect on the score; red: together "
                f"they add more, blue: less)"
                f"<table style='border-collapse:collapse;font-size:11px'><tr><th></th>{head}</tr>"
                f"{''.join(rows)}</table></div>")

    def _controls_html(self, test) -> str:
        rows = [("this set", test.set)] + [(c.name, c) for c in test.controls]
        body = "".join(f"<tr><td>{esc(name)}</td><td>{g.nonadditive:.3f}</td><td>{fmt(g.effect, 3)}</td></tr>"
                       for name, g in rows)
        return (f"<div style='font-size:12px;margin-top:8px'><b>Interaction share</b> (0: the parts act "
                f"alone; 1: only together) against regions of the same size, p = {test.p_value:.2f}"
                f"<table style='font-size:12px'><tr><th>region</th><th>share</th><th>effect</th></tr>{body}"
                f"</table></div>")

    def _draw(self, test) -> None:
        ex = self.state.explainer
        _, h, w = ex.shape
        rgba = render.photo_rgba(ex.image, dim=0.6, grey=True)
        flat = rgba.reshape(-1, 4)  # a view: painting parts into it paints rgba
        centres = []
        for k, part in enumerate(test.set.parts):
            flat[part, :3] = PART_COLORS[k % 8]
            centres.append(((part // w).mean(), (part % w).mean()))
        s = self.scale
        pairs = test.set.pairs
        vmax = float(np.abs(pairs).max()) or 1.0
        with draw_batch():
            self.canvas.put_image_data(render.upscale(rgba, s), 0, 0)
            for i in range(len(centres)):
                for j in range(i + 1, len(centres)):
                    strength = abs(pairs[i, j]) / vmax
                    if strength < 0.15:
                        continue
                    self.canvas.stroke_style = "#d32f2f" if pairs[i, j] > 0 else "#1976d2"
                    self.canvas.line_width = 1 + 5 * strength
                    (y0, x0), (y1, x1) = centres[i], centres[j]
                    self.canvas.stroke_line(x0 * s, y0 * s, x1 * s, y1 * s)
            self.canvas.fill_style = "white"
            self.canvas.font = "bold 14px sans-serif"
            for k, (y, x) in enumerate(centres):
                self.canvas.fill_text(str(k + 1), x * s - 4, y * s + 5)
