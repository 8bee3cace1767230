"""How fast the Explorer answers a slider move from the Hessian-row cache.

Builds the Explorer on the default model (EfficientNet-Lite0) and photo (``chelsea``,
224 x 224), grows the first automatic seed's set, computes the rows a sweep of ``mu`` needs
once (timed as "cold"), then times each ``mu`` change again from the cache: from the
front-end message (``set_state`` on the slider, what the browser sends) until the state is
regrown, the set valued, the Hessian-row histogram and info texts updated and the canvas
draw commands serialised. Widget messages go through a comm that JSON-encodes them like a
kernel does, so serialisation is part of the time. Writes ``bench/RESULTS_widgets.md``.

Run from the repository root::

    python bench/bench_widgets.py                  # ~3-5 min on 2 CPU cores
    python bench/bench_widgets.py --rounds 3 --segmenter slic
    python bench/bench_widgets.py --page           # the page in Chromium: first readout, reload
    python bench/bench_widgets.py --gallery        # the gallery on 1,000 records, kernel and Chromium
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from hsets_widgets.plumbing.signals import stop_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).with_name("RESULTS_widgets.md")
TARGET_MS = 200.0


class Meter:
    """Counts widget messages and bytes, encoding them as the kernel would."""

    def __init__(self):
        self.messages = 0
        self.bytes = 0

    def install(self):
        import comm
        from comm import DummyComm
        from jupyter_client.session import json_packer

        meter = self

        class MeasuringComm(DummyComm):
            def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
                payload = json_packer({"data": data or {}, "metadata": metadata or {}})
                meter.messages += 1
                meter.bytes += len(payload) + sum(len(memoryview(b).cast("B")) for b in (buffers or []))

        comm.create_comm = lambda *a, **k: MeasuringComm(*a, **k)

    def reset(self):
        self.messages = self.bytes = 0


def stats(ms) -> dict:
    a = np.asarray(ms, dtype=float)
    return {"n": int(a.size), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "max": float(a.max()), "mean": float(a.mean())}


def page_markers(mode: str) -> tuple:
    """The begin and end markers of one section (``mode``: "preheat", "no-preheat" or "gallery")."""
    flag = "--gallery" if mode == "gallery" else f"--page {mode}"
    return f"<!-- bench_widgets {flag}: begin -->", f"<!-- bench_widgets {flag}: end -->"


PAGE_MODES = ("preheat", "no-preheat", "gallery")


def write_section(path, page: str | None = None, body: str | None = None, mode: str = "preheat") -> None:
    """Write the slider results (``body``) or one page section (``page``), keeping the rest."""
    from hsets_widgets.plumbing.files import write_text

    path = Path(path)
    old = path.read_text() if path.exists() else ""
    sections = {}
    head = old
    for m in PAGE_MODES:
        begin, end = page_markers(m)
        if begin in head:
            before, rest = head.split(begin, 1)
            inner, after = rest.split(end, 1)
            sections[m] = inner.strip()
            head = before.rstrip() + "\n" + after.lstrip()
    if page is not None:
        sections[mode] = page.strip()
    text = (body if body is not None else head).rstrip() + "\n"
    for m in PAGE_MODES:
        if m in sections:
            begin, end = page_markers(m)
            text += f"\n{begin}\n{sections[m]}\n{end}\n"
    write_text(path, text)


def machine_load() -> str:
    """``uptime``'s load averages (the machine is shared: timings depend on it)."""
    try:
        one, five, fifteen = open("/proc/loadavg").read().split()[:3]
        return f"{one} / {five} / {fifteen} (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def page_bench(args) -> int:
    """Time-to-first-readout and reload time of ``hsets explore`` in a real browser.

    Starts ``hsets explore`` (the default model; the segmenter given) as a user would, opens it
    in headless Chromium, and measures: page open -> "ready" with the first set; "ready" -> the
    live readout's first numbers (the goal: within 5 s); after keeping a set, page reload ->
    the kept set and the last seed back on screen (the goal: under 5 s), then whether the old
    page's kernel is gone. Repeats the reload ``--reloads`` times.
    """
    import re

    from _browser import CHROMIUM, start_explore, text, until, wait_served
    from playwright.sync_api import sync_playwright

    options = ["--segmenter", args.segmenter, args.image] + (["--no-preheat"] if args.no_preheat else [])
    t_server = time.perf_counter()
    proc, url = start_explore(options, "bench_widgets_page.log")
    rows = {}
    load_before = machine_load()

    def kernels():
        try:
            kids = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
            voila = [int(k) for k in kids]
            out = set()
            for v in voila:
                for c in open(f"/proc/{v}/task/{v}/children").read().split():
                    if b"ipykernel" in open(f"/proc/{c}/cmdline", "rb").read():
                        out.add(int(c))
            return out
        except OSError:
            return set()

    try:
        wait_served(url, proc)
        rows["server up (s)"] = time.perf_counter() - t_server
        if not args.no_preheat:     # a user arrives after the server prepared its kernel
            time.sleep(args.settle)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            page.goto(url, timeout=1_800_000)
            t_set = until(page, ".hsets-set-info", r"Set size: \d+")
            t_ready = until(page, ".hsets-status", r"ready")
            t_readout = until(page, ".hsets-readout", r"Computed in")
            rows["page open -> first set and 'ready' (s)"] = max(t_set, t_ready) - t0
            rows["'ready' -> first readout (s)"] = t_readout - max(t_set, t_ready)
            rows["page open -> first readout (s)"] = t_readout - t0
            page.locator(".hsets-sets-keep").first.click()
            until(page, ".hsets-sets-list", r"#1")
            seed = re.search(r"seed \((\d+), (\d+)\)", text(page, ".hsets-sets-list")).groups()
            page.wait_for_timeout(1500)         # the session file is written
            reloads, gone = [], []
            for _ in range(args.reloads):
                before = kernels()
                t0 = time.perf_counter()
                page.reload(timeout=1_800_000)
                t_back = until(page, ".hsets-sets-list", rf"#1[^·]* · seed \({seed[0]}, {seed[1]}\)")
                reloads.append(t_back - t0)
                t1 = time.perf_counter()
                while len(kernels() & before) >= len(before) and time.perf_counter() - t1 < 120:
                    time.sleep(0.25)
                gone.append(time.perf_counter() - t1 if len(kernels() & before) < len(before) else float("nan"))
                until(page, ".hsets-status", r"ready")
                page.wait_for_timeout(1500)
            browser.close()
    finally:
        stop_process(proc, 30)
    import subprocess as sp

    commit = sp.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"## The page: time to first readout and reload ({'preheated kernel' if not args.no_preheat else 'no preheat'})",
             "",
             f"Written by `bench/bench_widgets.py --page` (commit {commit}), {time.strftime('%Y-%m-%d %H:%M')}: "
             f"`hsets explore {args.image} --segmenter {args.segmenter}` (EfficientNet-Lite0) in headless Chromium "
             "1400x1000, as a user meets it.",
             f"Machine load (shared, 2 cores; /proc/loadavg): {load_before} at the start, {machine_load()} at the end.",
             "", "| measured | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rows.items()]
    lines += [f"| reload -> kept set and seed back on screen (each of {len(reloads)}) | "
              + ", ".join(f"{r:.1f}" for r in reloads) + " |",
              "| reload -> old page's kernel gone | " + ", ".join(f"{g:.1f}" for g in gone) + " |",
              "", "Goals (issue 22): first readout within 5 s of 'ready'; a reload back in under 5 s."]
    first = rows["'ready' -> first readout (s)"]
    lines.append(f"First readout {'within' if first <= 5 else 'later than'} 5 s of 'ready' ({first:.1f} s); "
                 f"reloads under 5 s: {sum(r < 5 for r in reloads)} of {len(reloads)}.")
    if not args.no_preheat:
        lines.append("With a preheated kernel the page takes a kernel that prepared the Explorer before the "
                     "page opened (the first readout can be on screen with 'ready'); a reload that comes "
                     "before the pool has refilled waits for a kernel to start and run the app (import, "
                     "model, widgets).")
    write_section(args.out, "\n".join(lines), mode="no-preheat" if args.no_preheat else "preheat")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="chelsea")
    ap.add_argument("--segmenter", default="slic",
                    help="segmentation only places the seeds; slic keeps the run short (default)")
    ap.add_argument("--rounds", type=int, default=5, help="timed sweeps over the mu values")
    ap.add_argument("--mus", default="4,5,6,7,8,10,12,16", help="top-k values of mu swept")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--profile", action="store_true", help="print where warm moves spend time")
    ap.add_argument("--no-readout", action="store_true", help="time the sliders with the live readout off")
    ap.add_argument("--page", action="store_true",
                    help="time `hsets explore` in headless Chromium instead: page open to the first readout, "
                         "and a reload back to the kept sets (needs playwright and /usr/bin/chromium)")
    ap.add_argument("--reloads", type=int, default=3, help="--page: reloads timed")
    ap.add_argument("--settle", type=float, default=60.0,
                    help="--page: seconds a user arrives after the server starts (the preheated kernel prepares)")
    ap.add_argument("--no-preheat", action="store_true", help="--page: serve without a preheated kernel")
    ap.add_argument("--gallery", action="store_true",
                    help="the gallery on --records synthesized records: open, sort, filter, brush (kernel and Chromium)")
    ap.add_argument("--records", type=int, default=1000, help="--gallery: records synthesized")
    ap.add_argument("--photos", default="/work/shared/images/imagenet-sample",
                    help="--gallery: a folder of photos the records point at (read, never copied)")
    args = ap.parse_args(argv)
    if args.page:
        return page_bench(args)
    if args.gallery:
        from bench_gallery import gallery_bench

        return gallery_bench(args, write_section, machine_load)

    meter = Meter()
    meter.install()
    import torch

    from hsets_widgets.widgets import Explorer

    try:
        from _results import git_rev, machine
    except ImportError:  # pragma: no cover - run from elsewhere
        def machine():
            return f"{torch.get_num_threads()} torch threads"

        def git_rev():
            return "unknown"

    t0 = time.perf_counter()
    explorer = Explorer(args.image, segmenter=args.segmenter, autostart=True, readout=not args.no_readout)
    assert explorer.wait(1800), "preparation did not finish"
    st, thr, ex = explorer.state, explorer.threshold, explorer.explainer
    ro = explorer.readout
    first_readout_s = float("nan")
    if not args.no_readout:
        assert ro.wait(1800), "the first readout did not finish"
        first_readout_s = ro.last_seconds          # the shown set, IG and the random map
    prepare_s = time.perf_counter() - t0
    assert st.error == "", st.error
    seed = st.seed
    nu0 = st.nu
    print(f"prepared in {prepare_s:.1f} s: {ex.classifier.name} -> {ex.class_name!r}; seed {seed.yx}, "
          f"set of {len(st.grown)}, {st.n_rows} rows", flush=True)

    mus = [float(m) for m in args.mus.split(",")]
    # cold: rows the sweep needs, computed once in the background
    cold = []
    for mu in mus:
        rows0, c0 = ex.rows.n_computed, time.perf_counter()
        thr.mu.set_state({"value": mu})
        assert explorer.wait(1800)
        new = ex.rows.n_computed - rows0
        cold.append((mu, new, time.perf_counter() - c0, len(st.grown)))
        print(f"  cold mu={mu:g}: {new} new rows in {cold[-1][2]:.1f} s, set {len(st.grown)}", flush=True)
    rows_cached = ex.rows.n_computed

    # warm: every move answered from the cache, in the calling thread
    times, sizes, msgs, nbytes, draws = [], {}, [], [], []
    order = mus + mus[::-1]
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for mu in order:
            thr.mu.set_state({"value": mu})
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    for _ in range(args.rounds):
        for mu in order:
            if st.params["mu"] == mu:
                continue
            meter.reset()
            d0 = explorer.image_view.n_draws
            t = time.perf_counter()
            thr.mu.set_state({"value": mu})
            dt = (time.perf_counter() - t) * 1e3
            assert not st.busy, "a cached move went to the background"
            assert st.grown.rule.mu == mu
            times.append(dt)
            msgs.append(meter.messages)
            nbytes.append(meter.bytes)
            draws.append(explorer.image_view.n_draws - d0)
            sizes.setdefault(mu, len(st.grown))
    assert ex.rows.n_computed == rows_cached, "the timed sweep computed rows"
    s = stats(times)
    print(f"warm mu moves: median {s['median']:.1f} ms, p90 {s['p90']:.1f} ms, max {s['max']:.1f} ms "
          f"over {s['n']} moves", flush=True)

    # other cached interactions: merge-animation steps and a nu move below the current size
    anim = []
    for k in list(range(st.n_steps + 1)) * 2:
        t = time.perf_counter()
        explorer.animation.play.set_state({"value": k})
        anim.append((time.perf_counter() - t) * 1e3)
    nu_ms = []
    nus = [v for v in (16, 32, 48, st.nu) if v <= st.nu]
    for nu in nus + nus[::-1]:
        t = time.perf_counter()
        thr.nu.set_state({"value": nu})
        nu_ms.append((time.perf_counter() - t) * 1e3)
        assert not st.busy
    a, n = stats(anim), stats(nu_ms)

    # the readout's own time: one coarse ROAD of the shown explanation per new set, in the
    # background (the references are computed once, with the first readout)
    readout_s = []
    if not args.no_readout:
        ro.wait(1800)
        ro.cache.clear()
        for mu in mus[:5]:
            thr.mu.set_state({"value": mu})
            assert explorer.wait(1800) and ro.wait(1800)
            readout_s.append(ro.last_seconds)
        print(f"readouts: {', '.join(f'{v:.2f}' for v in readout_s)} s (first, with IG and random: "
              f"{first_readout_s:.1f} s)", flush=True)

    per_row = [c[2] / c[1] for c in cold if c[1] > 0]
    lines = [
        "# Explorer responsiveness",
        "",
        f"Written by `bench/bench_widgets.py` (commit {git_rev()}), "
        f"{time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"- Machine: {machine()}",
        f"- Model / image: {ex.classifier.name}, `{args.image}` at {ex.shape[1]}x{ex.shape[2]} "
        f"(predicted '{ex.class_name}', p = {ex.probability:.2f}); preset `{ex.config.preset}` "
        f"(top-k rule, nu = {nu0}, {ex.config.features} features); segmenter `{args.segmenter}`",
        f"- Seed: first automatic seed {tuple(seed.yx)}; preparation (IG, segmentation, seeds, first "
        f"set) {prepare_s:.1f} s",
        "- Timed: `mu` slider message (`set_state`, as the browser sends it) until the state is "
        "regrown from cached rows, the set valued (IDG, "
        f"{ex.config.n_samples} subsets), the row histogram, texts and canvas commands updated "
        "and every widget message JSON-encoded.",
        "",
        f"- Live faithfulness readout: {'on (coarse ROAD in its own background worker while the sliders move)' if not args.no_readout else 'off'}.",
        "",
        "| interaction (from cache) | moves | median ms | p90 ms | max ms |",
        "|---|---|---|---|---|",
        f"| mu slider (top-k {', '.join(f'{m:g}' for m in mus)}) | {s['n']} | {s['median']:.1f} | "
        f"{s['p90']:.1f} | {s['max']:.1f} |",
        f"| nu slider ({min(nus)}-{max(nus)}) | {n['n']} | {n['median']:.1f} | {n['p90']:.1f} | {n['max']:.1f} |",
        f"| merge animation step (Play) | {a['n']} | {a['median']:.1f} | {a['p90']:.1f} | {a['max']:.1f} |",
        "",
        f"Target: < {TARGET_MS:.0f} ms per slider move from cache — "
        f"{'met' if s['p90'] < TARGET_MS else 'NOT met'} (p90 {s['p90']:.1f} ms).",
        f"Messages per mu move: median {int(np.median(msgs))}, "
        f"{np.median(nbytes) / 1024:.1f} kB; image-view layers redrawn per move: {int(np.median(draws))} "
        "(only the set layer; the photo, segments, heatmap and seeds stay).",
        "",
        f"Set size by mu: {', '.join(f'{m:g}: {sizes[m]}' for m in mus if m in sizes)} "
        f"(the size cap nu = {nu0} binds; the members differ).",
        "",
        *([f"Readout time per new explanation (coarse ROAD: {len(ro.percentages)} fractions x 2 orders, "
            f"background): median {np.median(readout_s):.2f} s over {len(readout_s)} sets "
            f"(range {min(readout_s):.2f}-{max(readout_s):.2f} s); the first one, which also scores IG "
            f"and a random map once per image, {first_readout_s:.1f} s.", ""] if readout_s else []),
        "Cold moves (rows not cached yet; computed in the background with progress, the notebook "
        "stays responsive):",
        "",
        "| mu | new rows | seconds | set size |",
        "|---|---|---|---|",
    ] + [f"| {m:g} | {k} | {t:.1f} | {z} |" for m, k, t, z in cold] + [
        "",
        f"Hessian rows cost {np.median(per_row):.2f} s each (median over cold moves, batched "
        f"{ex.rows.batch_size} per pass, on a machine shared with other jobs); {rows_cached} rows "
        "were cached after the cold sweep."
        if per_row else "",
    ]
    write_section(args.out, body="\n".join(lines).rstrip() + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
