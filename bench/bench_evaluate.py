"""Images per minute of ``hsets evaluate``: one process against Ray workers, side by side.

Every configuration runs the same command on the same photos (the first ``--limit`` of the
tuning half of ``../shared/images``) with the paper's methods (``hsets`` default preset,
``ig``, ``random``) and the default scoring, each in its own fresh process and output folder,
one after another in one run:

``single, 2 threads``   the default: one process, torch on both cores
``single, 1 thread``    one process, one torch thread (the per-core baseline)
``ray, 1 worker``       ``--workers 1`` (one torch thread per worker)
``ray, 2 workers``      ``--workers 2``

Measured: wall time of the whole command, Ray's start-up (cluster and workers ready, from
``metrics.json``), images per minute over the whole command and over its image loop alone,
the speed-up of each against ``single, 1 thread`` and ``single, 2 threads`` as ratios, and
whether each configuration's records equal those of ``single, 1 thread`` (timings aside).
``--paper`` instead runs the paper's protocol once on Ray (``--workers 2``, methods
``hsets:paper,ig,random``, ``--correct-only``): what one paper-preset image costs a worker.
Each mode writes its own section of ``bench/RESULTS_evaluate.md`` and its own JSON file.

    python bench/bench_evaluate.py               # 8 photos, about 15 min on 2 cores
    python bench/bench_evaluate.py --limit 2     # a quick look
    python bench/bench_evaluate.py --paper --limit 2   # the paper preset, about 6 min
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hsets_widgets.plumbing.files import write_text  # noqa: E402 - after the path set-up

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "images"
METHODS = "hsets,ig,random"
CONFIGS = (("single, 2 threads", [], 2), ("single, 1 thread", [], 1),
           ("ray, 1 worker", ["--workers", "1"], 1), ("ray, 2 workers", ["--workers", "2"], 1))
PAPER_METHODS = "hsets:paper,ig,random"


def tuning_photos(root: Path, limit: int) -> list:
    """The first ``limit`` photos of the tuning half, split as the faithfulness benchmark splits."""
    from faithfulness import photos

    return [path for _, path, half in photos(root) if half == "tuning"][:limit]


def records(out: Path) -> dict:
    return {r["key"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
            if r.get("status") == "ok"}


def without_times(record: dict) -> dict:
    return {**record, "methods": {m: {k: v for k, v in r.items() if "seconds" not in k}
                                  for m, r in record["methods"].items()}}


def run_config(name, extra, threads, photos, root: Path, methods: str = METHODS) -> dict:
    out = root / name.replace(", ", "-").replace(" ", "_")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HSETS_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "hsets"), "evaluate", *map(str, photos), "--out", str(out),
           "--methods", methods, "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    recs = records(out)
    per_image = [sum(m["attribution_seconds"] + m["road_seconds"] + m.get("curves_seconds", 0.0)
                     for m in r["methods"].values()) for r in recs.values()]
    startup = metrics.get("workers", {}).get("startup_seconds")
    return {"name": name, "wall_seconds": wall, "n_images": metrics["n_images"],
            "ray_startup_seconds": startup, "per_image_seconds": per_image, "records": recs,
            "workers": metrics.get("workers"), "metrics": metrics}


def paper_run(photos, meta) -> int:
    """The paper's protocol on 2 Ray workers: per-image cost and the scores, one run."""
    from _results import write_section

    with tempfile.TemporaryDirectory() as tmp:
        r = run_config("ray, 2 workers, paper", ["--workers", "2", "--correct-only"], 1, photos, Path(tmp),
                       PAPER_METHODS)
    m = r["metrics"]
    per_method = {name: {k: e[k]["mean"] for k in ("morf_aopc", "lerf_aopc", "sparsity",
                                                   "attribution_seconds", "road_seconds")}
                  for name, e in m["methods"].items()}
    write_text(HERE / "RESULTS_evaluate_paper.json", json.dumps(
        {"meta": meta, "wall_seconds": r["wall_seconds"], "ray_startup_seconds": r["ray_startup_seconds"],
         "n_images": r["n_images"], "skipped": m["skipped"], "per_image_seconds": r["per_image_seconds"],
         "methods": per_method}, indent=1))
    md = [f"## The paper's protocol on 2 workers (`--workers 2 --correct-only --methods {PAPER_METHODS}`)\n",
          f"Written by `bench/bench_evaluate.py --paper` ({meta['written']}, commit {meta['git_rev']}) on "
          f"{meta['machine']}; {len(photos)} photos, one run. {r['n_images']} correctly classified "
          f"and evaluated, {len(m['skipped'])} skipped; wall {r['wall_seconds']:.0f} s, Ray start-up "
          f"{r['ray_startup_seconds']:.1f} s; per image (a worker, 1 thread: all three methods and "
          f"their scoring): {', '.join(f'{v:.0f} s' for v in r['per_image_seconds'])}.\n",
          "| method | MoRF AOPC | LeRF AOPC | sparsity | s to explain | s to score |", "|---|---|---|---|---|---|"]
    for name, e in per_method.items():
        md.append(f"| {name} | {e['morf_aopc']:.3f} | {e['lerf_aopc']:.3f} | {e['sparsity']:.3f} | "
                  f"{e['attribution_seconds']:.1f} | {e['road_seconds']:.1f} |")
    md.append("\n(Means over the photos above: far too few to compare methods; the faithfulness "
              "comparison is bench/FAITHFULNESS.md.)\n")
    write_section("paper-protocol", "\n".join(md), HERE / "RESULTS_evaluate.md")
    print("\n".join(md))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=8, help="photos (default: 8)")
    ap.add_argument("--images", default=str(SHARED))
    ap.add_argument("--paper", action="store_true", help="the paper's protocol on 2 Ray workers instead")
    args = ap.parse_args(argv)
    from _results import git_rev, machine, write_section

    photos = tuning_photos(Path(args.images), args.limit)
    meta = {"machine": machine(), "git_rev": git_rev(), "written": time.strftime("%Y-%m-%d %H:%M"),
            "methods": PAPER_METHODS if args.paper else METHODS, "photos": [p.name for p in photos]}
    if args.paper:
        return paper_run(photos, meta)
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for name, extra, threads in CONFIGS:
            print(f"{name} ...", flush=True)
            runs.append(run_config(name, extra, threads, photos, Path(tmp)))
            print(f"  {runs[-1]['wall_seconds']:.0f} s", flush=True)
    base1 = next(r for r in runs if r["name"] == "single, 1 thread")
    base2 = next(r for r in runs if r["name"] == "single, 2 threads")
    rows = []
    for r in runs:
        n, wall = r["n_images"], r["wall_seconds"]
        loop = wall - (r["ray_startup_seconds"] or 0.0)
        same = r["records"].keys() == base1["records"].keys() and all(
            without_times(r["records"][k]) == without_times(v) for k, v in base1["records"].items())
        rows.append({"name": r["name"], "images": n, "wall_seconds": wall,
                     "ray_startup_seconds": r["ray_startup_seconds"],
                     "images_per_minute": 60 * n / wall, "images_per_minute_after_startup": 60 * n / loop,
                     "speedup_vs_single_1_thread": base1["wall_seconds"] / wall,
                     "speedup_vs_single_2_threads": base2["wall_seconds"] / wall,
                     "median_image_seconds": sorted(r["per_image_seconds"])[len(r["per_image_seconds"]) // 2],
                     "records_equal_single_1_thread": same})
    write_text(HERE / "RESULTS_evaluate.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = ["## One process against Ray workers\n",
          f"Written by `bench/bench_evaluate.py` ({meta['written']}, commit {meta['git_rev']}) on "
          f"{meta['machine']}. {len(photos)} photos (the first of the tuning half), methods "
          f"`{METHODS}` (H-Sets default preset, IG 64 adaptive steps, random), the default scoring "
          "(ROAD MoRF/LeRF on the fine grid, insertion/deletion). Each configuration is one fresh "
          "command run once, one after the other; no interval (one run each).\n",
          "| configuration | wall (s) | Ray start-up (s) | images/min | images/min after start-up | "
          "speed-up vs single, 1 thread | vs single, 2 threads | median s per image | same records as single, 1 thread |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = "-" if r["ray_startup_seconds"] is None else f"{r['ray_startup_seconds']:.1f}"
        md.append(f"| {r['name']} | {r['wall_seconds']:.0f} | {st} | {r['images_per_minute']:.2f} | "
                  f"{r['images_per_minute_after_startup']:.2f} | {r['speedup_vs_single_1_thread']:.2f}x | "
                  f"{r['speedup_vs_single_2_threads']:.2f}x | {r['median_image_seconds']:.1f} | "
                  f"{'yes' if r['records_equal_single_1_thread'] else 'no'} |")
    md.append("\n'median s per image' is the time the methods and their scoring took inside the "
              "process that ran the image (a worker's own clock for Ray). 'single, 2 threads' runs "
              "torch on both cores, so its records can differ from one-thread runs in the last float "
              "bits (and, where two candidate pixels tie that close, in an H-Sets member).\n")
    write_section("speed", "\n".join(md), HERE / "RESULTS_evaluate.md")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
