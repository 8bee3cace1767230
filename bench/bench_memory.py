"""Peak resident memory of each tutorial notebook's kernel and of ``hsets demo``, under a budget.

Binder gives a session about 2 GB. Each notebook is executed from a fresh kernel with
``jupyter nbconvert --execute`` (into a scratch folder: the committed outputs are left alone)
and ``hsets demo`` is run, each with ``HSETS_MEMORY_BUDGET`` set to the budget (what the
container's cgroup limit gives on Binder; hsets_widgets.plumbing.memory reads either), and the peak
resident set of the largest process is read from ``getrusage(RUSAGE_CHILDREN)`` (the kernel;
nbconvert itself is far smaller). With ``--compare`` the demo and notebook 01 also run without
a budget, as before this setting existed. Cold start: from launching nbconvert on notebook 01
to the end of its first explanation cell (kernel start, imports, model and segmenter load,
IG, segmentation, growth), from the cell timings nbclient records. With ``--cold-start``, the
Binder session's first page: a Jupyter server started through ``binder/start`` with the budget
set, and the README's Voila link (notebook 01) opened in Chromium; seconds until the server
answers, until the page shows its first output, and until the Explorer shows its first set.

Writes bench/RESULTS_memory.md and bench/RESULTS_memory.json.

Run from the repository root::

    python bench/bench_memory.py                  # all notebooks and the demo, 2G budget
    python bench/bench_memory.py --only 01 --compare
    python bench/bench_memory.py --only none --cold-start
    python bench/bench_memory.py --only none --forward   # FORWARD_FACTOR's calibration

``--forward`` measures, for five architectures (random weights; memory does not depend on them),
the resident memory one more image adds to a forward pass without gradients (batches of 2 and
16, each the largest of three runs, in one fresh process, peak sampled every millisecond) against the largest output of one layer:
the ratio that ``hsets_widgets.model.models.FORWARD_FACTOR`` bounds, with which ROAD, insertion and
deletion size their forward batches to the memory room.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hsets_widgets.plumbing.signals import stop_process

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import git_rev, machine, write_section  # noqa: E402

JSON = Path(__file__).with_name("RESULTS_memory.json")
MARKDOWN = Path(__file__).with_name("RESULTS_memory.md")
GiB = 1 << 30
#: what a notebook kernel may reach inside Binder's 2 GB
TARGET = 1.5 * GiB
PROBE = ("import resource, subprocess, sys, time; t = time.time(); p = subprocess.run(sys.argv[1:]); "
         "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, time.time() - t, "
         "file=sys.stderr); sys.exit(p.returncode)")


def peak_of(cmd, env, cwd) -> dict:
    """Run ``cmd``; its exit code, wall seconds and the peak RSS of its largest process."""
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, cmd)], env=env, cwd=cwd,
                          capture_output=True, text=True)
    m = re.search(r"PEAK (\d+) ([\d.]+)", proc.stderr)
    return {"returncode": proc.returncode, "started": started, "seconds": float(m.group(2)),
            "peak_bytes": int(m.group(1)), "tail": (proc.stdout + proc.stderr)[-1500:]}


def environment(budget) -> dict:
    # the inline backend, as a notebook user has it (an Agg backend would draw no figures)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("MPLBACKEND", None)
    env.pop("HSETS_MEMORY_BUDGET", None)
    if budget:
        env["HSETS_MEMORY_BUDGET"] = budget
    return env


def first_explanation_end(nb_path: Path, started: float):
    """Seconds from ``started`` to the end of the first cell that calls ``.run()`` or ``explain(``."""
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell.get("source", ""))
        reply = cell.get("metadata", {}).get("execution", {}).get("shell.execute_reply")
        if cell["cell_type"] == "code" and reply and re.search(r"\.run\(|explain\(", src):
            end = dt.datetime.fromisoformat(reply.replace("Z", "+00:00")).timestamp()
            return end - started
    return None


def run_notebook(nb: Path, budget, scratch: Path) -> dict:
    # executed where it lies (its relative paths), written to the scratch folder
    cmd = [Path(sys.executable).with_name("jupyter"), "nbconvert", "--to", "notebook", "--execute",
           "--ExecutePreprocessor.timeout=1800", "--output-dir", scratch, "--output", nb.name, nb.name]
    r = peak_of(cmd, environment(budget), nb.parent)
    out = scratch / nb.name
    r["first_explanation_s"] = first_explanation_end(out, r["started"]) if out.exists() else None
    return r


def run_demo(budget, scratch: Path) -> dict:
    cmd = [Path(sys.executable).with_name("hsets"), "demo", "--quiet", "--out", scratch / f"demo-{budget or 'none'}"]
    return peak_of(cmd, environment(budget), scratch)


def import_torch(python) -> dict:
    """Peak RSS of ``import torch`` alone in ``python`` (another venv: e.g. torch's CPU build)."""
    # VmHWM, not getrusage: Linux keeps ru_maxrss across exec, so a child of this (torch-sized)
    # process would report this process's size
    code = ("import re, torch; print(torch.__version__, 1024 * int(re.search(r'VmHWM:\\s+(\\d+)', "
            "open('/proc/self/status').read()).group(1)))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"name": f"import torch ({out[0]})", "budget": None, "peak_bytes": int(out[1]), "seconds": 0.0,
            "returncode": 0, "started": 0.0, "first_explanation_s": None}


def cold_start(budget) -> dict:
    """Seconds from starting a Jupyter server (through binder/start, as Binder does) to the
    README's Voila link (notebook 01) answering, showing output, and showing the Explorer's first set."""
    sys.path.insert(0, str(ROOT / "tests"))
    from playwright.sync_api import sync_playwright
    from test_browser_explorer import CHROMIUM, CHROMIUM_ARGS, free_port, wait_http, wait_text

    port, token = free_port(), "bench-cold-start"
    env = environment(budget)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    as_root = ["--allow-root"] if os.geteuid() == 0 else []
    log = tempfile.TemporaryFile()
    started = time.time()
    proc = subprocess.Popen(["bash", str(ROOT / "binder" / "start"), "jupyter", "server", "--no-browser", *as_root,
                             f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
                             f"--IdentityProvider.token={token}"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    marks = {}
    try:
        wait_http(f"{base}/api", timeout=600)
        marks["server_s"] = time.time() - started
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(f"{base}/voila/render/notebooks/01_quickstart.ipynb?token={token}", timeout=1_800_000)
            page.locator(".jp-OutputArea-output").first.wait_for(state="attached", timeout=1_800_000)
            marks["first_output_s"] = time.time() - started
            page.locator(".hsets-image-canvas").first.wait_for(state="visible", timeout=1_800_000)
            wait_text(page, ".hsets-set-info", r"Set size: \d+", timeout=600)
            marks["explorer_s"] = time.time() - started
            browser.close()
        code = 0
    except Exception as err:  # noqa: BLE001 - recorded as a failed row
        code, marks["error"] = 1, str(err)[:300]
    finally:
        stop_process(proc, 30)
        log.close()
    return {"returncode": code, "started": started, "seconds": time.time() - started,
            "peak_bytes": 0, "first_explanation_s": marks.get("explorer_s"), **marks}


FORWARD_PROBE = r"""
import ctypes, gc, json, threading, time
import torch, torchvision
from hsets_widgets.model.models import FORWARD_FACTOR, forward_image_bytes, load_classifier
torch.set_num_threads(1)
libc, peak = ctypes.CDLL("libc.so.6"), [0]
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))
def sample():
    while True:
        peak[0] = max(peak[0], rss()); time.sleep(0.001)
threading.Thread(target=sample, daemon=True).start()
models = {"EfficientNet-Lite0 (default)": load_classifier(None)}
for name in ("resnet50", "mobilenet_v3_large", "vgg16", "densenet121"):
    models[name] = load_classifier(getattr(torchvision.models, name)().eval())
out = []
for name, clf in models.items():
    x = torch.rand(3, 224, 224)
    estimate = forward_image_bytes(clf, x)
    grown = {2: 0, 16: 0}
    for _ in range(3):           # the largest of three: a sampler can miss a short peak
        for n in grown:
            gc.collect(); libc.malloc_trim(0); time.sleep(0.05)
            base, peak[0] = rss(), 0
            with torch.no_grad():
                clf(torch.rand(n, 3, 224, 224))
            time.sleep(0.01)
            grown[n] = max(grown[n], peak[0] - base)
    per_image = (grown[16] - grown[2]) / 14
    out.append({"model": name, "per_image_bytes": per_image, "largest_output_bytes": estimate / FORWARD_FACTOR,
                "estimate_bytes": estimate, "factor": FORWARD_FACTOR})
print("FORWARD", json.dumps(out))
"""


def forward_memory() -> list:
    """Rows of ``--forward``: measured memory per image of a forward pass against the estimate."""
    p = subprocess.run([sys.executable, "-c", FORWARD_PROBE], capture_output=True, text=True, cwd=ROOT)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("FORWARD ")), None)
    if line is None:
        raise SystemExit(f"the forward-memory probe failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(line[len("FORWARD "):])


def forward_markdown(rows: list, meta: dict) -> str:
    mb = lambda n: f"{n / 2**20:.1f}"  # noqa: E731
    lines = ["## Memory per image of a forward pass (`--forward`)", "",
             f"Machine: {meta['machine']}; load average {meta['load']}. Commit {meta['commit']}. Resident memory one "
             "more image adds to a forward pass without gradients (224 px; peak of a batch of 16 minus a batch of "
             "2, over 14, each the largest of three runs), against the largest output of one layer. `hsets_widgets.model.models.FORWARD_FACTOR` times "
             "that output is the estimate ROAD, insertion and deletion size their forward batches with; "
             "it should be at least the measured memory.", "",
             "| model | measured per image (MiB) | largest layer output (MiB) | ratio | estimate (MiB) | estimate covers it |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {mb(r['per_image_bytes'])} | {mb(r['largest_output_bytes'])} | "
                     f"{r['per_image_bytes'] / r['largest_output_bytes']:.2f} | {mb(r['estimate_bytes'])} | "
                     f"{'yes' if r['estimate_bytes'] >= r['per_image_bytes'] else '**no**'} |")
    return "\n".join(lines)


def gib(n) -> str:
    return f"{n / GiB:.2f}"


def markdown(rows: list, meta: dict) -> str:
    lines = [
        "## Peak memory of the notebooks and `hsets demo` (bench/bench_memory.py)",
        "",
        f"Machine: {meta['machine']}; load average {meta['load']} when the run started. Commit {meta['commit']}. "
        f"Command: `{meta['command']}` ({meta['jobs']} runs at once: wall times include the others). Peak = largest resident set of one process (the kernel), from "
        "getrusage(RUSAGE_CHILDREN); the budget is `HSETS_MEMORY_BUDGET` (Binder's 2 GB container limit "
        "gives the same room through its cgroup). "
        + ("This torch is the CUDA build: its libraries add to the resident memory even on a CPU (the "
           "`import torch` rows), and Binder installs the CPU build." if "+cpu" not in meta["machine"] else
           "This torch is the CPU build Binder installs."),
        "",
        "| run | budget | peak RSS (GiB) | under 1.5 GiB | wall (s) | first explanation after (s) | exit | load at end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["name"].startswith("cold start"):
            continue
        first = f"{r['first_explanation_s']:.1f}" if r.get("first_explanation_s") else ""
        earlier = f" (commit {r['commit']})" if r.get("commit") else ""
        lines.append(f"| {r['name']}{earlier} | {r['budget'] or 'none'} | {gib(r['peak_bytes'])} | "
                     f"{'yes' if r['peak_bytes'] < TARGET else '**no**'} | {r['seconds']:.1f} | {first} | "
                     f"{r['returncode']} | {r.get('load', '')} |")
    starts = [r for r in rows if r["name"].startswith("cold start")]
    if starts:
        lines += ["", "### Cold start (`--cold-start`)", "",
                  "A Jupyter server started through `binder/start` with the budget set, then the README's Voila "
                  "link (`voila/render/notebooks/01_quickstart.ipynb`) opened in Chromium: seconds from starting "
                  "the server until it answers, until the page shows its first cell output, and until the "
                  "Explorer shows its first set (notebook 01 runs its default explanation first). Binder's own "
                  "image pull and container start come before this and are not measured here.", "",
                  "| run | budget | server answers (s) | first output (s) | Explorer's first set (s) | exit | load |",
                  "|---|---|---|---|---|---|---|"]
        for r in starts:
            cell = lambda k, r=r: f"{r[k]:.1f}" if r.get(k) is not None else ""  # noqa: E731
            lines.append(f"| {r['name']} | {r['budget'] or 'none'} | {cell('server_s')} | {cell('first_output_s')} | "
                         f"{cell('explorer_s')} | {r['returncode']} | {r.get('load', '')} |")
    return "\n".join(lines)


def save(rows: list, meta: dict) -> None:
    """Write what has been measured so far (a long run keeps its finished rows); rows of an earlier
    run that this one did not measure are kept, with that run's commit."""
    done = [{k: v for k, v in r.items() if k != "started" and not (k == "tail" and r["returncode"] == 0)}
            for r in rows]
    measured = {(r["name"], r["budget"]) for r in done}
    if JSON.exists():
        old = json.loads(JSON.read_text())
        done += [dict(r, commit=r.get("commit", old["meta"]["commit"])) for r in old["runs"]
                 if (r["name"], r["budget"]) not in measured]
    JSON.write_text(json.dumps({"meta": meta, "runs": done}, indent=1) + "\n")
    write_section("memory", markdown(done, meta), path=MARKDOWN)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="2G", help="HSETS_MEMORY_BUDGET for every run (default 2G)")
    ap.add_argument("--only", nargs="*", default=None, help="notebook prefixes (01 02 ...) and/or 'demo'")
    ap.add_argument("--compare", action="store_true", help="also run notebook 01 and the demo without a budget")
    ap.add_argument("--other-python", default=None,
                    help="also measure `import torch` in this interpreter (e.g. a venv with torch's CPU build)")
    ap.add_argument("--cold-start", action="store_true",
                    help="also time the Voila route's first page from a fresh server (needs Chromium)")
    ap.add_argument("--forward", action="store_true",
                    help="also measure a forward pass's memory per image on five architectures (FORWARD_FACTOR)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once (peaks are per process; wall times then include the other runs)")
    args = ap.parse_args(argv)
    wanted = lambda name: not args.only or any(name.startswith(p) for p in args.only)  # noqa: E731
    meta = {"machine": machine(), "commit": git_rev(), "load": f"{os.getloadavg()[0]:.1f}",
            "command": "python bench/bench_memory.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "jobs": args.jobs}
    if args.forward:
        write_section("forward", forward_markdown(forward_memory(), meta), path=MARKDOWN)
    rows = []
    if args.other_python:
        rows += [import_torch(sys.executable), import_torch(args.other_python)]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        tasks = []
        for budget in [args.budget] + ([None] if args.compare else []):
            if wanted("demo"):
                tasks.append(("hsets demo", budget, lambda b=budget: run_demo(b, scratch)))
            for nb in sorted((ROOT / "notebooks").glob("0*.ipynb")):
                if wanted(nb.name) and (budget is not None or nb.name.startswith("01")):
                    tasks.append((nb.stem, budget, lambda b=budget, nb=nb: run_notebook(nb, b, scratch)))
        if args.cold_start:   # first: with --jobs > 1 it then shares the machine with the fewest runs
            tasks.insert(0, ("cold start (Voila route, notebook 01)", args.budget, lambda: cold_start(args.budget)))
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(fn): (name, budget) for name, budget, fn in tasks}
            for fut in as_completed(futures):
                name, budget = futures[fut]
                rows.append({"name": name, "budget": budget, **fut.result(),
                             "load": f"{os.getloadavg()[0]:.1f}"})
                print(name, budget, gib(rows[-1]["peak_bytes"]), "GiB", flush=True)
                save(rows, meta)
    if rows:
        save(rows, meta)
    failed = [r["name"] for r in rows if r["returncode"] != 0]
    if failed:
        print("failed:", failed, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
