"""The gallery in a real browser (headless Chromium through Playwright), in Voila and in
JupyterLab: the grid of a real run folder with thumbnails, a sort from the menu, a brush dragged
over the scatter selecting photos in the grid, a click opening the Explorer and "Back" returning
to the same sort and selection. Skips like tests/test_browser_explorer.py without Chromium.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from test_browser_explorer import (  # noqa: F401 - the browser fixture is used by name
    ARTIFACTS,
    browser,
    require_chromium,
    serve_jupyterlab,
    shot,
    stop_server,
    wait_http,
    wait_text,
)
from test_gallery import make_run

from hsets_widgets.plumbing.signals import stop_process

pytestmark = [pytest.mark.browser, pytest.mark.network]

TESTS = Path(__file__).resolve().parent

SOURCE = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from conftest import tiny_classifier
from hsets_widgets.widgets import Gallery

gallery = Gallery({folder!r}, model=tiny_classifier(torch.float32, size=32, width=4),
                  explorer_settings={{"segmenter": "slic", "readout": False, "n_steps": 8, "nu": 32}})
gallery
"""


def write_notebook(folder: Path, run: Path) -> Path:
    source = SOURCE.format(tests=str(TESTS), folder=str(run))
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "gallery", "metadata": {},
                     "outputs": [], "source": source.strip().splitlines(keepends=True)}],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = folder / "gallery_test.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    require_chromium()
    return make_run(tmp_path_factory.mktemp("gallery-run"))


@pytest.fixture(scope="module")
def voila_gallery(tmp_path_factory, run_folder):
    from hsets_widgets.cli.explore import server_environment, voila_command, write_token_file

    pytest.importorskip("voila")
    folder = tmp_path_factory.mktemp("voila-gallery")
    nb = write_notebook(folder, run_folder)
    port = free_port()
    log = open(folder / "voila-gallery.log", "w")
    token = "gallery-token-0123456789"
    env = server_environment(dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"),
                             write_token_file(folder, token))
    proc = subprocess.Popen(voila_command(nb.name, port, open_browser=False, debug=True, token=True, preheat=False),
                            cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/voila/static/favicon.ico")
        yield f"{base}/?token={token}"
    finally:
        stop_server(proc, log, folder / "voila-gallery.log", timeout=15)


def drag(page) -> None:
    """Drag a rectangle over the whole scatter."""
    fig = page.locator(".hsets-gallery-scatter").first
    fig.scroll_into_view_if_needed()
    box = fig.bounding_box()
    page.mouse.move(box["x"] + 66, box["y"] + 18)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 14, box["y"] + box["height"] - 50, steps=6)
    page.mouse.up()


def use_the_gallery(page, name: str) -> None:
    """What a user does: look, sort, brush, open a photo, come back."""
    wait_text(page, ".hsets-gallery-where", r"photos 1-4 of 4 shown", timeout=180)
    # thumbnails: the page's tiles fill in with the photos and their maps
    tile = page.locator(".hsets-gallery-tile img").first
    page.wait_for_timeout(1500)
    pic = shot(tile, f"{name}-gallery-01-thumbnail.png")
    assert pic.std() > 10, "the first thumbnail is blank"
    # sort from the menu: the first tile says the new number
    page.locator(".hsets-gallery-sort select").first.select_option(label="random sparsity")
    wait_text(page, ".hsets-gallery-number", r"random sparsity = ", timeout=30)
    # drag a rectangle over the whole scatter: every photo is selected, the grid says so
    drag(page)
    wait_text(page, ".hsets-gallery-where", r"\d+ selected", timeout=30)
    page.wait_for_timeout(1500)                      # the brush selects while it moves: let it settle
    said = page.locator(".hsets-gallery-where").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / f"{name}-gallery-02-brushed.png"))
    n = int(said.split(" selected")[0].split()[-1])
    assert 1 <= n <= 4
    wait_text(page, ".hsets-gallery-brush", rf"{n} photo\(s\) selected", timeout=10)
    # open the first photo: the Explorer opens on it; Back returns to the same grid
    first = page.locator(".hsets-gallery-number").first.inner_text()
    assert "random sparsity = " in first
    page.locator(".hsets-gallery-open").first.click()
    page.locator(".hsets-explorer").first.wait_for(state="visible", timeout=180_000)
    wait_text(page, ".hsets-status", r"ready", timeout=180)
    page.screenshot(path=str(ARTIFACTS / f"{name}-gallery-03-explorer.png"))
    page.locator(".hsets-gallery-back").first.click()
    wait_text(page, ".hsets-gallery-where", rf"{n} selected", timeout=30)
    assert page.locator(".hsets-gallery-number").first.inner_text() == first     # the same photo, number
    assert page.locator(".hsets-explorer").count() == 0
    # clear the selection: every photo again, and the same drag selects again (the old rectangle
    # is gone, so the drag draws a new one instead of moving it)
    page.locator(".hsets-gallery-clear").first.click()
    wait_text(page, ".hsets-gallery-where", r"of 4 shown \(4 in the run\)$", timeout=30)
    drag(page)
    wait_text(page, ".hsets-gallery-where", r"\d+ selected", timeout=30)


def on_a_page(browser, name: str, height: int, steps) -> None:  # noqa: F811 - the fixture
    """Run ``steps(page)`` on a new page, keeping a screenshot when it fails."""
    page = browser.new_page(viewport={"width": 1500, "height": height})
    try:
        steps(page)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"{name}-gallery-failure.png"))
        raise
    finally:
        page.close()


def test_the_gallery_in_voila(voila_gallery, browser):  # noqa: F811 - the imported fixture
    def steps(page):
        page.goto(voila_gallery, timeout=180_000)
        use_the_gallery(page, "voila")

    on_a_page(browser, "voila", 1200, steps)


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory, run_folder):
    pytest.importorskip("jupyterlab")
    folder = tmp_path_factory.mktemp("lab-gallery")
    write_notebook(folder, run_folder)
    yield from serve_jupyterlab(folder, "lab-gallery.log")


@pytest.mark.slow
def test_the_gallery_in_jupyterlab(lab_url, browser):  # noqa: F811 - the imported fixture
    def steps(page):
        page.goto(lab_url + "/lab/tree/gallery_test.ipynb", timeout=180_000)
        cell = page.locator(".jp-Cell .jp-InputArea-editor").first
        cell.wait_for(state="visible", timeout=180_000)
        page.wait_for_timeout(3000)                      # let the kernel start
        cell.click()
        page.keyboard.press("Shift+Enter")
        use_the_gallery(page, "lab")

    on_a_page(browser, "lab", 1400, steps)


def test_hsets_explore_serves_the_gallery_of_a_run_folder(run_folder, browser):  # noqa: F811 - the fixture
    """The command a user types: `hsets explore eval/` (token on), opened from its printed address."""
    from test_widgets_cli import fetch_without_redirect

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hsets_widgets.cli.main", "explore", str(run_folder),
                             "--no-browser", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"))
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"H-Sets gallery of {run_folder.resolve()}: http://127.0.0.1:{port}/?token="), first
        url = first.split(": ", 1)[1].strip()
        wait_http(f"http://127.0.0.1:{port}/voila/static/favicon.ico")
        status, location = fetch_without_redirect(f"http://127.0.0.1:{port}/")      # no token: login
        assert status == 302 and "login" in location

        def steps(page):
            page.goto(url, timeout=180_000)
            wait_text(page, ".hsets-gallery-where", r"photos 1-4 of 4 shown", timeout=180)
            # the run's model is a test network no name loads: said in the page, the grid stays
            page.locator(".hsets-gallery-open").first.click()
            wait_text(page, ".hsets-gallery-open-error", r"cannot be loaded by name .* Gallery\(folder, model=\.\.\.\)",
                      timeout=60)
            assert page.locator(".hsets-gallery-where").count() == 1

        on_a_page(browser, "explore", 1200, steps)
    finally:
        stop_process(proc, 30)
