"""The Explorer widgets driven from Python with fake front-end messages.

No browser and no kernel: clicks are ``mouse_down`` custom messages to the canvas, slider
and Play moves are ``set_state`` calls (what the front end sends), button presses are
``click`` custom messages. The canvas manager's output is recorded to check draw commands.
A tiny seeded CNN on a 48x48 crop keeps every test fast.
"""
from __future__ import annotations

import html
import io
import json
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import tiny_classifier, wait_until
from PIL import Image

from hsets_widgets.hsets.explain import Explainer
from hsets_widgets.hsets.explanation import Explanation
from hsets_widgets.hsets.thresholds import candidates
from hsets_widgets.widgets.common import fmt

SIZE = 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cnn():
    """The conftest tiny classifier at the widgets' image size."""
    return tiny_classifier(torch.float32, size=SIZE, width=6)


@pytest.fixture(scope="module")
def image():
    from hsets_widgets.model.images import load_image, resize_center_crop

    return resize_center_crop(load_image("chelsea"), SIZE)


@pytest.fixture(scope="module")
def explainer(image):
    """One Explainer for the module: its row cache is shared, which is what a cache is for."""
    from hsets_widgets.hsets.explain import Explainer

    # a growth rule that takes several rows per set (the default's 256 new pixels per row fill a
    # 32-pixel set from the seed's row alone), so there is a merge to replay
    ex = Explainer(image, cnn(), preset="default", segmenter="slic", n_steps=8, nu=32, mu=8,
                   row_blur=0.0, fresh=False, within_mask=False, member_weights="flat")
    ex.attribution()
    ex.segment()
    return ex


@pytest.fixture
def explorer(explainer):
    from hsets_widgets.widgets import Explorer

    # the live readout has its own tests below; here it would only add background work
    e = Explorer(explainer, display_size=384, readout=False)
    assert e.wait(120), "preparation did not finish"
    yield e
    e.state.cancel()
    e.readout.runner.cancel()
    e.readout.wait(30)
    e.road.follow_runner.cancel()
    e.road.follow_runner.wait(30)
    e.wait(30)


class CanvasLog:
    """Records ipycanvas draw commands as ``(canvas model id, command name, args, buffers)``."""

    def __init__(self):
        from ipycanvas.canvas import _CMD_LIST

        self.names = _CMD_LIST
        self.calls = []
        self.current = None

    def record(self, command, buffers):
        cmds = command if command and isinstance(command[0], list) else [command]
        bufs = iter(buffers)
        for c in cmds:
            name = self.names[c[0]]
            if name == "switchCanvas":
                self.current = c[1][0].replace("IPY_MODEL_", "")
                continue
            n = c[2] if len(c) > 2 else 0
            self.calls.append((self.current, name, c[1], [next(bufs) for _ in range(n)]))

    def on(self, canvas):
        return [(n, a, b) for cid, n, a, b in self.calls if cid == canvas.model_id]

    def clear(self):
        self.calls.clear()


@pytest.fixture
def canvas_log(monkeypatch):
    from ipycanvas.canvas import _CANVAS_MANAGER, _CanvasManager

    log = CanvasLog()
    # commands for the canvas the manager last switched to come without a switch command
    cur = _CANVAS_MANAGER._current_canvas
    log.current = cur.model_id if cur is not None else None
    monkeypatch.setattr(_CanvasManager, "_send_custom", lambda self, command, buffers=[]: log.record(command, buffers))
    return log


def click_pixel(view, y, x):
    """What the browser sends when pixel (y, x) of the image view is clicked."""
    s = view.scale
    view.canvas._handle_custom_msg({"event": "mouse_down", "x": (x + 0.5) * s, "y": (y + 0.5) * s}, [])


def choose(selection, value):
    """What the browser sends when ``value`` is picked in a Dropdown/ToggleButtons/SelectionSlider
    (selection widgets sync ``index``, not ``value``)."""
    values = [o[1] if isinstance(o, tuple) else o for o in selection.options]
    selection.set_state({"index": values.index(value)})
    assert selection.value == value


def press(button):
    button._handle_custom_msg({"event": "click"}, [])


def far_pixel(state):
    """A pixel away from the current seed."""
    y, x = state.seed.yx
    return (8, 8) if y > SIZE // 2 or x > SIZE // 2 else (40, 40)


def uncached_pixel(explainer):
    """A pixel whose Hessian row was never computed (the module shares one row cache)."""
    for y in range(4, SIZE, 7):
        for x in range(3, SIZE, 5):
            if y * SIZE + x not in explainer.rows:
                return y, x
    raise AssertionError("every candidate pixel is cached")


# ---- state and growth -----------------------------------------------------------------

def slow_rows(ex, monkeypatch, seconds: float) -> None:
    """Make every Hessian-row pass of ``ex`` take ``seconds`` longer (to catch it running)."""
    orig = ex.rows._compute

    def slow(chunk):
        time.sleep(seconds)
        return orig(chunk)

    monkeypatch.setattr(ex.rows, "_compute", slow)

def test_explorer_prepares_and_grows_the_best_seed(explorer):
    st = explorer.state
    assert st.ready and not st.busy and st.error == ""
    assert st.auto_seeds and st.seed == st.auto_seeds[0]
    assert st.grown is not None and len(st.grown) == 32
    assert st.step == st.n_steps == len(st.grown.steps)
    assert st.value is not None and st.value.value > 0
    assert "Set size: 32" in explorer.threshold.info.value


def test_click_makes_that_pixel_the_seed_and_grows_its_set(explorer, canvas_log):
    st, ex = explorer.state, explorer.explainer
    y, x = far_pixel(st)
    click_pixel(explorer.image_view, y, x)
    assert explorer.wait(60)
    assert st.error == ""
    assert st.seed.yx == (y, x) and st.seed.index == y * SIZE + x
    expected = ex.grow(ex.seed_at(y, x), **st.params)
    assert np.array_equal(st.grown.members, expected.members)
    assert [(s.row, s.added) for s in st.grown.steps] == [(s.row, s.added) for s in expected.steps]
    assert st.pending_seed_yx is None
    # the set layer drew one rectangle per member pixel, at the zoomed position
    set_layer = explorer.image_view.canvas[4]
    rects = [a for n, a, b in canvas_log.on(set_layer) if n == "fillRects"]
    assert rects, "the set layer was not redrawn"
    assert f"seed ({y}, {x})" in explorer.threshold.info.value
    assert f"({y}, {x})" in explorer.row_inspector.info.value


def test_click_outside_the_image_is_an_error_not_a_crash(explorer):
    st = explorer.state
    before = st.grown
    st.select_seed(SIZE + 3, 2)
    assert "outside" in st.error and st.grown is before


def test_cached_growth_equals_engine_growth(explorer):
    st, ex = explorer.state, explorer.explainer
    seed = st.seed
    for mu in (4.0, 8.0, 12.0):
        ref = ex.grow(seed, mu=mu, nu=32)
        got = ex.grow(seed, mu, 32, "topk", "magnitude", "bfs", compute=False)
        assert np.array_equal(got.members, ref.members) and got.stopped == ref.stopped


def test_moving_mu_changes_size_monotonically_from_cache(explorer):
    st, ex, thr = explorer.state, explorer.explainer, explorer.threshold
    # min-max rule: a higher mu admits fewer features per row, so sets shrink as mu grows
    choose(thr.rule, "minmax")
    assert explorer.wait(60)
    assert st.threshold == "minmax" and thr.mu.min == 0.0 and thr.mu.max == 1.0
    choose(thr.sign, "positive")
    thr.nu.set_state({"value": 80})
    click_pixel(explorer.image_view, 20, 20)
    assert explorer.wait(60) and st.seed.yx == (20, 20)
    mus = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94]
    for mu in mus:                                 # first pass computes what is missing
        thr.mu.set_state({"value": mu})
        assert explorer.wait(120) and st.error == ""
    rows_before = ex.rows.n_computed
    sizes = {}
    for mu in mus[::-1] + mus:                     # second pass: all from the cache
        t0 = time.perf_counter()
        thr.mu.set_state({"value": mu})
        dt = time.perf_counter() - t0
        assert not st.busy, "a cached regrow went to the background"
        assert st.params["mu"] == pytest.approx(mu) and st.grown.rule.mu == pytest.approx(mu)
        sizes.setdefault(mu, len(st.grown))
        assert len(st.grown) == sizes[mu]
        assert dt < 2.0
    assert ex.rows.n_computed == rows_before, "rows were computed although all were cached"
    ordered = [sizes[m] for m in sorted(sizes)]     # by increasing mu
    assert all(a >= b for a, b in zip(ordered, ordered[1:])), sizes
    assert len(set(ordered)) >= 2, sizes
    assert f"Set size: {sizes[mus[-1]]}" in thr.info.value


def test_topk_slider_round_off_is_the_whole_number(explorer):
    st, thr = explorer.state, explorer.threshold
    thr.mu.set_state({"value": 9.999999999999998})
    assert explorer.wait(60)
    assert st.mu == 10.0 and st.threshold_rule.mu == 10 and st.grown.rule.mu == 10


def test_wide_ranges_get_log_sliders_that_take_typed_numbers(explorer):
    """top-k's mu (1-512) and nu run on log tracks (equal drags multiply, so small values get
    room); a number typed into the readout lands in the state; a 0-1 rule gets a linear track."""
    st, thr = explorer.state, explorer.threshold
    assert st.threshold == "topk" and thr.mu is thr.mu_log and thr.mu_holder.children == (thr.mu_log,)
    assert 2.0 ** thr.mu.min == 1.0 and 2.0 ** thr.mu.max == 512.0
    assert isinstance(thr.nu, type(thr.mu_log)) and 2.0 ** thr.nu.min == 1.0
    # one slider step is the same small ratio anywhere on the track, so a whole number set from
    # elsewhere (a sweep point) reads back as itself after the track snaps it
    assert 1.0 < 2.0 ** thr.mu.step < 1.001
    assert all(round(2.0 ** (round(np.log2(v) / thr.mu.step) * thr.mu.step)) == v for v in range(1, 513))
    thr.mu.set_state({"value": 3.0})                # what typing 3 into the readout sends
    assert explorer.wait(60) and st.mu == 3.0 and st.grown.rule.mu == 3
    thr.nu.set_state({"value": 47.3})
    assert explorer.wait(60) and st.nu == 47 and len(st.grown) <= 47
    st.mu = 12.0                                    # the state drives the slider back
    assert thr.mu.value == 12.0
    choose(thr.rule, "minmax")
    assert explorer.wait(60)
    assert thr.mu is thr.mu_linear and thr.mu_holder.children == (thr.mu_linear,)
    assert (thr.mu.min, thr.mu.max) == (0.0, 1.0)
    choose(thr.rule, "topk")
    assert explorer.wait(60) and thr.mu is thr.mu_log and st.mu == 256.0


def test_a_dragged_region_reads_its_contribution_and_seeds_nothing(explorer):
    """With "read a region" on, a drag draws a rectangle and the line under the image gives its
    share of IG's positive mass and the class probability with it removed; no seed is chosen.
    Off again, a click seeds a set as before."""
    st, view = explorer.state, explorer.image_view
    seed0 = st.seed
    view.brush.value = True
    s = view.scale
    send = lambda event, y, x: view.canvas._handle_custom_msg(   # noqa: E731
        {"event": event, "x": (x + 0.5) * s, "y": (y + 0.5) * s}, [])
    send("mouse_down", 10, 12)
    send("mouse_move", 30, 40)
    assert view.region == (10, 12, 30, 40)
    send("mouse_up", 40, 44)
    assert explorer.wait(60) and st.seed is seed0
    r = view.region_result
    assert view.region == (10, 12, 40, 44) and r.area == pytest.approx(31 * 33 / (st.shape[1] * st.shape[2]))
    text = view.region_text.value
    assert "31×33 px" in text and "of IG's" in text and "removing it" in text
    assert 0.0 <= r.shares["IG"] <= 1.0 and 0.0 <= r.after <= 1.0
    assert r.before == pytest.approx(st.explainer.probability, abs=1e-4)
    view.brush.value = False
    click_pixel(view, 20, 20)
    assert explorer.wait(60) and st.seed.yx == (20, 20)


def test_new_rows_are_computed_in_the_background_with_progress(explorer, monkeypatch):
    st, ex = explorer.state, explorer.explainer
    seen = []
    st.observe(lambda ch: seen.append(ch["new"]), names="progress")
    y, x = far_pixel(st)
    slow_rows(ex, monkeypatch, 0.05)
    st.nu = 40                                     # new rows needed for a larger set
    click_pixel(explorer.image_view, y, x)
    assert explorer.wait(60)
    assert st.seed.yx == (y, x) and len(st.grown) == 40
    assert seen and max(seen) == 1.0
    assert "done" in st.status and st.error == ""


# ---- animation ------------------------------------------------------------------------
def test_play_and_step_buttons_show_members_after_step(explorer, canvas_log):
    st, anim, view = explorer.state, explorer.animation, explorer.image_view
    n = st.n_steps
    assert n >= 2 and anim.play.max == n and anim.slider.max == n
    for k in (0, 1, n - 1, n):
        canvas_log.clear()
        anim.play.set_state({"value": k})         # the Play widget ticking in the browser
        assert st.step == k and anim.slider.value == k
        assert np.array_equal(st.displayed_members(), st.grown.members_after(k))
        assert f"Step {k} of {n}" in anim.label.value.replace("<b>", "").replace("</b>", "")
        rects = [a for name, a, b in canvas_log.on(view.canvas[4]) if name == "fillRects"]
        assert rects, "the set layer was not redrawn for the step"
        # the composed picture shows exactly the members after k steps (cyan or orange)
        rgb = view.to_rgb(layers=["set"], scale=1)
        shown = (rgb.sum(axis=2) > 0)
        expected = np.zeros(SIZE * SIZE, bool)
        expected[st.grown.members_after(k)] = True
        assert np.array_equal(shown.ravel(), expected)
    anim.slider.set_state({"value": 1})
    assert st.step == 1 and anim.play.value == 1
    press(anim.forward)
    assert st.step == 2 and anim.play.value == 2 and anim.slider.value == 2
    press(anim.back)
    press(anim.back)
    assert st.step == 0 and anim.back.disabled
    press(anim.back)
    assert st.step == 0
    info = st.step_info(1)
    assert info.row == st.grown.seed and list(st.grown.members_after(1)[1:]) == info.added


def test_new_set_resets_the_animation_to_the_full_set(explorer):
    st, anim = explorer.state, explorer.animation
    anim.play.set_state({"value": 0})
    click_pixel(explorer.image_view, *far_pixel(st))
    assert explorer.wait(60)
    assert st.step == st.n_steps == anim.play.max == anim.play.value == anim.slider.value


# ---- errors and cancel ----------------------------------------------------------------
def test_engine_error_keeps_earlier_results_and_widgets_usable(explorer, monkeypatch):
    st, ex = explorer.state, explorer.explainer
    seed0, grown0, value0 = st.seed, st.grown, st.value

    def broken(chunk):
        raise RuntimeError("simulated engine failure")

    monkeypatch.setattr(ex.rows, "_compute", broken)
    y, x = uncached_pixel(ex)
    click_pixel(explorer.image_view, y, x)
    assert explorer.wait(60)
    assert "simulated engine failure" in st.error
    assert st.seed is seed0 and st.grown is grown0 and st.value is value0
    assert st.pending_seed_yx is None and not st.busy
    assert "simulated engine failure" in explorer.status_bar.error.value
    assert explorer.status_bar.cancel_button.disabled
    # still usable: cached settings answer, and once the engine works the same click succeeds
    explorer.animation.play.set_state({"value": 1})
    assert st.step == 1
    monkeypatch.undo()
    click_pixel(explorer.image_view, y, x)
    assert explorer.wait(60)
    assert st.error == "" and st.seed.yx == (y, x)
    assert explorer.status_bar.error.value == ""


def test_invalid_setting_is_reported(explorer):
    st = explorer.state
    grown = st.grown
    st.nu = 0
    assert "nu must be at least 1" in st.error and st.grown is grown
    st.nu = 32
    assert st.error == ""


def test_cancel_stops_a_long_computation(explorer, monkeypatch):
    st, ex = explorer.state, explorer.explainer
    seed0, grown0 = st.seed, st.grown
    slow_rows(ex, monkeypatch, 0.3)
    with st.hold_trait_notifications():
        st.nu = 400                               # hundreds of rows: minutes at this speed
    wait_until(lambda: st.busy, 10, "the computation to start", interval=0.02)
    assert st.busy and not explorer.status_bar.cancel_button.disabled
    started = st.stage
    wait_until(lambda: st.stage != started, 30, "the computation's first progress")   # under way
    t0 = time.perf_counter()
    press(explorer.status_bar.cancel_button)
    assert explorer.wait(10), "cancel did not stop the computation"
    assert time.perf_counter() - t0 < 5
    assert "Cancelled" in st.status and not st.busy
    assert st.seed is seed0 and st.grown is grown0
    assert st.runner.history[-1].outcome == "cancelled"


def test_superseding_slider_moves_do_not_pile_up(explorer, monkeypatch):
    st, ex = explorer.state, explorer.explainer
    slow_rows(ex, monkeypatch, 0.2)
    n_hist = len(st.runner.history)
    t0 = time.perf_counter()
    for nu in (300, 310, 320):                    # each needs many new rows
        st.nu = nu
    st.nu = 32                                    # back to a cached size: answered at once
    answered = time.perf_counter()
    assert st.params["nu"] == 32 and len(st.grown) == 32 and st.grown.nu == 32   # from the cache, now
    assert answered - t0 < 2.0, "the cached size waited for the superseded background work"
    assert explorer.wait(10) and time.perf_counter() - t0 < 10
    assert len(st.grown) == 32 and st.grown.nu == 32 and st.error == ""
    ran = [j for j in st.runner.history[n_hist:] if j.kind == "grow"]
    assert all(j.outcome == "cancelled" and j.superseded for j in ran), [(j.key, j.outcome) for j in ran]


# ---- views --------------------------------------------------------------------------
def test_client_ready_redraws_every_layer_losslessly(explorer, canvas_log):
    view = explorer.image_view
    view.canvas._handle_custom_msg({"event": "client_ready"}, [])
    photo = [b for n, a, b in canvas_log.on(view.canvas[0]) if n == "putImageData"]
    assert photo, "the photo layer was not drawn on client ready"
    assert photo[0][0][:8] == b"\x89PNG\r\n\x1a\n", "image data must be RGBA -> PNG, not JPEG"
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(photo[0][0])))
    s = view.scale
    assert img.shape == (SIZE * s, SIZE * s, 4)
    from hsets_widgets.widgets import render
    from hsets_widgets.widgets.image_view import DIM

    expected = render.photo_rgba(explorer.explainer.image, dim=DIM)     # "dim photo" is on
    assert np.array_equal(img[::s, ::s], expected), "the photo is not sent losslessly"
    view.dim.set_state({"value": False})
    photo = [b for n, a, b in canvas_log.on(view.canvas[0]) if n == "putImageData"]
    img = np.asarray(Image.open(io.BytesIO(photo[-1][0])))
    assert np.array_equal(img[::s, ::s, :3], (explorer.explainer.image * 255 + 0.5).astype(np.uint8))
    for k in (1, 4, 5):
        assert canvas_log.on(view.canvas[k]), f"layer {k} not redrawn"


def test_layer_toggle_clears_and_redraws(explorer, canvas_log):
    view = explorer.image_view
    view.toggles["set"].set_state({"value": False})
    cmds = [n for n, a, b in canvas_log.on(view.canvas[4])]
    assert cmds == ["clear"]
    assert (view.to_rgb(layers=None, scale=1) == view.to_rgb(layers=["photo", "segments", "seeds"], scale=1)).all()
    canvas_log.clear()
    view.toggles["set"].set_state({"value": True})
    assert "fillRects" in [n for n, a, b in canvas_log.on(view.canvas[4])]


def test_hover_reads_ig_and_hessian_row(explorer):
    st, view = explorer.state, explorer.image_view
    y, x = st.seed.yx[0], min(st.seed.yx[1] + 1, SIZE - 1)
    view.canvas._handle_custom_msg({"event": "mouse_move", "x": (x + .5) * view.scale,
                                    "y": (y + .5) * view.scale}, [])
    info = view.pixel_info(y, x)
    ig = explorer.explainer.attribution().attribution.sum(0)[y, x].item()
    assert info["ig"] == pytest.approx(ig, rel=1e-6)
    assert info["h"] == pytest.approx(float(explorer.explainer.rows.row(st.seed.index)[y * SIZE + x]))
    text = view.readout.value
    assert f"(y={y}, x={x})" in text and "IG" in text and "H[seed, pixel]" in text
    view.canvas._handle_custom_msg({"event": "mouse_out", "x": 0, "y": 0}, [])
    assert "Hover over the image" in view.readout.value


def test_one_numbering_for_kept_sets_in_list_image_and_hover(explorer, canvas_log):
    from hsets_widgets.hsets.seeds import feature_pixels

    st, view, panel = explorer.state, explorer.image_view, explorer.sets_panel
    auto = tuple(st.auto_seeds[0].yx)
    explorer.select(*auto)                    # the best automatic seed, A1
    assert explorer.wait(60)
    press(panel.keep)
    explorer.select(*far_pixel(st))           # a seed of the user's
    assert explorer.wait(60)
    press(panel.keep)
    assert panel.list.options[0].startswith(f"#1 = A1 · seed {auto}")
    assert panel.list.options[1].startswith(f"#2 · seed {tuple(st.seed.yx)}")
    # the image writes the same names under the kept seeds
    texts = [a[0] for n, a, _ in canvas_log.on(view.canvas[5]) if n == "fillText"]
    assert "#1" in texts and "#2" in texts and "A1" in texts
    # hovering a pixel of kept set #2 names it and its value
    pix = feature_pixels(st.sets[1].members, st.shape, explorer.explainer.config.features)[0]
    y, x = divmod(int(pix), SIZE)
    view.canvas._handle_custom_msg({"event": "mouse_move", "x": (x + .5) * view.scale,
                                    "y": (y + .5) * view.scale}, [])
    assert f"in kept set #2</b> (v = {fmt(st.sets[1].value)})" in view.readout.value


def test_row_inspector_shows_what_passes(explorer):
    st, ri, ex = explorer.state, explorer.row_inspector, explorer.explainer
    row = ex.rows.row(st.seed.index).numpy()
    assert np.array_equal(ri.passing, candidates(row, st.threshold_rule, st.seed.attribution, exclude=st.seed.index,
                                                 shape=ex.shape))
    assert len(ri.passing) == int(st.params["mu"])        # top-k rule
    # histogram: every off-diagonal entry counted once, the cut at the k-th largest |H|
    counts = np.asarray(ri.bars_all.y)[::2]
    counts[counts < 1] = 0
    assert counts.sum() == row.size - 1
    kth = np.sort(np.abs(np.delete(row, st.seed.index)))[-len(ri.passing)]
    assert ri.cut.x[0] / ri.x_factor == pytest.approx(kth)
    # no passing bar left of the threshold line: the cut is a bin edge
    xs, ys = np.asarray(ri.bars_pass.x), np.asarray(ri.bars_pass.y)
    assert xs[::2][ys[::2] >= 1].min() >= ri.cut.x[0] - 1e-12
    # plain ticks: any power of ten is in the label, and a magnitude axis never goes below 0
    assert "e" not in ri.x_axis.tick_format and ri.x_scale.min >= 0
    assert all(abs(t) < 1e4 for t in ri.x_axis.tick_values)
    explorer.threshold.mu.set_state({"value": 3})
    assert len(ri.passing) == 3 and "3 of" in ri.info.value.replace("<b>", "").replace("</b>", "")


def test_subset_sampling_uses_the_engines_draws(explorer):
    st, smp = explorer.state, explorer.sampling
    n = explorer.explainer.config.n_samples
    smp.sample(n_samples=n, animate=False)
    assert explorer.wait(30)
    v = st.value
    assert not v.exact
    assert np.allclose(smp.samples, v.samples), "not the engine's random stream"
    assert smp.mean_line.y[-1] / smp.y_factor == pytest.approx(v.value)
    assert "e" not in smp.y_axis.tick_format and all(abs(t) < 1e4 for t in smp.y_axis.tick_values)
    assert len(smp.mean_line.x) == n and np.asarray(smp.band.y).shape == (2, n)
    assert smp._thumb_rgba[0] is not None and "|IDG|" in smp.thumb_labels[0].value
    assert f"After <b>{n}</b>" in smp.info.value and not smp.stale
    # a new set makes the subsets shown stale, and the panel says so
    st.regrow(force=True)
    assert explorer.wait(30) and smp.stale and "The set changed" in smp.info.value
    smp.sample(n_samples=20, animate=False)
    assert explorer.wait(30) and not smp.stale and "After <b>20</b>" in smp.info.value


@pytest.mark.parametrize("sampler", ["bernoulli", "stratified"])
def test_sampling_panel_shows_the_subsets_the_value_used(explorer, sampler):
    from hsets_widgets.hsets.idg import running_estimate
    from hsets_widgets.widgets.sampling import draw_subsets

    ex = explorer.explainer.with_settings(sampler=sampler, exact_limit=0)
    members = np.asarray(explorer.state.grown.members)
    v = ex.value(members, n_samples=300)
    subsets, d, w = draw_subsets(ex, members, 300)
    # the same subsets as the engine scored (possibly shown in another order), same |IDG|
    key = lambda m: sorted(map(bytes, np.packbits(m, axis=1)))  # noqa: E731
    assert key(subsets) == key(v.subsets) and sorted(d) == pytest.approx(sorted(v.samples))
    if sampler == "stratified":
        assert len(np.unique(subsets.sum(1))) > 3 and not np.allclose(w, w[0])
    mean, se = running_estimate(d, None if np.allclose(w, w[0]) else w)
    assert mean[-1] == pytest.approx(v.value) and np.isfinite(se[-1])


def test_weighted_running_estimate_equals_its_definition():
    from hsets_widgets.hsets.idg import running_estimate

    rng = np.random.default_rng(3)
    d, w = rng.random(40), rng.random(40)
    mean, se = running_estimate(d, w)
    for k in (2, 17, 40):
        m = np.sum(w[:k] * d[:k]) / np.sum(w[:k])
        assert mean[k - 1] == pytest.approx(m)
        assert se[k - 1] == pytest.approx(np.sqrt(np.sum(w[:k] ** 2 * (d[:k] - m) ** 2)) / np.sum(w[:k]))
    # equal weights give the plain running mean
    assert running_estimate(d, np.ones(40))[0] == pytest.approx(running_estimate(d)[0])
    with pytest.raises(ValueError, match="weights"):
        running_estimate(d, -w)


def test_readable_sizes_row_map_and_thumbnails(explorer):
    ri, smp = explorer.row_inspector, explorer.sampling
    assert ri.scale * SIZE >= 400                 # the row map is shown large, not 1:1
    smp.sample(n_samples=50, animate=False)
    assert explorer.wait(60)
    thumbs = [t for t in smp._thumb_rgba if t is not None]
    assert thumbs and all(max(t.shape[:2]) == smp.thumb_size for t in thumbs)   # fills its box


def test_subset_sampling_animates_as_samples_accumulate(explorer):
    smp = explorer.sampling
    lengths = []
    smp.mean_line.observe(lambda ch: lengths.append(len(ch["new"])), names="y")
    smp.sample(n_samples=200, animate=True)
    assert explorer.wait(30)
    assert len(lengths) >= 10 and lengths == sorted(lengths) and lengths[-1] == 200


def test_road_view_compares_hsets_and_ig(explorer):
    from hsets_widgets.widgets import render

    st, road = explorer.state, explorer.road
    press(explorer.sets_panel.keep)
    assert len(st.sets) == 1
    road.compute()
    assert explorer.wait(120) and st.error == ""
    assert set(road.results) == {"hsets", "ig"} and set(road.curves) == {"hsets", "ig"}
    assert np.asarray(road.morf.y).shape == (2, len(road.percentages))
    # insertion and deletion next to ROAD, from the same maps
    from hsets_widgets.metrics.insertion import insertion_deletion

    ref = insertion_deletion(st.explainer.x.detach(), st.explainer.classifier, road.maps["hsets"],
                             road.percentages, seed=road.seed)
    assert np.asarray(road.insertion.y)[0] == pytest.approx(ref.curves["insertion"].probability)
    assert "insertion AUC" in road.info.value
    assert "H-Sets" in road.info.value and "MoRF" in road.info.value
    assert road.imputed is not None and road.imputed.shape == (SIZE, SIZE, 3)
    # the removed pixels are marked (tinted) on the imputed image, the rest is the imputed image
    plain = render.photo_rgba(road.imputed)
    marked = road.imputed_rgba()
    removed = road.removed
    assert removed.sum() == int(round(road.fraction.value * SIZE * SIZE))
    assert (marked[~removed] == plain[~removed]).all() and (marked[removed] != plain[removed]).any(axis=1).all()
    road.mark.value = False
    assert (road.imputed_rgba() == plain).all()
    road.mark.value = True
    choose(road.order, "lerf")
    assert explorer.wait(30)
    assert "LERF" in road.image_label.value
    # the curves belong to the shown explanation; a new current set makes them stale, and
    # going back makes them current again
    assert "has changed" not in road.info.value
    mu0 = st.mu
    road.follow.value = False
    explorer.threshold.mu.set_state({"value": mu0 + 4})
    assert explorer.wait(60) and "has changed" in road.info.value and "press" in road.info.value
    assert road.stale
    explorer.threshold.mu.set_state({"value": mu0})
    assert explorer.wait(60) and "has changed" not in road.info.value and not road.stale
    # a third map from any registered method joins the curves, the table and the imputed-image choice
    road.follow.value = True
    road.other.value = "cafo"
    assert explorer.wait(120) and road.follow_runner.wait(120)
    assert list(road.results) == ["hsets", "ig", "cafo"] and np.asarray(road.morf.y).shape[0] == 3
    assert ">cafo<" in road.info.value and ("cafo", "cafo") in road.method.options
    road.other.value = ""
    assert road.follow_runner.wait(120) and list(road.results) == ["hsets", "ig"]
    # following (the default): the curves catch up with the new explanation by themselves
    road.follow.value = True
    old = road.maps["hsets"]
    explorer.threshold.mu.set_state({"value": mu0 + 4})
    assert explorer.wait(60) and road.follow_runner.wait(120)
    assert not np.array_equal(road.maps["hsets"], old)
    assert np.array_equal(road.maps["hsets"], road.current_maps()["hsets"])
    assert "has changed" not in road.info.value


def test_sets_panel_keep_explain_clear(explorer, canvas_log):
    st, panel = explorer.state, explorer.sets_panel
    press(panel.keep)
    assert len(st.sets) == 1 and st.sets[0].seed == st.seed.index
    assert panel.list.options[0].startswith("#1")
    assert [n for n, a, b in canvas_log.on(explorer.image_view.canvas[3])][-1] == "putImageData"
    assert "H-Sets heatmap" in explorer.image_view.legend.value
    press(panel.keep)                               # same seed: replaced, not duplicated
    assert len(st.sets) == 1
    press(panel.auto)
    assert explorer.wait(120)
    assert len(st.sets) == explorer.explainer.config.n_sets
    assert [s.seed for s in st.sets] == [s.index for s in st.auto_seeds]
    # a human-guided set stays (first) when the automatic ones are grown again
    click_pixel(explorer.image_view, 30, 3)
    assert explorer.wait(60)
    press(panel.keep)
    press(panel.auto)
    assert explorer.wait(120)
    assert [s.seed for s in st.sets] == [30 * SIZE + 3] + [s.index for s in st.auto_seeds]
    panel.list.set_state({"index": 0})
    press(panel.remove)
    assert [s.seed for s in st.sets] == [s.index for s in st.auto_seeds]
    panel.list.set_state({"index": 1})
    press(panel.remove)
    assert len(st.sets) == explorer.explainer.config.n_sets - 1
    press(panel.clear)
    assert st.sets == [] and panel.list.disabled


def test_export_png_figure_and_explanation(explorer, tmp_path):
    from PIL import Image

    st = explorer.state
    st.add_current_set()
    # without the heatmap layer (with it, a kept current set is drawn as its outline)
    png = explorer.save_png(tmp_path / "view.png", layers=["photo", "segments", "set", "seeds"])
    img = np.asarray(Image.open(png))
    s = explorer.image_view.scale
    assert img.shape == (SIZE * s, SIZE * s, 3)
    last = st.grown.steps[-1]
    plain = [m for m in st.grown.members[1:] if m not in last.added and m != last.row]
    y, x = np.divmod(int(plain[0]), SIZE)
    px = img[y * s + s // 2, x * s + s // 2].astype(int)
    assert px[2] > px[0] + 40, f"set member ({y}, {x}) is not painted cyan: {px}"
    y, x = np.divmod(int(last.added[0]), SIZE)
    px = img[y * s + s // 2, x * s + s // 2].astype(int)
    assert px[0] > px[2] + 40, f"the last step's pixel ({y}, {x}) is not orange: {px}"
    fig = explorer.save_figure(tmp_path / "figure.png")
    assert Image.open(fig).size[0] > 800
    path = explorer.save_explanation(tmp_path / "expl.npz")
    back = Explanation.load(path)
    assert len(back.sets) == 1 and np.array_equal(back.sets[0].members, st.grown.members)
    # the Export tab's buttons write the same files into its folder (inside its root folder)
    explorer.export.root = tmp_path.resolve()
    explorer.export.folder.set_state({"value": str(tmp_path / "tab")})
    for b in (explorer.export.png_button, explorer.export.fig_button, explorer.export.npz_button):
        press(b)
        assert "Saved" in explorer.export.result.value, explorer.export.result.value
    assert sorted(p.name for p in (tmp_path / "tab").iterdir()) == [
        "hsets-explanation.npz", "hsets-figure.png", "hsets-view.png"]
    # a second export never overwrites the first, and the page offers the file for download
    first = (tmp_path / "tab" / "hsets-view.png").read_bytes()
    press(explorer.export.png_button)
    assert (tmp_path / "tab" / "hsets-view.png").read_bytes() == first
    assert (tmp_path / "tab" / "hsets-view-2.png").exists()
    assert "hsets-view-2.png" in explorer.export.result.value
    assert "download='hsets-view-2.png' href='data:image/png;base64," in explorer.export.result.value


def test_words_are_explained_where_they_appear(explorer):
    from hsets_widgets.widgets.common import GLOSSARY

    header = explorer.children[0].value
    assert "What the words mean" in header and all(html.escape(k) in header for k in GLOSSARY)
    explorer.readout.enabled.value = True
    assert explorer.readout.wait(120)
    text = explorer.readout.text.value
    assert f"title='{html.escape(GLOSSARY['AOPC'])}'" in text and f"title='{html.escape(GLOSSARY['MoRF'])}'" in text
    assert explorer.animation.play.tooltip and explorer.threshold.mu.tooltip
    explorer.readout.enabled.value = False


def test_exports_are_written_atomically(explorer, tmp_path, monkeypatch):
    """A write that fails half-way leaves the old file as it was and no temporary file."""
    import errno

    from matplotlib.figure import Figure
    from PIL import Image

    from hsets_widgets.plumbing.files import OutputError

    png = explorer.save_png(tmp_path / "view.png")
    fig = explorer.save_figure(tmp_path / "figure.png")
    before = {p: p.read_bytes() for p in (png, fig)}

    def half_written(self, fp, *args, **kwargs):
        with open(fp, "wb") as fh:
            fh.write(b"truncated")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_written)
    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OutputError, match="No space"):
        explorer.save_png(png)
    with pytest.raises(OutputError, match="No space"):
        explorer.save_figure(fig)
    assert {p: p.read_bytes() for p in (png, fig)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "view.png"]


def test_each_widget_is_usable_alone(explainer, image):
    from hsets_widgets.widgets import (
        ExplorerState,
        ImageView,
        MergeAnimation,
        RoadView,
        RowInspector,
        SubsetSampling,
        ThresholdExplorer,
    )

    st = ExplorerState(explainer, background=False)
    views = [cls(st) for cls in (ImageView, RowInspector, ThresholdExplorer, MergeAnimation,
                                 SubsetSampling, RoadView)]
    st.select_seed(10, 12)                        # synchronous state: done on return
    assert st.seed.yx == (10, 12) and st.grown is not None
    assert views[3].play.max == st.n_steps
    # a widget can also build its own state from an image and a model
    alone = ThresholdExplorer(image, model=cnn(), segmenter="slic", n_steps=4, nu=16,
                              background=False)
    assert alone.state.nu == 16 and alone.state is not st


def test_engine_does_not_import_widgets():
    code = ("import sys, hsets_widgets.hsets.explain, hsets_widgets.runs; "
            "print(any(m.startswith('hsets_widgets.widgets') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- a failure inside any background job leaves the widget usable ----------------------------
def test_failed_road_and_sampling_jobs_keep_earlier_results(explorer, monkeypatch):
    import hsets_widgets.widgets.road_view as road_view
    import hsets_widgets.widgets.sampling as sampling

    st, road, smp = explorer.state, explorer.road, explorer.sampling
    press(explorer.sets_panel.keep)
    road.compute()
    smp.sample(n_samples=50, animate=False)
    assert explorer.wait(120) and st.error == ""
    grown = st.grown

    def broken(*a, **k):
        raise RuntimeError("simulated job failure")

    for module, name, start in ((road_view, "road", road.compute),
                                (sampling, "draw_subsets", lambda: smp.sample(n_samples=50, animate=False))):
        results, samples = dict(road.results), np.array(smp.samples)
        monkeypatch.setattr(module, name, broken)
        start()
        assert explorer.wait(60)
        assert "simulated job failure" in st.error and "simulated job failure" in explorer.status_bar.error.value
        assert not st.busy and st.grown is grown
        assert all(road.results[k] is results[k] for k in results) and np.array_equal(smp.samples, samples)
        monkeypatch.undo()
        start()                         # and the next try works, and clears the message
        assert explorer.wait(120) and st.error == ""
    assert set(road.results) == {"hsets", "ig"} and len(smp.samples) == 50


def test_failed_segmentation_is_shown_and_a_retry_works(image):
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.widgets import Explorer

    calls = []

    def flaky(img):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated segmenter failure")
        return np.arange(SIZE * SIZE).reshape(SIZE, SIZE) // (SIZE * SIZE // 4) + 1

    ex = Explainer(image, cnn(), segmenter=flaky, n_steps=8, nu=16)
    e = Explorer(ex, display_size=256)
    assert e.wait(120)
    assert "simulated segmenter failure" in e.state.error and not e.state.ready
    assert "simulated segmenter failure" in e.status_bar.error.value
    e.state.prepare()
    assert e.wait(120) and e.state.ready and e.state.error == "" and e.state.grown is not None
    e.state.cancel()


def test_the_default_blurred_rule_in_the_widgets(image, tmp_path):
    """The shipped rule (the strongest new pixels of the smoothed |row|, inside the segment)
    through the state, the row inspector and the export figure."""
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.widgets import Explorer

    ex = Explainer(image, cnn(), preset="default", segmenter="slic", n_steps=8, nu=40, mu=16)
    e = Explorer(ex, display_size=256)
    assert e.wait(120) and e.state.error == ""
    st, ri = e.state, e.row_inspector
    assert st.threshold_rule.blur == 2.0 and st.threshold_rule.fresh and len(st.grown) <= 40
    row = ex.rows.row(st.seed.index).numpy()
    assert np.array_equal(ri.passing, candidates(row, st.threshold_rule, st.seed.attribution, exclude=st.seed.index,
                                                 shape=ex.shape))
    assert "smoothed (2 px)" in ri.x_axis.label
    labels = ex.segment().labels.ravel()
    assert set(labels[st.grown.members]) == {st.seed.segment}          # grown inside its segment
    e.threshold.mu.set_state({"value": 8.0})
    assert e.wait(60) and st.grown.rule.mu == 8 and st.error == ""
    fig = e.save_figure(tmp_path / "figure.png")          # the row panel draws the smoothed rule too
    assert fig.exists() and fig.stat().st_size > 10_000
    e.state.cancel()


def test_the_rule_menu_and_mu_range_come_from_the_rule_registry(explorer):
    from hsets_widgets.hsets.thresholds import THRESHOLD_RULES, RuleKind, register_rule
    from hsets_widgets.widgets.threshold import ThresholdExplorer

    register_rule(RuleKind("half-max", "above mu x the row's largest entry", (0.0, 1.0, 0.05, 0.4),
                           cut=lambda mu, seed_attr: mu, text=lambda mu, sign: f"entry > {mu:g}"))
    try:
        view = ThresholdExplorer(explorer.state)
        assert ("above mu x the row's largest entry", "half-max") in list(view.rule.options)
        choose(view.rule, "half-max")
        assert explorer.wait(60) and explorer.state.threshold == "half-max"
        assert (view.mu.min, view.mu.max, view.mu.step) == (0.0, 1.0, 0.05)
        assert "entry >" in explorer.state.grown.rule.describe()
        choose(view.rule, "topk")
        assert explorer.wait(60)
    finally:
        THRESHOLD_RULES.pop("half-max")


def test_live_readout_follows_mu_is_cached_and_equals_the_sweep_numbers(explorer):
    from hsets_widgets.runs.sweep import map_scores
    from hsets_widgets.widgets.readout import COARSE_PERCENTAGES

    st, thr, ro, ex = explorer.state, explorer.threshold, explorer.readout, explorer.explainer
    assert "off" in ro.text.value
    ro.enabled.value = True                        # the checkbox, as the browser sends it
    assert ro.stale and "computing" in ro.text.value   # stale until the background readout is back
    assert ro.wait(120) and "MoRF AOPC" in re.sub("<[^>]+>", "", ro.text.value) and "computing" not in ro.text.value
    assert not ro.stale
    key0, first = ro.shown
    heat = ex.heatmap(ro.shown_sets())
    direct = map_scores(ex.x.detach(), ex.classifier, heat, COARSE_PERCENTAGES, seed=0)
    for col in ("morf_aopc", "lerf_aopc", "sparsity", "support_fraction"):
        assert first[col] == pytest.approx(direct[col])
    assert set(ro.references) == {"ig", "random"}
    n0, mu0 = ro.n_computed, st.mu
    thr.mu.set_state({"value": mu0 + 4})          # a new set: a new readout
    assert explorer.wait(60) and ro.wait(120)
    assert ro.n_computed == n0 + 1 and ro.shown[0] != key0
    # the new set scores differently, and every number that changed carries its arrow
    changed = [c for c in ("morf_aopc", "lerf_aopc", "sparsity") if abs(ro.shown[1][c] - first[c]) > 1e-9]
    assert changed, "the new set scored exactly as the old one: nothing to point an arrow at"
    assert ro.text.value.count("▲") + ro.text.value.count("▼") == len(changed), ro.text.value
    thr.mu.set_state({"value": mu0})              # back: answered from the readout cache at once
    assert explorer.wait(60)
    assert ro.shown[0] == key0 and ro.shown[1] is first and ro.n_computed == n0 + 1
    assert "computing" not in ro.text.value
    ro.enabled.value = False


def test_live_readout_is_superseded_when_the_user_moves_on(explorer, monkeypatch):
    import hsets_widgets.widgets.readout as readout

    st, thr, ro = explorer.state, explorer.threshold, explorer.readout
    real = readout.map_scores

    def slow(*args, **kwargs):
        time.sleep(0.6)
        return real(*args, **kwargs)

    monkeypatch.setattr(readout, "map_scores", slow)
    ro.cache.clear()
    ro.enabled.value = True
    wait_until(lambda: ro.runner.current is not None, 30, "the first readout to start")
    thr.mu.set_state({"value": st.mu + 2})
    assert explorer.wait(60) and ro.wait(120)
    outcomes = [j.outcome for j in ro.runner.history]
    assert "cancelled" in outcomes or "dropped" in outcomes, outcomes
    assert outcomes[-1] == "done" and ro.shown[0] == ro.key(ro.shown_sets())
    ro.enabled.value = False


def test_sweep_panel_plots_the_sweep_numbers_and_a_click_applies_mu(explorer):
    from hsets_widgets.runs.sweep import sweep
    from hsets_widgets.widgets.sweep_view import parse_values

    st, panel = explorer.state, explorer.sweep
    assert parse_values("8, 4 12") == [4.0, 8.0, 12.0]
    panel.values.value = "4, eight"
    assert panel.run() is None and "numbers" in panel.info.value
    panel.values.value = "4, 0.5"
    assert panel.run() is None and "mu" in panel.info.value        # top-k needs mu >= 1: no work
    panel.values.value = "4, 8, 12"
    press(panel.button)
    assert explorer.wait(120) and st.error == ""
    hs = [r for r in panel.records if r["method"] == "hsets"]
    assert [r["mu"] for r in hs] == [4.0, 8.0, 12.0]
    f = panel.y_factor
    assert "e" not in panel.y_axis.tick_format and all(abs(t) < 1e4 for t in panel.y_axis.tick_values)
    assert list(np.asarray(panel.lines["morf_aopc"].y) / f) == pytest.approx([r["morf_aopc"] for r in hs])
    assert panel.refs[("morf_aopc", "ig")].y[0] / f == pytest.approx(
        next(r for r in panel.records if r["method"] == "ig")["morf_aopc"])
    # the same numbers as the sweep function at the same settings
    ex = explorer.explainer.with_settings(nu=int(st.nu), threshold=st.threshold, sign=st.sign, order=st.order)
    assert len(panel.swept_seeds) == 1 and "1 seed(s) shown" in panel.info.value   # the current set
    again = sweep(ex, percentages=panel.percentages, as_frame=False, mu=[8.0], references=False,
                  seeds=panel.swept_seeds)
    assert again[0]["morf_aopc"] == pytest.approx(hs[1]["morf_aopc"])
    # clicking the point of mu = 12 applies it; the marker follows
    panel._clicked({"data": {"index": 2}})
    assert explorer.wait(60) and st.mu == 12.0 and list(panel.current.x) == [12.0, 12.0]
    assert "Click a point" in panel.info.value


def test_interactions_tab_tests_the_current_set_against_controls_and_caches_it(explorer, canvas_log):
    from hsets_widgets.hsets.seeds import feature_pixels
    from hsets_widgets.metrics.interactions import interaction_test

    st, view = explorer.state, explorer.interactions
    assert "Press" in view.verdict.value and not view.stale     # nothing runs until asked
    said = []
    view.verdict.observe(lambda ch: said.append(ch["new"]), names="value")
    view.refresh(force=True)
    assert view.wait(300)
    test = view.shown[1]
    # a coarse first look (4 parts) came first, then the full test replaced it
    firsts = [k for k, v in enumerate(said) if "First look with 4 parts" in v]
    assert firsts and "First look" not in said[-1] and firsts[0] < len(said) - 1
    ex = st.explainer
    pixels = feature_pixels(st.grown.members, st.shape, ex.config.features)
    # the view shows the engine's test of exactly this set
    again = interaction_test(ex.x, ex.classifier, ex.target, pixels, st.seed.yx, ex.segment().labels,
                             ex.attribution().attribution.numpy(), n_parts=view.n_parts, removal=view.removal)
    assert test.set.nonadditive == pytest.approx(again.set.nonadditive)
    assert [c.nonadditive for c in test.controls] == pytest.approx([c.nonadditive for c in again.controls])
    assert test.verdict() in html.unescape(view.verdict.value)
    assert f"p = {test.p_value:.2f}" in view.controls.value
    assert view.matrix.value.count("<tr>") == len(test.set.parts) + 1
    assert any(n == "putImageData" for n, _, _ in canvas_log.on(view.canvas))
    # another set: not tested until asked; back to the first: shown from the cache, no new job
    seed_yx = tuple(st.seed.yx)
    explorer.select((seed_yx[0] + 10) % SIZE, (seed_yx[1] + 10) % SIZE)
    assert explorer.wait(120)
    assert "Press" in view.verdict.value
    explorer.select(*seed_yx)
    assert explorer.wait(120)
    assert len(view.cache) == 1 and view.shown[1] is test


def test_seed_ranking_shows_why_these_seeds_and_warns_when_they_hold_little(explorer):
    from hsets_widgets.widgets.seeds_view import LOW_COVERAGE, seed_ranking

    st, ex = explorer.state, explorer.explainer
    r = seed_ranking(st)
    assert [row["yx"] for row in r["rows"]] == [tuple(s.yx) for s in st.auto_seeds]
    mass = ex.segment_mass()
    total = sum(mass.values())
    shares = [row["mass_share"] for row in r["rows"]]
    assert shares == pytest.approx([mass[s.segment] / total for s in st.auto_seeds])
    if r["order"] == "mass":                  # ranked by mass: the shares fall down the list
        assert shares == sorted(shares, reverse=True)
    text = html.unescape(explorer.seed_ranking.text.value)
    assert f"p = {ex.probability:.2f}" in text and "A1" in text
    assert ("may miss the object" in text) == (r["coverage"] < LOW_COVERAGE)


def test_readout_says_worse_than_random_in_words(explorer):
    from hsets_widgets.widgets.readout import SPARSE_SUPPORT

    ro = explorer.readout
    ro.enabled.value = True
    assert explorer.wait(60) and ro.wait(120)
    shown, rnd = ro.shown[1], ro.references["random"]
    text = html.unescape(ro.text.value)
    sparse = shown["support_fraction"] < SPARSE_SUPPORT
    assert ("Worse than random" in text) == (shown["morf_aopc"] < rnd["morf_aopc"]
                                             or (not sparse and shown["lerf_aopc"] > rnd["lerf_aopc"]))
    # a sparse map's LeRF ties outside its support: above random's, it is no warning, and the
    # words say why; the same LeRF on a dense map is one
    lerf_worse = dict(rnd, morf_aopc=rnd["morf_aopc"] + 0.01, lerf_aopc=rnd["lerf_aopc"] + 0.01)
    text = html.unescape(ro._html(dict(lerf_worse, support_fraction=0.14)))
    assert "Worse than random" not in text and "Judged by MoRF only" in text and "14%" in text
    text = html.unescape(ro._html(dict(lerf_worse, support_fraction=1.0)))
    assert "Worse than random" in text and "LeRF AOPC" in text and "Judged by MoRF only" not in text
    # the random map's own numbers, a hair worse on MoRF: the line names both numbers
    worse = dict(rnd, morf_aopc=rnd["morf_aopc"] - 0.01)
    text = html.unescape(ro._html(worse))
    assert "Worse than random" in text and "click a pixel on the object" in text
    assert f"below the random map's {fmt(rnd['morf_aopc'])}" in text
    ro.enabled.value = False


def test_readout_road_tab_and_sweep_agree_on_one_grid_and_convention(explorer):
    """One convention and one grid: the readout, the ROAD tab and a sweep point give the same
    numbers for the same explanation, and a sweep point's click shows that explanation.
    """
    st, ro, road, panel = explorer.state, explorer.readout, explorer.road, explorer.sweep
    assert tuple(road.percentages) == tuple(ro.percentages) == tuple(panel.percentages)
    press(explorer.sets_panel.keep)
    ro.enabled.value = True
    road.compute()
    assert explorer.wait(120) and ro.wait(120) and st.error == ""
    shown, refs = ro.shown[1], ro.references
    for name, scores in (("hsets", shown), ("ig", refs["ig"])):
        curves = road.results[name].curves
        assert curves["morf"].aopc("probability") == pytest.approx(scores["morf_aopc"], abs=1e-12)
        assert curves["lerf"].aopc("probability") == pytest.approx(scores["lerf_aopc"], abs=1e-12)
    table = html.unescape(road.info.value)
    assert "MoRF AOPC (higher = more faithful)" in table and "LeRF AOPC (lower = more faithful)" in table
    assert fmt(shown["morf_aopc"]) in table and fmt(refs["ig"]["lerf_aopc"]) in table
    # a sweep over the kept set; clicking a point regrows the kept sets at that mu: the readout
    # then scores exactly what the point scored
    mu0 = st.mu
    panel.values.value = f"{mu0:g}, {mu0 + 8:g}"
    press(panel.button)
    assert explorer.wait(120) and st.error == ""
    hs = [r for r in panel.records if r["method"] == "hsets"]
    ig_row = next(r for r in panel.records if r["method"] == "ig")
    assert ig_row["morf_aopc"] == pytest.approx(refs["ig"]["morf_aopc"], abs=1e-12)
    panel._clicked({"data": {"index": 1}})
    assert explorer.wait(120) and ro.wait(120) and st.mu == mu0 + 8
    assert all(len(s) for s in st.sets)
    assert ro.shown[1]["morf_aopc"] == pytest.approx(hs[1]["morf_aopc"], abs=1e-12)
    assert ro.shown[1]["lerf_aopc"] == pytest.approx(hs[1]["lerf_aopc"], abs=1e-12)
    ro.enabled.value = False


def test_session_keeps_settings_seed_and_kept_sets_for_a_new_explorer(explorer, explainer, tmp_path):
    from hsets_widgets.widgets import Explorer
    from hsets_widgets.widgets.session import Session

    st = explorer.state
    session = Session(tmp_path, st)
    press(explorer.sets_panel.keep)
    assert not session.state_path.exists()          # nothing is saved before a page shows it
    session.activate()
    explorer.select(*far_pixel(st))
    explorer.threshold.mu.set_state({"value": st.mu + 2})
    assert explorer.wait(60)
    saved = json.loads(session.state_path.read_text())
    assert saved["mu"] == st.mu and saved["seed_yx"] == list(st.seed.yx) and saved["n_sets"] == 1
    # a new kernel's Explorer on the same image: the kept set, the settings and the seed come back
    again = Explorer(explainer, display_size=384, readout=False, session=tmp_path)
    assert again.wait(120)
    a = again.state
    assert a.mu == st.mu and tuple(a.seed.yx) == tuple(st.seed.yx)
    assert len(a.sets) == 1 and np.array_equal(a.sets[0].members, st.sets[0].members)
    assert a.sets[0].value == pytest.approx(st.sets[0].value)
    # another image's session file is ignored
    saved["identity"] = "another image"
    session.state_path.write_text(json.dumps(saved))
    other = Session(tmp_path, a)
    assert other.load() is None and not other.restore()
    again.state.cancel()


def test_a_kept_set_is_visible_under_the_current_set(explorer, canvas_log):
    from hsets_widgets.widgets import render

    st, view, panel = explorer.state, explorer.image_view, explorer.sets_panel
    n_members = int(render.members_mask(st.grown.members, st.shape).sum())
    canvas_log.clear()
    press(panel.keep)
    # the current set is now kept: drawn as its edge only, so the heatmap under it shows
    rects = [a for n, a, _ in canvas_log.on(view.canvas[4]) if n == "fillRects"]
    assert rects and len(rects[0][0]) < n_members
    rgb = view.to_rgb(layers=["photo", "segments", "heatmap", "set"], scale=1)
    heat_only = view.to_rgb(layers=["photo", "segments", "heatmap"], scale=1)
    mask = render.members_mask(st.grown.members, st.shape)
    info = st.step_info()
    inner = mask & ~render.edge_mask(mask) & ~render.members_mask(info.added, st.shape)
    inner[tuple(render.feature_yx([info.row], st.shape))] = False
    assert inner.any()
    assert (rgb[inner] == heat_only[inner]).all()    # inside the set: the heatmap, not cyan
    # the kept set's outline is drawn over the heatmap; the list shows every kept set
    edge = render.edge_mask(mask)
    assert (heat_only[edge] > 200).all(axis=1).mean() > 0.9
    assert panel.list.rows >= len(st.sets)


def test_every_wait_says_what_it_waits_for(explainer, monkeypatch):
    from hsets_widgets.widgets import Explorer

    e = Explorer(explainer, display_size=384, readout=True, autostart=False)
    st, ro = e.state, e.readout
    assert "Waiting for IG" in ro.text.value
    st.prepare(grow_first=False)
    assert e.wait(120) and st.ready and st.grown is None
    slow_rows(explainer, monkeypatch, 0.3)
    st.select_seed(*uncached_pixel(explainer))       # an early click: the readout says it is growing
    assert st.pending_seed_yx is not None
    assert "Growing the set of pixel" in ro.text.value
    assert e.wait(120) and ro.wait(120)
    assert "Computed in" in ro.text.value
    # while it scores, the readout says what it scores (the runner's progress reaches the text)
    ro.stale = True
    ro._progress(None, "the explanation shown", 0, 1)
    assert "computing... scoring the explanation shown (1 of 1)" in html.unescape(ro.text.value)
    # an empty sweep chart shows nothing (no dot at 0, 0) until it has numbers
    sw = e.sweep
    assert not any(m.visible for m in (*sw.lines.values(), *sw.points.values(), *sw.refs.values()))
    assert not e.sampling.reference.visible
    st.cancel()
    ro.runner.cancel()
    ro.wait(30)


def test_another_method_side_by_side_as_a_layer_and_its_sets_through_the_interactions_tab(explorer, canvas_log):
    from hsets_widgets.methods.registry import attribute_sets
    from hsets_widgets.metrics.interactions import interaction_test

    st, mv, view, iv = explorer.state, explorer.methods, explorer.image_view, explorer.interactions
    ex = explorer.explainer
    assert mv.choice.options[0] == ("none", "")
    assert {"archipelago", "moxi", "ih", "caso", "cafo", "ig"} <= {v for _, v in mv.choice.options}
    choose(mv.choice, "ih")                       # a set-making method, as the browser picks it
    assert explorer.wait(300) and st.error == ""
    res = st.method_result
    direct = attribute_sets(ex.x.detach(), ex.classifier, ex.target, method="ih")
    assert np.allclose(res.map, direct.map) and len(res.sets) == len(direct.sets) > 0
    # side by side, and the image's method layer shows the same map
    assert any(n == "putImageData" for n, _, _ in canvas_log.on(mv.right))
    assert any(n == "putImageData" for n, _, _ in canvas_log.on(view.canvas[2]))
    assert len(mv.sets.options) == len(res.sets) and mv.sets.options[0].startswith("M1:")
    assert "M1" in [a[0] for n, a, _ in canvas_log.on(mv.right) if n == "fillText"]
    # the last set through the Interactions tab: the tab opens and tests exactly that set
    mv.sets.index = len(res.sets) - 1
    press(mv.test_button)
    assert explorer.tabs.selected_index == list(explorer.tabs.children).index(iv)
    assert iv.wait(300)
    chosen = res.sets[-1]
    test = iv.shown[1]
    again = interaction_test(ex.x, ex.classifier, ex.target, np.unique(chosen.pixels), chosen.seed_yx,
                             ex.segment().labels, ex.attribution().attribution.numpy(),
                             n_parts=iv.n_parts, removal=iv.removal)
    assert test.set.nonadditive == pytest.approx(again.set.nonadditive)
    assert f"ih M{len(res.sets)}" in iv.verdict.value
    # a new set of the user's: the tab goes back to the current H-Sets set
    explorer.select(*far_pixel(st))
    assert explorer.wait(60) and st.tested_set is None
    # the map is computed once per image: choosing it again is instant, "none" hides it
    choose(mv.choice, "")
    assert st.method_result is None
    choose(mv.choice, "ih")
    assert st.method_result is res


def test_zoom_pan_and_opacity_of_the_image_view(explorer, canvas_log):
    st, view = explorer.state, explorer.image_view
    base = view.base_scale
    choose(view.zoom, 2)
    assert view.scale == 2 * base and view.canvas.width == SIZE * 2 * base
    assert view.window.layout.overflow == "auto"          # the zoomed image scrolls: pan
    click_pixel(view, 5, 7)                                # clicks map to pixels at any zoom
    assert explorer.wait(60) and tuple(st.seed.yx) == (5, 7)
    assert view.to_rgb(scale=None).shape[0] == SIZE * 2 * base
    choose(view.zoom, 1)
    assert view.canvas.width == SIZE * base
    # opacity: the heatmap is drawn more transparent
    press(explorer.sets_panel.keep)
    from hsets_widgets.widgets import render

    a1 = render.heat_rgba(st.heatmap(), alpha=0.9)[0][..., 3]
    a2 = render.heat_rgba(st.heatmap(), alpha=0.3)[0][..., 3]
    assert (a2 <= a1).all() and (a2 < a1).any()
    canvas_log.clear()
    view.opacity.set_state({"value": 0.3})
    assert any(n == "putImageData" for n, _, _ in canvas_log.on(view.canvas[3]))


def test_another_class_or_photo_without_a_restart(explainer):
    import datetime

    import torch
    from PIL import Image

    from hsets_widgets.widgets import Explorer

    e = Explorer(explainer, display_size=384, readout=False)
    assert e.wait(120)
    ex = e.explainer
    with torch.no_grad():
        probs = ex.classifier(ex.x[None]).softmax(-1)[0]
    top5 = torch.topk(probs, 5).indices.tolist()
    assert [v for _, v in e.chooser.target.options][:5] == top5 and e.chooser.target.value == ex.target
    other = next(k for k in top5 if k != ex.target)
    choose(e.chooser.target, other)              # as the browser picks it
    assert e.wait(120) and e.state.error == ""
    assert e.explainer.target == other and e.explainer.classifier is ex.classifier
    assert e.state.grown is not None and e.explainer.class_name in e.children[0].value
    # another photo, uploaded as the browser sends it: a new explanation of its predicted class
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((60, 60, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    e.chooser.upload.value = ({"name": "noise.png", "type": "image/png", "size": buf.tell(),
                               "content": memoryview(buf.getvalue()),
                               "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert e.wait(120) and e.state.error == ""
    assert not np.array_equal(e.explainer.image, ex.image) and e.state.grown is not None
    # not an image: one line that says so, and the app keeps its explanation
    before = e.explainer
    e.chooser.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5,
                               "content": memoryview(b"hello"),
                               "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert "cannot read notes.txt as an image" in e.chooser.message.value and e.explainer is before
    e.state.cancel()


def test_the_interaction_mode_is_a_preset_in_the_explorer_and_reuses_the_rows(explainer):
    from hsets_widgets.hsets.presets import PRESETS
    from hsets_widgets.widgets import Explorer

    e = Explorer(explainer, display_size=384, readout=False)
    assert e.wait(120)
    ex = e.explainer
    names = [v for _, v in e.chooser.preset.options]
    assert names[:2] == ["default", "interactions"] and set(PRESETS) <= set(names)
    rows_before = set(ex.rows.cached())
    choose(e.chooser.preset, "interactions")        # as the browser picks it
    assert e.wait(240) and e.state.error == ""
    now = e.explainer
    assert (now.config.preset, now.config.row_floor, now.config.within_mask) == ("interactions", 0.3, False)
    # the same photo and class, and the rows computed before are still there (shared cache)
    assert now.target == ex.target and now.attribution() is ex.attribution()
    assert rows_before <= set(now.rows.cached()) and e.chooser.preset.value == "interactions"
    e.state.cancel()


def test_ig_beside_hsets_is_shown_as_its_smoothed_magnitude_with_a_colour_bar(explorer):
    from hsets_widgets.widgets import render

    st, mv = explorer.state, explorer.methods
    choose(mv.choice, "ig")
    assert explorer.wait(120) and st.error == ""
    ig = st.method_result.map
    words = html.unescape(mv.colorbar.value)
    assert "ig: magnitude |map|" in words and "smoothed over 2 px" in words and "99th percentile" in words
    rgba, cmap, vmax, _ = render.method_layer(ig)
    assert cmap == "inferno" and vmax > 0
    # what is drawn is that transform: |IG| smoothed, not the raw signed pixels, whose
    # near-white colours (bwr around zero) barely tint the photo
    assert np.array_equal(rgba, render.magnitude_rgba(render.magnitude_map(ig)[0]))
    raw = render.heat_rgba(np.asarray(ig).sum(0) if np.ndim(ig) == 3 else ig)[0]

    def tint(a):        # colour saturation times opacity: how much the layer shows over a photo
        c = a[..., :3].astype(float)
        return ((c.max(-1) - c.min(-1)) * a[..., 3] / 255).mean()

    assert tint(rgba) > 1.5 * tint(raw)
    # a sparse map (H-Sets-like) is painted as it is, and said so
    sparse = np.zeros_like(np.asarray(ig).sum(0) if np.ndim(ig) == 3 else ig)
    sparse[:4, :4] = 1.0
    assert render.method_layer(sparse)[3] == "the map as computed"
    choose(mv.choice, "")


# ---- the Export panel writes inside the working folder ------------------------------------------
def test_export_panel_stays_in_the_working_folder(tmp_path, monkeypatch, small32, photo48):
    from hsets_widgets.widgets import ExplorerState
    from hsets_widgets.widgets.export import ExportPanel

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ex = Explainer(photo48, small32, segmenter="slic", n_steps=4, nu=8, n_sets=1)
    panel = ExportPanel(ExplorerState(ex, background=False))
    panel.folder.value = str(tmp_path / "elsewhere")
    panel.png_button._handle_custom_msg({"event": "click"}, [])
    assert "outside the working folder" in panel.result.value
    assert not (tmp_path / "elsewhere").exists()
    panel.folder.value = "../elsewhere"
    panel.npz_button._handle_custom_msg({"event": "click"}, [])
    assert "outside the working folder" in panel.result.value and not (tmp_path / "elsewhere").exists()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (work / "exports").mkdir()
    (work / "exports" / "hsets-view.png").symlink_to(victim)
    panel.folder.value = "exports"
    panel.png_button._handle_custom_msg({"event": "click"}, [])
    assert victim.read_text() == "precious"
    panel.folder.value = "exports"
    (work / "exports" / "hsets-figure.png").symlink_to(victim)
    panel.fig_button._handle_custom_msg({"event": "click"}, [])
    assert victim.read_text() == "precious"
    # exports never overwrite: the links stay links, the files land beside them
    assert (work / "exports" / "hsets-view.png").is_symlink()
    assert Image.open(work / "exports" / "hsets-view-2.png").size[0] > 0


# ---- "Load a photo" reads a file as the command line does ---------------------------------------
def upload(explorer, path):
    import datetime

    data = path.read_bytes()
    explorer.chooser.upload.value = ({"name": path.name, "type": "image/png", "size": len(data),
                                      "content": memoryview(data),
                                      "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def test_an_uploaded_photo_is_the_picture_the_cli_explains(tmp_path):
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.widgets import Explorer

    gray = np.tile(np.linspace(0, 1, 40), (40, 1))
    Image.fromarray((gray * 65535).astype(np.uint16)).save(tmp_path / "g16.png")     # 16-bit grayscale
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255                                     # red pixels, hidden behind alpha 0 on the left
    rgba[:, 20:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    clf = tiny_classifier(torch.float32, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = Explorer(Explainer(tmp_path / "g16.png", clf, segmenter="slic"), autostart=False, readout=False,
                     background=False)
        for name in ("g16.png", "rgba.png"):
            cli = Explainer(tmp_path / name, clf, segmenter="slic").image     # what `hsets explain` sees
            upload(e, tmp_path / name)
            assert e.state.error == "" and "color:#c62828" not in e.chooser.message.value
            np.testing.assert_allclose(e.explainer.image, cli, atol=1e-6)
    left = e.explainer.image[:, :14]
    assert np.allclose(left, 1.0, atol=1e-3)              # composited on white, as load_image does
    e.state.cancel()
