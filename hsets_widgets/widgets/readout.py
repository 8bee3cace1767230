"""The live faithfulness readout: how faithful the explanation on screen is, as it changes.

Whenever the shown explanation changes (a new set after a mu / nu / rule / sign / order move,
a seed clicked, a set kept or removed), its heatmap is scored in the background on a coarse
ROAD grid: MoRF and LeRF AOPC (the metrics of ``bench/faithfulness.py``), sparsity and support,
next to IG's and a random map's scores on the same image, with an arrow saying whether the
change helped. The readout runs on its own low-priority worker (never in front of growth), is
superseded when the user moves on, is cached per explanation (returning to an earlier mu is
instant) and says "computing..." while it is stale. The numbers come from
:func:`hsets_widgets.runs.sweep.map_scores`, the function ``hsets sweep`` uses.
"""
from __future__ import annotations

import hashlib
import threading
import time
import weakref

import ipywidgets as W
import numpy as np
from traitlets import Bool, observe

from ..methods.registry import attribute
from ..plumbing.common import to_numpy
from ..runs.sweep import map_scores
from .common import LERF_WORDS, MORF_WORDS, ROAD_GRID, as_state, esc, fmt, term, title
from .runner import BackgroundRunner, Job

#: the readout's removal fractions: the Explorer's one grid (kept under its old name)
COARSE_PERCENTAGES = ROAD_GRID

#: below this share of the pixels painted a map is judged by MoRF alone (see ``_verdict``)
SPARSE_SUPPORT = 0.5

_REFERENCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_REFERENCES_LOCK = threading.Lock()


def reference_maps(explainer, seed: int = 0) -> dict:
    """``{"ig": the explainer's own IG (what the image view and the ROAD tab use), "random": a
    random map}``: the references every panel scores against.
    """
    ig = to_numpy(explainer.attribution().attribution)
    return {"ig": ig, "random": attribute(explainer.x.detach(), explainer.classifier, explainer.target, method="random",
                                          seed=seed)}


def reference_scores(explainer, percentages=ROAD_GRID, seed: int = 0, cancel=None) -> dict:
    """``{"ig": scores, "random": scores}`` (:func:`map_scores`) of :func:`reference_maps`,
    computed once per explainer, grid and seed and shared by the readout and the sweep panel,
    so both show the same reference numbers.
    """
    key = (tuple(float(p) for p in percentages), int(seed))
    with _REFERENCES_LOCK:
        done = _REFERENCES.setdefault(explainer, {})
        if key in done:
            return done[key]
    x = explainer.x.detach()
    out = {}
    for name, amap in reference_maps(explainer, seed).items():
        if cancel is not None:
            cancel.check()
        out[name] = map_scores(x, explainer.classifier, amap, key[0], seed=seed)
    with _REFERENCES_LOCK:
        _REFERENCES.setdefault(explainer, {})[key] = out
    return out


class FaithfulnessReadout(W.VBox):
    """MoRF / LeRF AOPC, sparsity and support of the explanation on screen, kept current.

    ``stale`` is True while the numbers of what is shown are being computed (the table then
    says "computing...").
    """

    stale = Bool(False, help="the scores of the explanation shown are being computed")

    def __init__(self, state, percentages=COARSE_PERCENTAGES, seed: int = 0, enabled: bool = True,
                 **settings):
        self.state = as_state(state, **settings)
        st = self.state
        self.percentages = tuple(percentages)
        self.seed = int(seed)
        self.runner = BackgroundRunner(st.lock, on_progress=self._progress, on_finish=self._finished,
                                       synchronous=st.runner.synchronous)
        self.cache: dict = {}
        self.references = None          # {"ig": scores, "random": scores}, once per image
        self._refs_pending = False      # their job is queued or running
        self.shown = None               # (key, scores) on screen
        self.previous = None            # scores shown before the current ones
        self.n_computed = 0
        self.last_seconds = float("nan")
        self.enabled = W.Checkbox(value=enabled, description="live faithfulness", indent=False,
                                  layout=W.Layout(width="160px"))
        self.enabled.add_class("hsets-readout-toggle")
        self.enabled.observe(lambda ch: self.refresh(), names="value")
        self.text = W.HTML()
        self.text.add_class("hsets-readout")
        st.observe(lambda ch: self.refresh(), names=["revision", "sets", "ready", "pending_seed_yx"])
        super().__init__([
            title("Faithfulness of what is shown",
                  "ROAD on the Explorer's grid (" + ", ".join(f"{p:.0%}" for p in self.percentages)
                  + f" removed), as in the ROAD and sweep tabs: {MORF_WORDS}; {LERF_WORDS}. "
                  "AOPC: the mean drop of the class probability."),
            self.enabled, self.text])
        self.add_class("hsets-readout-view")
        self.refresh()

    # ---- what is shown -------------------------------------------------------------------
    def shown_sets(self) -> list:
        """The sets scored: :meth:`ExplorerState.shown_sets`."""
        return self.state.shown_sets()

    def key(self, sets) -> str:
        """Identifies an explanation: its sets' members and the painting settings."""
        c = self.state.explainer.config
        h = hashlib.sha1(repr((c.paint, c.mask_limit, c.member_weights, c.signed, c.combine)).encode())
        for s in sets:
            h.update(np.asarray(s.members, np.int64).tobytes())
            h.update(repr((int(s.seed), round(float(s.value), 12))).encode())
        return h.hexdigest()

    # ---- updating ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the cached scores of what is on screen, or start computing them."""
        st = self.state
        if not self.enabled.value:
            self.runner.cancel(superseded=True)
            self._refs_pending = False          # a dropped references job is asked for again
            self._say("<i>Live faithfulness is off.</i>")
            return
        if not st.ready:
            self._say("<i>Waiting for IG and the segmentation...</i>")
            return
        sets = self.shown_sets()
        if not sets:
            if st.pending_seed_yx is not None:      # a click is being answered: say so
                self._say(f"<i>Growing the set of pixel {tuple(st.pending_seed_yx)}; its scores "
                          "follow.</i>")
            else:
                self._say("<i>No set yet: click a pixel or press Explain.</i>")
            return
        key = self.key(sets)
        if key in self.cache:
            self._show(key, self.cache[key])
            self._need_references()
            return
        self.stale = True
        ex = st.explainer

        def work(progress, cancel):
            t0 = time.perf_counter()
            progress("the explanation shown", 0, 1)
            heat = ex.heatmap(sets)                     # painted here, off the slider's thread
            cancel.check()
            scores = map_scores(ex.x.detach(), ex.classifier, heat, self.percentages, seed=self.seed)
            return scores, time.perf_counter() - t0

        def apply(result):
            scores, seconds = result
            self.cache[key] = scores
            self.n_computed += 1
            self.last_seconds = seconds
            if self.key(self.shown_sets()) == key:       # still what is on screen
                self._show(key, scores)

        # the explanation's own numbers first; IG's and the random map's (once per image) after
        self.runner.submit(Job("readout", "Faithfulness readout", work, apply, key=key))
        self._need_references()

    def _need_references(self) -> None:
        """Score IG and the random map once per image, after the explanation's own numbers."""
        if self.references is not None or self._refs_pending:
            return
        ex = self.state.explainer
        self._refs_pending = True

        def work(progress, cancel):
            progress("the IG and random references (once per image)", 0, 1)
            return reference_scores(ex, self.percentages, self.seed, cancel)

        def apply(refs):
            self.references = refs
            if self.shown is not None and not self.stale:
                self._show(*self.shown)                # the reference columns fill in

        self.runner.submit(Job("readout-references", "Faithfulness references", work, apply))

    def wait(self, timeout: float = 120.0) -> bool:
        """Wait until no readout is computing (scripts and tests)."""
        return self.runner.wait(timeout)

    def _progress(self, job, stage, done, total) -> None:
        """Say what the readout is scoring while it runs (it never blocks the status bar)."""
        if self.stale:
            self.text.value = self._html(None, stale=True, doing=f"scoring {stage} ({done + 1} of {total})")

    def _finished(self, job) -> None:
        if job.kind == "readout-references":
            self._refs_pending = False
        if job.outcome == "failed":
            self._say(f"<span style='color:#c62828'>Faithfulness readout failed: "
                      f"{esc(type(job.error).__name__)}: {esc(job.error)}</span>")

    # ---- display -------------------------------------------------------------------------
    @observe("stale")
    def _stale_changed(self, change) -> None:
        if change["new"]:
            self.text.value = self._html(None, stale=True)

    def _say(self, text: str) -> None:
        """Show ``text`` (the scores or a message): what is shown is no longer being computed."""
        self.stale = False
        self.text.value = text

    def _show(self, key, scores) -> None:
        if self.shown is not None and self.shown[0] != key:
            self.previous = self.shown[1]
        self.shown = (key, scores)
        self._say(self._html(scores))

    def _html(self, scores, stale: bool = False, doing: str = "") -> str:
        def cell(name, higher_better):
            if scores is None:
                return "<td>-</td>"
            v = scores[name]
            arrow = ""
            if self.previous is not None and abs(v - self.previous[name]) > 1e-9:
                better = (v > self.previous[name]) == higher_better
                arrow = (f" <span style='color:{'#2e7d32' if better else '#c62828'}'>"
                         f"{'▲' if v > self.previous[name] else '▼'}</span>")
            return f"<td><b>{fmt(v)}</b>{arrow}</td>"

        refs = self.references or {}
        rows = [(f"{term('MoRF')} {term('AOPC')}", "morf_aopc", True),
                (f"{term('LeRF')} {term('AOPC')}", "lerf_aopc", False), (term("sparsity"), "sparsity", True)]
        body = "".join(
            f"<tr><td>{label}</td>{cell(col, hb)}"
            + "".join(f"<td>{fmt(refs[m][col]) if m in refs else '-'}</td>" for m in ("ig", "random"))
            + "</tr>" for label, col, hb in rows)
        support = "" if scores is None else f"{100 * scores['support_fraction']:.1f}% of the pixels painted. "
        status = (f"<i>computing... {esc(doing)}</i>" if stale else
                  f"{support}Computed in {self.last_seconds:.1f} s." if scores is not None else "")
        return ("<table class='hsets-readout-table' style='border-spacing:8px 0'>"
                f"<tr><th></th><th>shown</th><th>{term('IG')}</th><th>{term('random')}</th></tr>" + body + "</table>"
                + (self._verdict(scores) if scores is not None else "")
                + f"<div class='hsets-readout-status' style='font-size:12px;min-height:32px'>{status}</div>")

    def _verdict(self, scores) -> str:
        """One plain line when what is shown scores worse than the random map, and what to try.

        A sparse map (under :data:`SPARSE_SUPPORT` of the pixels painted) is judged by MoRF
        alone: outside its support every pixel ties at zero, so LeRF removes them in random
        order and its LeRF AOPC sits at the random map's by construction (bench/FAITHFULNESS.md,
        "LeRF cannot beat random for a sparse map"); a warning on it would fire on almost every
        H-Sets explanation and say nothing about the sets.
        """
        rnd = (self.references or {}).get("random")
        if rnd is None:
            return ""
        sparse = scores["support_fraction"] < SPARSE_SUPPORT
        worse = []
        if scores["morf_aopc"] < rnd["morf_aopc"]:
            worse.append(f"its MoRF AOPC {fmt(scores['morf_aopc'])} is below the random map's "
                         f"{fmt(rnd['morf_aopc'])} (removing its pixels first hurts the prediction "
                         "less than removing random ones)")
        if not sparse and scores["lerf_aopc"] > rnd["lerf_aopc"]:
            worse.append(f"its LeRF AOPC {fmt(scores['lerf_aopc'])} is above the random map's "
                         f"{fmt(rnd['lerf_aopc'])}")
        note = ""
        if sparse:
            note = ("<div class='hsets-readout-sparse' style='font-size:11px;color:#555'>Judged by MoRF only: "
                    f"the map paints {100 * scores['support_fraction']:.0f}% of the pixels, and the rest tie at "
                    "zero, so LeRF removes them in random order and its LeRF is near the random map's by "
                    "construction.</div>")
        if not worse:
            return note
        return ("<div class='hsets-readout-verdict' style='font-size:12px;color:#b71c1c;"
                "background:#ffebee;padding:3px 6px;margin:3px 0;border-radius:3px'>"
                f"<b>Worse than random</b>: {'; '.join(worse)}. Try: click a pixel on the object to "
                "seed a set there (see <i>Why these seeds</i>), remove kept sets that sit on the "
                "background, or compare with another method's layer.</div>" + note)
