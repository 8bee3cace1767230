"""The threshold explorer: mu, nu, rule, sign and order controls that regrow the set.

Every control writes one trait of the shared state, which regrows the current set from the
Hessian-row cache at once, or, when the new settings need rows never computed, in the
background with progress (see :class:`~hsets_widgets.widgets.state.ExplorerState`).
"""
from __future__ import annotations

import math

import ipywidgets as W

from ..hsets.thresholds import THRESHOLD_RULES, rule_mu
from .common import as_state, fmt, title

SIGN_OPTIONS = (("|H| (magnitude)", "magnitude"), ("H > 0 (positive only)", "positive"))
ORDER_OPTIONS = (("breadth-first", "bfs"), ("depth-first (recursive)", "dfs"))
STOPPED = {"nu": "size cap nu reached", "exhausted": "no new feature passes",
           "max_rows": "row budget (max_rows) spent"}



def rule_options() -> list:
    """``(label, name)`` of every registered threshold rule, for the rule menu."""
    return [(k.label, k.name) for k in THRESHOLD_RULES.values()]


#: a range this wide (max / min, both above 0) gets a log-scale slider: on a linear track from 1
#: to 512 a few pixels of drag jump by dozens and the small values that matter get no room
LOG_SPAN = 16.0
#: slider steps per doubling on a log-scale track: fine enough that a value set from elsewhere
#: (a sweep point, a typed number, a reload) survives the track's snapping to its steps
LOG_STEPS = 1000


def is_log_range(lo, hi) -> bool:
    """Whether ``lo``..``hi`` gets a log-scale slider (:data:`LOG_SPAN`)."""
    return lo is not None and hi is not None and lo > 0 and hi / lo >= LOG_SPAN


def log_slider(lo: float, hi: float, value: float, **kwargs) -> W.FloatLogSlider:
    """A base-2 log-scale slider from ``lo`` to ``hi``; its readout takes typed numbers."""
    return W.FloatLogSlider(value=min(max(value, lo), hi), base=2, min=math.log2(lo), max=math.log2(hi),
                            step=1.0 / LOG_STEPS, **kwargs)


def set_log_range(slider, lo, hi, value) -> None:
    """:func:`set_range` for a log-scale slider (its min and max are exponents)."""
    set_range(slider, math.log2(lo), math.log2(hi), None, math.log2(min(max(value, lo), hi)))
    slider.value = min(max(value, lo), hi)


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
        mu_style = dict(description="mu (μ)", continuous_update=True, layout=W.Layout(width="460px"),
                        tooltip="mu: how strict the rule is (for top-k: new members per row); "
                                "drag, or type a number into the box at the right")
        # one slider per scale: wide ranges (top-k 1-512) on a log track, the rest linear; a rule
        # change shows the one its range needs
        self.mu_linear = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, readout_format=".3g", **mu_style)
        self.mu_log = log_slider(1.0, 512.0, 1.0, readout_format=".0f", **mu_style)
        self.mu_holder = W.Box()
        for slider in (self.mu_linear, self.mu_log):
            slider.add_class("hsets-mu-slider")
            slider.style.description_width = "90px"
        self.mu = self.mu_linear
        self._show_mu(st.threshold, lo, hi, step, st.mu)
        self.nu = log_slider(1.0, float(max(nu_max, st.nu)), float(st.nu), description="nu (ν)",
                             continuous_update=False, readout_format=".0f", layout=W.Layout(width="460px"),
                             tooltip="nu: the largest set size; growth stops there (log scale: "
                                     "drag, or type a number into the box at the right)")
        self.nu.add_class("hsets-nu-slider")
        self.sign = W.Dropdown(options=SIGN_OPTIONS, value=st.sign, description="compare",
                               layout=W.Layout(width="380px"))
        self.order = W.Dropdown(options=ORDER_OPTIONS, value=st.order, description="merge order",
                                layout=W.Layout(width="380px"))
        for wdg in (self.rule, self.nu, self.sign, self.order):
            wdg.style.description_width = "90px"
        self.info = W.HTML()
        self.info.add_class("hsets-set-info")

        self.rule.observe(self._rule_changed, names="value")
        for slider in (self.mu_linear, self.mu_log):
            slider.observe(lambda ch: self._to_state(mu=self._clean_mu(ch["new"])), names="value")
        self.nu.observe(lambda ch: self._to_state(nu=max(1, int(round(ch["new"])))), names="value")
        self.sign.observe(lambda ch: self._to_state(sign=ch["new"]), names="value")
        self.order.observe(lambda ch: self._to_state(order=ch["new"]), names="value")
        st.observe(self._from_state, names=["mu", "nu", "threshold", "sign", "order"])
        st.observe(lambda ch: self.update_info(), names=["revision", "n_rows", "busy", "error"])
        super().__init__([
            title("Threshold explorer",
                  "A feature joins when its entry in a member's Hessian row passes the rule "
                  "(mu); growth stops at nu members. Cached rows answer at once."),
            self.rule, self.mu_holder, self.nu, self.sign, self.order, self.info])
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

    def _show_mu(self, rule: str, lo, hi, step, value) -> None:
        """Put the slider of ``rule``'s scale in place (log for a wide range) with its range and value."""
        if is_log_range(lo, hi):
            self.mu = self.mu_log
            self.mu.readout_format = self._format(rule)
            set_log_range(self.mu, lo, hi, value)
        else:
            self.mu = self.mu_linear
            self.mu.readout_format = self._format(rule)
            set_range(self.mu, lo, hi, step, value)
        if self.mu_holder.children != (self.mu,):
            self.mu_holder.children = (self.mu,)

    def _clean_mu(self, value) -> float:
        """Slider floats carry round-off (20.999999999999996); top-k needs whole numbers, and a
        log-scale track gives three significant digits.
        """
        value = float(value)
        if THRESHOLD_RULES[self.rule.value].is_topk:
            return rule_mu(self.rule.value, value)
        if self.mu is self.mu_log:
            return float(f"{value:.3g}")
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
            self._show_mu(rule, lo, hi, step, default)
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
                self._show_mu(st.threshold, lo, hi, step, st.mu)
            if abs(self.mu.value - st.mu) > 1e-12:
                if self.mu is self.mu_log:
                    lo, hi = 2.0 ** self.mu.min, 2.0 ** self.mu.max
                    if st.mu > 0 and not lo <= st.mu <= hi:
                        set_log_range(self.mu, min(lo, st.mu), max(hi, st.mu), st.mu)
                elif not self.mu.min <= st.mu <= self.mu.max:
                    set_range(self.mu, min(self.mu.min, st.mu), max(self.mu.max, st.mu), None, st.mu)
                self.mu.value = st.mu
            if abs(self.nu.value - st.nu) > 1e-9:
                if st.nu > 2.0 ** self.nu.max:
                    set_log_range(self.nu, 1.0, float(st.nu), float(st.nu))
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
