"""Why these seeds: the ranking behind the automatic seeds, in plain numbers.

The automatic seeds are the best pixel of the best segments (the engine's
:meth:`~hsets_widgets.hsets.explain.Explainer.seeds`); when a segmenter splits the object into small
pieces and the background into large ones, the background can collect more attribution mass
and take the seeds. This panel shows what the choice rests on, for every automatic seed: its
segment, the segment's share of the image, its share of the positive attribution mass and the
seed's own attribution, plus how much of the positive mass the seeds' segments hold together.
When they hold little of it, it says that the automatic sets may miss the object and what to
do about it. Only view logic: the numbers come from the explainer's cached stages.
"""
from __future__ import annotations

import ipywidgets as W
import numpy as np

from .common import as_state, esc, fmt, title

#: below this share of the positive attribution mass in the seeds' segments, the panel warns
LOW_COVERAGE = 0.35

ORDER_WORDS = {"mass": "positive {attr} summed over the segment",
               "max": "highest single {attr} value in the segment",
               "size": "segment area"}


def seed_ranking(state) -> dict:
    """The numbers the panel shows: ``{"rows": [{"rank", "yx", "segment", "area", "mass_share",
    "seed_value"}], "coverage", "order", "attribution"}`` (``rows`` empty before the seeds).
    """
    st = state
    ex = st.explainer
    c = ex.config
    out = {"rows": [], "coverage": float("nan"), "order": c.seed_order,
           "attribution": "IG" if c.seed_attribution == "ig" else "gradient"}
    if not st.ready or not st.auto_seeds:
        return out
    labels = ex.segment().labels
    mass = ex.segment_mass()
    total = float(sum(mass.values())) or 1.0
    n_pix = float(labels.size)
    for k, s in enumerate(st.auto_seeds):
        out["rows"].append({"rank": k + 1, "yx": tuple(int(v) for v in s.yx), "segment": int(s.segment),
                            "area": float((labels == s.segment).sum()) / n_pix,
                            "mass_share": mass.get(int(s.segment), 0.0) / total,
                            "seed_value": float(s.attribution)})
    out["coverage"] = float(sum(r["mass_share"] for r in out["rows"]))
    return out


class SeedRanking(W.VBox):
    """The automatic seeds' ranking: why these seeds, and a warning when they hold little of
    the attribution (see the module docstring).
    """

    def __init__(self, state, **settings):
        self.state = as_state(state, **settings)
        self.text = W.HTML()
        self.text.add_class("hsets-seed-ranking")
        self.state.observe(lambda ch: self.update(), names=["auto_seeds", "ready"])
        super().__init__([title("Why these seeds", "The automatic seeds, best first, and what ranked them."),
                          self.text])
        self.add_class("hsets-seeds-view")
        self.update()

    def update(self) -> None:
        """Redraw from the shared state."""
        st = self.state
        ex = st.explainer
        r = seed_ranking(st)
        head = (f"{esc(ex.classifier.name)} gives '<b>{esc(ex.class_name)}</b>' p = {ex.probability:.2f}. "
                f"Each segment's seed is its highest-{r['attribution']} pixel; segments are ranked by "
                f"{ORDER_WORDS.get(r['order'], r['order']).format(attr=r['attribution'])}.")
        if not r["rows"]:
            self.text.value = f"<div style='font-size:12px'>{head} <i>Waiting for IG and the segments...</i></div>"
            return
        td = "style='padding:1px 6px;text-align:right'"
        rows = "".join(
            f"<tr><td {td}>A{row['rank']}</td><td {td}>({row['yx'][0]}, {row['yx'][1]})</td>"
            f"<td {td}>{row['segment']}</td><td {td}>{100 * row['area']:.1f}%</td>"
            f"<td {td}>{100 * row['mass_share']:.1f}%</td><td {td}>{fmt(row['seed_value'])}</td></tr>"
            for row in r["rows"])
        table = (f"<table class='hsets-seed-table' style='font-size:12px;border-collapse:collapse'>"
                 f"<tr><th {td}>seed</th><th {td}>pixel (y, x)</th><th {td}>segment</th>"
                 f"<th {td}>of the image</th><th {td}>of positive {r['attribution']}</th>"
                 f"<th {td}>seed's {r['attribution']}</th></tr>{rows}</table>")
        cov = r["coverage"]
        note = (f"The {len(r['rows'])} seeds' segments hold {100 * cov:.0f}% of the positive "
                f"{r['attribution']}.")
        if np.isfinite(cov) and cov < LOW_COVERAGE:
            note = (f"<span class='hsets-seed-warning' style='color:#b71c1c'><b>The automatic seeds may miss "
                    f"the object</b>: their segments hold only {100 * cov:.0f}% of the positive "
                    f"{r['attribution']}, the rest is spread over many small segments.</span> Click a pixel "
                    "on the object to grow a set there, or compare with another method's layer.")
        self.text.value = f"<div style='font-size:12px;line-height:1.4'>{head}{table}{note}</div>"
