"""The sweep panel: faithfulness against mu, and a click that applies the chosen value.

It runs :func:`hsets_widgets.runs.sweep.sweep` (the function ``hsets sweep`` uses) in the
background with progress and cancel, growing the seeds on screen (the kept sets and the
current one; the automatic seeds when there are none) with the current rule, sign, order and
nu, and plots MoRF and LeRF AOPC and sparsity against mu, with IG and a random map as
horizontal reference lines and the current mu marked. Clicking a point sets mu to it. Results
stay when the user switches tabs.
"""
from __future__ import annotations

import bqplot as bq
import ipywidgets as W
import numpy as np

from ..runs.sweep import sweep
from .common import LERF_WORDS, MORF_WORDS, ROAD_GRID, TICKS, as_state, axis_unit, esc, fmt, legend, nice_ticks, title
from .readout import reference_scores

COLORS = {"morf_aopc": "#1565c0", "lerf_aopc": "#6a1b9a", "sparsity": "#2e7d32"}


def parse_values(text: str) -> list:
    """``"64, 128 256"`` -> ``[64.0, 128.0, 256.0]`` (a clear error for anything else)."""
    parts = [p for p in str(text).replace(",", " ").split() if p]
    try:
        values = [float(p) for p in parts]
    except ValueError as err:
        raise ValueError(f"mu values must be numbers separated by commas or spaces, got {text!r}") from err
    if not values:
        raise ValueError("give at least one mu value to sweep")
    return sorted(set(values))


class SweepPanel(W.VBox):
    """Sweep mu, plot faithfulness against it, click a point to apply it."""

    def __init__(self, state, values=(64, 128, 256, 512), percentages=ROAD_GRID,
                 seed: int = 0, **settings):
        self.state = as_state(state, **settings)
        st = self.state
        self.percentages = tuple(percentages)
        self.seed = int(seed)
        self.records: list = []
        self.swept_seeds: list = []   # the seeds the last sweep grew (empty: the automatic ones)
        self.values = W.Text(value=", ".join(f"{v:g}" for v in values), description="mu values",
                             layout=W.Layout(width="360px"))
        self.values.add_class("hsets-sweep-values")
        self.button = W.Button(description="Run sweep", button_style="primary", icon="line-chart")
        self.button.add_class("hsets-sweep-run")
        self.button.on_click(lambda b: self.run())
        self.apply_all = W.Checkbox(value=True, description="a click applies mu to every set swept",
                                    indent=False, layout=W.Layout(width="300px"),
                                    tooltip="regrow the kept sets too, so the readout shows the "
                                            "explanation the point scored")
        self.apply_all.add_class("hsets-sweep-apply-all")
        self.figure = self._build_plot()
        self.info = W.HTML("<i>Press “Run sweep”: every mu is grown from cached rows where it can "
                           "and scored on a coarse ROAD grid.</i>")
        self.info.add_class("hsets-sweep-info")
        st.observe(lambda ch: self._mark_current(), names=["mu"])
        super().__init__([
            title("Sweep mu",
                  "The seeds on screen (else the automatic ones) grown at each mu with the current "
                  "rule, sign, order and nu, scored "
                  f"on the readout's grid: {MORF_WORDS}, {LERF_WORDS}, sparsity. Dashed: IG; "
                  "dotted: a random map."),
            W.HBox([self.values, self.button]), self.apply_all, self.figure,
            legend([(COLORS["morf_aopc"], "line", "MoRF AOPC"), (COLORS["lerf_aopc"], "line", "LeRF AOPC"),
                    (COLORS["sparsity"], "line", "sparsity"), ("#e65100", "line", "current mu")]),
            self.info])
        self.add_class("hsets-sweep-view")

    def _build_plot(self):
        """The faithfulness-against-mu chart: a line and clickable points per number, IG and random
        references, the current mu.
        """
        self.x_scale = bq.LinearScale()
        self.y_scale = bq.LinearScale()             # AOPC (fitted to the numbers)
        self.x_axis = bq.Axis(scale=self.x_scale, label="mu", tick_format=TICKS)
        self.s_scale = bq.LinearScale(min=0.0, max=1.0)   # sparsity, on the right axis
        sc = {"x": self.x_scale, "y": self.y_scale}
        scales = {k: ({"x": self.x_scale, "y": self.s_scale} if k == "sparsity" else sc) for k in COLORS}
        # hidden until a sweep has numbers: an empty chart shows no stray dot at (0, 0)
        self.lines = {k: bq.Lines(x=[0.0], y=[0.0], scales=scales[k], colors=[c], stroke_width=2, visible=False)
                      for k, c in COLORS.items()}
        self.points = {k: bq.Scatter(x=[0.0], y=[0.0], scales=scales[k], colors=[c], default_size=48, visible=False,
                                     interactions={"click": "select"})
                       for k, c in COLORS.items()}
        for mark in self.points.values():
            mark.on_element_click(lambda m, ev: self._clicked(ev))
        self.refs = {(k, m): bq.Lines(x=[0.0, 1.0], y=[0.0, 0.0], scales=sc, colors=[COLORS[k]], visible=False,
                                      line_style="dashed" if m == "ig" else "dotted", stroke_width=1)
                     for k in ("morf_aopc", "lerf_aopc") for m in ("ig", "random")}
        self.current = bq.Lines(x=[0.0, 0.0], y=[0.0, 1.0], scales={"x": self.x_scale, "y": self.s_scale},
                                colors=["#e65100"], stroke_width=1.5)
        self.y_factor = 1.0          # AOPC values are plotted times this (see axis_unit)
        self.y_axis = bq.Axis(scale=self.y_scale, orientation="vertical", tick_format=TICKS, label="AOPC",
                              label_offset="50px")
        figure = bq.Figure(
            marks=[*self.lines.values(), *self.points.values(), *self.refs.values(), self.current],
            axes=[self.x_axis,
                  self.y_axis,
                  bq.Axis(scale=self.s_scale, orientation="vertical", side="right", tick_format=".1f",
                          label="sparsity")],
            title="Faithfulness against mu (click a point to use that mu)",
            fig_margin={"top": 40, "bottom": 45, "left": 65, "right": 55},
            layout=W.Layout(width="560px", height="320px"))
        figure.add_class("hsets-sweep-plot")
        return figure

    def run(self, values=None):
        """Sweep ``values`` (default: the text box) in the background; returns the job."""
        st = self.state
        try:
            mus = parse_values(self.values.value) if values is None else sorted({float(v) for v in values})
            ex = st.explainer.with_settings(nu=int(st.nu), threshold=st.threshold, sign=st.sign,
                                            order=st.order)
            for mu in mus:                       # every point's settings, before any work
                ex.config.replace(mu=mu)
        except ValueError as err:
            self.info.value = f"<span style='color:#c62828'>{esc(err)}</span>"
            return None

        with st.lock:                            # the seeds on screen, else the automatic ones
            shown = [st.explainer.seed_at(*s.seed_yx) for s in st.shown_sets()] if st.ready else []
        self.swept_seeds = shown

        def work(progress, cancel):
            st.ensure_ready(progress, cancel)
            records = sweep(ex, progress, cancel, percentages=self.percentages, seed=self.seed,
                            as_frame=False, seeds=shown or None, mu=mus, references=False)
            # the readout's references (the explainer's own IG, the same random map): one set of numbers
            refs = reference_scores(st.explainer, self.percentages, self.seed, cancel)
            return records + [{"method": name, "mu": None, **sc} for name, sc in refs.items()]

        def apply(records):
            self.records = records
            self._plot()

        self.info.value = (f"<i>Sweeping {len(mus)} values of mu: growing the sets at each (rows not "
                           "cached yet are computed first, which is the slow part), then scoring them; "
                           "the status bar above counts the points.</i>")
        return st.submit("sweep", f"Sweeping mu over {len(mus)} values", work, apply)

    # ---- display -------------------------------------------------------------------------
    def _plot(self) -> None:
        hs = [r for r in self.records if r["method"] == "hsets"]
        refs = {r["method"]: r for r in self.records if r["method"] != "hsets"}
        if not hs:
            return
        xs = np.array([r["mu"] for r in hs], float)
        aopc = [r[k] for r in hs for k in ("morf_aopc", "lerf_aopc")]
        aopc += [r[k] for r in refs.values() for k in ("morf_aopc", "lerf_aopc")]
        f, unit = axis_unit(aopc)         # plain tick numbers; a power of ten goes into the label
        self.y_factor = f
        with self.figure.hold_sync():
            for k in COLORS:
                ys = np.array([r[k] for r in hs], float) * (1.0 if k == "sparsity" else f)
                self.lines[k].x, self.lines[k].y = xs, ys
                self.points[k].x, self.points[k].y = xs, ys
            for (k, m), line in self.refs.items():
                if m in refs:
                    line.x, line.y = [xs.min(), xs.max()], [refs[m][k] * f] * 2
            self.x_scale.min, self.x_scale.max = float(xs.min()), float(xs.max())
            self.x_axis.tick_values = sorted(set(xs.tolist()))
            lo, hi = float(min(aopc)), float(max(aopc))
            pad = 0.08 * (hi - lo or abs(hi) or 1.0)
            self.y_scale.min, self.y_scale.max = (lo - pad) * f, (hi + pad) * f
            self.y_axis.tick_values = nice_ticks(self.y_scale.min, self.y_scale.max, 5)
            self.y_axis.label = "AOPC" + unit
            for mark in (*self.lines.values(), *self.points.values()):
                mark.visible = True
            for (_, m), line in self.refs.items():
                line.visible = m in refs
        self._mark_current()
        best = max(hs, key=lambda r: r["morf_aopc"])
        whose = (f"the {len(self.swept_seeds)} seed(s) shown" if self.swept_seeds
                 else "the automatic seeds")
        self.info.value = (f"{len(hs)} values of mu for {whose}; highest MoRF AOPC {fmt(best['morf_aopc'])} at mu = "
                           f"{best['mu']:g} (IG {fmt(refs['ig']['morf_aopc']) if 'ig' in refs else '-'}, "
                           f"random {fmt(refs['random']['morf_aopc']) if 'random' in refs else '-'}). "
                           "Click a point to apply its mu.")

    def _mark_current(self) -> None:
        mu = float(self.state.mu)
        self.current.x, self.current.y = [mu, mu], [0.0, 1.0]

    def _clicked(self, event) -> None:
        hs = [r for r in self.records if r["method"] == "hsets"]
        index = (event or {}).get("data", {}).get("index")
        if index is None or not 0 <= int(index) < len(hs):
            return
        self.apply(float(hs[int(index)]["mu"]))

    def apply(self, mu: float):
        """Use ``mu``: the current set regrows; with :attr:`apply_all` ticked, the seeds the sweep
        grew are regrown and kept at ``mu`` too (returns that job), so what is shown, and what
        the readout scores, is the explanation the sweep point scored.
        """
        st = self.state
        st.mu = float(mu)
        if self.apply_all.value and self.swept_seeds:
            return st.keep_sets_of(self.swept_seeds)
        return None
