"""Take the screenshots of the newcomer's tour (docs/tour/README.md) from the real app.

Starts ``hsets explore`` on the embedded cat with the default model (EfficientNet-Lite0, SLIC
segments to keep it short), drives it in headless Chromium as a newcomer would and saves one
PNG per step into this folder. Several minutes on 2 CPU cores. Needs ``playwright`` and
``/usr/bin/chromium`` (``$HSETS_TEST_CHROMIUM``)::

    python docs/tour/make_tour.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hsets_widgets.plumbing.signals import stop_process

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "bench"))

from _browser import CHROMIUM, start_explore, until, wait_served  # noqa: E402


def main(argv=None) -> int:
    """Serve the app, walk through it, save the screenshots."""
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    from PIL import Image
    from playwright.sync_api import sync_playwright

    proc, url = start_explore(["--segmenter", "slic", "--no-preheat"], "hsets_make_tour.log",
                              cwd=tempfile.mkdtemp(prefix="hsets-tour-"))      # where its exports go

    def save(locator, name):
        path = HERE / name
        locator.screenshot(path=str(path))
        img = Image.open(path).convert("RGB")
        img.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                     dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
        print("saved", path.name, flush=True)

    try:
        wait_served(url, proc, poll=0.5)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = b.new_page(viewport={"width": 1400, "height": 1900})
            page.goto(url, timeout=1_800_000)
            until(page, ".hsets-set-info", r"Set size: \d+")
            until(page, ".hsets-status", r"ready")
            until(page, ".hsets-readout", r"Computed in")
            until(page, ".hsets-readout", r"MoRF AOPC\s+-?\d[\d.e-]*\s+-?\d")    # IG's and random's too
            page.wait_for_timeout(1500)
            ex = page.locator(".hsets-explorer").first
            save(page.locator(".hsets-header").first, "01-header.png")
            top = page.locator(".hsets-explorer > .widget-hbox").first
            save(top, "02-image-and-panels.png")
            save(page.locator(".hsets-seeds-view").first, "03-why-these-seeds.png")
            # click a pixel on the cat's face, keep its set
            canvas = page.locator(".hsets-image-canvas").first
            box = canvas.bounding_box()
            z = box["width"] / 224
            canvas.click(position={"x": 120.5 * z, "y": 100.5 * z})
            until(page, ".hsets-set-info", r"seed \(100, 120\)")
            until(page, ".hsets-status", r"ready")
            page.locator(".hsets-sets-keep").first.click()
            until(page, ".hsets-sets-list", r"#1")
            until(page, ".hsets-readout", r"Computed in")
            page.wait_for_timeout(1500)
            save(top, "04-clicked-and-kept.png")
            # read a region: drag a rectangle over the cat's face
            page.locator(".hsets-brush").first.click()
            at = lambda y, x: (box["x"] + (x + 0.5) * z, box["y"] + (y + 0.5) * z)   # noqa: E731
            page.mouse.move(*at(70, 95))
            page.mouse.down()
            page.mouse.move(*at(130, 160), steps=8)
            page.mouse.up()
            until(page, ".hsets-region", r"removing it")
            page.wait_for_timeout(1000)
            save(page.locator(".hsets-image-view").first, "04b-read-a-region.png")
            page.locator(".hsets-brush").first.click()              # clicks seed sets again
            # the Hessian row
            page.locator(".lm-TabBar-tab", has_text="Hessian row").first.click()
            page.wait_for_timeout(1500)
            save(page.locator(".hsets-row-inspector").first, "05-hessian-row.png")
            # another method beside H-Sets
            page.locator(".lm-TabBar-tab", has_text="Other methods").first.click()
            sel = page.locator(".hsets-method-choice select").first
            label = [o for o in sel.locator("option").all_inner_texts() if o.startswith("ig:")][0]
            sel.select_option(label=label)
            until(page, ".hsets-method-label", r"ig:")
            page.wait_for_timeout(1500)
            save(page.locator(".hsets-methods-view").first, "06-other-methods.png")
            # ROAD
            page.locator(".lm-TabBar-tab", has_text="ROAD curves").first.click()
            page.locator(".hsets-road-run").first.click()
            until(page, ".hsets-road-info", r"mean drop", timeout=1800)
            until(page, ".hsets-status", r"ready")
            page.wait_for_timeout(2000)
            save(page.locator(".hsets-road-view").first, "07-road.png")
            # Export
            page.locator(".lm-TabBar-tab", has_text="Export").first.click()
            page.locator(".hsets-export-png").first.click()
            until(page, ".hsets-export-result", r"Saved")
            save(page.locator(".hsets-export").first, "08-export.png")
            del ex
            b.close()
    finally:
        stop_process(proc, 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
