"""The merge animation: replay the recursive merge of the current set step by step.

Step ``k`` shows ``grown.members_after(k)``: the seed plus everything the first ``k``
expanded rows admitted; the image view colours the pixels step ``k`` added and outlines the
pixel whose row was expanded. The ``Play`` control, the step slider and the buttons each
write ``state.step``, and the state writes them back, in the kernel. They are deliberately
*not* joined with ``jslink``: a front-end link overwrites the slider's kernel value when the
page renders.
"""
from __future__ import annotations

import ipywidgets as W

from ..hsets.seeds import feature_to_yx
from .common import as_state, title


class MergeAnimation(W.VBox):
    """Play / step through the growth trace of the current set."""

    def __init__(self, state, interval_ms: int = 500, **settings):
        self.state = as_state(state, **settings)
        st = self.state
        n = st.n_steps
        self._syncing = False
        self.play = W.Play(value=st.step, min=0, max=max(n, 1), step=1, interval=interval_ms,
                           description="Play", show_repeat=False,
                           tooltip="▶ replays the merge one step at a time; ■ stops and goes back to step 0")
        self.play.add_class("hsets-play")
        self.slider = W.IntSlider(value=st.step, min=0, max=max(n, 1), description="step",
                                  continuous_update=True, layout=W.Layout(width="300px"))
        self.slider.style.description_width = "40px"
        self.slider.add_class("hsets-step-slider")
        self.back = W.Button(description="◀ step", tooltip="one merge step back",
                             layout=W.Layout(width="72px"))
        self.forward = W.Button(description="step ▶", tooltip="one merge step forward",
                                layout=W.Layout(width="72px"))
        self.back.add_class("hsets-step-back")
        self.forward.add_class("hsets-step-forward")
        self.label = W.HTML()
        self.label.add_class("hsets-step-label")

        self.play.observe(lambda ch: self._to_state(ch["new"]), names="value")
        self.slider.observe(lambda ch: self._to_state(ch["new"]), names="value")
        self.back.on_click(lambda b: self.step_by(-1))
        self.forward.on_click(lambda b: self.step_by(+1))
        st.observe(lambda ch: self._from_state(), names=["step", "revision"])
        super().__init__([
            title("Merge animation",
                  "Replays the growth: each step expands one member's Hessian row and adds the "
                  "features that pass (orange); the white square is that member."),
            W.HBox([self.play, self.back, self.forward, self.slider]),
            self.label])
        self.add_class("hsets-merge-animation")
        self._from_state()

    def step_by(self, delta: int) -> None:
        """Move the merge replay ``delta`` steps (clipped to the trace)."""
        st = self.state
        st.step = min(max(st.step + delta, 0), st.n_steps)

    def _to_state(self, value: int) -> None:
        if self._syncing:
            return
        st = self.state
        value = min(max(int(value), 0), st.n_steps)
        if value != st.step:
            st.step = value

    def _from_state(self) -> None:
        st = self.state
        n = st.n_steps
        self._syncing = True
        try:
            top = max(n, 1)
            for wdg in (self.play, self.slider):
                # separate messages, range change first when it grows and last when it shrinks:
                # a front end that saw the new value before the new max would clamp the value
                # and send the clamped step back to the kernel
                if wdg.max < top:
                    wdg.max = top
                if wdg.value != st.step:
                    wdg.value = st.step
                if wdg.max > top:
                    wdg.max = top
            disabled = st.grown is None or n == 0
            self.play.disabled = self.slider.disabled = disabled
            self.back.disabled = disabled or st.step <= 0
            self.forward.disabled = disabled or st.step >= n
        finally:
            self._syncing = False
        self.label.value = self.describe()

    def describe(self) -> str:
        """The step label: which row added which pixels."""
        st = self.state
        if st.grown is None:
            return "<i>No set yet.</i>"
        n = st.n_steps
        size = len(st.displayed_members())
        if st.step == 0:
            return (f"Step 0 of {n}: the seed {tuple(st.seed.yx)} alone (1 feature). "
                    "Press Play or step ▶.")
        info = st.step_info()
        yx = feature_to_yx(info.row, st.shape, st.explainer.config.features)
        verb = f"added <b>{len(info.added)}</b> feature(s)" if info.added else "added nothing new"
        return (f"Step <b>{st.step}</b> of {n}: the row of pixel {yx} {verb}; "
                f"the set now has <b>{size}</b> feature(s) of {len(st.grown)}.")
