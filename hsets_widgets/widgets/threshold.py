"""The threshold explorer: mu, nu, rule, sign and order controls that regrow the set.

Every control writes one trait of the shared state, which regrows the current set from the
Hessian-row cache at once, or, when the new settings need rows never computed, in the
background with progress (see :class:`~hsets_widgets.widgets.state.ExplorerState`).
"""
from __future__ import annotations

import ipywidgets as W

from ..thresholds import THRESHOLD_RULES, rule_mu
from .common import as_state, fmt, title

SIGN_OPTIONS = (("|H| (magnitude)", "magnitude"), ("H > 0 (positive only)", "positive"))
ORDER_OPTIONS = (("breadth-first", "bfs"), ("depth-first (recursive)", "dfs"))
STOPPED = {"nu": "size cap nu reached", "exhausted": "no new feature passes",
           "max_rows": "row budget (max_rows) spent"}



def rule_options() -> list:
    """``(label, name)`` of every registered threshold rule, for the rule menu."""
    return [(k.label, k.name) for k in THRESHOLD_RULES.values()]


def set_range(slider, lo, hi, step, value) -> None:
    """Give ``slider`` a new range and value without tripping its min <= value <= max checks."""
    slider.min = min(slider.min, lo)
    slider.max = max(slider.max, hi)
    if step is not None:
        slider.step = step
    slider.value = min(max(value, lo), hi)
    slider.min = lo
    slider.max = hi


class ThresholdExplorer(W.VBox):
    """Sliders and menus for mu, nu, the threshold rule, sign and merge order."""

    def __init__(self, state, nu_max: int = 1000, **settings):
        self.state = as_state(state, **settings)
        st = self.state
        self._syncing = False
        self.rule = W.Dropdown(options=rule_options(), value=st.threshold, description="rule",
                               layout=W.Layout(width="380px"))
        self.rule.add_class("hsets-rule")
        lo, hi, step, _ = self._range(st.threshold)
        self.mu = W.FloatSlider(value=min(max(st.mu, lo), hi), min=lo, max=hi, step=step,
                                description="mu (μ)", continuous_update=True,
                                readout_format=self._format(st.threshold),
                                layout=W.Layout(width="460px"),
                                tooltip="mu: how strict the rule is (for top-k: new members per row)")
        self.mu.add_class("hsets-mu-slider")
        self.nu = W.IntSlider(value=st.nu, min=1, max=max(nu_max, st.nu), step=1,
                              description="nu (ν)", continuous_update=False,
                              layout=W.Layout(width="460px"),
                              tooltip="nu: the largest set size; growth stops there")
        self.nu.add_class("hsets-nu-slider")
        self.sign = W.Dropdown(options=SIGN_OPTIONS, value=st.sign, description="compare",
                               layout=W.Layout(width="380px"))
        self.order = W.Dropdown(options=ORDER_OPTIONS, value=st.order, description="merge order",
                                layout=W.Layout(width="380px"))
        for wdg in (self.rule, self.mu, self.nu, self.sign, self.order):
            wdg.style.description_width = "90px"
        self.info = W.HTML()
        self.info.add_class("hsets-set-info")

        self.rule.observe(self._rule_changed, names="value")
        self.mu.observe(lambda ch: self._to_state(mu=self._clean_mu(ch["new"])), names="value")
        self.nu.observe(lambda ch: self._to_state(nu=int(ch["new"])), names="value")
        self.sign.observe(lambda ch: self._to_state(sign=ch["new"]), names="value")
        self.order.observe(lambda ch: self._to_state(order=ch["new"]), names="value")
        st.observe(self._from_state, names=["mu", "nu", "threshold", "sign", "order"])
        st.observe(lambda ch: self.update_info(), names=["revision", "n_rows", "busy", "error"])
        super().__init__([
            title("Threshold explorer",
                  "A feature joins when its entry in a member's Hessian row passes the rule "
                  "(mu); growth stops at nu members. Cached rows answer at once."),
            self.rule, self.mu, self.nu, self.sign, self.order, self.info])
        self.add_class("hsets-threshold-explorer")
        self.update_info()

    # ---- ranges ------------------------------------------------------------------------
    def _range(self, rule: str) -> tuple:
        lo, hi, step, default = THRESHOLD_RULES[rule].mu_range
        if hi is None:                      # absolute: scale by the seed row's entries
            row = self.state.seed_row_image()
            top = 1.0
            if row is not None:
                import numpy as np

                r = np.abs(row).ravel()
                r[np.argmax(r)] = 0.0
                top = float(r.max()) or 1.0
            hi, step, default = top, top / 200.0, top / 4.0
        return lo, hi, step, default

    @staticmethod
    def _format(rule: str) -> str:
        return ".0f" if THRESHOLD_RULES[rule].is_topk else ".3g"

    def _clean_mu(self, value) -> float:
        """Slider floats carry round-off (20.999999999999996); top-k needs whole numbers."""
        value = float(value)
        if THRESHOLD_RULES[self.rule.value].is_topk:
            return rule_mu(self.rule.value, value)
        step = self.mu.step or 0
        return float(round(round(value / step) * step, 12)) if step else value

    # ---- syncing -----------------------------------------------------------------------
    def _to_state(self, **changes) -> None:
        if self._syncing:
            return
        st = self.state
        with st.hold_trait_notifications():
            for k, v in changes.items():
                setattr(st, k, v)

    def _rule_changed(self, change) -> None:
        if self._syncing:
            return
        rule = change["new"]
        lo, hi, step, default = self._range(rule)
        self._syncing = True
        try:
            self.mu.readout_format = self._format(rule)
            set_range(self.mu, lo, hi, step, default)
        finally:
            self._syncing = False
        st = self.state
        with st.hold_trait_notifications():
            st.threshold = rule
            st.mu = float(self.mu.value)

    def _from_state(self, change) -> None:
        st = self.state
        self._syncing = True
        try:
            if self.rule.value != st.threshold:
                lo, hi, step, _ = self._range(st.threshold)
                if st.threshold not in [v for _, v in self.rule.options]:
                    self.rule.options = rule_options()     # a rule registered after this view
                self.rule.value = st.threshold
                self.mu.readout_format = self._format(st.threshold)
                set_range(self.mu, lo, hi, step, st.mu)
            if abs(self.mu.value - st.mu) > 1e-12:
                if not self.mu.min <= st.mu <= self.mu.max:
                    set_range(self.mu, min(self.mu.min, st.mu), max(self.mu.max, st.mu), None, st.mu)
                self.mu.value = st.mu
            if self.nu.value != st.nu:
                self.nu.max = max(self.nu.max, st.nu)
                self.nu.value = st.nu
            self.sign.value = st.sign
            self.order.value = st.order
        finally:
            self._syncing = False

    def update_info(self) -> None:
        """Rewrite the text under the sliders for the current set."""
        st = self.state
        parts = []
        g, v = st.grown, st.value
        if g is None:
            parts.append("<i>No set yet: click a pixel of the image.</i>")
        else:
            parts.append(f"<b>Set size: {len(g)}</b> pixel feature(s) from seed {tuple(st.seed.yx)} "
                         f"— stopped: {STOPPED.get(g.stopped, g.stopped)}")
            parts.append(f"Rows expanded: {g.rows_used} · Hessian rows computed so far (cache): "
                         f"<b>{st.n_rows}</b>")
            if v is not None:
                how = "exact, all subsets" if v.exact else f"{v.n_samples} random subsets"
                parts.append(f"Value v(I) = <b>{fmt(v.value)}</b> ± {fmt(v.stderr)} "
                             f"({'mean |IDG| over subsets' if v.kind == 'mean' else 'sum over drawn subsets'}"
                             f", {how})")
        # the line is always there (empty when idle): the layout never jumps when work starts
        parts.append("<span style='color:#ef6c00'>computing in the background…</span>" if st.busy else "&nbsp;")
        self.info.value = "<div style='font-size:12px;line-height:1.5'>" + "<br>".join(parts) + "</div>"
