"""The Explorer in a real browser: Voila + headless Chromium through Python Playwright.

Needs ``/usr/bin/chromium`` (Debian: ``apt-get install -y chromium chromium-driver``; another
path in ``$HSETS_TEST_CHROMIUM``); the test skips with that message when it is missing and never installs anything itself. It
serves a notebook with a tiny seeded CNN on a 48x48 crop, so the kernel side is quick, and
checks that a click on the canvas, a mu slider move and the Play button each reach the
kernel (text rendered from kernel state changes) and change the picture (screenshot pixel
difference). Screenshots go to ``test-artifacts/browser/``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

from hsets_widgets.plumbing.signals import stop_process

pytestmark = [pytest.mark.browser, pytest.mark.network]

CHROMIUM = os.environ.get("HSETS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
SIZE = 48          # image side (pixels)
DISPLAY = 384      # on-screen side of the image view -> zoom 8

NOTEBOOK_SOURCE = f"""
import torch
from torch import nn
torch.set_num_threads(1)
from hsets_widgets.model.images import load_image, resize_center_crop
from hsets_widgets.model.models import wrap_module
from hsets_widgets.widgets import Explorer

torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
                    nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 5))
clf = wrap_module(net, normalize=lambda x: x, input_size={SIZE},
                  class_names=["apple", "bee", "cat", "dog", "eel"], name="tiny-cnn")
image = resize_center_crop(load_image("chelsea"), {SIZE})
# the shipped default rule (smoothed |row|, top-k new members), with a small mu and a set
# bigger than the 48-px image's segments so the merge takes several steps
explorer = Explorer(image, clf, segmenter="slic", n_steps=8, mu=16, nu=200, within_mask=False,
                    display_size={DISPLAY}, session="session")
explorer
"""


def write_notebook(folder: Path, source: str = NOTEBOOK_SOURCE) -> Path:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "explorer", "metadata": {},
                     "outputs": [], "source": source.strip().splitlines(keepends=True)}],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = folder / "explorer_test.ipynb"
    path.write_text(json.dumps(nb))
    return path


def wait_http(url: str, timeout: float = 90.0) -> None:
    """Wait until ``url`` answers (a static file: probing the notebook would start a kernel)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status < 500:
                    return
        except Exception as err:  # noqa: BLE001 - keep polling
            last = err
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s ({last})")


def stop_server(proc, log, log_path, timeout: float) -> None:
    """Stop a server started by a fixture and keep its log under test-artifacts/."""
    stop_process(proc, timeout)
    log.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / log_path.name).write_text(log_path.read_text())


class Server(str):
    """The app's address (with its token), and the server's process id."""

    pid: int = 0


def kernels_of(pid: int) -> set:
    """Process ids of the ipykernel children of process ``pid``."""
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return set()
    out = set()
    for c in children:
        try:
            if b"ipykernel" in open(f"/proc/{c}/cmdline", "rb").read():
                out.add(int(c))
        except OSError:
            pass
    return out


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory):
    """Voila as ``hsets explore`` runs it (its command line: token, kernel culling, a
    pre-started kernel) on the test notebook.
    """
    from hsets_widgets.cli.explore import server_environment, voila_command, write_token_file

    require_chromium()
    pytest.importorskip("voila")
    folder = tmp_path_factory.mktemp("voila")
    nb = write_notebook(folder)
    port = free_port()
    log = open(folder / "voila.log", "w")
    token = "test-token-0123456789abcdef"
    env = server_environment(dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"),
                             write_token_file(folder, token))
    proc = subprocess.Popen(voila_command(nb.name, port, open_browser=False, debug=True, token=True),
                            cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/voila/static/favicon.ico")
        url = Server(f"{base}/?token={token}")
        url.pid = proc.pid
        yield url
    finally:
        stop_server(proc, log, folder / "voila.log", timeout=15)


def require_chromium():
    """Skip (never install) when Chromium or the playwright package is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install it with "
                    "`apt-get install -y chromium chromium-driver` (Debian)")
    pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(locator, name: str) -> np.ndarray:
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    locator.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels whose colour changed by more than 24 levels."""
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    return float((np.abs(a[:h, :w] - b[:h, :w]).max(axis=2) > 24).mean())


def text_of(page, css: str) -> str:
    return page.locator(css).first.inner_text().replace("\xa0", " ")


def wait_text(page, css: str, pattern: str, timeout: float = 90.0, negate: bool = False) -> str:
    """Wait until the text of ``css`` matches (or, with ``negate``, stops matching) ``pattern``."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            last = text_of(page, css)
        except Exception:  # noqa: BLE001 - element not rendered yet
            last = ""
        if bool(re.search(pattern, last)) != negate:
            return last
        page.wait_for_timeout(250)
    raise AssertionError(f"{css}: text {last!r} {'still matches' if negate else 'never matched'} "
                         f"{pattern!r} within {timeout:.0f} s")


def drag(page, css: str, dx: float) -> None:
    """Drag the element ``css`` (a slider handle) ``dx`` CSS pixels to the right."""
    page.locator(css).first.scroll_into_view_if_needed()
    box = page.locator(css).first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=8)
    page.mouse.up()
    page.wait_for_timeout(300)


def assert_readable_charts(page, css: str) -> None:
    """The bqplot charts under ``css`` (visible now): tick labels without raw exponents
    (``9.00e-2``) and titles inside their figure.
    """
    for _ in range(20):          # bqplot lays a figure out in several passes: let it settle
        ticks = page.eval_on_selector_all(f"{css} .tick text", "els => els.map(e => e.textContent)")
        raw = [t for t in ticks if re.search(r"\d[eE][-+]?\d", t)]
        clipped = page.eval_on_selector_all(
            f"{css} text.mainheading",
            "els => els.filter(e => e.textContent).map(e => { const b = e.getBoundingClientRect();"
            " const s = e.closest('svg').getBoundingClientRect();"
            " return (b.left < s.left - 1 || b.right > s.right + 1) ? e.textContent : null; })"
            ".filter(t => t !== null)")
        if ticks and not raw and not clipped:
            return
        page.wait_for_timeout(500)
    assert ticks, f"no axis ticks rendered under {css}"
    assert not raw, f"raw exponents on the axes of {css}: {raw}"
    assert not clipped, f"chart titles cut at the figure's edge: {clipped}"


def open_app(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, timeout=120_000)
    page.locator(".hsets-image-canvas").first.wait_for(state="visible", timeout=120_000)
    # the first set appears once IG, SLIC and the first Hessian rows are done
    wait_text(page, ".hsets-set-info", r"Set size: \d+", timeout=120)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    return page, errors


def test_click_slider_play_reach_kernel_and_change_picture(voila_url, browser):
    page, errors = open_app(browser, voila_url)
    canvas = page.locator(".hsets-image-canvas").first
    before = shot(canvas, "01-initial-canvas.png")
    page.screenshot(path=str(ARTIFACTS / "01-initial-page.png"), full_page=True)
    assert (before.max(axis=2) > 30).mean() > 0.5, "the image canvas is blank after page load"
    info0 = text_of(page, ".hsets-set-info")
    # why these seeds: the ranking, with the class probability, is on the page
    ranking = wait_text(page, ".hsets-seed-ranking", r"A1", timeout=30)
    assert re.search(r"p = \d\.\d\d", ranking) and "of positive IG" in ranking
    seed0 = re.search(r"seed \((\d+), (\d+)\)", info0).groups()

    # 1. click a pixel far from the automatic seed: it becomes the seed, its set grows
    scale = DISPLAY // SIZE
    y, x = (8, 8) if int(seed0[0]) > SIZE // 2 else (40, 40)
    box = canvas.bounding_box()
    canvas.click(position={"x": (x + 0.5) * scale * box["width"] / (SIZE * scale),
                           "y": (y + 0.5) * scale * box["height"] / (SIZE * scale)})
    info1 = wait_text(page, ".hsets-set-info", rf"seed \({y}, {x}\)", timeout=60)
    assert "Set size" in info1
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    page.wait_for_timeout(500)
    after_click = shot(canvas, "02-after-click-canvas.png")
    assert changed_fraction(before, after_click) > 0.002, "the canvas did not change after a click"

    # 2. move the mu slider with the keyboard: the kernel regrows the set, text and picture change
    row_canvas = page.locator(".hsets-row-canvas").first
    row_before = shot(row_canvas, "03-row-before-mu.png")
    row_info0 = text_of(page, ".hsets-row-info")
    readout0 = wait_text(page, ".hsets-readout", r"Computed in", timeout=90)   # the live readout
    assert "MoRF AOPC" in readout0 and "random" in readout0
    # the app runs the shipped default rule (top-k of the smoothed row, new members only)
    mu0 = int(re.search(r"top (\d+) new members per row", row_info0).group(1))
    # drag the handle (keyboard steps on ipywidgets sliders reach the kernel one press late)
    drag(page, ".hsets-mu-slider .noUi-handle", 40)
    shown = int(float(text_of(page, ".hsets-mu-slider .widget-readout")))
    assert shown > mu0
    wait_text(page, ".hsets-row-info", rf"top {shown} new members per row", timeout=60)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    # the canvas redraw lands after the text on a loaded machine: wait for it, not a fixed time
    deadline = time.monotonic() + 15
    while True:
        page.wait_for_timeout(250)
        row_after = shot(row_canvas, "04-row-after-mu.png")
        if changed_fraction(row_before, row_after) > 0.001 or time.monotonic() > deadline:
            break
    assert_readable_charts(page, ".hsets-row-histogram")
    assert changed_fraction(row_before, row_after) > 0.001, "the passing features did not change"
    # the readout follows the new set: stale, then recomputed with other numbers
    def numbers(text):   # the table's numbers, not the "computed in ... s" line
        return re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text.split("Computed in")[0])

    readout1 = wait_text(page, ".hsets-readout", r"Computed in", timeout=90)
    deadline = time.monotonic() + 60
    while numbers(readout1) == numbers(readout0) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        readout1 = text_of(page, ".hsets-readout")
    assert numbers(readout1) != numbers(readout0), f"the faithfulness readout did not change: {readout1!r}"

    # 3. go to step 0 with the step-back button... then press Play and watch the steps advance
    play_label0 = text_of(page, ".hsets-step-label")
    n_steps = int(re.search(r"of (\d+)", play_label0).group(1))
    assert n_steps >= 2
    drag(page, ".hsets-step-slider .noUi-handle", -400)
    wait_text(page, ".hsets-step-label", r"Step 0 of", timeout=30)
    page.wait_for_timeout(400)
    at_zero = shot(canvas, "05-step-0-canvas.png")
    page.locator(".hsets-play button").first.click()
    wait_text(page, ".hsets-step-label", r"Step [1-9]\d* of", timeout=30)
    page.wait_for_timeout(300)
    playing = shot(canvas, "06-playing-canvas.png")
    assert changed_fraction(at_zero, playing) > 0.0005, "Play did not change the picture"
    wait_text(page, ".hsets-step-label", rf"Step {n_steps} of {n_steps}", timeout=60)
    page.screenshot(path=str(ARTIFACTS / "07-after-play-page.png"), full_page=True)

    # 4. "read a region": a drag over the photo reports what the rectangle contributes
    info_before = text_of(page, ".hsets-set-info")
    page.locator(".hsets-brush").first.click()
    box = canvas.bounding_box()
    at = lambda yy, xx: (box["x"] + (xx + 0.5) * box["width"] / SIZE,   # noqa: E731
                         box["y"] + (yy + 0.5) * box["height"] / SIZE)
    page.mouse.move(*at(10, 10))
    page.mouse.down()
    page.mouse.move(*at(20, 25), steps=5)
    page.mouse.up()
    region = wait_text(page, ".hsets-region", r"removing it", timeout=60)
    assert "11×16 px" in region and "of IG's" in region, region
    assert text_of(page, ".hsets-set-info") == info_before, "a drag in region mode chose a seed"
    assert not errors, errors
    page.close()


def test_reload_keeps_kept_sets_and_the_old_kernel_goes(voila_url, browser):
    page, _ = open_app(browser, voila_url)
    # keep the current set; click another pixel: the session file follows
    page.locator(".hsets-sets-keep").first.click()
    kept = wait_text(page, ".hsets-sets-list", r"#1[^·]* · seed \(\d+, \d+\)", timeout=30)
    kept_seed = re.search(r"#1[^·]* · seed \((\d+), (\d+)\)", kept).groups()
    canvas = page.locator(".hsets-image-canvas").first
    box = canvas.bounding_box()
    y, x = (8, 8) if int(kept_seed[0]) > SIZE // 2 else (40, 40)
    canvas.click(position={"x": (x + 0.5) * box["width"] / SIZE, "y": (y + 0.5) * box["height"] / SIZE})
    wait_text(page, ".hsets-set-info", rf"seed \({y}, {x}\)", timeout=60)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    page.wait_for_timeout(500)
    before = kernels_of(voila_url.pid)
    assert before, "no kernel found under the Voila server"
    page.reload(timeout=120_000)
    page.locator(".hsets-image-canvas").first.wait_for(state="visible", timeout=120_000)
    # the reloaded page shows the kept set and the seed clicked last
    wait_text(page, ".hsets-sets-list", rf"#1[^·]* · seed \({kept_seed[0]}, {kept_seed[1]}\)", timeout=60)
    wait_text(page, ".hsets-set-info", rf"seed \({y}, {x}\)", timeout=60)
    page.wait_for_timeout(1000)
    img = shot(page.locator(".hsets-image-canvas").first, "08-after-reload-canvas.png")
    assert (img.max(axis=2) > 30).mean() > 0.5, "the image canvas is blank after a reload"
    # the old page's kernel is shut down (the page asks when it unloads; culling is the backstop)
    deadline = time.monotonic() + 60
    while len(kernels_of(voila_url.pid) & before) >= len(before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(kernels_of(voila_url.pid) & before) < len(before), "the old page's kernel still runs"
    # another of the top-5 classes, without a restart: the header and a new set follow
    select = page.locator(".hsets-target select").first
    second = select.locator("option").nth(1).inner_text().replace("\xa0", " ")
    select.select_option(index=1)
    wait_text(page, ".hsets-header", re.escape(second.split(" (p =")[0]), timeout=60)
    wait_text(page, ".hsets-set-info", r"Set size: \d+", timeout=120)
    page.close()


def test_tabs_idg_sampling_and_road_render(voila_url, browser):
    page, errors = open_app(browser, voila_url)
    # IDG subset sampling: thumbnails and the running-estimate plot
    page.locator(".lm-TabBar-tab", has_text="IDG subset sampling").first.click()
    page.locator(".hsets-draw-subsets").first.click()
    wait_text(page, ".hsets-idg-info", r"After \d+ of 1000 subsets", timeout=60)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    page.wait_for_timeout(800)
    panel = page.locator(".hsets-subset-sampling").first
    img = shot(panel, "09-idg-sampling.png")
    plot = shot(page.locator(".hsets-idg-plot").first, "09-idg-plot.png")
    assert (np.abs(np.diff(plot, axis=1)).max(axis=2) > 60).mean() > 0.002, "empty running-estimate plot"
    assert img.shape[0] > 300
    assert_readable_charts(page, ".hsets-idg-plot")
    # Interactions: test the current set, read the verdict, see its parts drawn
    page.locator(".lm-TabBar-tab", has_text="Interactions").first.click()
    page.locator(".hsets-interactions-run").first.click()
    wait_text(page, ".hsets-interactions-verdict",
              r"(these pixels act together|no more interaction than a compact region).*interaction share "
              r"\d\.\d\d .* vs \d\.\d\d for \d Hessian-free regions", timeout=240)
    wait_text(page, ".hsets-interactions-controls", r"p = \d\.\d\d", timeout=30)
    page.wait_for_timeout(800)
    parts = shot(page.locator(".hsets-interactions-view canvas").first, "09b-interactions-parts.png")
    assert (parts.max(axis=2) > 30).mean() > 0.5, "the parts image is blank"
    shot(page.locator(".hsets-interactions-view").first, "09b-interactions.png")
    # Other methods: Integrated Hessians beside H-Sets, its sets listed; one goes through the
    # Interactions tab, which opens by itself and names the set it tests
    page.locator(".lm-TabBar-tab", has_text="Other methods").first.click()
    from hsets_widgets.widgets.methods_view import method_options

    ih_label = next(label for label, name in method_options() if name == "ih")
    page.locator(".hsets-method-choice select").first.select_option(label=ih_label)
    wait_text(page, ".hsets-method-label", r"ih: \d+ set\(s\)", timeout=180)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    page.wait_for_timeout(800)
    side = shot(page.locator(".hsets-side-method").first, "09e-method-side.png")
    assert (side.max(axis=2) > 30).mean() > 0.5, "the method's picture is blank"
    page.locator(".hsets-method-test").first.click()
    wait_text(page, ".hsets-interactions-verdict", r"Tested: the ih M1 set", timeout=30)
    wait_text(page, ".hsets-interactions-controls", r"p = \d\.\d\d", timeout=240)
    shot(page.locator(".hsets-interactions-view").first, "09f-interactions-of-ih-set.png")
    # ROAD: keep the current set, compute the curves, show an imputed image
    canvas = page.locator(".hsets-image-canvas").first
    before_keep = shot(canvas, "09c-before-keep.png")
    page.locator(".hsets-sets-keep").first.click()
    wait_text(page, ".hsets-sets-list", r"#1[^·]* · seed", timeout=30)
    page.wait_for_timeout(800)
    # keeping a set shows: its heatmap under the set's outline, its name on the image
    assert changed_fraction(before_keep, shot(canvas, "09d-after-keep.png")) > 0.02, \
        "keeping the set changed nothing on the image"
    page.locator(".lm-TabBar-tab", has_text="ROAD curves").first.click()
    page.locator(".hsets-road-run").first.click()
    wait_text(page, ".hsets-road-info", r"mean drop", timeout=120)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    page.wait_for_timeout(800)
    # one convention and one grid: the readout and the ROAD table show the same numbers
    wait_text(page, ".hsets-readout", r"Computed in", timeout=90)
    readout_morf = page.locator(".hsets-readout-table tr").nth(1).locator("td b").first.inner_text()
    road_morf = text_of(page, ".hsets-road-table .hsets-road-morf")
    assert readout_morf == road_morf, (readout_morf, road_morf)
    assert "higher = more faithful" in text_of(page, ".hsets-road-info")
    road_canvas = shot(page.locator(".hsets-road-canvas").first, "10-road-imputed.png")
    assert (road_canvas.max(axis=2) > 30).mean() > 0.5, "the imputed image is blank"
    shot(page.locator(".hsets-road-view").first, "10-road-view.png")
    assert_readable_charts(page, ".hsets-road-view")
    # Sweep mu: run it, see the plot, click a point and the mu slider follows
    page.locator(".lm-TabBar-tab", has_text="Sweep mu").first.click()
    box = page.locator(".hsets-sweep-values input").first
    box.fill("8, 24, 40")
    box.press("Enter")
    page.locator(".hsets-sweep-run").first.click()
    wait_text(page, ".hsets-sweep-info", r"Click a point", timeout=120)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    page.wait_for_timeout(800)
    shot(page.locator(".hsets-sweep-plot").first, "11-sweep-plot.png")
    assert_readable_charts(page, ".hsets-sweep-plot")
    dots = page.locator(".hsets-sweep-plot .dot")
    assert dots.count() >= 9, "the sweep plot shows no points"
    dots.nth(2).click(force=True)                # MoRF at mu = 40
    wait_text(page, ".hsets-mu-slider .widget-readout", r"^40$", timeout=30)
    # Export tab: the kernel writes the files
    page.locator(".lm-TabBar-tab", has_text="Export").first.click()
    page.locator(".hsets-export-png").first.click()
    wait_text(page, ".hsets-export-result", r"Saved .*hsets-view\.png", timeout=30)
    # the file can be downloaded from the page (the server folder may be out of reach)
    with page.expect_download(timeout=30_000) as dl:
        page.locator(".hsets-export-result a.hsets-download").first.click()
    assert dl.value.suggested_filename == "hsets-view.png"
    assert not errors, errors
    page.close()


# ---- JupyterLab and Notebook 7: the same notebook, run in the page, then the page reloaded ----
@pytest.fixture(scope="module")
def jupyter_url(tmp_path_factory):
    require_chromium()
    pytest.importorskip("jupyterlab")
    pytest.importorskip("notebook")
    folder = tmp_path_factory.mktemp("jupyter")
    write_notebook(folder)
    yield from serve_jupyterlab(folder, "jupyter.log")


def serve_jupyterlab(folder: Path, log_name: str):
    """JupyterLab (and Notebook 7) on ``folder``, no token, on a free port: yields its address."""
    port = free_port()
    log = open(folder / log_name, "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               JUPYTER_CONFIG_DIR=str(folder / "config"), JUPYTER_RUNTIME_DIR=str(folder / "runtime"))
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
                             "--ServerApp.ip=127.0.0.1", "--ServerApp.token=", "--ServerApp.password=",
                             "--ServerApp.disable_check_xsrf=True", "--allow-root",
                             f"--ServerApp.root_dir={folder}", "--LabApp.news_url=None",
                             "--ServerApp.port_retries=0"],
                            cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api")
        yield base
    finally:
        stop_server(proc, log, folder / log_name, timeout=20)


@pytest.mark.slow
@pytest.mark.parametrize("frontend, path", [("lab", "/lab/tree/explorer_test.ipynb"),
                                            ("notebook7", "/notebooks/explorer_test.ipynb")])
def test_explorer_in_jupyter_survives_reload(jupyter_url, browser, frontend, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    try:
        run_in_jupyter(page, jupyter_url + path, frontend)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"{frontend}-failure.png"))
        raise
    finally:
        page.close()


def run_in_jupyter(page, url, frontend):
    page.goto(url, timeout=180_000)
    cell = page.locator(".jp-Cell .jp-InputArea-editor").first
    cell.wait_for(state="visible", timeout=180_000)
    page.wait_for_timeout(3000)                      # let the kernel start
    cell.click()
    page.keyboard.press("Shift+Enter")
    page.locator(".hsets-image-canvas").first.wait_for(state="visible", timeout=180_000)
    wait_text(page, ".hsets-set-info", r"Set size: \d+", timeout=120)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    canvas = page.locator(".hsets-image-canvas").first
    canvas.scroll_into_view_if_needed()
    before = shot(canvas, f"{frontend}-01-canvas.png")
    assert (before.max(axis=2) > 30).mean() > 0.5, "blank canvas"
    box = canvas.bounding_box()
    zoom = box["width"] / SIZE
    canvas.click(position={"x": 10.5 * zoom, "y": 12.5 * zoom})
    wait_text(page, ".hsets-set-info", r"seed \(12, 10\)", timeout=90)
    wait_text(page, ".hsets-status", r"ready", timeout=60)
    page.screenshot(path=str(ARTIFACTS / f"{frontend}-02-page.png"))
    # save (the reloaded page reads the notebook from disk; Jupyter autosaves every 2 min),
    # then reload: the kernel keeps the widgets, the page must show them again, canvas included
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_timeout(2000)
    page.reload(timeout=180_000)
    canvas = page.locator(".hsets-image-canvas").first
    canvas.wait_for(state="visible", timeout=180_000)
    wait_text(page, ".hsets-set-info", r"seed \(12, 10\)", timeout=90)
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    after = shot(canvas, f"{frontend}-03-after-reload-canvas.png")
    assert (after.max(axis=2) > 30).mean() > 0.5, "the canvas is blank after a reload"
    page.screenshot(path=str(ARTIFACTS / f"{frontend}-04-after-reload-page.png"))


# ---- the real default: `hsets explore` with EfficientNet-Lite0 on the embedded cat ----------
@pytest.mark.slow
def test_hsets_explore_default_app_screenshot(browser, tmp_path):
    """``hsets explore`` end to end on the default model; the screenshot is docs/explorer.png.

    Several minutes on 2 CPU cores (IG, segmentation, then five automatic sets).
    """
    from PIL import Image

    if not os.environ.get("HSETS_BROWSER_DEFAULT_MODEL"):
        pytest.skip("about 5 minutes on 2 CPU cores: set HSETS_BROWSER_DEFAULT_MODEL=1 to run it")
    port = free_port()
    log = open(tmp_path / "explore.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "hsets_widgets.cli.main", "explore", "--no-browser",
                             "--no-token", "--port", str(port)], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    page = browser.new_page(viewport={"width": 1360, "height": 1700})
    try:
        wait_http(f"http://127.0.0.1:{port}/voila/static/favicon.ico")
        page.goto(f"http://127.0.0.1:{port}/", timeout=300_000)
        wait_text(page, ".hsets-set-info", r"Set size: \d+", timeout=900)
        wait_text(page, ".hsets-status", r"ready", timeout=300)
        page.locator(".hsets-sets-auto").first.click()
        wait_text(page, ".hsets-status", r"working", timeout=60)
        wait_text(page, ".hsets-status", r"ready", timeout=1200)
        assert "#5" in text_of(page, ".hsets-sets-list")
        canvas = page.locator(".hsets-image-canvas").first
        box = canvas.bounding_box()
        zoom = box["width"] / 224
        # show the second automatic set (its rows are cached: the click answers at once)
        kept = text_of(page, ".hsets-sets-list")
        y, x = map(int, re.search(r"#2[^·]* · seed \((\d+), (\d+)\)", kept).groups())
        canvas.click(position={"x": (x + 0.5) * zoom, "y": (y + 0.5) * zoom})
        wait_text(page, ".hsets-set-info", rf"seed \({y}, {x}\)", timeout=300)
        wait_text(page, ".hsets-status", r"ready", timeout=300)
        canvas.hover(position={"x": (x + 2.5) * zoom, "y": (y + 1.5) * zoom})
        wait_text(page, ".hsets-hover", r"IG", timeout=30)
        wait_text(page, ".hsets-readout", r"Computed in", timeout=300)   # the live readout is shown
        page.wait_for_timeout(1500)
        explorer = page.locator(".hsets-explorer").first
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        full = ARTIFACTS / "explorer-default.png"
        explorer.screenshot(path=str(full))
        img = Image.open(full).convert("RGB")
        # docs size: keep it readable and under ~300 kB (256-colour PNG)
        # (median cut shifts the small overlay colours; octree + dithering keeps them)
        small = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                             dither=Image.Dither.FLOYDSTEINBERG)
        small.save(ARTIFACTS / "explorer-default-docs.png", optimize=True)
        assert (np.asarray(img).std() > 10), "blank screenshot"
    finally:
        page.screenshot(path=str(ARTIFACTS / "explorer-default-page.png"), full_page=True)
        page.close()
        stop_server(proc, log, tmp_path / "explore.log", timeout=20)
