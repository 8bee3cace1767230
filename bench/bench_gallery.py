"""The gallery on a large run: ``python bench/bench_widgets.py --gallery`` (this module does the work).

Synthesizes an ``hsets evaluate`` folder of ``--records`` photos in a temporary folder with the
store's own writers (``append_record``, ``save_maps``, ``map_key``; ``metrics.json`` from
``report.summarize``), the records pointing at the photos of ``--photos`` (read in place, never
copied; a photo is used by several records, each with its own key and maps). Then times, in the
kernel (widget messages JSON-encoded through the measuring comm of bench_widgets), the gallery's
open, a sort, a range filter, a brush over the scatter and a page turn; and, in headless Chromium
through ``hsets explore FOLDER``, the page's open and the same three interactions from the browser
event to the grid's text changing on the page (timed in the page with ``performance.now()``).
"""
from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("hsets", "ig", "random")
PERCENTAGES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9]
#: the goals of issue 32
OPEN_S, ANSWER_MS = 3.0, 100.0


def synth_map(method: str, rng, size: int = 224) -> np.ndarray:
    """A map that compresses like the real ones: H-Sets sparse (a few blobs, zero elsewhere),
    IG and random dense but smooth or coarse (as float32, three decimals)."""
    if method == "hsets":
        m = np.zeros((size, size), np.float32)
        yy, xx = np.mgrid[:size, :size]
        for _ in range(5):
            cy, cx, r = rng.integers(20, size - 20, 2).tolist() + [int(rng.integers(8, 22))]
            m[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = round(float(rng.random()), 3)
        return m
    coarse = rng.normal(size=(28, 28)) if method == "ig" else rng.random((56, 56))
    return np.round(np.kron(coarse, np.ones((size // coarse.shape[0],) * 2)), 3).astype(np.float32)


def synth_scores(rng) -> dict:
    """One method's record: every scalar metric and the two ROAD curves."""
    rec = {"sparsity": float(rng.random()), "support": int(rng.integers(1000, 50176)),
           "morf_aopc": float(rng.normal(0.2, 0.1)), "lerf_aopc": float(rng.normal(0.14, 0.08)),
           "morf_aopc_accuracy": float(rng.random()), "lerf_aopc_accuracy": float(rng.random()),
           "morf_auc": float(rng.random()), "morf_probability_auc": float(rng.random()),
           "lerf_auc": float(rng.random()), "lerf_probability_auc": float(rng.random()),
           "insertion_auc": float(rng.random()), "deletion_auc": float(rng.random()),
           "attribution_seconds": float(rng.random() * 30), "road_seconds": float(rng.random() * 3)}
    rec["support_fraction"] = rec["support"] / 50176
    for order in ("morf", "lerf"):
        prob = np.sort(rng.random(len(PERCENTAGES)))[::-1].tolist()
        rec[order] = {"order": order, "percentages": PERCENTAGES, "accuracy": [1.0] * len(PERCENTAGES),
                      "probability": prob, "original_probability": 0.9}
    return rec


def synthesize(folder: Path, n: int, photos: Path, seed: int = 0) -> Path:
    """Write an evaluation folder of ``n`` records (and two failed photos) into ``folder``."""
    from hsets_widgets.plumbing.files import write_json
    from hsets_widgets.runs.report import summarize
    from hsets_widgets.runs.store import append_record, map_key, save_maps

    files = sorted(p for p in Path(photos).iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not files:
        raise SystemExit(f"no photos in {photos}; give a folder of photos with --photos")
    rng = np.random.default_rng(seed)
    (folder / "maps").mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", {"model": "efficientnet_lite0", "percentages": PERCENTAGES,
                                        "orders": ["morf", "lerf"], "seed": seed, "noise": 0.01,
                                        "match_support": "min", "curves": []})
    records = []
    for i in range(n):
        photo = files[i % len(files)]
        slug = f"{photo.stem[:60]}-{i:05d}"
        target = int(rng.integers(0, 1000))
        rec = {"key": f"{photo.resolve()}#{i}", "path": str(photo), "slug": slug,
               "label": target if rng.random() < 0.8 else int(rng.integers(0, 1000)), "target": target,
               "methods": {m: synth_scores(rng) for m in METHODS}, "status": "ok",
               "probability": float(rng.random()), "target_name": f"class {target}"}
        save_maps(folder / "maps" / f"{slug}.npz", {map_key(m): synth_map(m, rng) for m in METHODS})
        append_record(folder / "results.jsonl", rec)
        records.append(rec)
    for i in range(2):
        append_record(folder / "results.jsonl", {"key": f"/gone/{i}.png", "path": f"/gone/{i}.png",
                                                 "slug": f"gone-{i}", "status": "failed",
                                                 "reason": "worker died 3 times", "attempts": 3})
    write_json(folder / "metrics.json", {"model": "efficientnet_lite0", "n_images": n,
                                         "methods": summarize(records, list(METHODS), ["morf", "lerf"])})
    return folder


def ms_stats(values) -> str:
    a = np.asarray(values, float)
    return f"{np.median(a):.1f} | {np.percentile(a, 90):.1f} | {a.max():.1f}"


def kernel_timings(folder: Path, rounds: int = 10) -> dict:
    """Open, sort, filter, brush and page turn, in this process (messages encoded as a kernel's)."""
    t = time.perf_counter()
    from hsets_widgets.widgets.gallery import Gallery
    out = {"import the gallery (cold: torch, ipywidgets, bqplot)": [time.perf_counter() - t]}
    opens = []
    for _ in range(3):
        t = time.perf_counter()
        g = Gallery(folder)
        opens.append(time.perf_counter() - t)
        g.close()
    out["open"] = opens
    g = Gallery(folder)
    t = time.perf_counter()
    g.grid.wait(300)
    out["first page of thumbnails (background)"] = [time.perf_counter() - t]
    cols = [c for c in g.run.numbers() if c.split(" ")[-1] in ("morf_aopc", "lerf_aopc", "sparsity",
                                                                 "insertion_auc", "deletion_auc")]
    sort, filt, brush, turn = [], [], [], []
    for k in range(rounds):
        col = cols[k % len(cols)]
        t = time.perf_counter()
        g.sort.value = col
        sort.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        g.order.value = not g.order.value
        sort.append(1000 * (time.perf_counter() - t))
        g.filter_by.value = col
        t = time.perf_counter()
        g.low.value = f"{np.nanmedian(g.run.columns()[col]):.3f}"
        filt.append(1000 * (time.perf_counter() - t))
        g.low.value = ""
        x = np.asarray(g.scatter.mark.x)
        picked = np.flatnonzero(x < np.percentile(x, 10 + 5 * k)).tolist()
        t = time.perf_counter()
        g.scatter.mark.selected = picked                 # what the brush sends
        brush.append(1000 * (time.perf_counter() - t))
        g.scatter.clear.click()
        t = time.perf_counter()
        g.grid.next.click()
        turn.append(1000 * (time.perf_counter() - t))
    out.update({"sort (ms)": sort, "filter (ms)": filt, "brush (ms)": brush, "page turn (ms)": turn})
    g.grid.wait(300)
    g.close()
    return out


PAGE_JS = """
async ([action, target, pattern]) => {
  const el = () => document.querySelector(target);
  const t0 = performance.now();
  const done = new Promise(resolve => {
    const check = () => {
      const e = el();
      if (e && new RegExp(pattern).test(e.innerText)) { obs.disconnect(); resolve(performance.now() - t0); }
    };
    const obs = new MutationObserver(check);
    obs.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
    setTimeout(() => { obs.disconnect(); resolve(-1); }, 20000);
  });
  if (action.kind === 'select') {
    const s = document.querySelector(action.css);
    s.value = action.value; s.dispatchEvent(new Event('change', {bubbles: true}));
  } else if (action.kind === 'type') {
    const s = document.querySelector(action.css);
    s.value = action.value; s.dispatchEvent(new Event('input', {bubbles: true}));
  } else if (action.kind === 'click') {
    document.querySelector(action.css).click();
  }
  return await done;
}
"""


def page_timings(folder: Path, rounds: int = 8) -> dict:
    """The same in Chromium through ``hsets explore FOLDER`` (preheated kernel)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _browser import CHROMIUM, start_explore, until, wait_served
    from playwright.sync_api import sync_playwright

    from hsets_widgets.plumbing.signals import stop_process

    proc, url = start_explore([str(folder)], "bench_gallery_page.log")
    out = {}
    try:
        t = time.perf_counter()
        wait_served(url, proc)
        out["server up (s)"] = [time.perf_counter() - t]
        time.sleep(20)                         # a user arrives after the preheated kernel built the gallery
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            t = time.perf_counter()
            page.goto(url, timeout=600_000)
            until(page, ".hsets-gallery-where", r"of \d+ shown", timeout=600)
            out["page open -> grid on screen (s)"] = [time.perf_counter() - t]
            page.wait_for_timeout(1500)        # a user looks before the first click; thumbnails draw
            options = page.eval_on_selector(".hsets-gallery-sort select",
                                            "s => Array.from(s.options).map(o => [o.value, o.text])")
            # the option's value is the column's name (its text has non-breaking spaces)
            cols = [(v, v) for v, _ in options if v.split(" ")[-1] in ("morf_aopc", "lerf_aopc", "sparsity")]
            sort, filt, brush, colours, pictures = [], [], [], [], []
            for k in range(rounds):
                value, name = cols[k % len(cols)]
                sort.append(page.evaluate(PAGE_JS, [{"kind": "select", "css": ".hsets-gallery-sort select",
                                                     "value": value}, ".hsets-gallery-number",
                                                    re.escape(name) + " ="]))
                page.wait_for_timeout(300)
                page.select_option(".hsets-gallery-filter select", value)
                page.wait_for_timeout(300)
                before = page.inner_text(".hsets-gallery-where")
                filt.append(page.evaluate(PAGE_JS, [{"kind": "type", "css": ".hsets-gallery-low input",
                                                     "value": f"0.{2 + k}"}, ".hsets-gallery-where",
                                                    rf"^(?!{before.strip()}$)"]))
                page.wait_for_timeout(300)
                page.evaluate(PAGE_JS, [{"kind": "type", "css": ".hsets-gallery-low input", "value": ""},
                                        ".hsets-gallery-where", "shown"])
                page.wait_for_timeout(300)
                grid, dots, last = drag_brush(page, k)
                brush.append(grid)
                colours.append(dots)
                pictures.append(last)
                page.locator(".hsets-gallery-clear").click()
                page.wait_for_timeout(500)
            out.update({"sort (ms)": sort, "filter (ms)": filt, "brush (ms)": brush,
                        "brush: the scatter's points recoloured, in the page alone (ms)": colours,
                        "brush: the grid's last thumbnail replaced (ms)": pictures})
            page.screenshot(path=str(Path(tempfile.gettempdir()) / "bench_gallery.png"))
            browser.close()
    finally:
        stop_process(proc, 30)
    return out


BRUSH_JS = """
() => {
  window.__brush = {moves: [], changes: [], ups: [], dots: [], pictures: []};
  const where = document.querySelector('.hsets-gallery-where');
  const obs = new MutationObserver(() => { window.__brush.changes.push(performance.now()); });
  obs.observe(where, {subtree: true, childList: true, characterData: true});
  const pics = new MutationObserver(() => { window.__brush.pictures.push(performance.now()); });
  document.querySelectorAll('.hsets-gallery-tile img').forEach(i => pics.observe(i, {attributes: true}));
  const dots = new MutationObserver(() => { window.__brush.dots.push(performance.now()); });
  dots.observe(document.querySelector('.hsets-gallery-scatter .object_grp'), {subtree: true, attributes: true});
  const move = e => { if (e.buttons & 1) window.__brush.moves.push(performance.now()); };
  const up = () => { window.__brush.ups.push(performance.now()); };
  document.addEventListener('pointermove', move, true);
  document.addEventListener('pointerup', up, true);
  window.__brush_stop = () => {
    obs.disconnect(); dots.disconnect(); pics.disconnect();
    document.removeEventListener('pointermove', move, true); document.removeEventListener('pointerup', up, true);
  };
}
"""


def drag_brush(page, k: int) -> tuple:
    """Drag a rectangle over the scatter in one move; ``(ms until the grid's count changes, ms
    until the scatter's points change colour, ms until the last thumbnail is replaced)`` from the
    browser event that made the selection (the move, where the brush selects while it moves,
    else the release); -1 where nothing changed (the rectangle held no photo)."""
    fig = page.locator(".hsets-gallery-scatter").first
    fig.scroll_into_view_if_needed()           # below the grid: the mouse only reaches what is on screen
    box = fig.bounding_box()
    page.evaluate(BRUSH_JS)
    # alternate halves of the plot: a drag that starts inside the last rectangle would move it
    x0, y0 = box["x"] + 72 + (k % 2) * 190 + 5 * k, box["y"] + 24
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 170, y0 + 230, steps=1)
    page.wait_for_timeout(1000)
    page.mouse.up()
    page.wait_for_timeout(2000)
    b = page.evaluate("() => { window.__brush_stop(); return window.__brush; }")
    if not b["moves"] or not b["ups"]:
        return -1.0, -1.0, -1.0
    move, up = b["moves"][0], b["ups"][0]
    early = [c for c in b["changes"] if move <= c < up]
    late = [c for c in b["changes"] if c >= up]
    start, first = (move, early[0]) if early else (up, late[0]) if late else (move, None)
    dots = [d for d in b["dots"] if d >= start]
    # the pictures of the grid's answer arrive within a few hundred ms; later ones are the
    # background worker's new thumbnails
    pictures = [c for c in b["pictures"] if start <= c < start + 800]
    return ((first - start if first is not None else -1.0), (dots[0] - start if dots else -1.0),
            (pictures[-1] - start if pictures else -1.0))


def gallery_bench(args, write_section, machine_load) -> int:
    """Synthesize, time in the kernel and in Chromium, write the section of RESULTS_widgets.md."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="hsets-gallery-bench-") as tmp:
        folder = Path(tmp) / "eval"
        t = time.perf_counter()
        synthesize(folder, args.records, Path(args.photos))
        made = time.perf_counter() - t
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20
        load0 = machine_load()
        kernel = kernel_timings(folder)
        page = page_timings(folder)
        load1 = machine_load()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = ["## The gallery on a large run",
             "",
             f"Written by `bench/bench_widgets.py --gallery` (commit {commit}), {time.strftime('%Y-%m-%d %H:%M')}: "
             f"{args.records:,} records (and 2 failed photos) synthesized in {made:.0f} s into a temporary "
             f"folder with the store's own writers ({size:.0f} MiB: results.jsonl, metrics.json, one maps "
             f"file of 3 methods per record), the records pointing at the {args.photos} photos.",
             f"Machine load (shared, 2 cores; /proc/loadavg): {load0} at the start, {load1} at the end.",
             "", "In the kernel (widget messages JSON-encoded as a kernel sends them):", "",
             "| measured | median | p90 | max |", "|---|---|---|---|"]
    for k, v in kernel.items():
        lines.append(f"| {k}{'' if '(' in k else ' (s)'} | {ms_stats(v)} |")
    lines += ["", "In headless Chromium through `hsets explore FOLDER` (preheated kernel; from the browser "
              "event to the grid's text changing on the page, timed in the page with performance.now() and a "
              "MutationObserver; a brush is one drag over the scatter, timed from the move that made the "
              "selection):", "",
              "| measured | median | p90 | max |", "|---|---|---|---|"]
    for k, v in page.items():
        lines.append(f"| {k} | {ms_stats([x for x in v if x >= 0] or [float('nan')])} |")
    opened = statistics.median(kernel["open"])
    worst = max(max(page[k]) for k in ("sort (ms)", "filter (ms)", "brush (ms)"))
    missed = sum(x < 0 for k in ("sort (ms)", "filter (ms)", "brush (ms)") for x in page[k])
    lines += ["", f"Goals (issue 32): open under {OPEN_S:g} s ({'met' if opened < OPEN_S else 'not met'}: "
              f"{opened:.2f} s in the kernel); a sort, filter or brush under {ANSWER_MS:g} ms in the browser "
              f"({'met' if worst < ANSWER_MS else 'not met'}: slowest {worst:.0f} ms"
              + (f"; {missed} interaction(s) changed nothing on the page and are left out" if missed else "")
              + "). Thumbnails are drawn after the grid answers, on a background worker, a page at a time."]
    write_section(args.out, "\n".join(lines), mode="gallery")
    print("\n".join(lines))
    print(json.dumps({"kernel": kernel, "page": page}, default=float)[:2000])
    return 0
