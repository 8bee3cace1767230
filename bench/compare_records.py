"""Do two trees compute the same evaluation? ``hsets evaluate`` run in each, records compared
field by field.

A refactor (issue 30's folders, the method protocol) must leave behaviour and file formats
unchanged. This runs the same ``hsets evaluate`` (every built-in method, the interaction test)
on the same photos from two checkouts, each in its own process at one thread, and compares
``results.jsonl`` value by value (timings excepted) and the stored maps array by array. Writes
bench/RESULTS_records.json and the section "records" of bench/RESULTS.md.

    python bench/compare_records.py --before /tmp/old-checkout [--after .] [--photos 2]

``--before`` is a clone at the commit to compare with (``git clone -q . /tmp/old && git -C
/tmp/old checkout <rev>``); it runs with this tree's virtual environment.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import git_rev, machine, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
PHOTOS = HERE.parent.parent / "shared" / "images"
METHODS = "hsets,ig,gradient,smoothgrad,random,archipelago,moxi,ih,caso,cafo"
TIMING = ("seconds", "time")


def run(tree: Path, photos: list, out: Path) -> float:
    """``hsets evaluate`` of ``photos`` with the code of ``tree``; its wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hsets_widgets.cli.main", "evaluate", *map(str, photos), "--methods", METHODS,
           "--interactions", "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def records(folder: Path) -> dict:
    with open(folder / "results.jsonl") as f:
        return {r["key"]: r for r in map(json.loads, f)}


def differences(a, b, path: str = "") -> tuple:
    """``(values compared, [(path, before, after), ...])`` of two records, timings skipped."""
    if isinstance(a, dict):
        if set(a) != set(b):
            return 0, [(path, "keys", sorted(set(a) ^ set(b)))]
        n, out = 0, []
        for k in a:
            if not any(t in k for t in TIMING):
                m, d = differences(a[k], b[k], f"{path}.{k}")
                n, out = n + m, out + d
        return n, out
    if isinstance(a, list):
        if len(a) != len(b):
            return 0, [(path, len(a), len(b))]
        n, out = 0, []
        for i, (u, v) in enumerate(zip(a, b)):
            m, d = differences(u, v, f"{path}[{i}]")
            n, out = n + m, out + d
        return n, out
    same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return 1, ([] if same else [(path, a, b)])


def map_differences(before: Path, after: Path) -> tuple:
    """``(arrays compared, [arrays that differ or are gone], [arrays only the after tree stores])``
    of the stored maps of two folders (a tree that stores more, e.g. the sets beside the maps,
    is listed, not counted as a difference)."""
    n, out, added = 0, [], []
    for f in sorted((before / "maps").glob("*.npz")):
        a, b = np.load(f), np.load(after / "maps" / f.name)
        out += [f"{f.name}:{k} (gone)" for k in sorted(set(a.files) - set(b.files))]
        added += [f"{f.name}:{k}" for k in sorted(set(b.files) - set(a.files))]
        common = [k for k in a.files if k in b.files]
        n += len(common)
        out += [f"{f.name}:{k}" for k in common if not np.array_equal(a[k], b[k])]
    return n, out, added


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="a checkout of the commit compared with")
    ap.add_argument("--after", type=Path, default=HERE.parent, help="the checkout under test (default: this one)")
    ap.add_argument("--photos", type=int, default=2, help="how many of ../shared/images/imagenette to use")
    args = ap.parse_args(argv)
    photos = sorted((PHOTOS / "imagenette").iterdir())[: args.photos]
    with tempfile.TemporaryDirectory() as tmp:
        out_b, out_a = Path(tmp) / "before", Path(tmp) / "after"
        secs = {"before": run(args.before.resolve(), photos, out_b), "after": run(args.after.resolve(), photos, out_a)}
        rb, ra = records(out_b), records(out_a)
        n, diffs = 0, []
        for key in rb:
            m, d = differences(rb[key], ra.get(key, {}), key)
            n, diffs = n + m, diffs + d
        n_maps, map_diffs, map_added = map_differences(out_b, out_a)
    before_rev, after_rev = (subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                                            text=True).stdout.strip() for tree in (args.before, args.after))
    if args.after.resolve() == HERE.parent:
        after_rev = git_rev()
    result = {"machine": machine(), "after": after_rev, "before": before_rev, "photos": [p.name for p in photos],
              "methods": METHODS, "values_compared": n, "values_differing": len(diffs), "differences": diffs[:50],
              "arrays_compared": n_maps, "arrays_differing": map_diffs, "arrays_added": map_added, "seconds": secs}
    (HERE / "RESULTS_records.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    write_section("records", "\n".join([
        "## Same records before and after a refactor (bench/compare_records.py)",
        "",
        f"{result['machine']}; `hsets evaluate --interactions` with {METHODS} on "
        f"{', '.join(result['photos'])}, one process per tree, 1 thread.",
        "",
        "| before | after | values compared | differing | stored map arrays | differing | seconds before / after |",
        "|---|---|---|---|---|---|---|",
        f"| {before_rev} | {result['after']} | {n} | {len(diffs)} | {n_maps} | {len(map_diffs)} | "
        f"{secs['before']:.0f} / {secs['after']:.0f} |",
        "",
        f"Timing fields are not compared; arrays only the after tree stores: {len(map_added)}. Every "
        "difference and addition is listed in bench/RESULTS_records.json."]))
    print(json.dumps({k: result[k] for k in ("values_compared", "values_differing", "arrays_compared",
                                             "arrays_differing", "seconds")}, indent=1))
    return 0 if not diffs and not map_diffs else 1


if __name__ == "__main__":
    sys.exit(main())
